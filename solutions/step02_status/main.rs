//! Stage 2: the controller writes what it observes into the status.
//!
//! Adds: the status subresource of `Number`, with `fizzBuzz` and `isSquare`
//! computed from `spec.value`; the status follows every edit of the spec.
//! Failed writes are retried with a growing delay.
//!
//! Assumes: a cluster in the current kubeconfig context (kind, minikube, k3d, or
//! `cargo xtask up`) and kubectl. The controller watches the namespace of that
//! context (`default` unless the context names another).
//!
//! ```text
//! cargo run --example step02_status -- crd | kubectl apply --server-side -f -
//! cargo run --example step02_status            # your workbench; `--bin step02_status`: the finished stage
//! kubectl apply -f exercises/step02_status/samples/numbers.yaml    # in a second terminal
//! kubectl get numbers
//! kubectl patch number sixteen --type merge -p '{"spec":{"value":17}}'
//! ```
//!
//! What to expect: `kubectl get numbers` shows FIZZBUZZ and SQUARE filled in
//! (fifteen: FizzBuzz, false; sixteen: 16, true; minus-nine: Fizz, false), and
//! after the patch sixteen shows 17, false. The controller logs `wrote status`
//! for each change, and nothing for a Number whose status is already right.
//!
//! `RUST_LOG=debug cargo run --example step02_status` also shows the watch requests
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
