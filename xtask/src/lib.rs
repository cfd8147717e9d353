//! The workshop's tooling, shared by `cargo xtask` and the end-to-end tests.
//!
//! - [`bench`]: the benchmark of the finished controller against the API server's floor.
//! - [`assets`]: finds or builds the control-plane binaries (etcd,
//!   kube-apiserver, kube-controller-manager, kubectl) and caches them outside
//!   the repository, so a machine builds them once.
//! - [`pki`]: the certificates and keys a control plane needs, made at start.
//! - [`control_plane`]: starts etcd and kube-apiserver on 127.0.0.1, installs
//!   CRDs, then starts kube-controller-manager with the garbage collector, the
//!   namespace controller and, for the warm-up, the Deployment and ReplicaSet
//!   controllers; stops all of it.
//! - [`cleanup`]: what must be undone even when a run is interrupted.
//! - [`check`]: reads test results and hints for `cargo xtask check`.
//! - [`doctor`]: what `cargo xtask doctor` checks on a machine.
//! - [`slides`]: renders the slides with Marp and the system's Chromium.
//! - [`guides`]: writes the code blocks of the guides (`steps/`) from the code.
//! - [`robustness`]: the table of bad inputs and faults, ROBUSTNESS.md.

pub mod assets;
pub mod bench;
pub mod check;
pub mod cleanup;
pub mod control_plane;
pub mod doctor;
pub mod guides;
pub mod pki;
pub mod robustness;
pub mod slides;
pub mod tree;
pub mod tree_live;

use std::path::{Path, PathBuf};

/// The repository's root folder (xtask lives one level below it).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Every file below `dir`, at any depth, in no particular order; nothing if
/// `dir` cannot be read.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => found.push(entry.path()),
                _ => {}
            }
        }
    }
    found
}
