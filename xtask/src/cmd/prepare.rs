//! `cargo xtask prepare`: the night before, everything the day needs.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cargo::{self, target_dir};
use crate::catalogue::STAGES;
use crate::control_plane::{ControlPlane, Lifetime, Pace};
use crate::{assets, catalogue, files_below, say};

/// `cargo xtask prepare`: everything the day needs, fetched and built while
/// there is a network, then a local control plane started once to prove it.
/// Afterwards `CARGO_NET_OFFLINE=true` and `GOPROXY=off` change nothing.
/// Instructors run `cargo maint prepare`, which adds their tools and the
/// slides' renderer.
pub fn run() -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let step = |english: &str, japanese: &str| {
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "\n== {}",
            say!(
                "{english}, {seconds:.0} s so far",
                "{japanese}。ここまで {seconds:.0} 秒"
            )
        )
    };
    step(
        "fetching every crate (cargo fetch)",
        "すべてのクレートを取得しています（cargo fetch）",
    );
    cargo::run(&["fetch"])?;
    step(
        "building the finished stages and your workbench",
        "完成した段階と作業フォルダーをビルドしています",
    );
    cargo::run_sparing_the_workbench(&["build", "--bins", "--examples"])?;
    step(
        "building the checker's tests (unit tests of the workbench, end-to-end scenarios)",
        "チェッカーのテスト（作業フォルダーのユニットテスト、エンドツーエンドのシナリオ）をビルドしています",
    );
    cargo::run(&["test", "--no-run", "--package", "workshop-tests", "--test", "e2e"])?;
    let mut workbench_tests = vec!["test", "--no-run"];
    for stage in STAGES {
        workbench_tests.extend(["--example", stage]);
    }
    // Whether the workbench's tests build is the checker's to report: a
    // stage left half-written must not stop the preparation.
    let _ = cargo::output(&workbench_tests, &[]);
    step(
        "downloading, building or finding the control-plane binaries",
        "コントロールプレーンのバイナリを用意しています（ダウンロードかビルド、またはすでにあるもの）",
    );
    let assets = assets::locate_or_build()?;
    println!("{}", assets.dir.display());
    step(
        "starting a local control plane once, with stage 4's CRDs",
        "段階 4 の CRD を入れて、ローカルコントロールプレーンを一度起動しています",
    );
    let dir = crate::temporary_folder("prepare")?;
    let mut plane = ControlPlane::start(&assets, dir.path().join("plane"), Lifetime::Attached, Pace::Quick)?;
    plane.install_crds(&cargo::stage_crds(&cargo::debug_program(catalogue::STAGES[3]))?)?;
    plane.start_controller_manager()?;
    println!(
        "{}",
        say!(
            "it answers at {}",
            "コントロールプレーンは {} で応答しました",
            plane.server
        )
    );
    drop(plane);

    print_sizes(started, &assets.dir);
    Ok(ExitCode::SUCCESS)
}

/// What the preparation left on disk, and how long it took.
fn print_sizes(started: std::time::Instant, binaries: &Path) {
    let sizes = [
        (say!("target/ (builds)", "target/（ビルド）"), target_dir()),
        (
            say!("control-plane binaries", "コントロールプレーンのバイナリ"),
            binaries.to_path_buf(),
        ),
        (
            say!("cargo's crate cache", "cargo のクレートのキャッシュ"),
            cargo::home().join("registry"),
        ),
    ];
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "\n{}",
        say!(
            "Ready for a day without network, in {seconds:.0} s:",
            "ネットワークなしで 1 日進められる準備ができました（{seconds:.0} 秒）:"
        )
    );
    let width = sizes.iter().map(|(what, _)| display_width(what)).max().unwrap_or(0);
    for (what, dir) in &sizes {
        let gib = disk_usage(dir) as f64 / (1u64 << 30) as f64;
        let padding = " ".repeat(width - display_width(what));
        println!("  {what}{padding} {gib:>6.1} GiB");
    }
}

/// The columns `text` takes in a terminal: two for each wide (CJK) character.
fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| if matches!(c, '\u{1100}'..='\u{115F}' | '\u{2E80}'..='\u{A4CF}' | '\u{AC00}'..='\u{D7A3}' | '\u{F900}'..='\u{FAFF}' | '\u{FE30}'..='\u{FE4F}' | '\u{FF00}'..='\u{FF60}' | '\u{FFE0}'..='\u{FFE6}') { 2 } else { 1 })
        .sum()
}

/// The bytes of every file below `dir` (0 if it does not exist).
fn disk_usage(dir: &Path) -> u64 {
    files_below(dir)
        .iter()
        .filter_map(|file| std::fs::metadata(file).ok())
        .map(|meta| meta.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_take_two_columns() {
        assert_eq!(display_width("target/ (builds)"), 16);
        assert_eq!(display_width("target/（ビルド）"), 7 + 2 * 5);
    }
}
