//! An outage told in two lines: one when the API server stops answering (or
//! the stage's CRDs are gone), one when it is back, with how long it was
//! away. In between, every watch and request keeps failing and retrying by
//! itself, several times a second: those failures go to debug level
//! (`RUST_LOG=debug` shows them), so that they do not bury what matters.
//!
//! Controllers built on client-go log the same failures over and over; the
//! kit keeps one account of the trouble for the whole program, and a probe
//! that asks the API server once a second whether it is over.

use std::fmt::Display;
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::watcher;
use tracing::{debug, error, info, warn};

/// What is wrong, as far as every controller of the program is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The API server does not answer, or answers with server errors (its
    /// storage, etcd, is down).
    Unreachable,
    /// The API server no longer serves the stage's kinds: their CRDs were
    /// deleted (`cargo xtask reset`, or by hand).
    CrdsGone,
}

/// What a watch's error means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Meaning {
    /// Trouble of the whole program.
    Trouble(Trouble),
    /// The program may not list or watch a kind (403 Forbidden): the API
    /// server's message names the verb, the resource and the identity.
    Forbidden(String),
    /// A hiccup the watch gets over by itself: said at debug level.
    Passing,
    /// Something else, to tell as it is.
    Own,
}

/// What a watch's error means (see [`Meaning`]).
pub fn of_watch_error(error: &watcher::Error) -> Meaning {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            if status.code == 403 =>
        {
            Meaning::Forbidden(status.message.clone())
        }
        watcher::Error::InitialListFailed(error)
        | watcher::Error::WatchStartFailed(error)
        | watcher::Error::WatchFailed(error) => of_request_error(error).map_or(Meaning::Own, Meaning::Trouble),
        // 410 Gone: the watch's place in history expired (after many
        // changes, or a reset); the watcher lists again by itself.
        watcher::Error::WatchError(status) if status.code == 410 => Meaning::Passing,
        watcher::Error::WatchError(status) if status.code == 404 => Meaning::Trouble(Trouble::CrdsGone),
        watcher::Error::WatchError(status) if status.code >= 500 => Meaning::Trouble(Trouble::Unreachable),
        _ => Meaning::Own,
    }
}

/// What a failed request means: no answer (refused, reset, timed out), a
/// server error or 429 Too Many Requests is [`Trouble::Unreachable`]; a 404
/// on a list or watch is [`Trouble::CrdsGone`]; anything else (`None`) is
/// the request's own: an answer that does not decode, refused credentials,
/// a forbidden verb. Those do not end when the API server comes back, and
/// an outage line would say that they will.
pub fn of_request_error(error: &kube::Error) -> Option<Trouble> {
    match error {
        kube::Error::Api(status) if status.code == 404 => Some(Trouble::CrdsGone),
        kube::Error::Api(status) if status.code >= 500 || status.code == 429 => Some(Trouble::Unreachable),
        kube::Error::Api(_) => None,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => Some(Trouble::Unreachable),
        _ => None,
    }
}

/// The refusals told so far, so that each is told once.
static FORBIDDEN_TOLD: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Tells, once for each `message`, that the API server forbids the program
/// to list or watch a kind: its reconciles wait for that list, so nothing
/// happens until the permission is granted.
pub fn forbidden(message: &str) {
    let Ok(mut told) = FORBIDDEN_TOLD.lock() else {
        return;
    };
    if told.iter().any(|seen| seen == message) {
        debug!(message, "still forbidden");
        return;
    }
    told.push(message.to_string());
    error!(
        "{message}: the controllers wait for this list and do nothing until it is allowed; grant the verb in the \
         program's Role (deploy/rbac.yaml lists what the finished controller needs)"
    );
}

/// The program's account of its trouble.
struct Watch {
    client: Client,
    /// Resolves to `Ok` when the stage's CRDs are all served again.
    crds_served: Box<dyn Fn(Client) -> futures::future::BoxFuture<'static, bool> + Send + Sync>,
    /// How to install the CRDs, for the line that says they are gone.
    install: String,
    since: Mutex<Option<(Trouble, Instant)>>,
}

static WATCH: OnceLock<Watch> = OnceLock::new();

/// How many troubles have ended. The stage then starts its controllers over
/// ([`crate::Stage`]), so that every watch lists afresh at once:
///
/// - after an outage, kube-runtime's watcher waits up to 30 s between two
///   attempts (its default backoff), and a restarted API server refuses
///   each old watch once (410 Gone) before it lists again;
/// - after the CRDs came back, every object of theirs went with them, and
///   a watch must not resume from its place in the history of the kinds
///   that were deleted: a cache must not keep an object that is gone.
static TROUBLES_OVER: LazyLock<tokio::sync::watch::Sender<u64>> = LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Changes each time a trouble ends.
pub(crate) fn troubles_over() -> tokio::sync::watch::Receiver<u64> {
    TROUBLES_OVER.subscribe()
}

/// Starts the account, for the program's client. `crds_served` tells
/// whether the stage's CRDs are all served; `install` is the command that
/// installs them.
pub(crate) fn watch_over(
    client: Client,
    crds_served: impl Fn(Client) -> futures::future::BoxFuture<'static, bool> + Send + Sync + 'static,
    install: String,
) {
    let _ = WATCH.set(Watch {
        client,
        crds_served: Box::new(crds_served),
        install,
        since: Mutex::new(None),
    });
}

