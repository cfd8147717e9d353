//! The workshop's tooling, shared by `cargo xtask` and the end-to-end tests.
//!
//! - [`cmd`]: the commands of `cargo xtask`, one module each.
//! - [`catalogue`]: the workshop's facts (stages, guides, API group, CRDs,
//!   the names of children), said once.
//! - [`cargo`]: cargo as the tooling runs it.
//! - [`process`]: other programs run with their exit status checked, and
//!   signals sent to processes.
//! - [`assets`]: finds or builds the control-plane binaries (etcd,
//!   kube-apiserver, kube-controller-manager, kubectl) and caches them outside
//!   the repository, so a machine builds them once.
//! - [`download`]: on Linux, the binaries as upstream releases them, each
//!   checked against its published checksum.
//! - [`pki`]: the certificates and keys a control plane needs, made at start.
//! - [`control_plane`]: starts etcd and kube-apiserver on 127.0.0.1, installs
//!   CRDs, then starts kube-controller-manager with the garbage collector, the
//!   namespace controller and, for the warm-up, the Deployment and ReplicaSet
//!   controllers; stops all of it.
//! - [`cleanup`]: what must be undone even when a run is interrupted.
//! - [`planes`]: control planes that outlive the command that starts them
//!   (`cargo xtask up`, the checker's warm plane).
//! - [`check`]: reads test results and hints for `cargo xtask check`.
//! - [`doctor`]: what `cargo xtask doctor` checks on a machine.
//! - [`lang`]: the language the tools speak (English, or Japanese under a
//!   Japanese locale).
//! - [`robustness`]: the table of bad inputs and faults, ROBUSTNESS.md.

pub mod assets;
pub mod cargo;
pub mod catalogue;
pub mod check;
pub mod cleanup;
pub mod cmd;
pub mod control_plane;
pub mod doctor;
pub mod download;
pub mod lang;
pub mod pki;
pub mod planes;
pub mod process;
pub mod robustness;
pub mod tree;
pub mod tree_live;

use std::path::{Path, PathBuf};

/// The repository's root folder, found when the program runs, as cargo
/// finds a workspace: the nearest folder, from the package cargo runs
/// (`CARGO_MANIFEST_DIR`, set by `cargo run` and `cargo test`) or else the
/// current folder upwards, whose `Cargo.toml` declares a `[workspace]` and
/// that holds `exercises/`. Never the folder xtask was compiled in: a
/// `target/` built in another copy must check this copy.
pub fn repository_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| find_repository_root().unwrap_or_else(|| PathBuf::from(".")))
        .clone()
}

/// The repository's root folder (see [`repository_root`]), or `None` when
/// this program runs outside the workshop's folder.
pub fn find_repository_root() -> Option<PathBuf> {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())?;
    root_above(&start)
}

/// The nearest folder at or above `start` that is the workshop's root.
pub fn root_above(start: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(start).ok()?;
    start
        .ancestors()
        .find(|dir| {
            dir.join("exercises").is_dir()
                && std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|text| text.contains("[workspace]"))
        })
        .map(Path::to_path_buf)
}

/// A temporary folder for one run (`math-controller-bench-…`), removed
/// when dropped.
pub fn temporary_folder(purpose: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{}-{purpose}-", catalogue::PROJECT))
        .tempdir()
}

/// Every file below `dir`, at any depth, in file-name order; nothing if
/// `dir` cannot be read. Links are not followed.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

/// A tool's command line, parsed at run time so that its texts are in the
/// reader's language (`say!`); clap's own message and exit on an error.
pub fn parse_command_line<T: clap::Parser>() -> T {
    let matches = T::command().get_matches();
    T::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
}

/// How a command line tool ends: its command's exit status, or its error
/// on one line (with its causes) and a failure.
pub fn finish(result: anyhow::Result<std::process::ExitCode>) -> std::process::ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Checks a tool's command line, for its tests: clap's own consistency
/// checks, and a one-line description for every command.
pub fn check_command_line(command: clap::Command) {
    command.clone().debug_assert();
    for command in command.get_subcommands() {
        let about = command.get_about().map(|about| about.to_string()).unwrap_or_default();
        assert!(!about.is_empty() && !about.contains('\n'), "{}", command.get_name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_nearest_workspace_with_exercises_above_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("copy");
        std::fs::create_dir_all(root.join("exercises/step02_status")).unwrap();
        std::fs::create_dir_all(root.join("xtask/src")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = [\"xtask\"]\n").unwrap();
        std::fs::write(root.join("xtask/Cargo.toml"), "[package]\nname = \"xtask\"\n").unwrap();
        assert_eq!(root_above(&root.join("xtask/src")), Some(root.clone()));
        assert_eq!(root_above(&root.join("exercises/step02_status")), Some(root.clone()));
        assert_eq!(root_above(dir.path()), None);
    }
}
