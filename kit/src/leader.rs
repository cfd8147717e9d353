//! Leader election: when several copies of a program run in one namespace,
//! only one runs the controllers.
//!
//! Two copies would both see every change and both write: every create
//! twice (one refused), every status twice. Real controllers (the ones inside
//! kube-controller-manager too) take turns through a `Lease` object in the
//! cluster. The copy named in `spec.holderIdentity` leads and renews
//! `spec.renewTime` every few seconds; the others wait. Every change to the
//! Lease goes with its `resourceVersion`, so of two copies that try at once,
//! the API server lets one win and refuses the other (409 Conflict).
//!
//! A waiting copy watches the Lease, so it takes over as soon as:
//! - the leader stops and clears the Lease (Ctrl-C);
//! - the leader was a process of this machine that no longer exists (a
//!   crash, `kill -9`, a `todo!` that stopped the run): the identity says
//!   which machine and process it was;
//! - the Lease runs out, `LEASE_SECONDS` after its last renewal (a leader on
//!   another machine that died, or lost the API server).
//!
//! In Go, controller-runtime's manager does this when it is started with
//! `LeaderElection: true` (client-go's `leaderelection` package underneath).
//! kube-runtime has no leader election. This module differs from client-go
//! in two ways that matter on a laptop: it watches the Lease instead of
//! polling it, and it takes over from a dead process of the same machine
//! without waiting for the Lease to run out.

use std::time::Duration;

use anyhow::anyhow;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::CONTROLLER_NAME;

/// The Lease that the copies of a program share, in the namespace they watch.
pub const LEASE_NAME: &str = CONTROLLER_NAME;

/// How long a leader that stopped renewing still counts as the leader.
const LEASE_SECONDS: i32 = 10;

/// The leader renews this often: 3 s before its Lease would run out, so
/// that a renewal that fails (a slow or restarting API server) can be tried
/// again in time.
const RENEW_EVERY: Duration = Duration::from_secs(7);

/// After a failed request (an outage), the next try comes this much later.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// This copy's place in the election: leading or not, as it changes.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Who this copy is in the Lease: the machine, the process id and the start
/// time, so that no two copies share it, and a copy of the same machine can
/// tell that the holder's process has gone.
#[derive(Clone, Debug, PartialEq)]
struct Identity {
    host: String,
    pid: u32,
    started: i64,
}

impl Identity {
    fn of_this_process() -> Identity {
        Identity {
            host: host_name(),
            pid: std::process::id(),
            started: Timestamp::now().as_millisecond(),
        }
    }

    fn render(&self) -> String {
        format!("{}-{}-{}", self.host, self.pid, self.started)
    }

    /// Reads `host-pid-started`; the host may itself hold dashes.
    fn parse(text: &str) -> Option<Identity> {
        let (rest, started) = text.rsplit_once('-')?;
        let (host, pid) = rest.rsplit_once('-')?;
        Some(Identity {
            host: host.to_string(),
            pid: pid.parse().ok()?,
            started: started.parse().ok()?,
        })
    }
}

/// This machine's name: `HOSTNAME` (a Pod's name, in a cluster), else the
/// kernel's. Empty when unknown: then no holder is ever taken for a local one.
fn host_name() -> String {
    if let Ok(name) = std::env::var("HOSTNAME")
        && !name.is_empty()
    {
        return name;
    }
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        return name.trim().to_string();
    }
    std::process::Command::new("hostname")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Whether process `pid` of this machine still exists (`kill -0`).