/// Whether the program is in trouble now.
pub fn ongoing() -> bool {
    WATCH
        .get()
        .is_some_and(|watch| watch.since.lock().is_ok_and(|since| since.is_some()))
}

/// Tells `trouble`, met with `error`: once when it starts (then a probe
/// waits for its end), at debug level while it lasts.
pub fn report(trouble: Trouble, error: &dyn Display) {
    let Some(watch) = WATCH.get() else {
        // No program around (a test): say it as it comes.
        warn!(%error, ?trouble, "the API server cannot be used");
        return;
    };
    {
        let Ok(mut since) = watch.since.lock() else {
            return;
        };
        if since.is_some() {
            debug!(%error, ?trouble, "still failing");
            return;
        }
        *since = Some((trouble, Instant::now()));
    }
    tell_start(trouble, &format!(" ({error})"), &watch.install);
    tokio::spawn(probe(watch));
}

/// The line that tells `trouble` has started; `cause` is empty or " (the error)".
fn tell_start(trouble: Trouble, cause: &str, install: &str) {
    match trouble {
        Trouble::Unreachable => warn!(
            "the API server is out of reach or failing{cause}: the controllers wait, and go on by themselves \
             when it is back (RUST_LOG=debug shows every failed request)"
        ),
        Trouble::CrdsGone => warn!(
            "the API server no longer serves this stage's kinds (their CRDs were deleted?): the controllers wait \
             until they are installed again with `{install}`"
        ),
    }
}

/// Whether the API server says it is ready: `/readyz` checks its storage
/// (etcd) too, where `/version` answers without it. Every identity may ask
/// (the `system:public-info-viewer` ClusterRole).
async fn ready(client: &Client) -> bool {
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    client.request_text(request).await.is_ok()
}

/// Asks once a second whether the trouble is over; tells it when it is.
async fn probe(watch: &'static Watch) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some((trouble, started)) = watch.since.lock().ok().and_then(|since| *since) else {
            return;
        };
        let answers = ready(&watch.client).await;
        let served = answers && (watch.crds_served)(watch.client.clone()).await;
        let now = match (answers, served) {
            (false, _) => Some(Trouble::Unreachable),
            (true, false) => Some(Trouble::CrdsGone),
            (true, true) => None,
        };
        let away = started.elapsed().as_secs_f64();
        match now {
            None => {
                if let Ok(mut since) = watch.since.lock() {
                    *since = None;
                }
                match trouble {
                    Trouble::Unreachable => info!("the API server answers again, after {away:.0} s"),
                    Trouble::CrdsGone => info!("this stage's kinds are served again, after {away:.0} s"),
                }
                TROUBLES_OVER.send_modify(|over| *over += 1);
                return;
            }
            // Back, but without the CRDs (or the other way round): a new trouble.
            Some(now) if now != trouble => {
                if trouble == Trouble::Unreachable {
                    info!("the API server answers again, after {away:.0} s");
                }
                if let Ok(mut since) = watch.since.lock() {
                    *since = Some((now, Instant::now()));
                }
                tell_start(now, "", &watch.install);
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::core::Status {
        kube::core::Status {
            code,
            ..Default::default()
        }
    }

    #[test]
    fn no_answer_and_server_errors_are_an_outage_and_404_is_crds_gone() {
        let refused = kube::Error::Service("client error (Connect)".into());
        assert_eq!(of_request_error(&refused), Some(Trouble::Unreachable));
        assert_eq!(
            of_request_error(&kube::Error::Api(Box::new(status(503)))),
            Some(Trouble::Unreachable)
        );
        assert_eq!(
            of_request_error(&kube::Error::Api(Box::new(status(404)))),
            Some(Trouble::CrdsGone)
        );
        assert_eq!(of_request_error(&kube::Error::Api(Box::new(status(403)))), None);
        assert_eq!(
            of_request_error(&kube::Error::Api(Box::new(status(429)))),
            Some(Trouble::Unreachable)
        );
    }

    #[test]
    fn an_answer_that_does_not_decode_is_no_outage() {
        let undecodable = serde_json::from_str::<i64>("\"not a number\"").unwrap_err();
        assert_eq!(of_request_error(&kube::Error::SerdeError(undecodable)), None);
        assert_eq!(of_request_error(&kube::Error::Api(Box::new(status(401)))), None);
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            of_request_error(&kube::Error::ReadEvents(reset)),
            Some(Trouble::Unreachable)
        );
    }

    #[test]
    fn an_expired_watch_is_no_trouble_and_a_forbidden_list_names_what_is_missing() {
        assert_eq!(
            of_watch_error(&watcher::Error::WatchError(Box::new(status(410)))),
            Meaning::Passing
        );
        assert_eq!(
            of_watch_error(&watcher::Error::WatchError(Box::new(status(404)))),
            Meaning::Trouble(Trouble::CrdsGone)
        );
        let mut refused = status(403);
        refused.message = "numbers is forbidden: User \"x\" cannot list resource \"numbers\"".to_string();
        let forbidden = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(refused.clone())));
        assert_eq!(of_watch_error(&forbidden), Meaning::Forbidden(refused.message));
        assert_eq!(of_watch_error(&watcher::Error::NoResourceVersion), Meaning::Own);
    }
}
