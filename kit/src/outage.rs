//! An outage told in two lines: one when the API server stops answering (or
//! the stage's CRDs are gone), one when it is back, with how long it was
//! away. In between, every watch and request keeps failing and retrying by
//! itself, several times a second: those failures go to debug level
//! (`RUST_LOG=debug` shows them), so that they do not bury what matters.
//!
//! Controllers built on client-go log the same failures over and over; the
//! kit keeps one account of the trouble for each stage program (an
//! [`Account`], which [`crate::Stage`] owns and hands down), and a probe
//! that asks the API server once a second (`/readyz`) whether it is over.
//!
//! Only no answer (refused, reset, timed out), a server error or 429 Too
//! Many Requests count as the API server out of reach. What does not end
//! when the API server comes back is told once, as what it is: a stored
//! object that this program cannot read (named, with the fix), refused
//! credentials (401), a forbidden list (403).

use std::fmt::Display;
use std::sync::{Arc, Mutex};
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
    /// The API server no longer accepts the program's credentials (401
    /// Unauthorized): an expired token or certificate.
    Unauthorized,
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
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
            if status.code == 401 =>
        {
            Meaning::Unauthorized
        }
        watcher::Error::WatchError(status) if status.code == 401 => Meaning::Unauthorized,
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
        // Refused inside the program: this copy no longer leads.
        kube::Error::Service(error) if error.is::<crate::leader::NotLeading>() => None,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => Some(Trouble::Unreachable),
        _ => None,
    }
}

/// Tells, once for each `message`, that the API server forbids the program
/// to list or watch a kind: its reconciles wait for that list, so nothing
/// happens until the permission is granted.
pub fn forbidden(message: &str) {
    let Ok(account) = ACCOUNT.try_with(Account::clone) else {
        error!("{message}");
        return;
    };
    if !account.first_time(message) {
        debug!(message, "still forbidden");
        return;
    }
    error!(
        "{message}: the controllers wait for this list and do nothing until it is allowed; grant the verb in the \
         program's Role (deploy/rbac.yaml lists what the finished controller needs)"
    );
}

/// Tells, once, that the API server no longer accepts the program's
/// credentials: nothing works until they are renewed.
pub fn unauthorized() {
    if account().is_some_and(|account| !account.first_time("401 Unauthorized")) {
        return debug!("still unauthorized");
    }
    error!(
        "the API server no longer accepts this program's credentials (401 Unauthorized: an expired token or \
         certificate?): the controllers wait; renew the kubeconfig's credentials (log in again), then restart the program"
    );
}

/// Tells `trouble`, met with `error`: once when it starts (then a probe
/// waits for its end), at debug level while it lasts. Outside a stage's
/// controllers (a test), it is said as it comes.
pub fn report(trouble: Trouble, error: &dyn Display) {
    report_to(account().as_ref(), trouble, error);
}

/// [`report`] to `account`, which a reconcile took when its controller was
/// built (it runs in a task of its own, outside the stage's scope).
pub(crate) fn report_to(account: Option<&Account>, trouble: Trouble, error: &dyn Display) {
    match account {
        Some(account) => account.report(trouble, error),
        None => warn!(%error, ?trouble, "the API server cannot be used"),
    }
}

/// The account of the stage whose controllers call this, if any.
pub(crate) fn account() -> Option<Account> {
    ACCOUNT.try_with(Account::clone).ok()
}

tokio::task_local! {
    /// The account of the stage whose controllers run in this task
    /// ([`Account::scope`]): `report` and `forbidden`, called from a
    /// controller's stream, find it here. Not a process-wide value: two
    /// stages in one program keep two accounts. kube-runtime runs each
    /// reconcile in a task of its own, which does not see it: what a
    /// reconcile needs is taken when the controller is built
    /// ([`crate::Children`] does).
    static ACCOUNT: Account;
}

/// One stage program's account of its trouble; clones share it.
#[derive(Clone)]
pub(crate) struct Account(Arc<Shared>);

struct Shared {
    client: Client,
    /// Resolves to `true` when the stage's CRDs are all served again.
    crds_served: Box<dyn Fn(Client) -> futures::future::BoxFuture<'static, bool> + Send + Sync>,
    /// How to install the CRDs, for the line that says they are gone.
    install: String,
    since: Mutex<Option<(Trouble, Instant)>>,
    /// The refusals and the unreadable objects told so far, so that each is told once.
    told: Mutex<Vec<String>>,
    /// How many troubles have ended. The stage then starts its controllers
    /// over ([`crate::Stage`]), so that every watch lists afresh at once:
    ///
    /// - after an outage, kube-runtime's watcher waits up to 30 s between
    ///   two attempts (its default backoff), and a restarted API server
    ///   refuses each old watch once (410 Gone) before it lists again;
    /// - after the CRDs came back, every object of theirs went with them,
    ///   and a watch must not resume from its place in the history of the
    ///   kinds that were deleted: a cache must not keep an object that is gone.
    troubles_over: tokio::sync::watch::Sender<u64>,
}

