//! The commands of `cargo xtask`, one module each. `main.rs` parses the
//! command line (each module declares its own options) and calls the
//! module's `run`.

pub mod build;
pub mod check;
pub mod doctor;
pub mod down;
pub mod prepare;
pub mod reset;
pub mod tree;
pub mod up;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Result;

use crate::catalogue::stage_named;
use crate::{cargo, say};

/// Runs `cargo maint COMMAND ARGS`, the maintainers' tool, and hands on its
/// exit status: `cargo xtask test` is the README's test command.
pub fn maint(command: &str, args: &[OsString]) -> Result<ExitCode> {
    let status = cargo::command().args(["maint", command]).args(args).status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The stage a command line names (`step02`, `2`…), with the fix when it
/// names none: the parser of a STAGE argument.
pub fn stage_argument(name: &str) -> Result<&'static str, String> {
    stage_named(name).ok_or_else(|| {
        say!(
            "there is no stage {name:?}: name one of step01, step02, step03, step04",
            "段階 {name:?} はありません。step01、step02、step03、step04 のどれかを指定してください"
        )
    })
}
