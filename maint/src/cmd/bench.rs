//! `cargo maint bench`: the finished controller measured against the API
//! server's floor on a control plane of its own (BENCHMARKS.md), and with
//! `--loop` the attendee's edit-compile-run loop.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{self, Plan};
use crate::cargo::{self, target_dir};
use crate::catalogue::STAGES;
use crate::control_plane::{ControlPlane, Lifetime, Pace};
use crate::{assets, cleanup, process, repository_root, say};

#[derive(clap::Args, Debug)]
pub struct Options {
    #[arg(long, conflicts_with_all = ["size", "runs"], help = say!(
        "one Fermat, one run, the debug build: the benchmark kept from rotting (CI runs it)",
        "Fermat 1 つ、1 回、デバッグビルド: ベンチマークが動くことの確認（CI が実行）"
    ))]
    smoke: bool,
    #[arg(long = "loop", conflicts_with_all = ["smoke", "size", "runs", "release"], help = say!(
        "the attendee's loop instead: the setup checklist's builds cold, rebuilds after a one-line edit, `cargo xtask test`",
        "代わりに参加者のループを測る: セットアップのチェックリストのビルド（コールド）、1 行の編集後の再ビルド、`cargo xtask test`"
    ))]
    attendee_loop: bool,
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..), help = say!(
        "narrow the plan to K Fermats at once (repeatable); BENCHMARKS.md is left as it is",
        "一度に作る Fermat を K 個に絞る（複数指定可）。BENCHMARKS.md は書き換えません"
    ))]
    size: Vec<u64>,
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help = say!(
        "narrow the plan to N runs of each workload",
        "各ワークロードの実行回数を N に絞る"
    ))]
    runs: Option<u64>,
    #[arg(long, help = say!(
        "narrow the plan to the release build",
        "リリースビルドだけに絞る"
    ))]
    release: bool,
}

impl Options {
    /// A narrowed run measures one option: its figures stay out of BENCHMARKS.md.
    fn narrowed(&self) -> bool {
        !self.size.is_empty() || self.runs.is_some() || self.release
    }

    /// The command line, as the report names it.
    fn command_line(&self) -> String {
        let mut words = vec!["cargo maint bench".to_string()];
        words.extend(self.smoke.then(|| "--smoke".to_string()));
        words.extend(self.size.iter().map(|size| format!("--size {size}")));
        words.extend(self.runs.map(|runs| format!("--runs {runs}")));
        words.extend(self.release.then(|| "--release".to_string()));
        words.join(" ")
    }
}

/// The markers around the benchmark's figures in BENCHMARKS.md.
const FIGURES: (&str, &str) = (
    "<!-- figures: written by cargo maint bench -->",
    "<!-- end of figures -->",
);

/// The markers around the attendee's loop in BENCHMARKS.md.
const LOOP: (&str, &str) = (
    "<!-- loop: written by cargo maint bench --loop -->",
    "<!-- end of loop -->",
);

/// The document the benchmark writes its figures into.
const DOCUMENT: &str = "BENCHMARKS.md";

pub fn run(options: Options) -> Result<ExitCode> {
    if options.attendee_loop {
        return attendee_loop();
    }
    let assets = assets::locate_or_build()?;
    let plan = plan(&options)?;
    let dir = crate::temporary_folder("bench")?;
    cleanup::register_folder(dir.path().to_path_buf());
    let mut plane = ControlPlane::start(&assets, dir.path().join("plane"), Lifetime::Attached, Pace::Default)?;
    plane.install_crds(&cargo::stage_crds(&cargo::debug_program(STAGES[3]))?)?;
    plane.start_controller_manager()?;
    eprintln!("benchmarking on a control plane of its own…");
    let runtime = tokio::runtime::Runtime::new()?;
    let results = runtime.block_on(bench::run(&plane, &plan))?;
    let report = bench::report(&results, &machine(), &options.command_line());
    println!("\n{report}");
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&bench::to_json(&results))?,
    )?;
    std::fs::write(out.join("settle.svg"), bench::plot(&results))?;
    if !options.smoke && !options.narrowed() {
        splice(&repository_root().join(DOCUMENT), FIGURES, &report)?;
        std::fs::write(
            repository_root().join("benchmarks").join("settle.svg"),
            bench::plot(&results),
        )?;
        println!("wrote {DOCUMENT} and benchmarks/settle.svg");
    }
    drop(plane);
    Ok(ExitCode::SUCCESS)
}

