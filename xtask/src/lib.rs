//! The workshop's tooling, shared by `cargo xtask` and the end-to-end tests.
//!
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

pub mod assets;
pub mod check;
pub mod cleanup;
pub mod control_plane;
pub mod doctor;
pub mod guides;
pub mod pki;
pub mod slides;
