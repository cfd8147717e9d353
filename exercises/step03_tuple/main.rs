//! Stage 3: a parent resource that owns children.
//!
//! Adds: the `Tuple` custom resource, whose controller keeps one child Number
//! per element of `spec.numbers`: it creates missing children, puts back edited
//! ones, deletes the ones no longer wanted, and brings back deleted ones
//! (self-healing). `status.allSquares` follows the children's status. Deleting
//! a Tuple deletes its Numbers through Kubernetes' garbage collector.
//!
//! Assumes: a cluster in the current kubeconfig context (kind, minikube, k3d, or
//! `cargo xtask up`) and kubectl. The controller watches the namespace of that
//! context (`default` unless the context names another).
//!
//! ```text
//! cargo run --example step03_tuple -- crd | kubectl apply --server-side -f -
//! cargo run --example step03_tuple            # your workbench; `--bin step03_tuple`: the finished stage
//! kubectl apply -f exercises/step03_tuple/samples/tuples.yaml     # in a second terminal
//! kubectl get tuples,numbers
//! kubectl delete number squares-1                   # and watch it come back
//! ```
//!
//! What to expect: Numbers squares-0…2 and mixed-0…2 appear beside the Tuples;
//! squares says ALLSQUARES true, mixed false. A deleted squares-1 is back
//! within a moment as a new object (a new uid). Ctrl-C stops both controllers.
//!
//! `RUST_LOG=debug cargo run --example step03_tuple` also shows the watch requests
//! that kube-runtime makes underneath.

mod number;
mod plan;
mod tuple;

use std::process::ExitCode;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::number::Number;
use crate::tuple::Tuple;

/// The CRDs this stage needs, which `-- crd` prints.
fn crds() -> Vec<CustomResourceDefinition> {
    vec![Number::crd(), Tuple::crd()]
}

// The kit runs the program: the argument `crd`, logging, connecting, the
// check that the CRDs are installed, Ctrl-C, and one-line errors (see
// kit/src/stage.rs). The stage says which controllers run.
#[tokio::main]
async fn main() -> ExitCode {
    kit::Stage::new(env!("CARGO_BIN_NAME"), crds())
        .run(|client, shutdown| async move {
            // Each controller watches its own kind; they run side by side and stop together.
            tokio::join!(
                number::run(client.clone(), shutdown.clone()),
                tuple::run(client, shutdown)
            );
        })
        .await
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
