//! What a stage does with the stream of results of its `Controller`.
//!
//! A stage builds and runs its controller with kube-runtime itself:
//!
//! ```text
//! Controller::new(numbers, watcher::Config::default())
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
//! [`report`] does the same, except that it tells an outage once for the
//! whole program instead of once per failed watch, several times a second
//! (see [`crate::outage`]). In Go, controller-runtime's manager runs the
//! controllers and logs their errors itself (`mgr.Start(ctx)`).

use std::fmt::Debug;

use kube::Resource;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{debug, warn};

use crate::outage;

/// Logs one item of a controller's stream of results: nothing for a
/// reconcile that succeeded, or failed (its `error_policy` has logged it);
/// an outage once for the whole program; anything else as it is.
pub async fn report<K, E>(result: Result<(ObjectRef<K>, Action), controller::Error<E, watcher::Error>>)
where
    K: Resource,
    K::DynamicType: Debug,
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
            outage::Meaning::Passing => debug!(%err, "the watch starts again"),
            outage::Meaning::Own => warn!(%err, "a watch fails"),
        },
        Err(err) => warn!(%err, "controller error"),
    }
}
