//! The Fermat resource: a parent that owns Tuples, so that the cluster itself
//! finds out whether a number is a sum of two squares.
//!
//! For n, the Fermat wants one Tuple `[i, n - i]` for each i in 1..=n/2. Each
//! Tuple wants two Numbers, each Number reports whether it is a square, each
//! Tuple reports whether both are, and the Fermat reports whether any Tuple
//! says yes. Fermat's theorem on sums of two squares predicts the answer for a
//! prime: an odd prime p is a sum of two squares exactly when p ≡ 1 (mod 4).

use std::sync::Arc;

use futures::StreamExt;
use kit::{Children, RetryBackoff, Shutdown, StatusWriter, is_controlled_by};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, CustomResource, KubeSchema, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::plan::{plan, send};
use crate::tuple::{Tuple, TupleSpec};

/// The largest n a Fermat accepts (the CRD schema enforces it). A Fermat
/// creates n/2 Tuples and n Numbers: 100 keeps that light on a laptop cluster.
pub const MAX_NUMBER: i64 = 100;

/// The longest Fermat name. Its longest child name adds `-50-and-50`
/// (10 characters) and must stay within the 250 characters a Tuple name may have.
pub const MAX_NAME_LENGTH: usize = 240;

/// The desired state of a Fermat: the number n to write as a sum of two squares.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Deserialize, Serialize)]
#[kube(
    group = "math.workshop.example",
    version = "v1beta1",
    kind = "Fermat",
    doc = "A Fermat asks the cluster whether n is a sum of two positive squares, with one Tuple per way of splitting n in two.",
    namespaced,
    status = "FermatStatus",
    shortname = "fer",
    printcolumn(name = "Number", type_ = "integer", json_path = ".spec.number"),
    printcolumn(name = "TwoSquaresFound", type_ = "boolean", json_path = ".status.twoSquaresFound"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(format!("self.metadata.name.size() <= {MAX_NAME_LENGTH}")).message(
        "a Fermat name has at most 240 characters, so that its Tuples' names (<fermat>-<i>-and-<n-i>) stay valid: choose a shorter name"
    )
)]
pub struct FermatSpec {
    /// n, from 1 to 100: the cluster finds out whether it is a sum of two positive squares.
    #[schemars(range(min = 1, max = MAX_NUMBER))]
    pub number: i64,
}

/// What the controller observed about a Fermat's children.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FermatStatus {
    /// Some child Tuple reports `allSquares: true`: n is a sum of two positive squares.
    pub two_squares_found: bool,
    /// Wanted child names taken by Tuples this Fermat does not control.
    #[serde(default)]
    pub name_clashes: Vec<String>,
    /// Tuples of this Fermat that report name clashes of their own: until
    /// those names are freed, the answer may be false when it would be true.
    #[serde(default)]
    pub blocked_tuples: Vec<String>,
    /// The `metadata.generation` of the spec this status describes.
    pub observed_generation: Option<i64>,
    /// Why nothing is created for this Fermat: its n is above the bound,
    /// kept from an older definition that had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The name of the child that holds `[i, n - i]`.
pub fn child_name(fermat: &str, i: i64, n: i64) -> String {
    format!("{fermat}-{i}-and-{}", n - i)
}

/// The Fermat whose child `tuple` would be, by its name: `f` for `f-4-and-9`.
pub fn parent_name(tuple: &str) -> Option<&str> {
    let is_number = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    let (rest, n_minus_i) = tuple.rsplit_once("-and-")?;
    let (fermat, i) = rest.rsplit_once('-')?;
    (is_number(i) && is_number(n_minus_i) && !fermat.is_empty()).then_some(fermat)
}

/// The Tuples a Fermat wants: `[i, n - i]` for each i in 1..=n/2.
pub fn desired_children(fermat: &str, n: i64) -> Vec<Tuple> {
    // TODO 4.1: one Tuple `[i, n - i]` for each i in 1..=n/2, named with `child_name`.
    todo!("4.1: the Tuples that a Fermat wants, see steps/en/04-fermat.md#41 · steps/ja/04-fermat.md#41")
}

