//! Cargo, as the tooling runs it: the command without the variables that
//! `cargo run` set, where it builds, and what its test runs print.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::process;
use crate::repository_root;

/// A cargo command without the variables that `cargo run` set for this
/// program: build scripts that watch them (ring's watches CARGO_MANIFEST_DIR)
/// would otherwise rebuild on every switch between `cargo xtask` and plain cargo.
pub fn command() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref());
        if set_by_cargo_run {
            command.env_remove(name.as_ref());
        }
    }
    command.current_dir(repository_root());
    command
}

/// Runs `cargo ARGS` in the repository, its output on the terminal.
pub fn run(args: &[&str]) -> Result<()> {
    process::run(command().args(args))
}

/// Runs a cargo command quietly and returns whether it succeeded, and what
/// it printed: a failed build or test is an answer here, not an error.
pub fn output(args: &[&str], envs: &[(&str, &OsStr)]) -> Result<(bool, String)> {
    let mut command = command();
    command.args(args);
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().context("cannot run cargo")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// Where cargo puts what it builds.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target"))
}

/// A program built in the debug profile: `debug_program("step04_fermat")`,
/// or an example, `debug_program("examples/step02_status")`.
pub fn debug_program(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// Where cargo keeps downloaded crates: CARGO_HOME, else ~/.cargo.
pub fn home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_default()
}

/// The CRDs that a built stage prints with `crd`.
pub fn stage_crds(program: &Path) -> Result<String> {
    process::stdout_of(Command::new(program).arg("crd"))
}

/// The passed, failed and ignored counts of a libtest summary line
/// (`test result: ok. 21 passed; 0 failed; 0 ignored; …`).
pub fn test_result_counts(line: &str) -> Option<[u64; 3]> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<u64> {
        rest.split(';').find_map(|part| {
            let part = part
                .trim()
                .trim_start_matches("ok.")
                .trim_start_matches("FAILED.")
                .trim();
            let (number, name) = part.split_once(' ')?;
            (name == word).then(|| number.parse().ok()).flatten()
        })
    };
    Some([count("passed")?, count("failed")?, count("ignored")?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_of_passing_and_failing_runs_are_counted() {
        let ok = "test result: ok. 21 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 8.21s";
        assert_eq!(test_result_counts(ok), Some([21, 0, 2]));
        let failed = "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(test_result_counts(failed), Some([3, 1, 0]));
        assert_eq!(test_result_counts("running 21 tests"), None);
    }
}
