//! Owning children: what a parent controller does with the objects it owns.
//!
//! The parent says which children it wants; the cluster holds the children that
//! exist. `plan` compares the two without touching the cluster, and `apply`
//! carries the plan out: create what is missing, put back what drifted, delete
//! what is no longer wanted. Whatever caused the gap (a new parent, an edited
//! or deleted child, a shorter list), the same steps close it.
//!
//! A child is ours when its `ownerReferences` name the parent's uid with
//! `controller: true`. An object that merely has a wanted name is not ours: we
//! leave it alone and report the clash.
//!
//! The children are read from a watch-backed cache, which lags a little behind
//! the API server. `InFlight` remembers the writes the cache has not shown
//! yet, so that a reconcile that runs in that gap does not send them again;
//! `StatusWrites` does the same for the parent's own status.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::object::HasSpec;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::FIELD_MANAGER;

/// What to do with the children of one parent.
#[derive(Debug)]
pub struct Plan<K> {
    /// Wanted children that do not exist.
    pub create: Vec<K>,
    /// Wanted children that we control but whose spec differs from the wanted one.
    pub update: Vec<K>,
    /// Children that we control but no longer want.
    pub delete: Vec<Arc<K>>,
    /// Wanted names taken by objects that we do not control.
    pub clashes: Vec<String>,
}

impl<K> Plan<K> {
    /// Whether carrying out the plan would send no request at all.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Whether `child` names the object with uid `owner_uid` as its controller.
pub fn is_controlled_by<K: Resource>(child: &K, owner_uid: &str) -> bool {
    child
        .owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && owner.uid == owner_uid)
}

/// The parents to wake when `child` changes, appears or disappears: the one
/// that controls it, and the one whose wanted name it has (`parent_by_name`).
///
/// The second one matters when the child is not, or no longer, ours: a foreign
/// object that takes a wanted name, frees it, or a child whose ownerReference
/// was removed. Their events name no owner, yet the parent must look again.
pub fn parents_to_wake<P, C>(child: &C, parent_by_name: Option<&str>) -> Vec<ObjectRef<P>>
where
    P: Resource<DynamicType = ()>,
    C: Resource,
{
    let namespace = child.meta().namespace.as_deref();
    let in_namespace = |name: &str| match namespace {
        Some(namespace) => ObjectRef::new(name).within(namespace),
        None => ObjectRef::new(name),
    };
    let mut parents: Vec<ObjectRef<P>> = child
        .owner_references()
        .iter()
        .filter(|owner| {
            owner.controller == Some(true) && owner.kind == P::kind(&()) && owner.api_version == P::api_version(&())
        })
        .map(|owner| in_namespace(&owner.name))
        .collect();
    if let Some(name) = parent_by_name
        && !parents.iter().any(|parent| parent.name == name)
    {
        parents.push(in_namespace(name));
    }
    parents
}

/// The objects in `cache` that concern the parent `owner_uid`: those it
/// controls, and those with a name it could want (`named_for_it`), which may
/// clash. Reconcile compares its wanted children with these few, not with
/// every object in the namespace.
pub fn concerning<K>(cache: &Store<K>, owner_uid: &str, named_for_it: impl Fn(&str) -> bool) -> Vec<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let concerns = |object: &Arc<K>| {
        is_controlled_by(object.as_ref(), owner_uid) || object.meta().name.as_deref().is_some_and(&named_for_it)
    };
    cache.state().into_iter().filter(concerns).collect()
}

