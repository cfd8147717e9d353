//! `cargo maint soak`: the finished controller under random faults (outside CI).

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cargo::{self, target_dir};
use crate::control_plane::{ControlPlane, Lifetime, Pace};
use crate::{assets, catalogue, cleanup, repository_root, robustness, say};

#[derive(clap::Args, Debug)]
pub struct Options {
    #[arg(long, value_name = "N", default_value_t = 50, help = say!(
        "how many random faults", "引き起こす障害の数"
    ))]
    faults: usize,
    #[arg(long, value_name = "S", help = say!(
        "the seed of the random choices (default: the time); the same seed repeats a run",
        "乱数のシード（省略時は現在時刻）。同じシードで同じ実行を繰り返せます"
    ))]
    seed: Option<u64>,
}

/// Outside CI: see soak.rs.
pub fn run(options: Options) -> Result<ExitCode> {
    let faults = options.faults;
    let seed = options.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(1)
    });
    let assets = assets::locate_or_build()?;
    cargo::run(&["build", "--bins"])?;
    let target = target_dir();
    let program = cargo::debug_program(catalogue::STAGES[3]);
    let dir = crate::temporary_folder("soak")?;
    cleanup::register_folder(dir.path().to_path_buf());
    let mut plane = ControlPlane::start(&assets, dir.path().join("plane"), Lifetime::Attached, Pace::Default)?;
    plane.install_crds(&cargo::stage_crds(&program)?)?;
    plane.start_controller_manager()?;
    let log = crate::soak::fresh_log(&crate::soak::folder(&target))?;
    eprintln!(
        "soaking with {faults} faults, seed {seed}; the controller logs to {}",
        log.display()
    );
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    let outcomes = runtime.block_on(crate::soak::run(&plane, &program, &log, faults, seed))?;
    let section = crate::soak::report(&outcomes, seed, started.elapsed().as_secs_f64() / 60.0);
    println!("\n{section}");
    let document = repository_root().join(robustness::DOCUMENT);
    let committed = std::fs::read_to_string(&document).unwrap_or_default();
    let kept = robustness::split_soak(&committed).0.trim_end();
    std::fs::write(&document, format!("{kept}\n\n{}\n\n{section}", robustness::SOAK_MARKER))
        .with_context(|| format!("cannot write {}", document.display()))?;
    println!("wrote {}", document.display());
    let settled = outcomes.iter().all(|outcome| outcome.recovery.is_some());
    Ok(if settled { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