/// Whether some wanted child of ours reports that both its numbers are squares.
pub fn two_squares_found(owner_uid: &str, wanted: &[Tuple], existing: &[Arc<Tuple>]) -> bool {
    // TODO 4.2: like `all_squares` in tuple.rs, but "some" instead of "every".
    todo!("4.2: whether some child reports all squares, see steps/en/04-fermat.md#42 · steps/ja/04-fermat.md#42")
}

/// The wanted children of ours that report name clashes (for their current spec).
pub fn blocked_children(owner_uid: &str, wanted: &[Tuple], existing: &[Arc<Tuple>]) -> Vec<String> {
    wanted
        .iter()
        .filter(|child| {
            existing.iter().any(|tuple| {
                tuple.name_any() == child.name_any()
                    && is_controlled_by(tuple.as_ref(), owner_uid)
                    && tuple.status.as_ref().is_some_and(|status| {
                        !status.name_clashes.is_empty() && status.observed_generation == tuple.metadata.generation
                    })
            })
        })
        .map(|child| child.name_any())
        .collect()
}

/// Everything `reconcile` needs besides the Fermat itself.
struct Context {
    status: StatusWriter<Fermat>,
    tuples: Children<Tuple>,
    backoff: RetryBackoff,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Fermat {name} has no uid: it did not come from the API server")]
    MissingUid { name: String },
    #[error(transparent)]
    Children(#[from] kit::children::Error),
    #[error("cannot write the status of Fermat {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The Fermats to wake when a Tuple changes, as `tuples_to_wake` (tuple.rs).
fn fermats_to_wake(tuple: Tuple) -> Vec<ObjectRef<Fermat>> {
    kit::children::parents_to_wake(&tuple, parent_name(&tuple.name_any()))
}

/// Runs the Fermat controller until `shutdown` resolves.
pub async fn run(client: Client, shutdown: Shutdown) {
    let fermats = Api::<Fermat>::default_namespaced(client.clone());
    let (tuples, tuple_changes) = Children::watch(&client, parent_name);
    let context = Arc::new(Context {
        status: StatusWriter::new(fermats.clone()),
        tuples,
        backoff: RetryBackoff::default(),
    });
    let (cache, changes) = kit::controller::watch(fermats);
    Controller::for_stream(changes, cache)
        .watches_stream(tuple_changes, fermats_to_wake)
        .with_config(kit::controller::config())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(kit::controller::report)
        .await;
}

/// Brings one Fermat's Tuples and status in line with its spec.
async fn reconcile(fermat: Arc<Fermat>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = fermat.name_any();
    let owner = fermat
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingUid { name: name.clone() })?;
    if fermat.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }

    // 1. Read the Tuples that concern this Fermat, from the watch cache.
    let existing = ctx.tuples.existing(fermat.as_ref()).await?;

    // 2. Compute the desired children and compare them with what exists.
    let problem = problem(fermat.spec.number);
    let n = if problem.is_none() { fermat.spec.number } else { 0 };
    // TODO 4.3: as in tuple.rs: the wanted children for `n`, each with the
    // ownerReference `owner`, in place of this `let … = todo!(…);`.
    let wanted: Vec<Tuple> = todo!("4.3: the wanted Tuples, see steps/en/04-fermat.md#43 · steps/ja/04-fermat.md#43");
    let plan = plan(&owner.uid, wanted.clone(), &existing);

    // 3. Create or update what differs, delete what is not wanted.
    let applied = ctx.tuples.apply(fermat.as_ref(), &plan, send).await;

    // 4. Report status, and write it only if it changed.
    let status = FermatStatus {
        two_squares_found: two_squares_found(&owner.uid, &wanted, &existing),
        name_clashes: plan.clashes,
        blocked_tuples: blocked_children(&owner.uid, &wanted, &existing),
        observed_generation: fermat.metadata.generation,
        problem,
    };
    if fermat.status.as_ref() != Some(&status) {
        ctx.status
            .write(&fermat, &status)
            .await
            .map_err(|source| Error::WriteStatus {
                name: name.clone(),
                source,
            })?;
    }

