//! A parent's children: reading them from a watch cache, and carrying out the
//! stage's plan for them.
//!
//! A stage decides *what* to do with a parent's children: its `plan` compares
//! the children it wants with the objects that exist, and returns a
//! [`Plan`]; its `send` makes each [`Change`] of the plan into a request.
//! [`Children`] does the rest, which is the same for every parent:
//!
//! - **the watch cache.** One watch of the child kind fills a cache that
//!   reconciles read instead of asking the API server, and wakes the parents
//!   concerned when a child changes ([`parents_to_wake`]). In Go, the
//!   manager's informer cache and `Owns(&Number{})` do this. An index kept
//!   beside it, by controlling owner and by the parent a name belongs to,
//!   lets a reconcile look up its own children instead of reading every
//!   object of the kind (in Go: the cache's field indexers).
//! - **writes in flight.** The cache shows a write a moment after it was
//!   made, and events about a parent's children keep arriving while it is
//!   reconciled (each child it creates is one). The next reconcile often
//!   starts before the watch has delivered the last writes: without a record
//!   of them it would create the same children again, and be refused, once
//!   for every such event. [`Children`] remembers the creates and deletes that
//!   the cache does not show yet; Kubernetes' own ReplicaSet controller keeps
//!   the same record and calls it "expectations".
//! - **bounded writes.** A plan's writes are sent [`WRITES_AT_ONCE`] at a time.
//! - **Events.** What a reconcile did to the children is told in Events on
//!   the parent, which `kubectl describe` shows: one for the children it
//!   created, one for those it deleted, one per child put back, and one per
//!   name clash found or cleared. A new parent's first children are not told:
//!   they are what creating it asked for, and `kubectl get` shows them. In Go:
//!   `record.EventRecorder`.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::NamespaceResourceScope;
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::CONTROLLER_NAME;
use crate::backoff::watch_backoff;

/// What to do with the children of one parent. A stage's `plan` makes it;
/// [`Children::apply`] carries it out.
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
    /// A plan that sends nothing and reports nothing.
    pub fn empty() -> Self {
        Plan {
            create: Vec::new(),
            update: Vec::new(),
            delete: Vec::new(),
            clashes: Vec::new(),
        }
    }

    /// Whether carrying out the plan would send no request at all.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

impl<K: Resource> Plan<K> {
    /// The changes the plan asks for, as the requests will be sent: creates,
    /// then updates, then deletes, leaving out the children named in `leave`.
    pub fn changes<'p>(&'p self, leave: &[String]) -> Vec<Change<'p, K>> {
        let left_alone = |child: &K| leave.contains(&child.name_any());
        let create = self.create.iter().map(Change::Create);
        let update = self.update.iter().map(Change::Update);
        let delete = self.delete.iter().map(|object| Change::Delete(object.as_ref()));
        create
            .chain(update)
            .chain(delete)
            .filter(|change| !left_alone(change.child()))
            .collect()
    }
}

/// One change of a [`Plan`]: the stage's `send` makes it a request.
#[derive(Debug)]
pub enum Change<'a, K> {
    /// Create this child.
    Create(&'a K),
    /// Bring this child's spec back to the one given (it carries the uid of the object it updates).
    Update(&'a K),
    /// Delete this object.
    Delete(&'a K),
}

// By hand: a derive would ask for `K: Clone`, and a change only borrows its child.
impl<K> Clone for Change<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Change<'_, K> {}

impl<'a, K> Change<'a, K> {
    /// The child the change is about.
    pub fn child(&self) -> &'a K {
        match *self {
            Change::Create(child) | Change::Update(child) | Change::Delete(child) => child,
        }
    }
}

/// Whether the API server refused a write because the kind's CRD is being
/// deleted (and with it every object of the kind).
fn crd_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 403 && status.message.contains("custom resource definition is terminating"))
}