/// Compares the wanted children of the parent `owner_uid` with the `existing`
/// objects of the same kind in its namespace. Names in `in_flight` had a write
/// sent that the cache does not show yet: they are left alone until it does.
pub fn plan<K>(owner_uid: &str, wanted: Vec<K>, existing: &[Arc<K>], in_flight: &[String]) -> Plan<K>
where
    K: Resource + HasSpec,
    K::Spec: PartialEq,
{
    let wanted_names: Vec<String> = wanted.iter().map(|child| child.name_any()).collect();
    let mut plan = Plan {
        create: Vec::new(),
        update: Vec::new(),
        delete: Vec::new(),
        clashes: Vec::new(),
    };
    for mut child in wanted {
        let name = child.name_any();
        if in_flight.contains(&name) {
            continue;
        }
        match existing.iter().find(|object| object.name_any() == name) {
            None => plan.create.push(child),
            Some(object) if !is_controlled_by(object.as_ref(), owner_uid) => plan.clashes.push(name),
            Some(object) if object.spec() != child.spec() => {
                // Carry the uid we saw: should the object have been replaced
                // since, the API server refuses the write instead of taking
                // over someone else's object.
                child.meta_mut().uid = object.uid();
                plan.update.push(child);
            }
            Some(_) => {}
        }
    }
    plan.delete = existing
        .iter()
        .filter(|object| {
            is_controlled_by(object.as_ref(), owner_uid)
                && !wanted_names.contains(&object.name_any())
                && !in_flight.contains(&object.name_any())
                // Already being deleted (it waits for a finalizer): asking again changes nothing.
                && object.meta().deletion_timestamp.is_none()
        })
        .cloned()
        .collect();
    plan
}

/// How long a write may stay unseen by the cache before we stop waiting for
/// it. The watch shows every write within moments; this only covers the rare
/// case where it never shows one (an object created and deleted again before
/// the watch looked), so that the parent does not wait forever.
pub const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(10);

/// The writes to children that were sent but that the cache does not show
/// yet, per parent. Kubernetes' own ReplicaSet controller keeps the same
/// record and calls it "expectations".
///
/// Why: events about a parent's children keep arriving while the parent is
/// being reconciled (each child it creates is one), so the next reconcile
/// often starts before the watch has delivered the last writes. Its cache
/// then still says "missing" for a child just created: without this record it
/// would create it again and be refused, once for every such event.
///
/// A std `Mutex` rather than a tokio one: it is never held across an `.await`.
#[derive(Default)]
pub struct InFlight {
    writes: Mutex<HashMap<String, Vec<SentWrite>>>,
}

/// One write to a child, and what the cache must show for it to count as seen.
struct SentWrite {
    child: String,
    /// `None` for a create: seen once the child is in the cache. The uid of the
    /// child for a delete: seen once that object has left the cache.
    deleted_uid: Option<String>,
    sent_at: Instant,
}

impl InFlight {
    /// Records that a create (`deleted_uid: None`) or a delete of `child` was sent for `parent`.
    pub fn sent(&self, parent: &str, child: String, deleted_uid: Option<String>) {
        let mut writes = self.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writes.entry(parent.to_string()).or_default().push(SentWrite {
            child,
            deleted_uid,
            sent_at: Instant::now(),
        });
    }

