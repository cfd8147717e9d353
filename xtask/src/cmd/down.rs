//! `cargo xtask down`: the local control plane stopped, its files removed.

use std::process::ExitCode;

use anyhow::Result;

use crate::{planes, say};

pub fn run() -> Result<ExitCode> {
    let dir = planes::attendee_dir()?;
    let stopped = planes::stop(&dir)?;
    // The checker's plane goes with the usual one, not with a second one.
    let second = std::env::var_os("MATH_CONTROLLER_CLUSTER").is_some();
    let checker = !second && planes::stop(&planes::checker_dir()?)?;
    if stopped {
        println!(
            "{}",
            say!(
                "Stopped the local control plane and removed its files, objects included: \
                 the next `cargo xtask up` starts empty.",
                "ローカルコントロールプレーンを止め、オブジェクトも含めてそのファイルを削除しました。\
                 次の `cargo xtask up` は空の状態から始まります。"
            )
        );
    } else {
        println!(
            "{}",
            say!(
                "No local control plane is running in {}.",
                "{} で動いているローカルコントロールプレーンはありません。",
                dir.display()
            )
        );
    }
    if checker {
        println!(
            "{}",
            say!(
                "Stopped the checker's plane too (`cargo xtask check` starts it again when needed).",
                "チェッカーのコントロールプレーンも止めました（必要になれば `cargo xtask check` がまた起動します）。"
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}
