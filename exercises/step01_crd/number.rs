//! The Number resource: a custom resource that holds one integer.

use std::convert::Infallible;
use std::sync::Arc;

use futures::StreamExt;
use kit::Shutdown;
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::info;

// `#[derive(CustomResource)]` generates the `Number` type (apiVersion, kind,
// metadata and this spec) and `Number::crd()`, the CustomResourceDefinition.
// Installing the CRD is all it takes for the API server to store Numbers,
// validate them against the schema derived from this struct, and serve them
// to `kubectl` like any built-in resource.
//
// The `///` comments become the descriptions that `kubectl explain number.spec`
// shows: they are written for the cluster's users, these `//` ones for you.
/// The desired state of a Number: the value it holds.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "math.workshop.example",
    version = "v1beta1",
    kind = "Number",
    doc = "A Number holds one integer.",
    namespaced,
    shortname = "num",
    // TODO 1.2: a printer column "Value" (an integer, at `.spec.value`), before Age.
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct NumberSpec {
    // TODO 1.1: the one field of a Number's spec: `value`, a 64-bit integer,
    // with a `///` line that `kubectl explain number.spec` will show.
}

/// Runs the Number controller until `shutdown` resolves.
///
/// A `Controller` watches Numbers and calls `reconcile` for each one that
/// changes. The watch is a long-lived request: the API server pushes every
/// change to us, and we never poll; the watch also keeps a cache of every
/// Number, which the controller reads. `run` returns a stream with one item per
/// reconcile; nothing happens until something polls it, so `for_each` drives
/// it to the end, and `kit::controller::report` logs what went wrong.
pub async fn run(client: Client, shutdown: Shutdown) {
    let numbers = Api::<Number>::default_namespaced(client);
    let (cache, changes) = kit::controller::watch(numbers);
    Controller::for_stream(changes, cache)
        // At most 64 Numbers at once; the others wait their turn.
        .with_config(kit::controller::config())
        // Ctrl-C: the reconciles under way finish, and no new one starts.
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(()))
        .for_each(kit::controller::report)
        .await;
}

/// Called with the current state of one Number. This stage only looks.
async fn reconcile(number: Arc<Number>, _ctx: Arc<()>) -> Result<Action, Infallible> {
    // TODO 1.3: log the Number's name, namespace and value ("saw Number"),
    // then wait for its next change.
    todo!("1.3: log the Number you were handed, see steps/en/01-crd.md#13 · steps/ja/01-crd.md#13")
}

/// What to do when `reconcile` fails. It cannot fail in this stage.
fn error_policy(_number: Arc<Number>, error: &Infallible, _ctx: Arc<()>) -> Action {
    match *error {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_crd_defines_a_namespaced_number_with_an_integer_value() {
        let crd = Number::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("numbers.math.workshop.example"));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["num".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1beta1");
        let schema = serde_json::to_value(&version.schema).unwrap();
        let value = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["value"];
        assert_eq!(value["type"], "integer");
        assert_eq!(value["format"], "int64");
        assert_eq!(
            schema["openAPIV3Schema"]["properties"]["spec"]["required"],
            serde_json::json!(["value"])
        );
    }

    #[test]
    fn the_crd_prints_value_and_age_columns() {
        let crd = Number::crd();
        let columns: Vec<_> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|column| column.name.as_str())
            .collect();
        assert_eq!(columns, ["Value", "Age"]);
    }
}
