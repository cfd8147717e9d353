//! `cargo xtask`: the attendee's tooling. This file only reads the command
//! line and hands it to the command's module (`xtask/src/cmd/`); each
//! command declares its options there. `cargo xtask --help` lists the
//! commands, `cargo xtask COMMAND --help` a command's options. What only
//! maintainers and instructors run is `cargo maint` (maint/src/main.rs).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::cmd;
use xtask::say;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = say!(
        "The attendee's tooling (maintainers and instructors: `cargo maint`)",
        "参加者のためのツール（メンテナーと講師は `cargo maint`）"
    ),
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
        "is this machine ready? each check with ✓, ! or ✗ and the fix",
        "このマシンの準備はできているか: チェックごとに ✓ / ! / ✗ と対処法"
    ))]
    Doctor(cmd::doctor::Options),
    #[command(about = say!(
        "download (Linux) or build the control-plane binaries once, or find them; print their folder",
        "コントロールプレーンのバイナリを初回だけダウンロード（Linux）またはビルドし、あるいは検索して、そのフォルダーを表示"
    ))]
    Build,
    #[command(about = say!(
        "every test, unit and end to end (the maintainers' `cargo maint test`, run from here)",
        "すべてのテスト、ユニットとエンドツーエンド（メンテナー用の `cargo maint test` をここから実行）"
    ))]
    Test {
        #[arg(last = true, value_name = "ARGS", help = say!(
            "after --: passed on to the test programs, as a name filter (`-- step03`)",
            "-- の後: テストプログラムにそのまま渡します（名前で絞るなら `-- step03`）"
        ))]
        args: Vec<std::ffi::OsString>,
    },
    #[command(about = say!(
        "the Fermat → Tuple → Number tree of a namespace, live",
        "ネームスペースの Fermat → Tuple → Number のツリーをリアルタイムで表示"
    ))]
    Tree(cmd::tree::Options),
}

fn main() -> ExitCode {
    let cli: Cli = xtask::parse_command_line();
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
        Command::Doctor(options) => cmd::doctor::run(options),
        Command::Build => cmd::build::run(),
        Command::Test { args } => cmd::maint("test", &args),
        Command::Tree(options) => cmd::tree::run(options),
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
