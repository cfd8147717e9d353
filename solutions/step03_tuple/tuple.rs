//! The Tuple resource: a parent that owns one Number per element of its list.

use std::sync::Arc;

use futures::StreamExt;
use kit::{Children, RetryBackoff, Shutdown, StatusWriter, is_controlled_by};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, CustomResource, KubeSchema, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::number::{Number, NumberSpec};
use crate::plan::{plan, send};

/// The most numbers a Tuple may hold (the CRD schema enforces it).
pub const MAX_NUMBERS: usize = 100;

/// The longest Tuple name. A child is named `<tuple>-<index>` with an index
/// below `MAX_NUMBERS`, and an object name has at most 253 characters.
pub const MAX_NAME_LENGTH: usize = 250;

// The `validation` rule runs in the API server (a CEL expression): a name too
// long for the children's names is refused when the Tuple is created, with
// this message, rather than failing later inside the controller.
/// The desired state of a Tuple: a list of integers, one child Number each.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Deserialize, Serialize)]
#[kube(
    group = "math.workshop.example",
    version = "v1beta1",
    kind = "Tuple",
    doc = "A Tuple holds a list of integers and keeps one Number for each; its status says whether all are squares.",
    namespaced,
    status = "TupleStatus",
    shortname = "tup",
    printcolumn(name = "Numbers", type_ = "string", json_path = ".spec.numbers"),
    printcolumn(name = "AllSquares", type_ = "boolean", json_path = ".status.allSquares"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(format!("self.metadata.name.size() <= {MAX_NAME_LENGTH}")).message(
        "a Tuple name has at most 250 characters, so that its Numbers' names (<tuple>-<index>) stay valid: choose a shorter name"
    )
)]
pub struct TupleSpec {
    /// The integers, at most 100; each becomes a Number named `<tuple>-<index>`.
    #[schemars(length(max = MAX_NUMBERS))]
    pub numbers: Vec<i64>,
}

/// What the controller observed about a Tuple's children.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TupleStatus {
    /// Every wanted child exists and reports `isSquare: true`.
    pub all_squares: bool,
    /// Wanted child names taken by Numbers this Tuple does not control.
    // Always written, even empty: server-side apply removes only the fields
    // we send, so an empty list is how we clear one that someone else wrote.
    #[serde(default)]
    pub name_clashes: Vec<String>,
    /// The `metadata.generation` of the spec this status describes.
    pub observed_generation: Option<i64>,
}

/// The name of the child that holds `numbers[index]`.
pub fn child_name(tuple: &str, index: usize) -> String {
    format!("{tuple}-{index}")
}

/// The Tuple whose child `number` would be, by its name: `t` for `t-3`.
pub fn parent_name(number: &str) -> Option<&str> {
    let (tuple, index) = number.rsplit_once('-')?;
    let is_index = !index.is_empty() && index.bytes().all(|byte| byte.is_ascii_digit());
    (is_index && !tuple.is_empty()).then_some(tuple)
}

/// The Numbers a Tuple wants: one per element, named by its index.
pub fn desired_children(tuple: &str, numbers: &[i64]) -> Vec<Number> {
    numbers
        .iter()
        .enumerate()
        .map(|(index, &value)| Number::new(&child_name(tuple, index), NumberSpec { value }))
        .collect()
}

/// Whether every wanted child exists, is ours, and reports being a square.
/// An empty list is vacuously all squares.
pub fn all_squares(owner_uid: &str, wanted: &[Number], existing: &[Arc<Number>]) -> bool {
    wanted.iter().all(|child| {
        existing.iter().any(|number| {
            number.name_any() == child.name_any()
                && is_controlled_by(number.as_ref(), owner_uid)
                && number.spec == child.spec
                && number.status.as_ref().is_some_and(|status| {
                    // A status written for an older spec says nothing about this one.
                    status.is_square && status.observed_generation == number.metadata.generation
                })
        })
    })
}