/// What to measure: `--smoke` one Fermat, one run, the debug build; the
/// full plan otherwise, narrowed by `--size`, `--runs` and `--release`.
/// Builds the programs it measures.
fn plan(options: &Options) -> Result<Plan> {
    cargo::run(&["build", "--bins"])?;
    let mut builds = vec![("debug".to_string(), cargo::debug_program(STAGES[3]))];
    if !options.smoke || options.release {
        cargo::run(&["build", "--release", "--bin", STAGES[3]])?;
        builds.push(("release".to_string(), target_dir().join("release").join(STAGES[3])));
    }
    if options.release {
        builds.retain(|(build, _)| build == "release");
    }
    let as_counts = |values: &[u64]| values.iter().map(|&value| value as usize).collect::<Vec<_>>();
    Ok(if options.smoke {
        Plan {
            sizes: vec![1],
            repetitions: 1,
            builds,
            idle: Duration::from_secs(20),
            floor_concurrency: vec![16],
        }
    } else {
        Plan {
            sizes: if options.size.is_empty() {
                vec![1, 10, 30]
            } else {
                as_counts(&options.size)
            },
            repetitions: options.runs.map_or(3, |runs| runs as usize),
            builds,
            idle: Duration::from_secs(60),
            floor_concurrency: vec![4, 16, 64],
        }
    })
}

/// Replaces what lies between the markers `start` and `end` in `document`
/// with `text`.
fn splice(document: &Path, (start, end): (&str, &str), text: &str) -> Result<()> {
    let name = document.display();
    let whole = std::fs::read_to_string(document).with_context(|| format!("cannot read {name}"))?;
    let (before, rest) = whole
        .split_once(start)
        .with_context(|| format!("{name} has no line {start}"))?;
    let (_, after) = rest
        .split_once(end)
        .with_context(|| format!("{name} has no line {end}"))?;
    std::fs::write(document, format!("{before}{start}\n{text}{end}{after}"))
        .with_context(|| format!("cannot write {name}"))
}

/// How many times the loop times `cargo xtask test`.
const TEST_RUNS: usize = 3;