/// A std `Mutex` rather than a tokio one: none is held across an `.await`.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The reference to the object `name`, in `namespace` if it has one.
fn object_ref<K: Resource<DynamicType = ()>>(name: &str, namespace: Option<&str>) -> ObjectRef<K> {
    match namespace {
        Some(namespace) => ObjectRef::new(name).within(namespace),
        None => ObjectRef::new(name),
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
    let in_namespace = |name: &str| object_ref(name, namespace);
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

/// How many writes to children one reconcile sends at once. One after another,
/// a Fermat of 100 would wait for 50 round trips before its last Tuple exists;
/// all at once, a large plan would flood the API server.
pub const WRITES_AT_ONCE: usize = 16;

/// How long a write may stay unseen by the cache before we stop waiting for
/// it. The watch shows every write within moments; this only covers the rare
/// case where it never shows one (an object created and deleted again before
/// the watch looked), so that the parent does not wait forever.
pub const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the watch of {kind}s stopped before it listed them")]
    CacheNotReady { kind: String },
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

/// The parent a child's name belongs to: `Some("f")` for the Tuple
/// `f-4-and-9`, `None` for a name that no parent would want.
pub type ParentName = for<'a> fn(&'a str) -> Option<&'a str>;

/// Which names in the cache concern which parent: those whose controlling
/// owner has a given uid, and those whose name belongs to a given parent name.
#[derive(Default)]
struct Index {
    /// Each object's name, with its controller's uid and its name's parent.
    keys: HashMap<String, (Option<String>, Option<String>)>,
    by_owner: HashMap<String, BTreeSet<String>>,
    by_parent_name: HashMap<String, BTreeSet<String>>,
    /// While the watch lists everything again: the index being rebuilt.
    relisting: Option<Box<Index>>,
}

impl Index {
    fn insert<K: Resource>(&mut self, object: &K, parent_name: ParentName) {
        let name = object.name_any();
        self.remove(&name);
        let owner = object
            .owner_references()
            .iter()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| owner.uid.clone());
        let parent = parent_name(&name).map(str::to_string);
        if let Some(uid) = &owner {
            self.by_owner.entry(uid.clone()).or_default().insert(name.clone());
        }
        if let Some(parent) = &parent {
            self.by_parent_name
                .entry(parent.clone())
                .or_default()
                .insert(name.clone());
        }
        self.keys.insert(name, (owner, parent));
    }

    fn remove(&mut self, name: &str) {
        let Some((owner, parent)) = self.keys.remove(name) else {
            return;
        };
        let forget = |map: &mut HashMap<String, BTreeSet<String>>, key: Option<String>| {
            if let Some(key) = key
                && let Some(names) = map.get_mut(&key)
            {
                names.remove(name);
                if names.is_empty() {
                    map.remove(&key);
                }
            }
        };
        forget(&mut self.by_owner, owner);
        forget(&mut self.by_parent_name, parent);
    }

    /// Follows the watch as the cache does: a new list replaces everything
    /// once it is complete. Returns the names that the new list no longer
    /// has: objects deleted while the watch was away, of which the watch
    /// sends no deletion.
    fn follow<K: Resource>(&mut self, event: &watcher::Event<K>, parent_name: ParentName) -> Vec<String> {
        match event {
            watcher::Event::Apply(object) => self.insert(object, parent_name),
            watcher::Event::Delete(object) => self.remove(&object.name_any()),
            watcher::Event::Init => self.relisting = Some(Box::default()),
            watcher::Event::InitApply(object) => self.relisting.get_or_insert_default().insert(object, parent_name),
            watcher::Event::InitDone => {
                let listed = *self.relisting.take().unwrap_or_default();
                let gone = self
                    .keys
                    .keys()
                    .filter(|name| !listed.keys.contains_key(*name))
                    .cloned()
                    .collect();
                *self = listed;
                return gone;
            }
        }
        Vec::new()
    }

    /// The names that concern a parent: those it controls, and those that belong to its name.
    fn names_for(&self, owner_uid: &str, parent: &str) -> BTreeSet<String> {
        let controlled = self.by_owner.get(owner_uid).into_iter().flatten();
        let named = self.by_parent_name.get(parent).into_iter().flatten();
        controlled.chain(named).cloned().collect()
    }
}

/// The children of kind `K` in one namespace, as parent controllers see them.
pub struct Children<K: Resource<DynamicType = ()> + 'static> {
    api: Api<K>,
    /// Every `K` in the namespace, kept current by a watch.
    cache: Store<K>,
    /// Which of them concern which parent, kept current by the same watch.
    index: Arc<Mutex<Index>>,
    /// Resolves once that watch has listed every object (false if it never will).
    listed: Shared<BoxFuture<'static, bool>>,
    /// The task that runs the watch; stopped when the children are dropped.
    _watching: StopOnDrop,
    /// Creates and deletes sent that the cache does not show yet, per parent uid.
    in_flight: Mutex<HashMap<String, Vec<SentWrite>>>,
    /// The name clashes last told in Events, per parent uid.
    clashes_told: Mutex<HashMap<String, Vec<String>>>,
    /// When the records above were last swept of the parents that have gone.
    swept: Mutex<Instant>,
    /// The stage's account of its trouble, taken when the children are
    /// made: reconciles run in tasks of their own, outside the stage's.
    account: Option<crate::outage::Account>,
    recorder: Recorder,
}