/// Everything `reconcile` needs besides the Tuple itself.
struct Context {
    /// Writes the status of Tuples (see kit/src/status.rs).
    status: StatusWriter<Tuple>,
    /// The Numbers, from a watch cache, and the writes to them (see kit/src/children.rs).
    numbers: Children<Number>,
    /// Counts each Tuple's failures, to wait longer after each one.
    backoff: RetryBackoff,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Tuple {name} has no uid: it did not come from the API server")]
    MissingUid { name: String },
    #[error(transparent)]
    Children(#[from] kit::children::Error),
    #[error("cannot write the status of Tuple {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The Tuples to wake when a Number changes: the one that controls it, and
/// the one whose child name it has (a clash appears or clears, or a child
/// stops being ours).
fn tuples_to_wake(number: Number) -> Vec<ObjectRef<Tuple>> {
    kit::children::parents_to_wake(&number, parent_name(&number.name_any()))
}

/// Runs the Tuple controller until `shutdown` resolves.
pub async fn run(client: Client, shutdown: Shutdown) {
    let tuples = Api::<Tuple>::default_namespaced(client.clone());
    // One watch of Numbers does two jobs: it fills the cache that reconcile
    // reads instead of asking the API server, and it wakes the Tuples
    // concerned whenever a Number changes or disappears. With `parent_name`
    // the cache finds a Tuple's Numbers by name without reading them all.
    let (numbers, number_changes) = Children::watch(&client, parent_name);
    let context = Arc::new(Context {
        status: StatusWriter::new(tuples.clone()),
        numbers,
        backoff: RetryBackoff::default(),
    });
    let (cache, changes) = kit::controller::watch(tuples);
    Controller::for_stream(changes, cache)
        // Where `.owns(numbers, …)` would stand: the kit's watch of the
        // children, which also fills the cache that reconcile reads.
        .watches_stream(number_changes, tuples_to_wake)
        .with_config(kit::controller::config())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(kit::controller::report)
        .await;
}

/// Brings one Tuple's children and status in line with its spec.
async fn reconcile(tuple: Arc<Tuple>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = tuple.name_any();
    // The ownerReference each child carries. With `controller: true` it says
    // who is responsible for the child, and it lets Kubernetes' garbage
    // collector delete the children when the Tuple is deleted.
    let owner = tuple
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingUid { name: name.clone() })?;
    if tuple.metadata.deletion_timestamp.is_some() {
        // Being deleted: the garbage collector removes the children. A child
        // created now would only be deleted again.
        return Ok(Action::await_change());
    }

    // 1. Read the Numbers that concern this Tuple from the watch cache: those
    //    it controls, and those with a name it wants.
    let existing = ctx.numbers.existing(tuple.as_ref()).await?;

    // 2. Compute the desired children and compare them with what exists.
    let mut wanted = desired_children(&name, &tuple.spec.numbers);
    for child in &mut wanted {
        child.metadata.owner_references = Some(vec![owner.clone()]);
    }
    let plan = plan(&owner.uid, wanted.clone(), &existing);

    // 3. Create or update what differs, delete what is not wanted: the kit
    //    sends each change with `send` (plan.rs). An empty plan sends no request.
    let applied = ctx.numbers.apply(tuple.as_ref(), &plan, send).await;

    // 4. Report status, and write it only if it changed.
    let status = TupleStatus {
        all_squares: all_squares(&owner.uid, &wanted, &existing),
        name_clashes: plan.clashes,
        observed_generation: tuple.metadata.generation,
    };
    if tuple.status.as_ref() != Some(&status) {
        ctx.status
            .write(&tuple, &status)
            .await
            .map_err(|source| Error::WriteStatus {
                name: name.clone(),
                source,
            })?;
    }

    // A failed write to a child is retried after a delay (error_policy).
    Ok(applied?)
}

/// What to do when `reconcile` fails: log it and retry later, waiting longer
/// after each consecutive failure.
fn error_policy(tuple: Arc<Tuple>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&tuple.name_any());
    match error {
        // The API server refused a write or did not answer: it may work later.
        Error::Children(_) | Error::WriteStatus { .. } => warn!(%error, retry_in = ?delay, "will retry"),
        // Should not happen with objects from the API server.
        Error::MissingUid { .. } => error!(%error, retry_in = ?delay, "will retry"),
    }
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::NumberStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::CustomResourceExt;

    const TUPLE_UID: &str = "tuple-uid";

    /// A child Number as the cluster would hold it.
    fn number(name: &str, value: i64, controller: &str, is_square: Option<bool>) -> Arc<Number> {
        let mut number = Number::new(name, NumberSpec { value });
        number.metadata.owner_references = Some(vec![OwnerReference {
            controller: Some(true),
            uid: controller.to_string(),
            ..OwnerReference::default()
        }]);
        number.metadata.generation = Some(1);
        number.status = is_square.map(|is_square| NumberStatus {
            fizz_buzz: String::new(),
            is_square,
            observed_generation: Some(1),
        });
        Arc::new(number)
    }

    #[test]
    fn each_element_becomes_a_child_named_by_its_index() {
        let children = desired_children("squares", &[1, 4, -9]);
        let names: Vec<_> = children.iter().map(|child| child.name_any()).collect();
        let values: Vec<_> = children.iter().map(|child| child.spec.value).collect();
        assert_eq!(names, ["squares-0", "squares-1", "squares-2"]);
        assert_eq!(values, [1, 4, -9]);
    }

