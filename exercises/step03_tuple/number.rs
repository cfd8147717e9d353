//! The Number resource: a custom resource that holds one integer, and a status
//! that the controller computes from it.

use std::sync::Arc;

use futures::StreamExt;
use kit::{RetryBackoff, Shutdown};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

// `status = "NumberStatus"` turns on the status subresource: `status` is
// written through its own endpoint (`numbers/status`), so users own the spec,
// the controller owns the status, and neither can overwrite the other by accident.
/// The desired state of a Number: the value it holds.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "math.workshop.example",
    version = "v1beta1",
    kind = "Number",
    doc = "A Number holds one integer; its status says what FizzBuzz calls it and whether it is a square.",
    namespaced,
    status = "NumberStatus",
    shortname = "num",
    printcolumn(name = "Value", type_ = "integer", json_path = ".spec.value"),
    printcolumn(name = "FizzBuzz", type_ = "string", json_path = ".status.fizzBuzz"),
    printcolumn(name = "Square", type_ = "boolean", json_path = ".status.isSquare"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct NumberSpec {
    /// The integer this Number holds.
    pub value: i64,
}

/// What the controller observed about a Number's value.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberStatus {
    pub fizz_buzz: String,
    pub is_square: bool,
    /// The `metadata.generation` this status was computed from. The API
    /// server bumps the generation on every change of the spec, so a reader
    /// can tell a status that describes the current spec from a stale one.
    pub observed_generation: Option<i64>,
}

/// "FizzBuzz" if `value` is divisible by 15, "Fizz" by 3, "Buzz" by 5, else the
/// value itself. Zero is divisible by everything; negatives follow the same rule.
pub fn fizz_buzz(value: i64) -> String {
    match (value % 3 == 0, value % 5 == 0) {
        (true, true) => "FizzBuzz".to_string(),
        (true, false) => "Fizz".to_string(),
        (false, true) => "Buzz".to_string(),
        (false, false) => value.to_string(),
    }
}

/// Whether `value` is the square of an integer.
///
/// `isqrt` is the exact integer square root: a float square root rounds above
/// 2^53 and would call some non-squares squares.
pub fn is_square(value: i64) -> bool {
    if value < 0 {
        return false;
    }
    let root = value.isqrt();
    root * root == value
}

/// The status that `spec`, at `generation`, asks for.
pub fn desired_status(spec: &NumberSpec, generation: Option<i64>) -> NumberStatus {
    NumberStatus {
        fizz_buzz: fizz_buzz(spec.value),
        is_square: is_square(spec.value),
        observed_generation: generation,
    }
}

