//! Stage 4: a parent of parents, and the cluster decides a theorem.
//!
//! Adds: the `Fermat` custom resource, whose controller owns one Tuple
//! `[i, n - i]` per i in 1..=n/2, each owning two Numbers.
//! `status.twoSquaresFound` turns true when some Tuple reports that both its
//! numbers are squares: the cluster finds out whether n is a sum of two squares.
//!
//! Assumes: a cluster in the current kubeconfig context (kind, minikube, k3d, or
//! `cargo xtask up`) and kubectl. The controller watches the namespace of that
//! context (`default` unless the context names another).
//!
//! ```text
//! cargo run --example step04_fermat -- crd | kubectl apply --server-side -f -
//! cargo run --example step04_fermat            # your workbench; `--bin step04_fermat`: the finished stage
//! kubectl apply -f exercises/step04_fermat/samples/fermats.yaml    # in a second terminal
//! kubectl get fermats
//! kubectl get fermat thirteen -w                    # in a third terminal, then:
//! kubectl delete number thirteen-4-and-9-1          # it comes back, and so does the answer
//! ```
//!
//! What to expect: thirteen, two and twenty-five say TWOSQUARESFOUND true,
//! seven and three false. After the delete, `-w` shows thirteen turn false and
//! then true again: the status reports what is observed, and for a moment the
//! Number 9 that makes 4 + 9 is missing. Its Tuple creates it again, the new
//! Number reports being a square, and the answer travels back up.
//!
//! `RUST_LOG=debug cargo run --example step04_fermat` also shows the watch requests
//! that kube-runtime makes underneath.

mod fermat;
mod number;
mod plan;
mod tuple;

use std::process::ExitCode;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::fermat::Fermat;
use crate::number::Number;
use crate::tuple::Tuple;

/// The CRDs this stage needs, which `-- crd` prints.
fn crds() -> Vec<CustomResourceDefinition> {
    vec![Number::crd(), Tuple::crd(), Fermat::crd()]
}

// The kit runs the program: the argument `crd`, logging, connecting, the
// check that the CRDs are installed, Ctrl-C, and one-line errors (see
// kit/src/stage.rs). The stage says which controllers run.
#[tokio::main]
async fn main() -> ExitCode {
    kit::Stage::new(env!("CARGO_BIN_NAME"), crds())
        // Of the copies of this program in a namespace, only the one that
        // holds the Lease runs the controllers (see kit/src/leader.rs).
        .with_leader_election()
        .run(|client, shutdown| async move {
            // Each controller watches its own kind; they run side by side and stop together.
            tokio::join!(
                number::run(client.clone(), shutdown.clone()),
                tuple::run(client.clone(), shutdown.clone()),
                fermat::run(client, shutdown)
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