/// `cargo maint bench --loop`: the attendee's edit-compile-run loop, timed.
/// A copy of the repository with a target folder of its own goes through
/// the setup checklist's compiling steps, cold: `cargo xtask doctor` (the
/// tooling's first build), `cargo build --bins --examples`, `cargo run --bin
/// step01_crd -- crd`; then three rebuilds of stage 4 after a one-line edit
/// in its reconcile; last, `cargo xtask test` with nothing to rebuild, three
/// times, in this repository. Rewrites the loop section of BENCHMARKS.md.
fn attendee_loop() -> Result<ExitCode> {
    let copy = crate::temporary_folder("loop")?;
    copy_tracked_files(&repository_root(), copy.path())?;
    let timed = |args: &[&str]| -> Result<f64> {
        let started = Instant::now();
        process::run(
            cargo::command()
                .args(args)
                .current_dir(copy.path())
                .env("CARGO_TARGET_DIR", copy.path().join("target")),
        )?;
        Ok(started.elapsed().as_secs_f64())
    };
    eprintln!("the setup checklist's builds in a fresh copy, cold…");
    let started = Instant::now();
    // The doctor's verdict (it fails on a machine that lacks something) does
    // not matter here: the tooling's build does, and a failed build shows.
    cargo::command()
        .args(["xtask", "doctor"])
        .current_dir(copy.path())
        .env("CARGO_TARGET_DIR", copy.path().join("target"))
        .status()
        .context("cannot run cargo")?;
    let tooling = started.elapsed().as_secs_f64();
    let stages = timed(&["build", "--bins", "--examples"])?;
    let run = timed(&["build", "--bin", STAGES[0]])?;
    let rebuilds = timed_rebuilds(&copy.path().join("exercises/step04_fermat/fermat.rs"), || {
        timed(&["build", "--example", STAGES[3]])
    })?;
    drop(copy);
    // The machine's speed moves by a fifth from one run to the next: three
    // runs, one after the other.
    let mut tests = Vec::new();
    for run in 1..=TEST_RUNS {
        eprintln!("`cargo xtask test` with nothing to rebuild ({run} of {TEST_RUNS})…");
        tests.push(timed_test_run()?);
    }
    let (min, median, max) = bench::spread(rebuilds);
    let (test_min, test_median, test_max) = bench::spread(tests);
    let report = format!(
        "Measured with `cargo maint bench --loop` on {}.\n\n\
         | step | seconds |\n|---|---|\n\
         | cold, in a fresh copy: `cargo xtask doctor` (the tooling's first build) | {tooling:.1} |\n\
         | then `cargo build --bins --examples` (every stage, finished and workbench) | {stages:.1} |\n\
         | then `cargo build --bin step01_crd` (what `cargo run` builds: nothing) | {run:.1} |\n\
         | rebuild of stage 4 after a one-line edit in its reconcile (min / median / max of 3) | {min:.1} / {median:.1} / {max:.1} |\n\
         | `cargo xtask test` with nothing to rebuild (min / median / max of {TEST_RUNS}) | \
         {test_min:.1} / {test_median:.1} / {test_max:.1} |\n",
        machine()
    );
    println!("\n{report}");
    splice(&repository_root().join(DOCUMENT), LOOP, &report)?;
    println!("wrote {DOCUMENT}");
    Ok(ExitCode::SUCCESS)
}

/// Copies the files git tracks in `root` into `copy`.
fn copy_tracked_files(root: &Path, copy: &Path) -> Result<()> {
    let listed = process::stdout_of(Command::new("git").args(["ls-files", "-z"]).current_dir(root))
        .context("the loop copies the repository's files as git lists them")?;
    for path in listed.split('\0').filter(|path| !path.is_empty()) {
        let to = copy.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(root.join(path), &to).with_context(|| format!("cannot copy {path}"))?;
    }
    Ok(())
}

/// Three rebuilds, each after a one-line edit of `source` (stage 4's reconcile).
fn timed_rebuilds(source: &Path, mut rebuild: impl FnMut() -> Result<f64>) -> Result<Vec<f64>> {
    let original = std::fs::read_to_string(source)?;
    let line = "    let name = fermat.name_any();\n";
    if !original.contains(line) {
        bail!(
            "{} no longer has the line this measure edits: {line:?}",
            source.display()
        );
    }
    let mut rebuilds = Vec::new();
    for edit in [
        "    let name = fermat.name_any().to_string();\n",
        line,
        "    let name = fermat.name_any().clone();\n",
    ] {
        std::fs::write(source, original.replacen(line, edit, 1))?;
        rebuilds.push(rebuild()?);
    }
    Ok(rebuilds)
}

/// `cargo xtask test` in this repository once everything it builds is built, timed;
/// its output goes to a log in the target folder.
fn timed_test_run() -> Result<f64> {
    // Everything `cargo xtask test` builds, built first: the stages as it
    // builds them, and the test programs.
    cargo::run(&["build", "--bins", "--examples"])?;
    cargo::run(&["test", "--workspace", "--no-run"])?;
    let log_path: PathBuf = target_dir().join("bench").join("loop-test.log");
    std::fs::create_dir_all(target_dir().join("bench"))?;
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let status = cargo::command()
        .args(["xtask", "test"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("cannot run cargo")?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "`cargo xtask test` failed (see {}): its time means nothing",
            log_path.display()
        );
    }
    Ok(seconds)
}

/// This machine, in a few words: CPU model, cores, memory.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!(
        "{model}, {cores} cores, {memory_gib:.0} GiB, Kubernetes {}",
        assets::kubernetes_version()
    )
}
