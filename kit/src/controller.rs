//! The pieces that a stage's `Controller` is built from and driven with.
//!
//! A stage builds and runs its controller with kube-runtime itself:
//!
//! ```text
//! let (cache, changes) = kit::controller::watch(numbers);
//! Controller::for_stream(changes, cache)
//!     .with_config(kit::controller::config())
//!     .graceful_shutdown_on(shutdown)
//!     .run(reconcile, error_policy, context)
//!     .for_each(kit::controller::report)
//!     .await;
//! ```
//!
//! `run` returns a stream: one item for each reconcile that ended, and one
//! for each error of the machinery (a watch that failed, an object that was
//! gone by the time its turn came). Nothing happens until the stream is
//! polled, so the program drives it to its end with `for_each`. Without the
//! kit, the last line is a plain log of each item, as the kube-rs examples write it:
//!
//! ```text
//!     .for_each(|result| async move {
//!         match result {
//!             Ok((object, _action)) => tracing::debug!(%object, "reconciled"),
//!             Err(error) => tracing::warn!(%error, "reconcile failed"),
//!         }
//!     })
//! ```
//!
//! [`watch`] and [`config`] save memory (without them:
//! `Controller::new(numbers, watcher::Config::default())`). [`report`] logs
//! as above, except that it tells an outage once for the whole program
//! instead of once per failed watch, several times a second (see
//! [`crate::outage`]). In Go, controller-runtime's manager runs the
//! controllers and logs their errors itself (`mgr.Start(ctx)`).

use std::fmt::Debug;

use futures::Stream;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::outage;

/// How many objects one controller reconciles at once; the others wait in
/// its queue. Each reconcile under way holds its copy of what the cache
/// shows and its plan, and the program sends at most
/// [`REQUESTS_AT_ONCE`](crate::stage::REQUESTS_AT_ONCE) requests anyway:
/// more at once would only wait, and take memory while they do
/// (BENCHMARKS.md). kube-runtime's default is no limit.
pub const RECONCILES_AT_ONCE: u16 = 64;

/// The watch of the `K`s that `api` reaches and the cache it fills, for
/// `Controller::for_stream(changes, cache)`: what `Controller::new(api,
/// watcher::Config::default())` makes inside, with one difference. The
/// cache keeps each object without `managedFields` (who wrote which field),
/// which no controller reads and which takes about half of an object's
/// memory (BENCHMARKS.md). In plain kube-rs:
///
/// ```text
/// let (cache, writer) = reflector::store();
/// let changes = watcher(api, watcher::Config::default())
///     .modify(|object| object.managed_fields_mut().clear())
///     .reflect(writer)
///     .applied_objects();
/// ```
///
/// In Go, controller-runtime's cache can strip it the same way
/// (`cache.TransformStripManagedFields`).
pub fn watch<K>(api: Api<K>) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Clone + Resource<DynamicType = ()> + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (cache, writer) = reflector::store();
    let changes = watch_lean(api).reflect(writer).applied_objects();
    (cache, changes)
}

/// kube-runtime's watcher of the `K`s that `api` reaches, its objects
/// without `managedFields`: what every cache of the kit is filled from.
pub(crate) fn watch_lean<K>(api: Api<K>) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watcher(api, watcher::Config::default()).modify(|object| object.managed_fields_mut().clear())
}

/// The settings of every controller of the workshop:
/// `controller::Config::default().concurrency(RECONCILES_AT_ONCE)`, for
/// `Controller::with_config`. In Go, controller-runtime's
/// `MaxConcurrentReconciles` option.
pub fn config() -> controller::Config {
    controller::Config::default().concurrency(RECONCILES_AT_ONCE)
}

/// Logs one item of a controller's stream of results: nothing for a
/// reconcile that succeeded, or failed (its `error_policy` has logged it);
/// an outage once for the whole program; anything else as it is.
pub async fn report<K, E>(result: Result<(ObjectRef<K>, Action), controller::Error<E, watcher::Error>>)
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
    E: std::error::Error,
{
    match result {
        Ok((object, _)) => debug!(%object, "reconciled"),
        // error_policy has logged it already.
        Err(controller::Error::ReconcilerFailed(..)) => {}
        // A child woke a parent that does not exist (deleted, or never
        // created): nothing to do.
        Err(controller::Error::ObjectNotFound(object)) => debug!(%object, "no such object"),
        // A watch that fails because the API server is away (or the CRDs
        // are gone) is told once for the whole program.
        Err(controller::Error::QueueError(err)) => match outage::of_watch_error(&err) {
            outage::Meaning::Trouble(trouble) => outage::report(trouble, &err),
            outage::Meaning::Forbidden(message) => outage::forbidden(&message),
            outage::Meaning::Unauthorized => outage::unauthorized(),
            outage::Meaning::Passing => debug!(%err, "the watch starts again"),
            outage::Meaning::Own => match &err {
                watcher::Error::InitialListFailed(kube::Error::SerdeError(_))
                | watcher::Error::WatchFailed(kube::Error::SerdeError(_)) => unreadable::<K>(&err).await,
                _ => warn!(%err, "a watch fails"),
            },
        },
        Err(err) => warn!(%err, "controller error"),
    }
}

/// A watch of `K`s failed because an object does not decode as a `K`
/// (`error`): a stored object that an older or looser CRD let in. The whole
/// list fails with it, so the cache never fills and no `K` is reconciled
/// until the object is fixed or deleted. Finds which object it is and tells
/// it once, with the fix.
async fn unreadable<K>(error: &watcher::Error)
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let Some(account) = outage::account() else {
        return warn!(%error, "a watch fails");
    };
    let kind = K::kind(&());
    let (found, name) = match unreadable_object::<K>(account.client()).await {
        Ok(Some((name, why))) => (
            format!("the {kind} {name} cannot be read by this program ({why})"),
            name,
        ),
        // Gone or fixed since: the watch will list again.
        Ok(None) => return debug!(%error, "a watch failed on an object that reads now"),
        Err(err) => (
            format!("a {kind} cannot be read by this program ({error}; listing them to name it failed: {err})"),
            "NAME".to_string(),
        ),
    };
    if !account.first_time(&found) {
        return debug!(%error, "still unreadable");
    }
    let command = kind.to_lowercase();
    tracing::error!(
        "{found}: it was stored under an older or looser CRD; no {kind} is reconciled until it is fixed \
         (`kubectl edit {command} {name}`) or deleted (`kubectl delete {command} {name}`)"
    );
}

/// The first `K` of the client's namespace that does not decode as a `K`,
/// with why.
async fn unreadable_object<K>(client: kube::Client) -> kube::Result<Option<(String, String)>>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let resource = kube::api::ApiResource::erase::<K>(&());
    let api: Api<kube::api::DynamicObject> = Api::default_namespaced_with(client, &resource);
    let list = api.list(&kube::api::ListParams::default()).await?;
    Ok(list.items.into_iter().find_map(|mut object| {
        let name = object.name_any();
        // A list's items come without their kind.
        object.types = Some(kube::api::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
        let value = serde_json::to_value(&object).ok()?;
        serde_json::from_value::<K>(value)
            .err()
            .map(|why| (name, why.to_string()))
    }))
}
