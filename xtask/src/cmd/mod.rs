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
/// exit status: `cargo xtask test [-- ARGS]` is the README's test command.
pub fn maint(command: &str, args: &[OsString]) -> Result<ExitCode> {
    let status = cargo::command().args(maint_arguments(command, args)).status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `maint COMMAND -- ARGS` (no `--` without arguments): what follows `--`
/// on the attendee's command line goes after `--` on the maintainers'.
fn maint_arguments(command: &str, args: &[OsString]) -> Vec<OsString> {
    let mut all: Vec<OsString> = vec!["maint".into(), command.into()];
    if !args.is_empty() {
        all.push("--".into());
        all.extend(args.iter().cloned());
    }
    all
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_after_the_double_dash_stay_after_it() {
        assert_eq!(maint_arguments("test", &[]), ["maint", "test"]);
        let filter = [OsString::from("step03"), OsString::from("--test-threads=2")];
        assert_eq!(
            maint_arguments("test", &filter),
            ["maint", "test", "--", "step03", "--test-threads=2"]
        );
    }
}