    #[test]
    fn an_empty_list_wants_no_children() {
        assert!(desired_children("empty", &[]).is_empty());
    }

    #[test]
    fn the_longest_name_and_list_still_give_valid_child_names() {
        let name = "t".repeat(MAX_NAME_LENGTH);
        let last = child_name(&name, MAX_NUMBERS - 1);
        assert_eq!(last.len(), 253);
    }

    #[test]
    fn all_squares_is_vacuously_true_for_an_empty_list() {
        assert!(all_squares(TUPLE_UID, &[], &[]));
    }

    #[test]
    fn all_squares_needs_every_child_to_report_a_square() {
        let wanted = desired_children("t", &[1, 4]);
        let squares = [
            number("t-0", 1, TUPLE_UID, Some(true)),
            number("t-1", 4, TUPLE_UID, Some(true)),
        ];
        assert!(all_squares(TUPLE_UID, &wanted, &squares));
        let one_not = [
            number("t-0", 1, TUPLE_UID, Some(true)),
            number("t-1", 4, TUPLE_UID, Some(false)),
        ];
        assert!(!all_squares(TUPLE_UID, &wanted, &one_not));
    }

    #[test]
    fn all_squares_is_false_while_a_child_is_missing_or_has_no_status_yet() {
        let wanted = desired_children("t", &[1, 4]);
        assert!(!all_squares(
            TUPLE_UID,
            &wanted,
            &[number("t-0", 1, TUPLE_UID, Some(true))]
        ));
        let no_status = [
            number("t-0", 1, TUPLE_UID, Some(true)),
            number("t-1", 4, TUPLE_UID, None),
        ];
        assert!(!all_squares(TUPLE_UID, &wanted, &no_status));
    }

    #[test]
    fn all_squares_ignores_foreign_numbers_and_children_not_yet_put_back() {
        let wanted = desired_children("t", &[4]);
        assert!(!all_squares(
            TUPLE_UID,
            &wanted,
            &[number("t-0", 4, "someone-else", Some(true))]
        ));
        assert!(!all_squares(
            TUPLE_UID,
            &wanted,
            &[number("t-0", 9, TUPLE_UID, Some(true))]
        ));
    }

    #[test]
    fn a_status_written_for_an_older_spec_does_not_count() {
        let wanted = desired_children("t", &[4]);
        let mut edited_back = (*number("t-0", 4, TUPLE_UID, Some(true))).clone();
        edited_back.metadata.generation = Some(3);
        assert!(!all_squares(TUPLE_UID, &wanted, &[Arc::new(edited_back)]));
    }

    #[test]
    fn the_crd_bounds_the_list_and_the_name() {
        let schema = serde_json::to_value(&Tuple::crd().spec.versions[0].schema).unwrap();
        let root = &schema["openAPIV3Schema"];
        assert_eq!(
            root["properties"]["spec"]["properties"]["numbers"]["maxItems"],
            MAX_NUMBERS
        );
        assert_eq!(
            root["properties"]["spec"]["properties"]["numbers"]["items"]["format"],
            "int64"
        );
        let rule = root["x-kubernetes-validations"][0]["rule"].as_str().unwrap();
        assert_eq!(rule, format!("self.metadata.name.size() <= {MAX_NAME_LENGTH}"));
        let message = root["x-kubernetes-validations"][0]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("at most {MAX_NAME_LENGTH} characters")),
            "{message}"
        );
    }

    #[test]
    fn the_crd_has_a_status_subresource_and_prints_all_squares() {
        let crd = Tuple::crd();
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|column| column.name.as_str())
            .collect();
        assert_eq!(columns, ["Numbers", "AllSquares", "Age"]);
        assert_eq!(crd.spec.names.short_names, Some(vec!["tup".to_string()]));
    }

    #[test]
    fn a_number_name_leads_back_to_its_tuple() {
        assert_eq!(parent_name("squares-2"), Some("squares"));
        assert_eq!(parent_name("f-4-and-9-1"), Some("f-4-and-9"));
        assert_eq!(parent_name("fifteen"), None);
        assert_eq!(parent_name("t-"), None);
        assert_eq!(parent_name("-1"), None);
    }

    #[test]
    fn an_empty_clash_list_is_written_so_that_apply_can_clear_one() {
        let status = serde_json::to_value(TupleStatus::default()).unwrap();
        assert_eq!(status["nameClashes"], serde_json::json!([]));
    }
}
