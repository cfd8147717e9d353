//! `cargo maint`: what maintainers, instructors and CI run, beside the
//! attendee's `cargo xtask`: every test, the robustness table, the
//! benchmark, the soak, the slides, the guides' code blocks, and the builds
//! for macOS. It builds on the attendee's tooling (the `xtask` library):
//! attendees never compile this crate.
//!
//! - [`bench`]: the benchmark of the finished controller against the API server's floor.
//! - [`soak`]: the finished controller under a long run of random faults (outside CI).
//! - [`slides`]: renders the slides with Marp and the system's Chromium.
//! - [`glossary`]: the Japanese texts keep to the terms of `steps/ja/glossary.md`.
//! - [`macos`]: type-checks the workspace for macOS with Zig as the C compiler.
//! - [`guides`]: writes the code blocks of the guides (`steps/`) from the code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod cmd;
#[cfg(test)]
mod glossary;
mod guides;
mod macos;
mod slides;
mod soak;

// The attendee's tooling, under the names its modules had when they lived there.
use xtask::{
    assets, cargo, catalogue, check, cleanup, control_plane, process, repository_root, robustness, say,
    temporary_folder, tree, tree_live,
};

#[derive(Parser, Debug)]
#[command(
    name = "cargo maint",
    bin_name = "cargo maint",
    about = "The maintainers' and instructors' tooling (attendees use `cargo xtask`)",
    disable_help_subcommand = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(about = say!(
        "run every test: unit tests, then end-to-end scenarios on real control planes",
        "すべてのテスト: ユニットテストの後、実際のコントロールプレーンでエンドツーエンドのシナリオ"
    ))]
    Test(cmd::test::Options),
    #[command(about = say!(
        "the night before, as an instructor: the attendee's `cargo xtask prepare`, this tool, and the slides' renderer",
        "講師として前日に: 参加者の `cargo xtask prepare`、このツール、スライドの出力に使うもの"
    ))]
    Prepare,
    #[command(about = say!(
        "run the end-to-end scenarios and write ROBUSTNESS.md from the rows they record",
        "エンドツーエンドのシナリオを実行し、記録された行から ROBUSTNESS.md を書く"
    ))]
    Robustness,
    #[command(about = say!(
        "render the slides (English and Japanese) to slides/out: HTML, PDF, PNGs",
        "スライド（英語と日本語）を slides/out に出力: HTML、PDF、PNG"
    ))]
    Slides,
    #[command(about = say!(
        "write the code blocks of the guides (steps/) again from the code",
        "ガイド（steps/）のコードブロックをコードから書き直す"
    ))]
    Guides,
    #[command(about = say!(
        "the control-plane binaries of this machine, and with --cross for macOS too; prints their folders",
        "このマシン用のコントロールプレーンのバイナリ（--cross なら macOS 向けも）を用意し、そのフォルダーを表示"
    ))]
    Build(cmd::build::Options),
    #[command(about = say!(
        "type-check every crate and target for macOS (Apple silicon and Intel)",
        "すべてのクレートとターゲットを macOS（Apple シリコンと Intel）向けに型チェック"
    ))]
    Macos,
    #[command(about = say!(
        "the finished controller under random faults while Fermats change (outside CI)",
        "Fermat を変えながら、完成したコントローラーにランダムな障害を引き起こす（CI の外で）"
    ))]
    Soak(cmd::soak::Options),
    #[command(about = say!(
        "measure the finished controller against the API server's floor (BENCHMARKS.md)",
        "完成したコントローラーを API サーバーの下限と比べて測る（BENCHMARKS.md）"
    ))]
    Bench(cmd::bench::Options),
}

fn main() -> ExitCode {
    let cli: Cli = xtask::parse_command_line();
    if xtask::find_repository_root().is_none() {
        eprintln!("error: `cargo maint` works on the workshop's folder: cd into the clone, then run it again");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Test(options) => cmd::test::run(options),
        Command::Prepare => cmd::prepare::run(),
        Command::Robustness => cmd::robustness::run(),
        Command::Slides => cmd::slides::run(),
        Command::Guides => cmd::guides::run(),
        Command::Build(options) => cmd::build::run(options),
        Command::Macos => cmd::macos::run(),
        Command::Soak(options) => cmd::soak::run(options),
        Command::Bench(options) => cmd::bench::run(options),
    };
    xtask::finish(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_declared_consistently_with_one_line_per_command() {
        xtask::check_command_line(Cli::command());
    }
}
