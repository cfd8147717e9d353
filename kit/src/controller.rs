//! Making one controller, and running it until the program stops.
//!
//! A stage builds its `Controller` with [`new`], says which other changes
//! wake which object, and writes `reconcile` and `error_policy`; [`run`] sets
//! what every controller of the workshop sets the same way, and drives it. In Go,
//! `ctrl.NewControllerManagedBy(mgr).For(&Tuple{}).Owns(&Number{}).Complete(r)`
//! registers a reconciler and the manager runs it: this is that last step.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::Shutdown;
use crate::backoff::watch_backoff;
use crate::outage;

/// How many objects one controller reconciles at once; the others wait in
/// its queue. Each reconcile under way holds its copy of what the cache
/// shows and its plan, and the program sends at most
/// [`REQUESTS_AT_ONCE`](crate::stage::REQUESTS_AT_ONCE) requests anyway:
/// more at once would only wait, and take memory while they do.
pub const RECONCILES_AT_ONCE: u16 = 64;

/// A `Controller` of the `K`s that `api` reaches: kube-runtime's
/// `Controller::new(api, watcher::Config::default())`, with one difference.
/// Its cache keeps each object without `managedFields` (who wrote which
/// field), which no controller reads and which is about half of an object's
/// size: the cache takes about half the memory. In Go, controller-runtime's
/// cache can strip it the same way (`cache.TransformStripManagedFields`).
pub fn new<K>(api: Api<K>) -> Controller<K>
where
    K: Clone + Resource<DynamicType = ()> + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (cache, writer) = reflector::store();
    let objects = watcher(api, watcher::Config::default())
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(objects, cache)
}

/// Runs `controller` with `reconcile`, `error_policy` and `context` until
/// `shutdown` resolves: the reconciles under way then finish, and no new one
/// starts. [`RECONCILES_AT_ONCE`] objects are reconciled at a time. A broken
/// watch is opened again within a second ([`watch_backoff`]); a failed
/// reconcile is `error_policy`'s to log.
pub async fn run<K, Ctx, Fut, E>(
    controller: Controller<K>,
    reconcile: impl FnMut(Arc<K>, Arc<Ctx>) -> Fut,
    error_policy: impl Fn(Arc<K>, &E, Arc<Ctx>) -> Action,
    context: Arc<Ctx>,
    shutdown: Shutdown,
) where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Debug + Unpin + Eq + Hash + Clone,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    controller
        .with_config(controller::Config::default().concurrency(RECONCILES_AT_ONCE))
        .trigger_backoff(watch_backoff())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                // error_policy has logged it already.
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                // A child woke a parent that does not exist (deleted, or
                // never created): nothing to do.
                Err(controller::Error::ObjectNotFound(object)) => debug!(%object, "no such object"),
                // A watch that fails because the API server is away (or the
                // CRDs are gone) is told once for the whole program.
                Err(controller::Error::QueueError(err)) => match outage::of_watch_error(&err) {
                    outage::Meaning::Trouble(trouble) => outage::report(trouble, &err),
                    outage::Meaning::Forbidden(message) => outage::forbidden(&message),
                    outage::Meaning::Passing => debug!(%err, "the watch starts again"),
                    outage::Meaning::Own => warn!(%err, "a watch fails"),
                },
                Err(err) => warn!(%err, "controller error"),
            }
        })
        .await;
}