fn process_exists(pid: u32) -> bool {
    if std::path::Path::new("/proc/self").exists() {
        return std::path::Path::new(&format!("/proc/{pid}")).exists();
    }
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// What a copy may do with the Lease as it is now.
#[derive(Debug, PartialEq)]
enum Turn {
    /// This copy holds it: renew it.
    Mine,
    /// Nobody holds it, its holder's Lease ran out, or its holder was a
    /// process of this machine that has gone: take it.
    Free,
    /// Another live copy holds it until the Lease runs out, in this long.
    Theirs { holder: String, runs_out_in: Duration },
}

/// Reads the Lease's spec as `me` sees it at `now`; `alive` says whether a
/// process of this machine still exists.
fn turn(spec: Option<&LeaseSpec>, me: &Identity, now: Timestamp, alive: impl Fn(u32) -> bool) -> Turn {
    let Some(holder) = spec
        .and_then(|spec| spec.holder_identity.clone())
        .filter(|h| !h.is_empty())
    else {
        return Turn::Free;
    };
    if holder == me.render() {
        return Turn::Mine;
    }
    let held = Identity::parse(&holder);
    if let Some(held) = held
        && !me.host.is_empty()
        && held.host == me.host
        && !alive(held.pid)
    {
        return Turn::Free;
    }
    let renewed = spec.and_then(|spec| spec.renew_time.as_ref().or(spec.acquire_time.as_ref()));
    let seconds = spec
        .and_then(|spec| spec.lease_duration_seconds)
        .unwrap_or(LEASE_SECONDS);
    let Some(renewed) = renewed else {
        return Turn::Free;
    };
    let runs_out = renewed.0.as_millisecond() + i64::from(seconds) * 1000;
    let left = runs_out - now.as_millisecond();
    if left <= 0 {
        Turn::Free
    } else {
        Turn::Theirs {
            holder,
            runs_out_in: Duration::from_millis(left.unsigned_abs()),
        }
    }
}

/// Joins the election for the Lease in the client's namespace, creating the Lease if needed.
pub async fn join(client: Client) -> anyhow::Result<Leadership> {
    let namespace = client.default_namespace().to_string();
    let leases: Api<Lease> = Api::default_namespaced(client);
    match create_lease(&leases).await {
        Ok(()) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Err(anyhow!(
                "the namespace {namespace} does not exist: create it (`kubectl create namespace {namespace}`), \
                 or name another in the kubeconfig's context"
            ));
        }
        Err(err) => {
            let why = match err {
                kube::Error::Api(status) => status.message,
                err => err.to_string(),
            };
            return Err(anyhow!(
                "cannot read or create the Lease {LEASE_NAME} in namespace {namespace} (leader election): {why}"
            ));
        }
    }
    let (tell, leading) = watch::channel(false);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(elect(leases, Identity::of_this_process(), tell, stopped));
    Ok(Leadership {
        leading,
        stop: Some(stop),
        task,
    })
}

/// Creates the Lease, empty, unless it exists.
async fn create_lease(leases: &Api<Lease>) -> kube::Result<()> {
    let mut lease = Lease::default();
    lease.metadata.name = Some(LEASE_NAME.to_string());
    match leases.create(&PostParams::default(), &lease).await {
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        created => created.map(|_| ()),
    }
}

/// The Lease, created again if it is gone (its namespace was deleted and
/// made again, or someone deleted it).
async fn read_lease(leases: &Api<Lease>) -> kube::Result<Lease> {
    match leases.get(LEASE_NAME).await {
        Err(kube::Error::Api(status)) if status.code == 404 => {
            create_lease(leases).await?;
            leases.get(LEASE_NAME).await
        }
        read => read,
    }
}

