//! `cargo xtask prepare`: the night before, everything the day needs.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::Result;

use crate::cargo::{self, target_dir};
use crate::control_plane::{ControlPlane, Lifetime, Pace};
use crate::{assets, catalogue, files_below, repository_root};

/// `cargo xtask prepare`: everything the day needs, fetched and built while
/// there is a network, then a local control plane started once to prove it.
/// Afterwards `CARGO_NET_OFFLINE=true` and `GOPROXY=off` change nothing.
pub fn run() -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let step = |what: &str| println!("\n== {what} ({:.0} s so far)", started.elapsed().as_secs_f64());
    step("fetching every crate (cargo fetch)");
    cargo::run(&["fetch"])?;
    step("building the finished stages, the workbench, the tooling and every test");
    cargo::run_sparing_the_workbench(&["build", "--workspace", "--bins", "--examples", "--tests"])?;
    // `cargo run --bin` alone uses other features (see `test`).
    cargo::run_sparing_the_workbench(&["build", "--bins"])?;
    step("installing the slides' renderer (npm ci in slides/)");
    install_slide_renderer();
    step("building or finding the control-plane binaries");
    let assets = assets::locate_or_build()?;
    println!("{}", assets.dir.display());
    step("starting a local control plane once, with stage 4's CRDs");
    let dir = crate::temporary_folder("prepare")?;
    let mut plane = ControlPlane::start(&assets, dir.path().join("plane"), Lifetime::Attached, Pace::Quick)?;
    plane.install_crds(&cargo::stage_crds(&cargo::debug_program(catalogue::STAGES[3]))?)?;
    plane.start_controller_manager()?;
    println!("it answers at {}", plane.server);
    drop(plane);

    let sizes: Vec<(String, u64)> = [
        ("target/ (builds)", target_dir()),
        ("control-plane binaries", assets.dir.clone()),
        ("cargo's crate cache", cargo::home().join("registry")),
    ]
    .into_iter()
    .map(|(what, dir)| (what.to_string(), disk_usage(&dir)))
    .collect();
    println!(
        "\nReady for a day without network, in {:.0} s:",
        started.elapsed().as_secs_f64()
    );
    for (what, bytes) in sizes {
        println!("  {what:<24} {:>6.1} GiB", bytes as f64 / (1u64 << 30) as f64);
    }
    Ok(ExitCode::SUCCESS)
}

/// `npm ci` in slides/: the slides' renderer. The slides are the
/// instructor's, not the attendee's: without npm, or when it fails, the day
/// goes on without them.
fn install_slide_renderer() {
    let npm = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("PUPPETEER_SKIP_DOWNLOAD", "true")
        .current_dir(repository_root().join("slides"))
        .status();
    match npm {
        Ok(status) if status.success() => {}
        Ok(status) => println!("`npm ci` in slides/ failed ({status}, see above): the slides cannot be rendered here"),
        Err(_) => println!("npm is not installed: the slides cannot be rendered here (everything else can)"),
    }
}

/// The bytes of every file below `dir` (0 if it does not exist).
fn disk_usage(dir: &Path) -> u64 {
    files_below(dir)
        .iter()
        .filter_map(|file| std::fs::metadata(file).ok())
        .map(|meta| meta.len())
        .sum()
}