/// Everything `reconcile` needs besides the Number itself.
struct Context {
    /// The Numbers of the namespace, to write their status.
    numbers: Api<Number>,
    /// Counts each Number's failures, to wait longer after each one.
    backoff: RetryBackoff,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the status of Number {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Runs the Number controller until `shutdown` resolves, as in stage 1.
pub async fn run(client: Client, shutdown: Shutdown) {
    let numbers = Api::<Number>::default_namespaced(client);
    let context = Arc::new(Context {
        numbers: numbers.clone(),
        backoff: RetryBackoff::default(),
    });
    let (cache, changes) = kit::controller::watch(numbers);
    Controller::for_stream(changes, cache)
        .with_config(kit::controller::config())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(kit::controller::report)
        .await;
}

/// Brings one Number's status in line with its spec.
///
/// A reconcile looks at the whole current state, not at what changed, so it
/// can run any number of times and for any reason with the same result
/// (it is idempotent). That is why missed or merged events do no harm.
async fn reconcile(number: Arc<Number>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = number.name_any();
    info!(
        name,
        namespace = number.namespace().unwrap_or_default(),
        value = number.spec.value,
        "saw Number"
    );
    // 1. Read: the Number we were handed is the watch's latest copy.
    // 2. Compute the status the spec asks for.
    let desired = desired_status(&number.spec, number.metadata.generation);
    // 3. Report status, and write it only when it would change: an equal
    //    status needs no request at all.
    if number.status.as_ref() != Some(&desired) {
        // Server-side apply through the status subresource: only the fields
        // we own, under our name; `force`: the status is the controller's.
        // ANCHOR: status_patch
        let patch = json!({
            "apiVersion": Number::api_version(&()),
            "kind": Number::kind(&()),
            "status": desired,
        });
        let params = PatchParams::apply(kit::CONTROLLER_NAME).force();
        ctx.numbers
            .patch_status(&name, &params, &Patch::Apply(&patch))
            .await
            .map_err(|source| Error::WriteStatus {
                name: name.clone(),
                source,
            })?;
        // ANCHOR_END: status_patch
        info!(name, status = %patch["status"], "wrote status");
    }
    Ok(Action::await_change())
}

/// What to do when `reconcile` fails: log it and retry later, waiting longer
/// after each consecutive failure.
fn error_policy(number: Arc<Number>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&number.name_any());
    match error {
        Error::WriteStatus { .. } => warn!(%error, retry_in = ?delay, "will retry"),
    }
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn fizz_buzz_names_multiples_of_three_five_and_fifteen() {
        assert_eq!(fizz_buzz(9), "Fizz");
        assert_eq!(fizz_buzz(10), "Buzz");
        assert_eq!(fizz_buzz(30), "FizzBuzz");
        assert_eq!(fizz_buzz(7), "7");
    }

    #[test]
    fn fizz_buzz_calls_zero_fizz_buzz() {
        assert_eq!(fizz_buzz(0), "FizzBuzz");
    }

    #[test]
    fn fizz_buzz_treats_negatives_by_the_same_divisibility() {
        assert_eq!(fizz_buzz(-9), "Fizz");
        assert_eq!(fizz_buzz(-10), "Buzz");
        assert_eq!(fizz_buzz(-15), "FizzBuzz");
        assert_eq!(fizz_buzz(-7), "-7");
    }

    #[test]
    fn fizz_buzz_handles_the_ends_of_i64() {
        // i64::MAX = 9223372036854775807 = 7² · 73 · 127 · 337 · 92737 · 649657
        assert_eq!(fizz_buzz(i64::MAX), "9223372036854775807");
        // i64::MIN = -2^63
        assert_eq!(fizz_buzz(i64::MIN), "-9223372036854775808");
        assert_eq!(fizz_buzz(i64::MAX - 1), "Fizz"); // 2^63 - 2 = 3 · 3074457345618258602
    }

    #[test]
    fn zero_and_one_are_squares() {
        assert!(is_square(0));
        assert!(is_square(1));
    }

    #[test]
    fn negatives_are_not_squares() {
        assert!(!is_square(-1));
        assert!(!is_square(-4));
        assert!(!is_square(i64::MIN));
    }

    #[test]
    fn is_square_is_exact_at_the_largest_square_in_i64() {
        let largest_root: i64 = 3_037_000_499;
        assert_eq!(largest_root * largest_root, 9_223_372_030_926_249_001);
        assert!(is_square(9_223_372_030_926_249_001));
        assert!(!is_square(9_223_372_030_926_249_002));
        assert!(!is_square(9_223_372_030_926_249_000));
        assert!(!is_square(i64::MAX));
    }

    #[test]
    fn is_square_is_exact_where_floats_round() {
        // Above 2^53 an f64 cannot tell (2^27 + 1)^2 from its neighbours.
        let root: i64 = (1 << 27) + 1;
        assert!(is_square(root * root));
        assert!(!is_square(root * root - 1));
        assert!(!is_square(root * root + 1));
    }

    #[test]
    fn desired_status_combines_fizz_buzz_and_squareness() {
        let status = desired_status(&NumberSpec { value: 225 }, Some(3));
        let expected = NumberStatus {
            fizz_buzz: "FizzBuzz".into(),
            is_square: true,
            observed_generation: Some(3),
        };
        assert_eq!(status, expected);
    }

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
    fn the_crd_has_a_status_subresource() {
        let crd = Number::crd();
        let subresources = crd.spec.versions[0].subresources.as_ref();
        assert!(subresources.and_then(|s| s.status.as_ref()).is_some());
    }

    #[test]
    fn the_crd_prints_value_fizzbuzz_square_and_age_columns() {
        let crd = Number::crd();
        let columns: Vec<_> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|column| column.name.as_str())
            .collect();
        assert_eq!(columns, ["Value", "FizzBuzz", "Square", "Age"]);
    }
}
