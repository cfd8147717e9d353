//! Cargo, as the tooling runs it: the command without the variables that
//! `cargo run` set, where it builds, and what its test runs print.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::process;
use crate::repository_root;

/// A cargo command in the repository, without the variables that `cargo
/// run` set for this program (see [`launch::cargo`]).
pub fn command() -> Command {
    let mut command = launch::cargo();
    command.current_dir(repository_root());
    command
}

/// Runs `cargo ARGS` in the repository, its output on the terminal.
pub fn run(args: &[&str]) -> Result<()> {
    process::run(command().args(args))
}

/// Runs `cargo ARGS` in the repository, its output on the terminal but for
/// the compiler's warnings about the workbench (see [`Messages`]).
pub fn run_sparing_the_workbench(args: &[&str]) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut command = command();
    command
        .args(args)
        .arg(json_messages())
        .stdout(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run `{}`", process::describe(&command)))?;
    let stdout = child.stdout.take().context("cargo has no stdout")?;
    let mut messages = Messages::default();
    for line in BufReader::new(stdout).lines() {
        if let Some(text) = messages.text(&line?) {
            eprint!("{text}");
        }
    }
    let status = child.wait()?;
    if let Some(summary) = messages.summary() {
        eprintln!("{summary}");
    }
    if !status.success() {
        anyhow::bail!("`{}` failed ({status}, see above)", process::describe(&command));
    }
    Ok(())
}

/// The argument that has cargo print its messages as JSON, rendered in
/// colour for a terminal.
pub fn json_messages() -> &'static str {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        "--message-format=json-diagnostic-rendered-ansi"
    } else {
        "--message-format=json"
    }
}

/// Cargo's JSON messages ([`json_messages`]) turned back into what cargo
/// would print, but for the compiler's warnings about the workbench
/// (`exercises/`, the examples): its open TODOs give hundreds of lines of
/// them on every build, which would bury the rest, so they are counted in
/// one line instead.
#[derive(Default)]
pub struct Messages {
    workbench_warnings: usize,
}

impl Messages {
    /// What one line of cargo's stdout shows: a compiler message as the
    /// compiler renders it, unless it is a warning about the workbench;
    /// nothing for cargo's other messages (artifacts built, build scripts
    /// run); a line that is not cargo's (a test's output) as it is.
    pub fn text(&mut self, line: &str) -> Option<String> {
        let message = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .filter(|message| message.get("reason").is_some());
        let Some(message) = message else {
            return Some(format!("{line}\n"));
        };
        if message["reason"] != "compiler-message" {
            return None;
        }
        let kinds = message["target"]["kind"].as_array();
        let in_workbench = kinds.is_some_and(|kinds| kinds.iter().any(|kind| kind == "example"));
        if in_workbench && message["message"]["level"] == "warning" {
            self.workbench_warnings += 1;
            return None;
        }
        message["message"]["rendered"].as_str().map(str::to_string)
    }

    /// One line for the warnings left out, if any.
    pub fn summary(&self) -> Option<String> {
        let count = self.workbench_warnings;
        (count > 0).then(|| {
            crate::say!(
                "({count} compiler warnings about the workbench, exercises/, left out: its open TODOs; `cargo build --example step02_status` shows one stage's)",
                "（作業フォルダー exercises/ についてのコンパイラの警告 {count} 件は省きました。まだ書いていない TODO によるものです。1 つの段階の警告は、たとえば `cargo build --example step02_status` で表示できます）"
            )
        })
    }
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
    fn the_workbench_warnings_are_counted_and_everything_else_is_shown() {
        let message = |kind: &str, level: &str| {
            serde_json::json!({"reason": "compiler-message", "target": {"kind": [kind]},
                "message": {"level": level, "rendered": format!("{level}: in the {kind}\n")}})
            .to_string()
        };
        let mut messages = Messages::default();
        assert_eq!(messages.text(&message("example", "warning")), None);
        assert_eq!(
            messages.text(&message("example", "error")).as_deref(),
            Some("error: in the example\n")
        );
        assert_eq!(
            messages.text(&message("bin", "warning")).as_deref(),
            Some("warning: in the bin\n")
        );
        let artifact = r#"{"reason":"compiler-artifact","target":{"kind":["example"]}}"#;
        assert_eq!(messages.text(artifact), None);
        // A test's own output, JSON or not, is shown as it is.
        for line in ["test result: ok", r#"{"kind": "Number"}"#] {
            assert_eq!(messages.text(line), Some(format!("{line}\n")));
        }
        assert!(messages.summary().is_some_and(|summary| summary.contains("1 ")));
        assert_eq!(Messages::default().summary(), None);
    }

    #[test]
    fn summary_lines_of_passing_and_failing_runs_are_counted() {
        let ok = "test result: ok. 21 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 8.21s";
        assert_eq!(test_result_counts(ok), Some([21, 0, 2]));
        let failed = "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(test_result_counts(failed), Some([3, 1, 0]));
        assert_eq!(test_result_counts("running 21 tests"), None);
    }
}
