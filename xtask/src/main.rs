//! `cargo xtask`: the workshop's tooling. This file only reads the command
//! line and hands it to the command's module (`xtask/src/cmd/`); each
//! command declares its options there. `cargo xtask --help` lists the
//! commands, `cargo xtask COMMAND --help` a command's options.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use xtask::cmd;
use xtask::say;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = say!("The workshop's tooling", "ワークショップのツール"),
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
        "start a local control plane in the background and print how to use it",
        "ローカルコントロールプレーンをバックグラウンドで起動し、使い方を表示"
    ))]
    Up,
    #[command(about = say!(
        "stop it and remove its files",
        "それを止めて、そのファイルを削除"
    ))]
    Down,
    #[command(about = say!(
        "delete the workshop's CRDs and objects from the current cluster: a clean slate",
        "現在のクラスターからワークショップの CRD とオブジェクトを削除して、まっさらにする"
    ))]
    Reset,
    #[command(about = say!(
        "check your workbench (exercises/): build, unit tests, the lesson's end-to-end scenarios",
        "作業フォルダー（exercises/）をチェック: ビルド、ユニットテスト、段階のエンドツーエンドのシナリオ"
    ))]
    Check(cmd::check::Options),
    #[command(about = say!(
        "the night before: fetch and build everything, so the day needs no network",
        "前日に: すべてを取得してビルドし、当日はネットワークなしで進められるようにする"
    ))]
    Prepare,
    #[command(about = say!(
        "render the slides (English and Japanese) to slides/out: HTML, PDF, PNGs",
        "スライド（英語と日本語）を slides/out に出力: HTML、PDF、PNG"
    ))]
    Slides,
    #[command(about = say!(
        "is this machine ready? each check with ✓, ! or ✗ and the fix",
        "このマシンの準備はできているか: チェックごとに ✓ / ! / ✗ と対処法"
    ))]
    Doctor(cmd::doctor::Options),
    #[command(about = say!(
        "write the code blocks of the guides (steps/) again from the code",
        "ガイド（steps/）のコードブロックをコードから書き直す"
    ))]
    Guides,
    #[command(about = say!(
        "build (once) or find the control-plane binaries and print their folder",
        "コントロールプレーンのバイナリをビルド（初回のみ）または検索し、そのフォルダーを表示"
    ))]
    Build(cmd::build::Options),
    #[command(about = say!(
        "run every test: unit tests, then end-to-end scenarios on real control planes",
        "すべてのテスト: ユニットテストの後、実際のコントロールプレーンでエンドツーエンドのシナリオ"
    ))]
    Test(cmd::test::Options),
    #[command(about = say!(
        "run the end-to-end scenarios and write ROBUSTNESS.md from the rows they record",
        "エンドツーエンドのシナリオを実行し、記録された行から ROBUSTNESS.md を書く"
    ))]
    Robustness,
    #[command(about = say!(
        "the Fermat → Tuple → Number tree of a namespace, live",
        "ネームスペースの Fermat → Tuple → Number のツリーをリアルタイムで表示"
    ))]
    Tree(cmd::tree::Options),
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
    // The texts are built at run time, in the reader's language.
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if xtask::find_repository_root().is_none() {
        eprintln!(
            "{}",
            say!(
                "error: `cargo xtask` works on the workshop's folder, and none contains this one: \
                 cd into the folder you cloned (the one with README.md and exercises/), then run it again",
                "エラー: `cargo xtask` はワークショップのフォルダーの中で動きます。ここはその中ではありません。\
                 クローンしたフォルダー（README.md と exercises/ があるところ）に cd してから、もう一度実行してください"
            )
        );
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Up => cmd::up::run(),
        Command::Down => cmd::down::run(),
        Command::Reset => cmd::reset::run(),
        Command::Check(options) => cmd::check::run(options),
        Command::Prepare => cmd::prepare::run(),
        Command::Slides => cmd::slides::run(),
        Command::Doctor(options) => cmd::doctor::run(options),
        Command::Guides => cmd::guides::run(),
        Command::Build(options) => cmd::build::run(options),
        Command::Test(options) => cmd::test::run(options),
        Command::Robustness => cmd::robustness::run(),
        Command::Tree(options) => cmd::tree::run(options),
        Command::Macos => cmd::macos::run(),
        Command::Soak(options) => cmd::soak::run(options),
        Command::Bench(options) => cmd::bench::run(options),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_declared_consistently() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_a_one_line_description() {
        for command in Cli::command().get_subcommands() {
            let about = command.get_about().map(|about| about.to_string()).unwrap_or_default();
            assert!(!about.is_empty() && !about.contains('\n'), "{}", command.get_name());
        }
    }
}