impl Account {
    /// The account of a stage program that uses `client`. `crds_served`
    /// tells whether the stage's CRDs are all served; `install` is the
    /// command that installs them.
    pub(crate) fn new(
        client: Client,
        crds_served: impl Fn(Client) -> futures::future::BoxFuture<'static, bool> + Send + Sync + 'static,
        install: String,
    ) -> Account {
        Account(Arc::new(Shared {
            client,
            crds_served: Box::new(crds_served),
            install,
            since: Mutex::new(None),
            told: Mutex::new(Vec::new()),
            troubles_over: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// Runs `controllers` with this account as theirs.
    pub(crate) async fn scope<F: std::future::Future>(&self, controllers: F) -> F::Output {
        ACCOUNT.scope(self.clone(), controllers).await
    }

    /// The client of the stage's program.
    pub(crate) fn client(&self) -> Client {
        self.0.client.clone()
    }

    /// Changes each time a trouble ends.
    pub(crate) fn troubles_over(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.troubles_over.subscribe()
    }

    /// Whether the program is in trouble now.
    pub(crate) fn ongoing(&self) -> bool {
        self.0.since.lock().is_ok_and(|since| since.is_some())
    }

    /// Whether `text` is told for the first time.
    pub(crate) fn first_time(&self, text: &str) -> bool {
        let Ok(mut told) = self.0.told.lock() else {
            return false;
        };
        if told.iter().any(|seen| seen == text) {
            return false;
        }
        told.push(text.to_string());
        true
    }

    /// See [`report`].
    pub(crate) fn report(&self, trouble: Trouble, error: &dyn Display) {
        {
            let Ok(mut since) = self.0.since.lock() else {
                return;
            };
            if since.is_some() {
                debug!(%error, ?trouble, "still failing");
                return;
            }
            *since = Some((trouble, Instant::now()));
        }
        tell_start(trouble, &format!(" ({error})"), &self.0.install);
        tokio::spawn(self.clone().probe());
    }

    /// Asks once a second whether the trouble is over; tells it when it is.
    async fn probe(self) {
        let shared = &self.0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some((trouble, started)) = shared.since.lock().ok().and_then(|since| *since) else {
                return;
            };
            let answers = ready(&shared.client).await;
            let served = answers && (shared.crds_served)(shared.client.clone()).await;
            let now = match (answers, served) {
                (false, _) => Some(Trouble::Unreachable),
                (true, false) => Some(Trouble::CrdsGone),
                (true, true) => None,
            };
            let away = started.elapsed().as_secs_f64();
            match now {
                None => {
                    if let Ok(mut since) = shared.since.lock() {
                        *since = None;
                    }
                    match trouble {
                        Trouble::Unreachable => info!("the API server answers again, after {away:.0} s"),
                        Trouble::CrdsGone => info!("this stage's kinds are served again, after {away:.0} s"),
                    }
                    shared.troubles_over.send_modify(|over| *over += 1);
                    return;
                }
                // Back, but without the CRDs (or the other way round): a new trouble.
                Some(now) if now != trouble => {
                    if trouble == Trouble::Unreachable {
                        info!("the API server answers again, after {away:.0} s");
                    }
                    if let Ok(mut since) = shared.since.lock() {
                        *since = Some((now, Instant::now()));
                    }
                    tell_start(now, "", &shared.install);
                }
                Some(_) => {}
            }
        }
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use futures::FutureExt;

    /// An account for a program whose CRDs are always served.
    pub(crate) fn account(client: &Client) -> Account {
        Account::new(client.clone(), |_| async { true }.boxed(), "install".to_string())
    }

    #[tokio::test]
    async fn two_stages_in_one_program_keep_two_accounts() {
        let client = crate::children::tests::unused_client();
        let (first, second) = (account(&client), account(&client));
        first
            .scope(async {
                assert!(super::account().is_some_and(|account| !account.ongoing()));
                report(Trouble::CrdsGone, &"the CRDs are gone");
                assert!(super::account().is_some_and(|account| account.ongoing()));
            })
            .await;
        assert!(first.ongoing());
        assert!(!second.ongoing());
        second
            .scope(async { assert!(super::account().is_some_and(|account| !account.ongoing())) })
            .await;
        // Outside any stage's controllers: no account, nothing kept.
        assert!(super::account().is_none());
        assert!(first.first_time("numbers is forbidden"));
        assert!(!first.first_time("numbers is forbidden"));
        assert!(second.first_time("numbers is forbidden"));
    }

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
        let expired = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status(401))));
        assert_eq!(of_watch_error(&expired), Meaning::Unauthorized);
    }
}
