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

use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
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
    let objects = watch(api)
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(objects, cache)
}

/// kube-runtime's watcher of the `K`s that `api` reaches, started over
/// from a fresh list each time the stage's CRDs come back after they were
/// deleted (see [`outage`]). kube-runtime's own watcher, once listed, only
/// ever resumes its watch from the last place it saw in the kind's history,
/// and the kind whose history that was has been deleted with its objects.
pub(crate) fn watch<K>(api: Api<K>) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
{
    started_again_on(outage::crds_returned(), move || {
        watcher(api.clone(), watcher::Config::default()).boxed()
    })
}

/// The items of the stream that `start` makes, made again by `start` (the
/// old stream dropped) each time `signal` changes.
fn started_again_on<T: Send + 'static>(
    signal: tokio::sync::watch::Receiver<u64>,
    start: impl Fn() -> BoxStream<'static, T> + Send + 'static,
) -> impl Stream<Item = T> + Send + 'static {
    let first = start();
    futures::stream::unfold((first, signal, start), |(mut items, mut signal, start)| async move {
        loop {
            tokio::select! {
                item = items.next() => return item.map(|item| (item, (items, signal, start))),
                Ok(()) = signal.changed() => items = start(),
            }
        }
    })
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
    // kube-runtime 5.0 starts no reconcile before the cache has its first
    // list, and its graceful shutdown stops the watch that brings that list:
    // stopped before it came, the controller would wait for it forever
    // (tests/upstream/README.md). No reconcile can be under way then, so it
    // stops at once.
    let cache = controller.store();
    let stopped_before_the_first_list = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            // Polled once, never again: only a cache that is ready answers at once.
            if cache.wait_until_ready().now_or_never().is_none() {
                return;
            }
            futures::future::pending::<()>().await;
        }
    };
    controller
        .with_config(controller::Config::default().concurrency(RECONCILES_AT_ONCE))
        .trigger_backoff(watch_backoff())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .take_until(stopped_before_the_first_list)
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    /// Ctrl-C before the cache has its first list (under load, a second after
    /// the start): the controller stops at once instead of waiting for a list
    /// that its stopped watch will never bring.
    #[tokio::test]
    async fn a_controller_stopped_before_its_first_list_stops_at_once() {
        let (cache, _writer) = reflector::store::<ConfigMap>();
        let controller = Controller::for_stream(futures::stream::pending(), cache);
        let shutdown: Shutdown = futures::future::ready(()).boxed().shared();
        let stopped = run(
            controller,
            |_, _: Arc<()>| async { Ok::<_, Never>(Action::await_change()) },
            |_, _, _| Action::await_change(),
            Arc::new(()),
            shutdown,
        )
        .now_or_never();
        assert!(stopped.is_some(), "the controller still waits for its first list");
    }

    /// Each signal drops the stream under way and starts a new one, which
    /// is read from its first item.
    #[tokio::test]
    async fn a_signal_starts_the_stream_over() {
        let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counting = starts.clone();
        let (signal, receiver) = tokio::sync::watch::channel(0);
        let mut items = std::pin::pin!(started_again_on(receiver, move || {
            let start = counting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            futures::stream::iter([(start, "first"), (start, "second")])
                .chain(futures::stream::pending())
                .boxed()
        }));
        assert_eq!(items.next().await, Some((0, "first")));
        assert_eq!(items.next().await, Some((0, "second")));
        assert!(
            items.next().now_or_never().is_none(),
            "the stream under way has no more items"
        );
        signal.send_modify(|signals| *signals += 1);
        assert_eq!(items.next().now_or_never(), Some(Some((1, "first"))));
        assert_eq!(starts.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