    /// The children of `parent` with a write that `existing` (the cache) does
    /// not show yet. Forgets the writes it shows, and those older than `IN_FLIGHT_LIMIT`.
    pub fn unseen<K: Resource>(&self, parent: &str, existing: &[Arc<K>]) -> Vec<String> {
        let mut writes = self.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(sent) = writes.get_mut(parent) else {
            return Vec::new();
        };
        sent.retain(|write| {
            let in_cache = existing.iter().find(|object| object.name_any() == write.child);
            let seen = match &write.deleted_uid {
                None => in_cache.is_some(),
                Some(uid) => in_cache.is_none_or(|object| object.uid().as_ref() != Some(uid)),
            };
            !seen && write.sent_at.elapsed() < IN_FLIGHT_LIMIT
        });
        let unseen: Vec<String> = sent.iter().map(|write| write.child.clone()).collect();
        if unseen.is_empty() {
            writes.remove(parent);
        }
        unseen
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create {kind} {name}: {source}")]
    Create {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot update {kind} {name}: {source}")]
    Update {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete {kind} {name}: {source}")]
    Delete {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// How many writes to children one reconcile sends at once. One after another,
/// a Fermat of 100 would wait for 50 round trips before its last Tuple exists;
/// all at once, a large plan would flood the API server.
pub const WRITES_AT_ONCE: usize = 16;

/// One write that a plan asks for.
enum Write<'a, K> {
    Create(&'a K),
    Update(&'a K),
    Delete(&'a Arc<K>),
}

/// Carries out `plan` for `parent` in the namespace of `api`, and records in
/// `in_flight` each create and delete that the API server took. Every write is
/// sent, `WRITES_AT_ONCE` at a time; the first one refused is the error. Each
/// write taken is told in an event on the parent.
pub async fn apply<K>(
    api: &Api<K>,
    plan: &Plan<K>,
    parent: &ObjectReference,
    in_flight: &InFlight,
    recorder: &Recorder,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let writes: Vec<_> = (plan.create.iter().map(Write::Create))
        .chain(plan.update.iter().map(Write::Update))
        .chain(plan.delete.iter().map(Write::Delete))
        .map(|write| send(api, write, parent, in_flight, recorder))
        .collect();
    let results: Vec<Result<(), Error>> = stream::iter(writes).buffer_unordered(WRITES_AT_ONCE).collect().await;
    results.into_iter().collect()
}

/// Sends one write, records it in `in_flight` if it creates or deletes, and tells it.
async fn send<K>(
    api: &Api<K>,
    write: Write<'_, K>,
    parent: &ObjectReference,
    in_flight: &InFlight,
    recorder: &Recorder,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let kind = K::kind(&()).to_string();
    let parent_name = parent.name.as_deref().unwrap_or_default();
    match write {
        Write::Create(child) => {
            let name = child.name_any();
            // `create`, not apply: it fails if the name was taken since our cache
            // last looked, so a foreign object can never be taken over.
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            match api.create(&params, child).await {
                Ok(created) => {
                    in_flight.sent(parent_name, name.clone(), None);
                    let note = format!("created {kind} {name}");
                    tell(
                        recorder,
                        parent,
                        EventType::Normal,
                        "Created",
                        note,
                        Some(created.object_ref(&())),
                    )
                    .await;
                }
                // The cache is behind: the object exists. Whether it is ours or a
                // clash, the next reconcile tells, once the cache shows it.
                Err(kube::Error::Api(status)) if status.is_already_exists() => in_flight.sent(parent_name, name, None),
                Err(source) => return Err(Error::Create { kind, name, source }),
            }
        }
        Write::Update(child) => {
            let name = child.name_any();
            // Server-side apply: `force` takes back the fields that someone else edited.
            let params = PatchParams::apply(FIELD_MANAGER).force();
            if let Err(source) = api.patch(&name, &params, &Patch::Apply(child)).await {
                return Err(Error::Update { kind, name, source });
            }
            let note = format!("put back the spec of {kind} {name}, which had been edited");
            tell(
                recorder,
                parent,
                EventType::Normal,
                "PutBack",
                note,
                Some(child.object_ref(&())),
            )
            .await;
        }
        Write::Delete(child) => {
            let name = child.name_any();
            // The uid precondition deletes this very object, never a newer one of the same name.
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: child.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    in_flight.sent(parent_name, name.clone(), child.uid());
                    let note = format!("deleted {kind} {name}, no longer wanted");
                    tell(
                        recorder,
                        parent,
                        EventType::Normal,
                        "Deleted",
                        note,
                        Some(child.object_ref(&())),
                    )
                    .await;
                }
                // Already gone: the goal is reached.
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(source) => return Err(Error::Delete { kind, name, source }),
            }
        }
    }
    Ok(())
}

/// Who the events say they come from (`kubectl describe` shows it under From).
pub const REPORTER: &str = "math-controller";

/// Tells what happened in an event about `parent`, concerning `child`:
/// `kubectl describe` on the parent and `kubectl get events` show it. An event
/// that cannot be written is only logged: it is the story for people, while
/// the objects themselves hold the state.
///
/// The recorder gathers repeats (same reason, same parent, same child) into
/// one event with a count. The child's reference carries its uid, so a child
/// deleted and created again gets an event of its own.
async fn tell(
    recorder: &Recorder,
    parent: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
    child: Option<ObjectReference>,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: reason.to_string(),
        secondary: child,
    };
    if let Err(err) = recorder.publish(&event, parent).await {
        warn!(%err, reason, "cannot write an event");
    }
}

/// Tells in events which name clashes appeared in `now`, and which of those
/// in `before` (the status last written) have cleared.
pub async fn tell_clashes<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    parent: &ObjectReference,
    before: &[String],
    now: &[String],
) {
    let kind = K::kind(&());
    let named = |name: &String| ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(kind.to_string()),
        name: Some(name.clone()),
        namespace: parent.namespace.clone(),
        ..ObjectReference::default()
    };
    for name in now.iter().filter(|name| !before.contains(name)) {
        let note = format!(
            "the name {name} is taken by a {kind} that is not ours: it is left alone, and listed in status.nameClashes"
        );
        tell(
            recorder,
            parent,
            EventType::Warning,
            "NameClash",
            note,
            Some(named(name)),
        )
        .await;
    }
    for name in before.iter().filter(|name| !now.contains(name)) {
        let note = format!("the name {name} is no longer taken by a {kind} that is not ours");
        tell(
            recorder,
            parent,
            EventType::Normal,
            "NameClashCleared",
            note,
            Some(named(name)),
        )
        .await;
    }
}

/// The statuses this controller wrote that its cache of parents may not show yet.
///
/// The same lag as for children, one level up: a child's event can wake its
/// parent right after we wrote the parent's status, before the watch of parents
/// has delivered that write. That reconcile still sees the old status and would
/// send the same new one again. Keeping what we wrote, with the version of the
/// parent we wrote it over, tells this case apart from a status that someone
/// else changed since, which must be written again.
pub struct StatusWrites<S> {
    sent: Mutex<HashMap<String, SentStatus<S>>>,
}

/// One status write, and the version of the parent it was written over.
struct SentStatus<S> {
    over: Option<String>,
    status: S,
    sent_at: Instant,
}

impl<S> Default for StatusWrites<S> {
    fn default() -> Self {
        StatusWrites {
            sent: Mutex::new(HashMap::new()),
        }
    }
}

impl<S: PartialEq> StatusWrites<S> {
    /// Whether `status` must be written to `parent`, as the cache shows it.
    pub fn needed<P: Resource>(&self, parent: &P, current: Option<&S>, status: &S) -> bool {
        let name = parent.name_any();
        let version = parent.resource_version();
        let mut sent = self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The cache has moved past the version we wrote over: it shows our
        // write, or something newer, and `current` is the truth again.
        if sent.get(&name).is_some_and(|write| write.over != version) {
            sent.remove(&name);
        }
        if current == Some(status) {
            return false;
        }
        !sent.get(&name).is_some_and(|write| write.status == *status)
    }

    /// Records that `status` was written over `parent` as the cache showed it.
    /// Forgets writes older than `IN_FLIGHT_LIMIT`, such as those to parents
    /// deleted since.
    pub fn sent<P: Resource>(&self, parent: &P, status: S) {
        let mut sent = self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sent.retain(|_, write| write.sent_at.elapsed() < IN_FLIGHT_LIMIT);
        let write = SentStatus {
            over: parent.resource_version(),
            status,
            sent_at: Instant::now(),
        };
        sent.insert(parent.name_any(), write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::{Number, NumberSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    const PARENT: &str = "parent-uid";

    /// A Number as the cluster would hold it, controlled by `controller` if given.
    fn existing(name: &str, value: i64, controller: Option<&str>) -> Arc<Number> {
        let mut number = Number::new(name, NumberSpec { value });
        number.metadata.uid = Some(format!("{name}-uid"));
        number.metadata.owner_references = controller.map(|uid| {
            vec![OwnerReference {
                controller: Some(true),
                uid: uid.to_string(),
                ..OwnerReference::default()
            }]
        });
        Arc::new(number)
    }

    fn wanted(name: &str, value: i64) -> Number {
        Number::new(name, NumberSpec { value })
    }

    fn names<K: Resource>(objects: &[K]) -> Vec<String> {
        objects.iter().map(|object| object.name_any()).collect()
    }

    #[test]
    fn missing_children_are_created() {
        let plan = plan(PARENT, vec![wanted("t-0", 1), wanted("t-1", 4)], &[], &[]);
        assert_eq!(names(&plan.create), ["t-0", "t-1"]);
        assert!(plan.update.is_empty() && plan.delete.is_empty() && plan.clashes.is_empty());
    }

    #[test]
    fn children_that_match_need_no_request() {
        let plan = plan(PARENT, vec![wanted("t-0", 1)], &[existing("t-0", 1, Some(PARENT))], &[]);
        assert!(plan.is_empty());
        assert!(plan.clashes.is_empty());
    }

    #[test]
    fn an_edited_child_is_put_back_and_the_write_is_pinned_to_its_uid() {
        let plan = plan(PARENT, vec![wanted("t-0", 1)], &[existing("t-0", 7, Some(PARENT))], &[]);
        assert_eq!(names(&plan.update), ["t-0"]);
        assert_eq!(plan.update[0].spec.value, 1);
        assert_eq!(plan.update[0].metadata.uid.as_deref(), Some("t-0-uid"));
    }

    #[test]
    fn children_no_longer_wanted_are_deleted() {
        let existing = [existing("t-0", 1, Some(PARENT)), existing("t-1", 4, Some(PARENT))];
        let plan = plan(PARENT, vec![wanted("t-0", 1)], &existing, &[]);
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.delete[0].name_any(), "t-1");
    }

    #[test]
    fn objects_of_other_controllers_are_never_deleted() {
        let existing = [existing("other", 1, Some("someone-else")), existing("loose", 2, None)];
        let plan = plan(PARENT, Vec::new(), &existing, &[]);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn a_wanted_name_held_by_a_foreign_object_is_a_clash_not_an_update() {
        let existing = [existing("t-0", 9, None), existing("t-1", 9, Some("someone-else"))];
        let plan = plan(PARENT, vec![wanted("t-0", 1), wanted("t-1", 4)], &existing, &[]);
        assert_eq!(plan.clashes, ["t-0", "t-1"]);
        assert!(plan.is_empty());
    }

    #[test]
    fn an_owner_reference_that_is_not_the_controller_does_not_make_a_child_ours() {
        let mut number = Number::new("t-0", NumberSpec { value: 1 });
        number.metadata.owner_references = Some(vec![OwnerReference {
            controller: None,
            uid: PARENT.to_string(),
            ..OwnerReference::default()
        }]);
        assert!(!is_controlled_by(&number, PARENT));
    }

    #[test]
    fn a_child_already_being_deleted_is_not_deleted_again() {
        let mut terminating = (*existing("t-1", 4, Some(PARENT))).clone();
        terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let plan = plan(
            PARENT,
            vec![wanted("t-0", 1)],
            &[existing("t-0", 1, Some(PARENT)), Arc::new(terminating)],
            &[],
        );
        assert!(plan.is_empty());
    }

    #[test]
    fn names_with_a_write_in_flight_are_left_alone() {
        let existing = [existing("t-1", 4, Some(PARENT))];
        let in_flight = ["t-0".to_string(), "t-1".to_string()];
        let plan = plan(PARENT, vec![wanted("t-0", 1)], &existing, &in_flight);
        assert!(plan.is_empty());
    }

    #[test]
    fn a_create_is_in_flight_until_the_cache_shows_the_child() {
        let in_flight = InFlight::default();
        in_flight.sent("p", "t-0".to_string(), None);
        assert_eq!(in_flight.unseen::<Number>("p", &[]), ["t-0"]);
        assert!(in_flight.unseen::<Number>("other", &[]).is_empty());
        assert!(in_flight.unseen("p", &[existing("t-0", 1, Some(PARENT))]).is_empty());
        // Seen once is enough: the record is gone.
        assert!(in_flight.unseen::<Number>("p", &[]).is_empty());
    }

    #[test]
    fn a_delete_is_in_flight_until_that_object_leaves_the_cache() {
        let in_flight = InFlight::default();
        let old = existing("t-0", 1, Some(PARENT));
        in_flight.sent("p", "t-0".to_string(), old.uid());
        assert_eq!(in_flight.unseen("p", std::slice::from_ref(&old)), ["t-0"]);
        // A new object of the same name is not the one deleted.
        let mut new = (*old).clone();
        new.metadata.uid = Some("another-uid".to_string());
        assert!(in_flight.unseen("p", &[Arc::new(new)]).is_empty());
    }

    /// A parent as the cache shows it, at a resource version.
    fn parent_at(version: &str) -> Number {
        let mut parent = Number::new("p", NumberSpec { value: 1 });
        parent.metadata.resource_version = Some(version.to_string());
        parent
    }

    #[test]
    fn a_status_the_parent_shows_is_not_written() {
        let writes = StatusWrites::default();
        assert!(!writes.needed(&parent_at("1"), Some(&"done"), &"done"));
        assert!(writes.needed(&parent_at("1"), Some(&"old"), &"done"));
        assert!(writes.needed(&parent_at("1"), None, &"done"));
    }

    #[test]
    fn a_status_just_written_is_not_sent_again_while_the_cache_lags() {
        let writes = StatusWrites::default();
        writes.sent(&parent_at("1"), "done");
        // Still the version we wrote over: the same status would be a repeat.
        assert!(!writes.needed(&parent_at("1"), Some(&"old"), &"done"));
        // A different status is news and goes out.
        assert!(writes.needed(&parent_at("1"), Some(&"old"), &"other"));
    }

    #[test]
    fn a_status_someone_changed_after_our_write_is_written_again() {
        let writes = StatusWrites::default();
        writes.sent(&parent_at("1"), "done");
        // The cache moved on (our write, then someone else's): it is the truth.
        assert!(writes.needed(&parent_at("3"), Some(&"edited"), &"done"));
        // And the record is gone, even back at the old version.
        assert!(writes.needed(&parent_at("1"), Some(&"old"), &"done"));
    }

    fn tuple_owner(name: &str) -> OwnerReference {
        OwnerReference {
            api_version: "math.workshop.example/v1beta1".to_string(),
            kind: "Tuple".to_string(),
            name: name.to_string(),
            controller: Some(true),
            uid: PARENT.to_string(),
            ..OwnerReference::default()
        }
    }

    #[test]
    fn a_change_wakes_the_controlling_parent_and_the_parent_of_the_name() {
        let mut number = Number::new("t-0", NumberSpec { value: 1 });
        number.metadata.namespace = Some("ns".to_string());
        number.metadata.owner_references = Some(vec![tuple_owner("other")]);
        let parents: Vec<ObjectRef<crate::tuple::Tuple>> = parents_to_wake(&number, Some("t"));
        let names: Vec<_> = parents
            .iter()
            .map(|parent| (parent.name.as_str(), parent.namespace.as_deref()))
            .collect();
        assert_eq!(names, [("other", Some("ns")), ("t", Some("ns"))]);
    }

    #[test]
    fn a_child_without_owner_still_wakes_the_parent_of_its_name_once() {
        let number = Number::new("t-0", NumberSpec { value: 1 });
        let parents: Vec<ObjectRef<crate::tuple::Tuple>> = parents_to_wake(&number, Some("t"));
        assert_eq!(parents.len(), 1);
        let mut ours = number.clone();
        ours.metadata.owner_references = Some(vec![tuple_owner("t")]);
        let parents: Vec<ObjectRef<crate::tuple::Tuple>> = parents_to_wake(&ours, Some("t"));
        assert_eq!(parents.len(), 1);
    }
}