/// Stops a task when dropped.
struct StopOnDrop(tokio::task::AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One write to a child, and what the cache must show for it to count as seen.
struct SentWrite {
    child: String,
    /// `None` for a create: seen once the child is in the cache. The uid of the
    /// child for a delete: seen once that object has left the cache.
    deleted_uid: Option<String>,
    sent_at: Instant,
}

impl<K> Children<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// Watches the `K`s of the client's namespace. Returns the children, for
    /// a reconcile's context, and the stream of changed objects, for
    /// `Controller::watches_stream`: one watch does both jobs. `parent_name`
    /// tells which parent a child's name belongs to (see [`Children::existing`]).
    ///
    /// The watch runs in a task of its own, not in the controller's stream:
    /// a controller that is stopping reads no more changes (kube-runtime's
    /// graceful shutdown), but a reconcile under way may still be waiting for
    /// the first list, which must then still come.
    ///
    /// Without the kit, a parent's controller watches its children with
    /// `.owns()`, and keeps a cache of them with a reflector of its own:
    ///
    /// ```text
    /// let (cache, writer) = reflector::store();
    /// let numbers = watcher(Api::<Number>::default_namespaced(client), watcher::Config::default())
    ///     .reflect(writer)
    ///     .touched_objects();
    /// Controller::new(tuples, watcher::Config::default())
    ///     .owns_stream(numbers)   // or .owns(numbers_api, watcher::Config::default()) without a cache
    ///     …
    /// // in reconcile: the Numbers that a Tuple controls, read from the cache
    /// let children: Vec<Arc<Number>> = cache
    ///     .state()
    ///     .into_iter()
    ///     .filter(|number| is_controlled_by(number.as_ref(), &tuple_uid))
    ///     .collect();
    /// ```
    pub fn watch(
        client: &Client,
        parent_name: ParentName,
    ) -> (Self, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static) {
        let api = Api::<K>::default_namespaced(client.clone());
        let namespace = client.default_namespace().to_string();
        let (cache, writer) = reflector::store();
        let index = Arc::new(Mutex::new(Index::default()));
        let indexing = index.clone();
        // Children deleted while the watch was away, as the cache last had them.
        let vanished: Arc<Mutex<Vec<Arc<K>>>> = Arc::default();
        let (finding, telling) = (vanished.clone(), vanished);
        let before_list = cache.clone();
        let changes = crate::controller::watch_lean(api.clone())
            // The index first: when the cache says it has listed
            // everything, and reconciles start reading, the index has too.
            .inspect_ok(move |event| {
                let gone = lock(&indexing).follow(event, parent_name);
                // The cache still has them: it takes the new list after this.
                let found = gone
                    .iter()
                    .filter_map(|name| before_list.get(&object_ref(name, Some(&namespace))));
                lock(&finding).extend(found);
            })
            .reflect(writer)
            // Each child changed, and each child gone at a new list: its
            // parent is woken, and makes it again if it still wants it.
            .map_ok(move |event| match event {
                watcher::Event::Apply(object) | watcher::Event::Delete(object) | watcher::Event::InitApply(object) => {
                    vec![object]
                }
                watcher::Event::InitDone => lock(&telling).drain(..).map(|object| (*object).clone()).collect(),
                watcher::Event::Init => Vec::new(),
            })
            .map(|changed| match changed {
                Ok(objects) => futures::stream::iter(objects.into_iter().map(Ok)).left_stream(),
                Err(error) => futures::stream::once(async { Err(error) }).right_stream(),
            })
            .flatten()
            // A broken watch is opened again after a growing delay.
            .backoff(watch_backoff());
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        let watching = tokio::spawn(async move {
            let mut changes = std::pin::pin!(changes);
            while let Some(change) = changes.next().await {
                // Nobody reads the changes once the controller has stopped:
                // the watch goes on filling the cache all the same.
                let _ = sender.unbounded_send(change);
            }
        });
        // Many reconciles wait for the first list at once. `Shared` wakes them
        // all: kube-runtime 5.0's `wait_until_ready` wakes only the last one to
        // ask (see tests/upstream/README.md).
        let listing = cache.clone();
        let listed = async move { listing.wait_until_ready().await.is_ok() }.boxed().shared();
        let children = Children {
            api,
            cache,
            index,
            listed,
            in_flight: Mutex::default(),
            clashes_told: Mutex::default(),
            swept: Mutex::new(Instant::now()),
            account: crate::outage::account(),
            recorder: Recorder::new(client.clone(), CONTROLLER_NAME.into()),
            _watching: StopOnDrop(watching.abort_handle()),
        };
        (children, receiver)
    }

    /// The objects that concern `parent`, in name order: those it controls,
    /// and those whose name belongs to it (by the `parent_name` given to
    /// [`Children::watch`]), which it could want and which may clash. Read
    /// from the cache, once the watch has listed them all (until then an
    /// empty cache would look like "every child is missing").
    pub async fn existing<P: Resource>(&self, parent: &P) -> Result<Vec<Arc<K>>, Error> {
        if !self.listed.clone().await {
            let kind = K::kind(&()).to_string();
            return Err(Error::CacheNotReady { kind });
        }
        Ok(self.cached(parent))
    }

    /// The objects that concern `parent`, as the cache shows them now.
    fn cached<P: Resource>(&self, parent: &P) -> Vec<Arc<K>> {
        let owner_uid = parent.uid().unwrap_or_default();
        let names = lock(&self.index).names_for(&owner_uid, &parent.name_any());
        let namespace = parent.namespace();
        names
            .into_iter()
            .filter_map(|name| self.cache.get(&object_ref(&name, namespace.as_deref())))
            .collect()
    }

    /// Carries out `plan` for `parent`: every write is sent, `WRITES_AT_ONCE`
    /// at a time, and the first one refused is the error. The writes taken,
    /// and each name clash that appears or clears, are told in Events.
    ///
    /// A child with a create or a delete sent that the cache does not show
    /// yet is left alone until it does (see the module's "writes in flight"):
    /// the plan was made from a cache that is behind about it.
    ///
    /// The action to return from reconcile if nothing else failed: look
    /// again after `IN_FLIGHT_LIMIT` while writes are in flight (the cache
    /// showing them wakes the parent sooner), else wait for a change.
    pub async fn apply<'s, 'p, P, F, Fut>(&'s self, parent: &P, plan: &'p Plan<K>, send: F) -> Result<Action, Error>
    where
        P: Resource<DynamicType = ()> + HasStatus,
        F: Fn(&'s Api<K>, Change<'p, K>) -> Fut,
        Fut: Future<Output = kube::Result<K>>,
    {
        self.sweep();
        let reference = parent.object_ref(&());
        let owner_uid = parent.uid().unwrap_or_default();
        let in_flight = self.unseen(&owner_uid, &self.cached(parent));
        let changes = plan.changes(&in_flight);
        if !changes.is_empty() {
            let count = |which: fn(&Change<'p, K>) -> bool| changes.iter().filter(|change| which(change)).count();
            info!(
                name = parent.name_any(),
                namespace = parent.namespace().unwrap_or_default(),
                create = count(|change| matches!(change, Change::Create(_))),
                update = count(|change| matches!(change, Change::Update(_))),
                delete = count(|change| matches!(change, Change::Delete(_))),
                "converging children"
            );
        }
        self.tell_clashes(&reference, &owner_uid, &plan.clashes).await;
        let writes: Vec<_> = changes
            .into_iter()
            .map(|change| {
                let request = send(&self.api, change);
                let owner_uid = owner_uid.as_str();
                async move { self.outcome(change, request.await, owner_uid) }
            })
            .collect();
        let results: Vec<Result<Done, Error>> = stream::iter(writes).buffer_unordered(WRITES_AT_ONCE).collect().await;
        let (mut done, mut refused) = (Vec::new(), None);
        for result in results {
            match result {
                Ok(write) => done.push(write),
                Err(error) => refused = refused.or(Some(error)),
            }
        }
        // What was done is told even when another write was refused.
        let new_parent = is_new(parent);
        self.tell_writes(&reference, new_parent, done).await;
        if let Some(error) = refused {
            return Err(error);
        }
        if self.lock_in_flight().contains_key(&owner_uid) {
            Ok(Action::requeue(IN_FLIGHT_LIMIT))
        } else {
            Ok(Action::await_change())
        }
    }

    /// What one request did, from its `result`: recorded if it created or
    /// deleted, so that the cache's lag does not repeat it. A refusal that
    /// leaves nothing to do is no error: a child that exists already (the
    /// cache is behind), a child gone already, a kind being deleted with its CRD.
    fn outcome(&self, change: Change<'_, K>, result: kube::Result<K>, owner_uid: &str) -> Result<Done, Error> {
        let kind = K::kind(&()).to_string();
        let name = change.child().name_any();
        match (change, result) {
            (Change::Create(_), Ok(created)) => {
                self.sent(owner_uid, name, None);
                Ok(Done::Created(created.object_ref(&())))
            }
            // The cache is behind: the object exists. Whether it is ours or a
            // clash, the next reconcile tells, once the cache shows it.
            (Change::Create(_), Err(kube::Error::Api(status))) if status.is_already_exists() => {
                self.sent(owner_uid, name, None);
                Ok(Done::Nothing)
            }
            // The kind is being deleted with its CRD, and every object of
            // it, this parent's too: nothing to retry. Told once.
            (Change::Create(_), Err(source)) if crd_terminating(&source) => {
                crate::outage::report_to(self.account.as_ref(), crate::outage::Trouble::CrdsGone, &source);
                Ok(Done::Nothing)
            }
            (Change::Create(_), Err(source)) => Err(Error::Create { kind, name, source }),
            (Change::Update(_), Ok(put_back)) => Ok(Done::PutBack(put_back.object_ref(&()))),
            (Change::Update(_), Err(source)) => Err(Error::Update { kind, name, source }),
            (Change::Delete(child), Ok(_)) => {
                self.sent(owner_uid, name, child.uid());
                Ok(Done::Deleted(child.object_ref(&())))
            }
            // Already gone: the goal is reached.
            (Change::Delete(_), Err(kube::Error::Api(status))) if status.is_not_found() => Ok(Done::Nothing),
            (Change::Delete(_), Err(source)) => Err(Error::Delete { kind, name, source }),
        }
    }

    /// Forgets, every `IN_FLIGHT_LIMIT` at most, what is kept for parents
    /// that are no longer reconciled (deleted, or deleted while being
    /// reconciled): writes in flight older than `IN_FLIGHT_LIMIT`, which
    /// count no more, and name clashes whose objects have all gone. A parent
    /// that is reconciled again finds its records as they should be.
    fn sweep(&self) {
        {
            let mut swept = lock(&self.swept);
            if swept.elapsed() < IN_FLIGHT_LIMIT {
                return;
            }
            *swept = Instant::now();
        }
        self.lock_in_flight().retain(|_, writes| {
            writes.retain(|write| write.sent_at.elapsed() < IN_FLIGHT_LIMIT);
            !writes.is_empty()
        });
        let index = lock(&self.index);
        lock(&self.clashes_told).retain(|_, names| names.iter().any(|name| index.keys.contains_key(name)));
    }

    /// How many parents have records kept (for tests).
    #[cfg(test)]
    fn parents_recorded(&self) -> usize {
        self.lock_in_flight().len() + lock(&self.clashes_told).len()
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<SentWrite>>> {
        lock(&self.in_flight)
    }

    /// Records that a create (`deleted_uid: None`) or a delete of `child` was sent for the parent `owner_uid`.
    fn sent(&self, owner_uid: &str, child: String, deleted_uid: Option<String>) {
        let write = SentWrite {
            child,
            deleted_uid,
            sent_at: Instant::now(),
        };
        self.lock_in_flight()
            .entry(owner_uid.to_string())
            .or_default()
            .push(write);
    }

    /// The children of the parent `owner_uid` with a write that `existing`
    /// (the cache) does not show yet. Forgets the writes it shows, and those
    /// older than `IN_FLIGHT_LIMIT`.
    fn unseen(&self, owner_uid: &str, existing: &[Arc<K>]) -> Vec<String> {
        let mut in_flight = self.lock_in_flight();
        let Some(sent) = in_flight.get_mut(owner_uid) else {
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
            in_flight.remove(owner_uid);
        }
        unseen
    }

    /// Tells the writes taken for `parent` in Events: one for the children
    /// created (none for a `new_parent`'s first children), one for those
    /// deleted, one per child put back (someone edited it: each one is news).
    async fn tell_writes(&self, parent: &ObjectReference, new_parent: bool, done: Vec<Done>) {
        let kind = K::kind(&());
        let (mut created, mut deleted) = (Vec::new(), Vec::new());
        for write in done {
            match write {
                Done::Created(child) => created.push(child),
                Done::Deleted(child) => deleted.push(child),
                Done::PutBack(child) => {
                    let name = child.name.clone().unwrap_or_default();
                    let note = format!("put back the spec of {kind} {name}, which had been edited");
                    self.tell(parent, EventType::Normal, "PutBack", note, child).await;
                }
                Done::Nothing => {}
            }
        }
        if !created.is_empty() && !new_parent {
            let (note, first) = summary("created", &kind, "", created);
            self.tell(parent, EventType::Normal, "Created", note, first).await;
        }
        if !deleted.is_empty() {
            let (note, first) = summary("deleted", &kind, ", no longer wanted", deleted);
            self.tell(parent, EventType::Normal, "Deleted", note, first).await;
        }
    }

    /// Tells in Events which of `clashes` are new, and which of those told
    /// before have cleared. After a restart, the clashes that remain are told once more.
    async fn tell_clashes(&self, parent: &ObjectReference, owner_uid: &str, clashes: &[String]) {
        let before = {
            let mut told = self
                .clashes_told
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let before = if clashes.is_empty() {
                told.remove(owner_uid)
            } else {
                told.insert(owner_uid.to_string(), clashes.to_vec())
            };
            before.unwrap_or_default()
        };
        let kind = K::kind(&());
        let named = |name: &String| ObjectReference {
            api_version: Some(K::api_version(&()).to_string()),
            kind: Some(kind.to_string()),
            name: Some(name.clone()),
            namespace: parent.namespace.clone(),
            ..ObjectReference::default()
        };
        let parent_name = parent.name.as_deref().unwrap_or_default();
        for name in clashes.iter().filter(|name| !before.contains(name)) {
            warn!(
                name = parent_name,
                clash = name,
                "a wanted name is taken; reported in status"
            );
            let note = format!(
                "the name {name} is taken by a {kind} that is not ours: it is left alone, and listed in status.nameClashes"
            );
            self.tell(parent, EventType::Warning, "NameClash", note, named(name))
                .await;
        }
        for name in before.iter().filter(|name| !clashes.contains(name)) {
            info!(name = parent_name, clash = name, "a wanted name is free again");
            let note = format!("the name {name} is no longer taken by a {kind} that is not ours");
            self.tell(parent, EventType::Normal, "NameClashCleared", note, named(name))
                .await;
        }
    }

    /// Tells what happened in an Event about `parent`, concerning `child`:
    /// `kubectl describe` on the parent and `kubectl get events` show it. An
    /// Event that cannot be written is only logged: it is the story for people,
    /// while the objects themselves hold the state.
    ///
    /// The recorder gathers repeats (same reason, same parent, same child) into
    /// one Event with a count. The child's reference carries its uid, so a child
    /// deleted and created again gets an Event of its own; only the same child
    /// put back again repeats one.
    async fn tell(
        &self,
        parent: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
        child: ObjectReference,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: Some(child),
        };
        if let Err(err) = self.recorder.publish(&event, parent).await {
            warn!(%err, reason, "cannot write an event");
        }
    }
}

/// What one write did, for the Events that tell it.
enum Done {
    Created(ObjectReference),
    PutBack(ObjectReference),
    Deleted(ObjectReference),
    /// Nothing to tell: the child existed already, or was gone already.
    Nothing,
}

/// How many children an Event names before it says how many more there are.
const NAMED_IN_AN_EVENT: usize = 5;

/// The note of an Event about `children` (at least one), and the child it
/// concerns: the first by name. "created Number heal-1", or "deleted 50
/// Tuples, no longer wanted: a, b, c, d, e and 45 more".
fn summary(verb: &str, kind: &str, why: &str, mut children: Vec<ObjectReference>) -> (String, ObjectReference) {
    children.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = children
        .iter()
        .map(|child| child.name.as_deref().unwrap_or_default())
        .collect();
    let note = match names.as_slice() {
        [one] => format!("{verb} {kind} {one}{why}"),
        _ => {
            let shown = names[..names.len().min(NAMED_IN_AN_EVENT)].join(", ");
            let more = names.len().saturating_sub(NAMED_IN_AN_EVENT);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{verb} {} {kind}s{why}: {shown}{more}", names.len())
        }
    };
    (note, children.swap_remove(0))
}

/// Whether `parent` is new: without a status, it has not been reconciled yet.
fn is_new<P: HasStatus>(parent: &P) -> bool {
    parent.status().is_none()
}

/// The kit's tests, and the kind they use (the status writer's tests use it too).
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::Deserialize;

    /// A kind for the kit's tests.
    #[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "kit.test.example",
        version = "v1",
        kind = "Item",
        namespaced,
        status = "i64"
    )]
    pub struct ItemSpec {
        pub value: i64,
    }

    const PARENT: &str = "parent-uid";

    fn owned(name: &str, uid: &str) -> Arc<Item> {
        let mut item = Item::new(name, ItemSpec { value: 1 });
        item.metadata.uid = Some(uid.to_string());
        item.metadata.owner_references = Some(vec![OwnerReference {
            controller: Some(true),
            uid: PARENT.to_string(),
            ..OwnerReference::default()
        }]);
        Arc::new(item)
    }

    #[test]
    fn a_plan_leaves_alone_the_children_with_a_write_in_flight() {
        let plan = Plan {
            create: vec![
                Item::new("p-0", ItemSpec { value: 1 }),
                Item::new("p-1", ItemSpec { value: 1 }),
            ],
            update: vec![Item::new("p-2", ItemSpec { value: 1 })],
            delete: vec![owned("p-3", "uid-3"), owned("p-4", "uid-4")],
            clashes: vec!["p-5".to_string()],
        };
        let in_flight = ["p-0".to_string(), "p-2".to_string(), "p-3".to_string()];
        let left: Vec<String> = plan
            .changes(&in_flight)
            .iter()
            .map(|change| match change {
                Change::Create(child) => format!("create {}", child.name_any()),
                Change::Update(child) => format!("update {}", child.name_any()),
                Change::Delete(child) => format!("delete {}", child.name_any()),
            })
            .collect();
        assert_eq!(left, ["create p-1", "delete p-4"]);
    }

    /// A client for tests that only look at bookkeeping: it never sends a request.
    pub fn unused_client() -> Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Client::try_from(config).unwrap()
    }

    /// A client for the namespace `default` whose API server lists no
    /// object once `list` is sent a value, and then answers no watch.
    fn listing_when_told() -> (Client, tokio::sync::oneshot::Sender<()>) {
        let (list, listed) = tokio::sync::oneshot::channel::<()>();
        let listed = listed.shared();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let listed = listed.clone();
            async move {
                if request.uri().query().unwrap_or_default().contains("watch=true") {
                    futures::future::pending::<()>().await;
                }
                let _ = listed.await;
                let body = r#"{"apiVersion":"example.com/v1","kind":"ItemList","metadata":{"resourceVersion":"1"},"items":[]}"#;
                Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(
                    body.as_bytes().to_vec(),
                )))
            }
        });
        (Client::new(service, "default"), list)
    }

    /// `p-1` belongs to the parent `p`.
    fn item_parent(name: &str) -> Option<&str> {
        name.rsplit_once('-').map(|(parent, _)| parent)
    }

    fn children() -> Children<Item> {
        Children::watch(&unused_client(), item_parent).0
    }

    fn controlled_by(name: &str, owner_uid: &str) -> Item {
        let mut item = Item::new(name, ItemSpec { value: 1 });
        item.metadata.owner_references = Some(vec![OwnerReference {
            controller: Some(true),
            uid: owner_uid.to_string(),
            ..OwnerReference::default()
        }]);
        item
    }

    fn names(found: BTreeSet<String>) -> Vec<String> {
        found.into_iter().collect()
    }

    #[test]
    fn a_new_list_names_the_children_deleted_while_the_watch_was_away() {
        let mut index = Index::default();
        for name in ["p-1", "p-2", "q-1"] {
            index.follow(&watcher::Event::Apply(controlled_by(name, "uid")), item_parent);
        }
        let relist = [
            watcher::Event::Init,
            watcher::Event::InitApply(controlled_by("p-1", "uid")),
            watcher::Event::InitApply(controlled_by("r-1", "uid")),
        ];
        for event in &relist {
            assert!(index.follow(event, item_parent).is_empty());
        }
        let mut gone = index.follow(&watcher::Event::<Item>::InitDone, item_parent);
        gone.sort();
        assert_eq!(gone, ["p-2", "q-1"]);
        assert_eq!(names(index.names_for("uid", "none")), ["p-1", "r-1"]);
    }

    /// A client whose API server lists `p-1` and `p-2`, ends the watch with
    /// 410 Gone (its place in history expired), then lists only `p-1`:
    /// `p-2` was deleted while the watch was away, and no watch event says so.
    fn relisting_without_p2() -> Client {
        let lists = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let watches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let (lists, watches) = (lists.clone(), watches.clone());
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let item = |name: &str| {
                    format!(
                        r#"{{"apiVersion":"kit.test.example/v1","kind":"Item","metadata":{{"name":"{name}","namespace":"default","uid":"uid-{name}","ownerReferences":[{{"apiVersion":"v1","kind":"Parent","name":"p","uid":"parent-uid","controller":true}}]}},"spec":{{"value":1}}}}"#
                    )
                };
                let body = if request.uri().query().unwrap_or_default().contains("watch=true") {
                    if watches.fetch_add(1, SeqCst) > 0 {
                        futures::future::pending::<()>().await;
                    }
                    r#"{"type":"ERROR","object":{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Failure","message":"too old resource version","reason":"Expired","code":410}}"#.to_string() + "\n"
                } else {
                    let items = match lists.fetch_add(1, SeqCst) {
                        0 => format!("{},{}", item("p-1"), item("p-2")),
                        _ => item("p-1"),
                    };
                    format!(
                        r#"{{"apiVersion":"kit.test.example/v1","kind":"ItemList","metadata":{{"resourceVersion":"1"}},"items":[{items}]}}"#
                    )
                };
                Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(body.into_bytes())))
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn a_child_gone_at_a_new_list_wakes_its_parent() {
        let (_children, changes) = Children::<Item>::watch(&relisting_without_p2(), item_parent);
        let names: Vec<String> = tokio::time::timeout(
            Duration::from_secs(20),
            changes
                .filter_map(|change| async move { change.ok() })
                .take(4)
                .collect::<Vec<Item>>(),
        )
        .await
        .expect("the watch did not list twice")
        .into_iter()
        .map(|item| item.name_any())
        .collect();
        // The first list, the second, then the child that the second no
        // longer has, as the cache last had it (owner references and all):
        // the controller maps it to its parent, which makes it again.
        assert_eq!(names, ["p-1", "p-2", "p-1", "p-2"]);
    }

    #[tokio::test]
    async fn records_of_parents_no_longer_reconciled_are_swept() {
        let children = children();
        let long_ago = Instant::now() - 2 * IN_FLIGHT_LIMIT;
        children.lock_in_flight().insert(
            "gone-parent".to_string(),
            vec![SentWrite {
                child: "g-0".to_string(),
                deleted_uid: None,
                sent_at: long_ago,
            }],
        );
        children.sent("live-parent", "l-0".to_string(), None);
        // A clash with an object that has gone, and one with an object still there.
        lock(&children.clashes_told).insert("gone-parent".to_string(), vec!["g-1".to_string()]);
        lock(&children.clashes_told).insert("live-parent".to_string(), vec!["l-1".to_string()]);
        lock(&children.index).insert(&Item::new("l-1", ItemSpec { value: 1 }), item_parent);
        assert_eq!(children.parents_recorded(), 4);
        // Swept at most every IN_FLIGHT_LIMIT.
        children.sweep();
        assert_eq!(children.parents_recorded(), 4);
        *lock(&children.swept) = long_ago;
        children.sweep();
        assert_eq!(children.parents_recorded(), 2);
        assert_eq!(children.unseen("live-parent", &[]), ["l-0"]);
        assert!(lock(&children.clashes_told).contains_key("live-parent"));
    }

    #[test]
    fn the_index_finds_what_a_parent_controls_and_what_its_name_wants() {
        let mut index = Index::default();
        index.follow(&watcher::Event::Apply(controlled_by("p-1", "uid-p")), item_parent);
        index.follow(&watcher::Event::Apply(controlled_by("other-2", "uid-p")), item_parent);
        index.follow(
            &watcher::Event::Apply(Item::new("p-3", ItemSpec { value: 1 })),
            item_parent,
        );
        index.follow(&watcher::Event::Apply(controlled_by("q-1", "uid-q")), item_parent);
        index.follow(
            &watcher::Event::Apply(Item::new("alone", ItemSpec { value: 1 })),
            item_parent,
        );
        assert_eq!(names(index.names_for("uid-p", "p")), ["other-2", "p-1", "p-3"]);
        assert_eq!(names(index.names_for("uid-q", "q")), ["q-1"]);
        assert!(index.names_for("uid-r", "r").is_empty());
    }

    #[test]
    fn the_index_follows_changes_deletes_and_a_new_list() {
        let mut index = Index::default();
        index.follow(&watcher::Event::Apply(controlled_by("x-1", "uid-p")), item_parent);
        // Its ownerReference removed: no longer the parent's by owner.
        index.follow(
            &watcher::Event::Apply(Item::new("x-1", ItemSpec { value: 1 })),
            item_parent,
        );
        assert!(index.names_for("uid-p", "p").is_empty());
        index.follow(&watcher::Event::Apply(controlled_by("p-1", "uid-p")), item_parent);
        index.follow(&watcher::Event::Delete(controlled_by("p-1", "uid-p")), item_parent);
        assert!(index.names_for("uid-p", "p").is_empty());
        assert!(index.by_owner.is_empty() && !index.by_parent_name.contains_key("p"));
        // A new list: until it is complete, the index stays as it was.
        index.follow(&watcher::Event::Apply(controlled_by("p-2", "uid-p")), item_parent);
        index.follow(&watcher::Event::<Item>::Init, item_parent);
        index.follow(&watcher::Event::InitApply(controlled_by("p-5", "uid-p")), item_parent);
        assert_eq!(names(index.names_for("uid-p", "p")), ["p-2"]);
        index.follow(&watcher::Event::<Item>::InitDone, item_parent);
        assert_eq!(names(index.names_for("uid-p", "p")), ["p-5"]);
    }

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            name: Some(name.to_string()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn an_event_names_one_child_or_counts_many() {
        let (note, child) = summary("created", "Number", "", vec![reference("heal-1")]);
        assert_eq!(
            (note.as_str(), child.name.as_deref()),
            ("created Number heal-1", Some("heal-1"))
        );
        let two = vec![reference("t-1"), reference("t-0")];
        let (note, child) = summary("created", "Number", "", two);
        assert_eq!(
            (note.as_str(), child.name.as_deref()),
            ("created 2 Numbers: t-0, t-1", Some("t-0"))
        );
        let many = (0..50).map(|i| reference(&format!("f-{i:02}"))).collect();
        let (note, _) = summary("deleted", "Tuple", ", no longer wanted", many);
        assert_eq!(
            note,
            "deleted 50 Tuples, no longer wanted: f-00, f-01, f-02, f-03, f-04 and 45 more"
        );
    }

    #[test]
    fn a_parent_without_a_status_is_new() {
        let mut item = Item::new("parent", ItemSpec { value: 1 });
        assert!(is_new(&item));
        item.status = Some(1);
        assert!(!is_new(&item));
    }

    #[tokio::test]
    async fn a_create_is_in_flight_until_the_cache_shows_the_child() {
        let children = children();
        children.sent(PARENT, "t-0".to_string(), None);
        assert_eq!(children.unseen(PARENT, &[]), ["t-0"]);
        assert!(children.unseen("another-parent", &[]).is_empty());
        assert!(children.unseen(PARENT, &[owned("t-0", "a")]).is_empty());
        // Seen once is enough: the record is gone.
        assert!(children.unseen(PARENT, &[]).is_empty());
    }

    #[tokio::test]
    async fn a_delete_is_in_flight_until_that_object_leaves_the_cache() {
        let children = children();
        let old = owned("t-0", "old-uid");
        children.sent(PARENT, "t-0".to_string(), old.uid());
        assert_eq!(children.unseen(PARENT, std::slice::from_ref(&old)), ["t-0"]);
        // A new object of the same name is not the one deleted.
        assert!(children.unseen(PARENT, &[owned("t-0", "new-uid")]).is_empty());
    }

    #[tokio::test]
    async fn writes_in_flight_are_kept_per_parent_uid_not_per_name() {
        let children = children();
        children.sent("old-uid", "t-0".to_string(), None);
        // A parent created again under the same name has a new uid: nothing is in flight for it.
        assert!(children.unseen("new-uid", &[]).is_empty());
    }

    #[test]
    fn an_owner_reference_that_is_not_the_controller_does_not_make_a_child_ours() {
        let mut item = Item::new("t-0", ItemSpec { value: 1 });
        item.metadata.owner_references = Some(vec![OwnerReference {
            controller: None,
            uid: PARENT.to_string(),
            ..OwnerReference::default()
        }]);
        assert!(!is_controlled_by(&item, PARENT));
        assert!(is_controlled_by(owned("t-1", "a").as_ref(), PARENT));
    }

    fn item_owner(name: &str) -> OwnerReference {
        OwnerReference {
            api_version: "kit.test.example/v1".to_string(),
            kind: "Item".to_string(),
            name: name.to_string(),
            controller: Some(true),
            uid: PARENT.to_string(),
            ..OwnerReference::default()
        }
    }

    #[test]
    fn a_change_wakes_the_controlling_parent_and_the_parent_of_the_name() {
        let mut child = Item::new("t-0", ItemSpec { value: 1 });
        child.metadata.namespace = Some("ns".to_string());
        child.metadata.owner_references = Some(vec![item_owner("other")]);
        let parents: Vec<ObjectRef<Item>> = parents_to_wake(&child, Some("t"));
        let names: Vec<_> = parents
            .iter()
            .map(|parent| (parent.name.as_str(), parent.namespace.as_deref()))
            .collect();
        assert_eq!(names, [("other", Some("ns")), ("t", Some("ns"))]);
    }

    #[test]
    fn a_child_without_owner_still_wakes_the_parent_of_its_name_once() {
        let child = Item::new("t-0", ItemSpec { value: 1 });
        let parents: Vec<ObjectRef<Item>> = parents_to_wake(&child, Some("t"));
        assert_eq!(parents.len(), 1);
        let mut ours = child.clone();
        ours.metadata.owner_references = Some(vec![item_owner("t")]);
        let parents: Vec<ObjectRef<Item>> = parents_to_wake(&ours, Some("t"));
        assert_eq!(parents.len(), 1);
    }

    /// A controller that is stopping reads no more changes, while a
    /// reconcile under way waits for the first list: that list still comes.
    #[tokio::test]
    async fn the_first_list_comes_even_when_nobody_reads_the_changes() {
        let (client, list) = listing_when_told();
        let (children, changes) = Children::<Item>::watch(&client, item_parent);
        let parent = controlled_by("p", "uid-p");
        let existing = tokio::spawn(async move { children.existing(&parent).await.map(|found| found.len()) });
        // The controller's side of the watch, held and never read, as a stopping controller holds it.
        let _held = changes;
        list.send(()).expect("the client was dropped");
        let found = tokio::time::timeout(Duration::from_secs(60), existing)
            .await
            .expect("the first list never came")
            .expect("the reconcile's task failed");
        assert_eq!(found.ok(), Some(0));
    }
}