    // A failed write to a child is retried after a delay (error_policy).
    Ok(applied?)
}

/// Why a Fermat wants no Tuples, if it does not: an n above the bound, which
/// the schema refuses, but which an object made under an older, looser schema keeps.
fn problem(n: i64) -> Option<String> {
    (n > MAX_NUMBER).then(|| {
        format!("n = {n} is above {MAX_NUMBER}, the most this controller handles: nothing is created; lower spec.number, or delete this Fermat")
    })
}

/// What to do when `reconcile` fails: log it and retry later, waiting longer
/// after each consecutive failure.
fn error_policy(fermat: Arc<Fermat>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&fermat.name_any());
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
    use crate::tuple::TupleStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::CustomResourceExt;

    const FERMAT_UID: &str = "fermat-uid";

    /// A child Tuple as the cluster would hold it.
    fn tuple(numbers: [i64; 2], controller: &str, all_squares: Option<bool>) -> Arc<Tuple> {
        let [i, rest] = numbers;
        let mut tuple = Tuple::new(
            &child_name("f", i, i + rest),
            TupleSpec {
                numbers: numbers.to_vec(),
            },
        );
        tuple.metadata.owner_references = Some(vec![OwnerReference {
            controller: Some(true),
            uid: controller.to_string(),
            ..OwnerReference::default()
        }]);
        tuple.metadata.generation = Some(1);
        tuple.status = all_squares.map(|all_squares| TupleStatus {
            all_squares,
            name_clashes: Vec::new(),
            observed_generation: Some(1),
        });
        Arc::new(tuple)
    }

    fn specs(children: &[Tuple]) -> Vec<(String, Vec<i64>)> {
        children
            .iter()
            .map(|child| (child.name_any(), child.spec.numbers.clone()))
            .collect()
    }

    #[test]
    fn one_wants_no_tuples() {
        assert!(desired_children("f", 1).is_empty());
    }

    #[test]
    fn two_wants_one_and_one() {
        assert_eq!(
            specs(&desired_children("f", 2)),
            [("f-1-and-1".to_string(), vec![1, 1])]
        );
    }

    #[test]
    fn an_odd_number_splits_into_pairs_up_to_half() {
        assert_eq!(
            specs(&desired_children("f", 7)),
            [
                ("f-1-and-6".to_string(), vec![1, 6]),
                ("f-2-and-5".to_string(), vec![2, 5]),
                ("f-3-and-4".to_string(), vec![3, 4]),
            ]
        );
    }

    #[test]
    fn an_even_number_includes_the_middle_pair() {
        let children = desired_children("f", 8);
        assert_eq!(children.len(), 4);
        assert_eq!(specs(&children)[3], ("f-4-and-4".to_string(), vec![4, 4]));
    }

    #[test]
    fn the_bound_wants_fifty_tuples_with_valid_names() {
        let name = "f".repeat(MAX_NAME_LENGTH);
        let children = desired_children(&name, MAX_NUMBER);
        assert_eq!(children.len(), 50);
        let longest = children.iter().map(|child| child.name_any().len()).max();
        assert_eq!(longest, Some(crate::tuple::MAX_NAME_LENGTH));
    }

    #[test]
    fn found_when_some_child_reports_all_squares() {
        let wanted = desired_children("f", 13);
        let existing = [
            tuple([1, 12], FERMAT_UID, Some(false)),
            tuple([4, 9], FERMAT_UID, Some(true)),
        ];
        assert!(two_squares_found(FERMAT_UID, &wanted, &existing));
    }

    #[test]
    fn not_found_while_no_child_reports_all_squares() {
        let wanted = desired_children("f", 7);
        let existing = [tuple([1, 6], FERMAT_UID, Some(false)), tuple([2, 5], FERMAT_UID, None)];
        assert!(!two_squares_found(FERMAT_UID, &wanted, &existing));
    }

    #[test]
    fn a_foreign_tuple_or_a_tuple_no_longer_wanted_does_not_count() {
        let wanted = desired_children("f", 13);
        assert!(!two_squares_found(
            FERMAT_UID,
            &wanted,
            &[tuple([4, 9], "someone-else", Some(true))]
        ));
        // [4, 5] is not a pair of 13: a child left from an earlier n.
        assert!(!two_squares_found(
            FERMAT_UID,
            &wanted,
            &[tuple([4, 5], FERMAT_UID, Some(true))]
        ));
    }

    #[test]
    fn a_tuple_status_written_for_an_older_spec_does_not_count() {
        let wanted = desired_children("f", 13);
        let mut put_back = (*tuple([4, 9], FERMAT_UID, Some(true))).clone();
        put_back.metadata.generation = Some(2);
        assert!(!two_squares_found(FERMAT_UID, &wanted, &[Arc::new(put_back)]));
    }

    #[test]
    fn the_crd_bounds_the_number_and_the_name() {
        let schema = serde_json::to_value(&Fermat::crd().spec.versions[0].schema).unwrap();
        let root = &schema["openAPIV3Schema"];
        let number = &root["properties"]["spec"]["properties"]["number"];
        assert_eq!(number["minimum"], 1.0);
        assert_eq!(number["maximum"], MAX_NUMBER as f64);
        let rule = root["x-kubernetes-validations"][0]["rule"].as_str().unwrap();
        assert_eq!(rule, format!("self.metadata.name.size() <= {MAX_NAME_LENGTH}"));
        let message = root["x-kubernetes-validations"][0]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("at most {MAX_NAME_LENGTH} characters")),
            "{message}"
        );
    }

    #[test]
    fn the_crd_has_a_status_subresource_and_prints_the_answer() {
        let crd = Fermat::crd();
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|column| column.name.as_str())
            .collect();
        assert_eq!(columns, ["Number", "TwoSquaresFound", "Age"]);
    }

    #[test]
    fn a_tuple_name_leads_back_to_its_fermat() {
        assert_eq!(parent_name("f-4-and-9"), Some("f"));
        assert_eq!(parent_name("a-1-and-2-1-and-1"), Some("a-1-and-2"));
        assert_eq!(parent_name("f-4-and-"), None);
        assert_eq!(parent_name("squares"), None);
        assert_eq!(parent_name("-1-and-1"), None);
        let longest = desired_children("f", MAX_NUMBER).pop().map(|child| child.name_any());
        assert_eq!(longest.as_deref().and_then(parent_name), Some("f"));
    }

    #[test]
    fn a_child_reporting_a_clash_is_listed_as_blocked() {
        let wanted = desired_children("f", 13);
        let mut blocked = (*tuple([4, 9], FERMAT_UID, Some(false))).clone();
        if let Some(status) = blocked.status.as_mut() {
            status.name_clashes = vec!["f-4-and-9-1".to_string()];
        }
        let existing = [tuple([1, 12], FERMAT_UID, Some(false)), Arc::new(blocked)];
        assert_eq!(blocked_children(FERMAT_UID, &wanted, &existing), ["f-4-and-9"]);
        assert!(blocked_children("someone-else", &wanted, &existing).is_empty());
    }

    #[test]
    fn empty_lists_are_written_so_that_apply_can_clear_them() {
        let status = serde_json::to_value(FermatStatus::default()).unwrap();
        assert_eq!(status["nameClashes"], serde_json::json!([]));
        assert_eq!(status["blockedTuples"], serde_json::json!([]));
    }

    #[test]
    fn no_problem_is_no_field_so_that_apply_removes_an_old_one() {
        let status = serde_json::to_value(FermatStatus::default()).unwrap();
        assert!(status.get("problem").is_none(), "{status}");
    }
}
