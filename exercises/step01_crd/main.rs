//! Stage 1: a new kind of resource, and a controller that only watches it.
//!
//! Adds: the `Number` custom resource (one integer, `spec.value`), the
//! CustomResourceDefinition (CRD) that teaches the API server this new kind, and a
//! controller that logs every Number it sees. Nothing is written back yet.
//!
//! Assumes: a cluster in the current kubeconfig context (kind, minikube, k3d, or
//! `cargo xtask up`) and kubectl. The controller watches the namespace of that
//! context (`default` unless the context names another).
//!
//! ```text
//! cargo run --example step01_crd -- crd | kubectl apply --server-side -f -
//! cargo run --example step01_crd            # your workbench; `--bin step01_crd`: the finished stage
//! kubectl apply -f exercises/step01_crd/samples/numbers.yaml    # in a second terminal
//! kubectl get numbers
//! ```
//!
//! What to expect: `kubectl get numbers` lists fifteen, sixteen and minus-nine
//! with their VALUE, and the controller logs `saw Number` once for each (and
//! again for every later change). Numbers have no status yet.
//!
//! `RUST_LOG=debug cargo run --example step01_crd` also shows the watch requests
//! that kube-runtime makes underneath.

mod number;

use std::process::ExitCode;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::number::Number;

/// The CRDs this stage needs, which `-- crd` prints.
fn crds() -> Vec<CustomResourceDefinition> {
    vec![Number::crd()]
}

// The kit runs the program: the argument `crd`, logging, connecting, the
// check that the CRDs are installed, Ctrl-C, and one-line errors (see
// kit/src/stage.rs). The stage says which controllers run.
#[tokio::main]
async fn main() -> ExitCode {
    kit::Stage::new(env!("CARGO_BIN_NAME"), crds()).run(number::run).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn crd_descriptions_speak_to_cluster_users_not_rust_readers() {
        let found = kit::stage::descriptions(&super::crds());
        assert!(!found.is_empty());
        for (path, text) in found {
            for rust in ["derive", "#[", "::", "serde", "struct", "Rust", "`//`"] {
                assert!(!text.contains(rust), "{path} says {text:?}");
            }
        }
    }
}