/// The election, until `stopped`: take the Lease when it is free, renew it
/// while it is this copy's, watch it while it is another's.
async fn elect(leases: Api<Lease>, me: Identity, tell: watch::Sender<bool>, mut stopped: oneshot::Receiver<()>) {
    let mut told_wait = String::new();
    // When this copy last renewed its Lease: it leads until the Lease would run out.
    let mut renewed: Option<std::time::Instant> = None;
    // The last failure told: the same one again (an outage) is told once.
    let mut told_error = String::new();
    loop {
        let step = async {
            let lease = read_lease(&leases).await?;
            match turn(lease.spec.as_ref(), &me, Timestamp::now(), process_exists) {
                Turn::Mine => {
                    write(&leases, lease, &me, false).await?;
                    renewed = Some(std::time::Instant::now());
                    tell.send_replace(true);
                    tokio::time::sleep(RENEW_EVERY).await;
                }
                Turn::Free => {
                    write(&leases, lease, &me, true).await?;
                    renewed = Some(std::time::Instant::now());
                    tell.send_replace(true);
                }
                Turn::Theirs { holder, runs_out_in } => {
                    renewed = None;
                    tell.send_replace(false);
                    if told_wait != holder {
                        debug!(%holder, ?runs_out_in, "the Lease is held");
                        info!(
                            "waiting to lead: another copy holds the Lease {LEASE_NAME}; \
                             this copy takes over as soon as that one stops"
                        );
                        told_wait.clone_from(&holder);
                    }
                    // A holder of this machine is watched too: its end frees the Lease.
                    let local = Identity::parse(&holder)
                        .filter(|held| !me.host.is_empty() && held.host == me.host)
                        .map(|held| held.pid);
                    let version = lease.resource_version().unwrap_or_default();
                    tokio::select! {
                        () = until_changed(&leases, &version, runs_out_in) => {}
                        () = until_gone(local) => {}
                    }
                }
            }
            Ok::<(), kube::Error>(())
        };
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            result = step => match result {
                Ok(()) => told_error.clear(),
                // Another copy changed the Lease first: read it again.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(err) => {
                    let what = match &err {
                        kube::Error::Api(status) => status.message.clone(),
                        err => err.to_string(),
                    };
                    if let Some(trouble) = crate::outage::of_request_error(&err)
                        && trouble == crate::outage::Trouble::Unreachable
                    {
                        // The API server is away: told once for the program.
                        crate::outage::report(trouble, &err);
                    } else if told_error != what {
                        warn!("cannot read or write the Lease {LEASE_NAME} (leader election): {what}; trying again");
                        told_error = what;
                    } else {
                        debug!(%err, "the Lease could not be read or written");
                    }
                    // A leader that cannot renew stops leading before its Lease runs out.
                    let runs_out = Duration::from_secs(LEASE_SECONDS as u64) - RETRY_AFTER * 2;
                    if *tell.borrow() && renewed.is_none_or(|at| at.elapsed() >= runs_out) {
                        // During an outage the program has said why already.
                        if crate::outage::ongoing() {
                            debug!(%err, "cannot renew the Lease");
                        } else {
                            warn!("cannot renew the Lease {LEASE_NAME}: {err}");
                        }
                        tell.send_replace(false);
                    }
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    }
    if *tell.borrow() {
        clear(&leases, &me).await;
    }
    tell.send_replace(false);
}

/// Writes the Lease as `me`'s: a renewal, or (`take`) a new holder.
async fn write(leases: &Api<Lease>, lease: Lease, me: &Identity, take: bool) -> kube::Result<()> {
    let now = MicroTime(Timestamp::now());
    let mut spec = serde_json::json!({ "renewTime": now, "leaseDurationSeconds": LEASE_SECONDS });
    if take {
        let transitions = lease.spec.as_ref().and_then(|spec| spec.lease_transitions).unwrap_or(0);
        spec["holderIdentity"] = serde_json::json!(me.render());
        spec["acquireTime"] = serde_json::json!(now);
        spec["leaseTransitions"] = serde_json::json!(transitions + 1);
    }
    patch(leases, &lease, spec).await
}

/// Changes the Lease's spec, unless it changed since `lease` was read: the
/// resourceVersion in a patch is a precondition, so of two copies writing
/// at once one is refused (409).
async fn patch(leases: &Api<Lease>, lease: &Lease, spec: serde_json::Value) -> kube::Result<()> {
    let body = serde_json::json!({
        "metadata": { "resourceVersion": lease.resource_version() },
        "spec": spec,
    });
    leases
        .patch(LEASE_NAME, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(())
}

/// Clears the Lease if `me` still holds it, so that the next copy takes over at once.
async fn clear(leases: &Api<Lease>, me: &Identity) {
    let cleared = async {
        let lease = leases.get(LEASE_NAME).await?;
        let holder = lease.spec.as_ref().and_then(|spec| spec.holder_identity.as_deref());
        if holder == Some(me.render().as_str()) {
            let spec = serde_json::json!({
                "holderIdentity": null, "acquireTime": null, "renewTime": null, "leaseDurationSeconds": null,
            });
            patch(leases, &lease, spec).await?;
        }
        Ok::<(), kube::Error>(())
    };
    if let Err(err) = cleared.await {
        warn!("could not clear the Lease {LEASE_NAME}: {err}");
    }
}

/// Waits until the Lease changes after `version`, or `limit` has passed.
async fn until_changed(leases: &Api<Lease>, version: &str, limit: Duration) {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={LEASE_NAME}"))
        .timeout(limit.as_secs().clamp(1, 290) as u32);
    let changed = async {
        match leases.watch(&params, version).await {
            Ok(events) => {
                let mut events = events.boxed();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(WatchEvent::Bookmark(_)) => continue,
                        _ => return,
                    }
                }
            }
            Err(err) => {
                debug!(%err, "cannot watch the Lease");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    };
    let _ = tokio::time::timeout(limit, changed).await;
}

/// Resolves when process `pid` of this machine has gone; never for `None`.
async fn until_gone(pid: Option<u32>) {
    let Some(pid) = pid else {
        return futures::future::pending().await;
    };
    while process_exists(pid) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The election's task has ended while the program runs (it only ends when
/// asked to, so this is a bug): this copy can neither lead nor know who does.
#[derive(Debug, thiserror::Error)]
#[error("the leader election stopped: this copy cannot run the controllers; start the program again")]
pub struct ElectionEnded;

impl Leadership {
    /// Waits until this copy leads; fails if the election has ended.
    pub async fn leading(&mut self) -> Result<(), ElectionEnded> {
        // A closed channel still holds the last value: ended is ended.
        self.leading.has_changed().map_err(|_| ElectionEnded)?;
        self.leading
            .wait_for(|leading| *leading)
            .await
            .map_err(|_| ElectionEnded)?;
        info!("leading: this copy holds the Lease {LEASE_NAME}");
        Ok(())
    }

    /// Resolves when this copy no longer leads (another copy took the Lease,
    /// for example after this one could not renew it during an outage); fails
    /// if the election has ended, which is not losing the Lease.
    pub async fn lost(&mut self) -> Result<(), ElectionEnded> {
        self.leading
            .wait_for(|leading| !*leading)
            .await
            .map_err(|_| ElectionEnded)?;
        Ok(())
    }

    /// Leaves the election, clearing the Lease if this copy holds it, so that
    /// the next copy takes over at once.
    pub async fn step_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Leadership whose election task has ended, `leading` as it last said.
    fn ended(leading: bool) -> Leadership {
        let (tell, receiver) = watch::channel(leading);
        drop(tell);
        Leadership {
            leading: receiver,
            stop: None,
            task: tokio::spawn(async {}),
        }
    }

    #[tokio::test]
    async fn an_ended_election_is_neither_leading_nor_a_lost_lease() {
        assert!(ended(false).leading().await.is_err());
        assert!(ended(true).lost().await.is_err());
        assert!(ended(true).leading().await.is_err());
    }

    fn me() -> Identity {
        Identity {
            host: "laptop".to_string(),
            pid: 100,
            started: 1,
        }
    }

    fn held_by(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(LEASE_SECONDS),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn an_identity_reads_back_even_with_dashes_in_the_host() {
        let identity = Identity {
            host: "my-laptop.local".to_string(),
            pid: 4242,
            started: 1_764_000_000_000,
        };
        assert_eq!(Identity::parse(&identity.render()), Some(identity));
        assert_eq!(Identity::parse("no-numbers"), None);
    }

    #[test]
    fn an_empty_or_cleared_lease_is_free() {
        let now = Timestamp::now();
        assert_eq!(turn(None, &me(), now, |_| true), Turn::Free);
        assert_eq!(turn(Some(&LeaseSpec::default()), &me(), now, |_| true), Turn::Free);
    }

    #[test]
    fn a_live_holder_keeps_the_lease_until_it_runs_out() {
        let now = Timestamp::now();
        let spec = held_by("laptop-200-5", now);
        match turn(Some(&spec), &me(), now, |_| true) {
            Turn::Theirs { holder, runs_out_in } => {
                assert_eq!(holder, "laptop-200-5");
                assert_eq!(runs_out_in, Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        let later = now + std::time::Duration::from_secs(11);
        assert_eq!(turn(Some(&spec), &me(), later, |_| true), Turn::Free);
    }

    #[test]
    fn a_dead_process_of_this_machine_is_taken_over_at_once() {
        let now = Timestamp::now();
        let spec = held_by("laptop-200-5", now);
        assert_eq!(turn(Some(&spec), &me(), now, |pid| pid != 200), Turn::Free);
    }

    #[test]
    fn a_holder_of_another_machine_is_never_judged_by_local_processes() {
        let now = Timestamp::now();
        let spec = held_by("server-200-5", now);
        assert!(matches!(turn(Some(&spec), &me(), now, |_| false), Turn::Theirs { .. }));
        let unknown_host = Identity {
            host: String::new(),
            ..me()
        };
        let spec = held_by("-200-5", now);
        assert!(matches!(
            turn(Some(&spec), &unknown_host, now, |_| false),
            Turn::Theirs { .. }
        ));
    }

    #[test]
    fn this_copy_sees_its_own_lease() {
        let now = Timestamp::now();
        let spec = held_by(&me().render(), now);
        assert_eq!(turn(Some(&spec), &me(), now, |_| true), Turn::Mine);
    }
}
