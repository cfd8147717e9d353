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
//! - the Lease runs out: [`LEASE_DURATION`] after this copy last saw it
//!   change (a leader on another machine that died, was stopped, or lost
//!   the API server).
//!
//! In Go, controller-runtime's manager does this when it is started with
//! `LeaderElection: true` (client-go's `leaderelection` package underneath).
//! kube-runtime has no leader election.
//!
//! # What it guarantees, next to client-go
//!
//! | | client-go `leaderelection` (controller-runtime's defaults) | here |
//! |---|---|---|
//! | Lease duration: how long a silent leader is waited for | 15 s | [`LEASE_DURATION`], 10 s |
//! | Renew deadline: a leader that has not renewed for this long stops leading | 10 s | [`RENEW_DEADLINE`], 7 s, from the start of its last successful renewal, on the monotonic clock and on the wall clock, whichever ends it first |
//! | Retry period: how often the leader renews, and a follower tries | 2 s | [`RETRY_PERIOD`], 2 s (a follower watches the Lease instead of trying) |
//! | Each Lease request has a time limit | the renew deadline bounds every try | [`REQUEST_TIMEOUT`], 2 s, for a renewal, [`ACQUIRE_TIMEOUT`], 5 s, for the others; a request that timed out is tried again at once |
//! | Expiry judged by | when the follower itself saw the Lease last change | the same: the holder's `renewTime` is never compared with this copy's clock, so a clock set wrong on either side does no harm |
//! | The election's requests | share the manager's client and its rate limit | a client of their own: they never wait behind the controllers' [`REQUESTS_AT_ONCE`](crate::stage::REQUESTS_AT_ONCE) |
//! | A leader that stopped leading | the manager exits | the controllers stop, and the copy runs for the Lease again |
//! | Writes after the renew deadline | may still be sent by controllers that have not stopped yet | refused inside the program before they are sent ([`Fence`]): only writes already on the wire can reach the API server |
//! | A dead holder on the same machine | waited out | taken over at once, when the identity proves the same machine (boot) and the same process namespace, and that process has gone |
//!
//! Two copies therefore never lead at once, provided that the two machines'
//! clocks run at about the same rate (not that they agree): a leader stops
//! at most 7 s after the start of its last renewal, and a follower waits at
//! least 10 s after it saw that renewal, which was after its start. The
//! 3 s between them are for the controllers to stop, and for clocks that run
//! at different rates.
//!
//! # What it does not guarantee
//!
//! - **Writes already sent.** A write that left the program before its
//!   deadline may reach the API server after it, even after another copy
//!   took the Lease (a request held up in the network). client-go has the
//!   same gap. Nothing here needs more: every write is idempotent (a create
//!   that exists is refused, a server-side apply of the same spec changes
//!   nothing, a delete carries the uid it means), so a late write of the old
//!   leader is at worst undone by the new one.
//! - **A machine suspended in the middle of a write.** Its monotonic clock
//!   stops during the suspension; the wall clock closes the fence on waking
//!   unless someone set it back meanwhile. Then the next renewal (at most
//!   [`RETRY_PERIOD`] later) finds the Lease taken.
//! - **Clocks that run at very different rates**, 30% apart or more, which
//!   no working machine has.
//! - **Reads.** A copy that does not lead keeps its caches and may read;
//!   only what it would change is fenced.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::CONTROLLER_NAME;
use crate::outage::Account;

/// The Lease that the copies of a program share, in the namespace they watch.
pub const LEASE_NAME: &str = CONTROLLER_NAME;

/// How long a follower waits, from when it last saw the Lease change, before
/// it takes a Lease that nobody renews.
pub const LEASE_DURATION: Duration = Duration::from_secs(10);

/// A leader that has not renewed its Lease for this long, from the start of
/// its last successful renewal, stops leading: well before any follower
/// can take the Lease ([`LEASE_DURATION`] after it saw that renewal).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(7);

/// The leader renews this often, and a failed request is tried again this
/// much later: three tries fit in the renew deadline.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The longest a renewal may take; a request that times out is tried
/// again at once, on a new connection. kube's client sets no time limit on
/// its own: a request on a connection that died without a word (a laptop
/// that changed networks, a NAT that forgot the flow) would wait for ever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest any other request about the Lease may take (a read, or
/// taking the Lease): long enough for an API server that answers slowly,
/// as one does for a few seconds after its etcd came back. Safety does not
/// depend on it: a Lease taken by a slow request leads until
/// [`RENEW_DEADLINE`] after the request started.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// This copy's place in the election: leading or not, as it changes.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Until when this copy may write: the end of its renew deadline while it
/// leads, nothing otherwise. The controllers' client asks it before each
/// write it sends ([`Fence::layer`]), so that a copy whose deadline passed
/// while it was stopped (SIGSTOP, a laptop asleep) or busy writes nothing
/// more, even before its controllers are told to stop.
#[derive(Clone, Default)]
pub struct Fence(Arc<Mutex<Option<Deadline>>>);

/// The end of a renew deadline on two clocks. The monotonic clock cannot be
/// set, but on Linux and macOS it stops while the machine is suspended
/// (a laptop's lid closed); the wall clock goes on then, but can be set.
/// The deadline has passed when either says so.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Deadline {
    monotonic: Instant,
    wall: std::time::SystemTime,
}

impl Deadline {
    /// [`RENEW_DEADLINE`] after a renewal that started at `started` (and `started_wall`).
    fn after(started: Instant, started_wall: std::time::SystemTime) -> Deadline {
        Deadline {
            monotonic: started + RENEW_DEADLINE,
            wall: started_wall + RENEW_DEADLINE,
        }
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.monotonic || std::time::SystemTime::now() >= self.wall
    }
}

impl Fence {
    /// Whether this copy may write now.
    pub fn open(&self) -> bool {
        self.until().is_some_and(|until| !until.passed())
    }

    /// Resolves when the renew deadline passes without a renewal; never
    /// while this copy does not lead. It looks every second at least: the
    /// monotonic clock's timers do not see a suspended machine's time.
    async fn lapsed(&self) {
        loop {
            let Some(until) = self.until() else {
                return futures::future::pending().await;
            };
            tokio::time::sleep_until(until.monotonic.min(Instant::now() + Duration::from_secs(1))).await;
            // Renewed meanwhile: a later deadline.
            if until.passed() && self.until() == Some(until) {
                return;
            }
        }
    }

    fn until(&self) -> Option<Deadline> {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, until: Option<Deadline>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = until;
    }

    /// The layer of the controllers' client that refuses every request but
    /// a read ([`NotLeading`]) while the fence is closed.
    pub fn layer(&self) -> FenceLayer {
        FenceLayer(self.clone())
    }
}

/// See [`Fence::layer`].
#[derive(Clone)]
pub struct FenceLayer(Fence);

impl<S> tower::Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

/// A service that sends a write only while this copy leads.
#[derive(Clone)]
pub struct Fenced<S> {
    inner: S,
    fence: Fence,
}

impl<S, B> tower::Service<http::Request<B>> for Fenced<S>
where
    S: tower::Service<http::Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, tower::BoxError>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let reads = [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS];
        if !reads.contains(request.method()) && !self.fence.open() {
            return Box::pin(futures::future::ready(Err(NotLeading.into())));
        }
        let sent = self.inner.call(request);
        Box::pin(async move { sent.await.map_err(Into::into) })
    }
}

/// A write refused inside the program: this copy does not lead (any more).
#[derive(Debug, thiserror::Error)]
#[error("not sent: this copy no longer leads (its Lease was not renewed in time)")]
pub struct NotLeading;

/// Who this copy is in the Lease: the machine, the process id and the start
/// time, so that no two copies share it, and a copy of the same machine can
/// tell that the holder's process has gone.
#[derive(Clone, Debug, PartialEq)]
struct Identity {
    host: String,
    /// Which machine and process namespace: a hash of the boot's id and
    /// the process namespace, where they can be read; empty elsewhere. Two
    /// copies with the same `machine` can see each other's processes.
    machine: String,
    pid: u32,
    started: i64,
}

impl Identity {
    fn of_this_process(wall: &WallClock) -> Identity {
        Identity {
            host: host_name(),
            machine: machine(),
            pid: std::process::id(),
            started: wall.now().as_millisecond(),
        }
    }

    /// `host@machine-pid-started`, or `host-pid-started` if the machine is unknown.
    fn render(&self) -> String {
        match self.machine.as_str() {
            "" => format!("{}-{}-{}", self.host, self.pid, self.started),
            machine => format!("{}@{machine}-{}-{}", self.host, self.pid, self.started),
        }
    }

    /// Reads what [`Identity::render`] writes; the host may itself hold dashes.
    fn parse(text: &str) -> Option<Identity> {
        let (rest, started) = text.rsplit_once('-')?;
        let (host, pid) = rest.rsplit_once('-')?;
        let (host, machine) = match host.rsplit_once('@') {
            Some((host, machine)) if machine.len() == 16 && machine.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (host, machine)
            }
            _ => (host, ""),
        };
        Some(Identity {
            host: host.to_string(),
            machine: machine.to_string(),
            pid: pid.parse().ok()?,
            started: started.parse().ok()?,
        })
    }

    /// Whether `other`'s process ids name processes that this copy can see:
    /// the same boot of the same machine, and the same process namespace.
    /// A host name proves nothing: two laptops, or two Pods of a
    /// StatefulSet on two nodes, may share one.
    fn sees_processes_of(&self, other: &Identity) -> bool {
        !self.machine.is_empty() && self.machine == other.machine
    }
}

/// This machine's name: `HOSTNAME` (a Pod's name, in a cluster), else the
/// kernel's; for people reading the Lease.
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

/// What proves that two copies see the same processes, hashed to 16 hex
/// digits: on Linux the boot id and the process namespace, on macOS the
/// boot session. Empty where neither can be read.
fn machine() -> String {
    let linux = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .zip(std::fs::read_link("/proc/self/ns/pid").ok())
        .map(|(boot, namespace)| format!("{}{}", boot.trim(), namespace.display()));
    let proof = linux.or_else(|| {
        std::process::Command::new("sysctl")
            .args(["-n", "kern.bootsessionuuid"])
            .output()
            .ok()
            .filter(|output| output.status.success() && !output.stdout.trim_ascii().is_empty())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
    });
    proof.map_or_else(String::new, |proof| format!("{:016x}", fnv1a(proof.as_bytes())))
}

/// The 64-bit FNV-1a hash: the same in every build, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
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

/// The wall clock that the election writes in the Lease (`renewTime`,
/// `acquireTime`), for people and tools that read it; the election itself
/// never compares it with anything. `MATH_CONTROLLER_CLOCK_AHEAD_SECONDS`
/// sets it ahead, to test that (a clock set wrong does no harm).
#[derive(Clone, Copy, Default)]
struct WallClock {
    ahead: Duration,
}

impl WallClock {
    fn from_env() -> WallClock {
        let ahead = std::env::var("MATH_CONTROLLER_CLOCK_AHEAD_SECONDS")
            .ok()
            .and_then(|seconds| seconds.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        WallClock { ahead }
    }

    fn now(&self) -> Timestamp {
        Timestamp::now() + self.ahead
    }
}

/// What a copy may do with the Lease as it is now.
#[derive(Debug, PartialEq)]
enum Turn {
    /// This copy holds it: renew it.
    Mine,
    /// Nobody holds it, it ran out, or its holder was a process of this
    /// machine that has gone: take it.
    Free,
    /// Another copy holds it, until it runs out in this long if it is not renewed.
    Theirs { holder: String, runs_out_in: Duration },
}

/// Reads the Lease's spec as `me` sees it, `unchanged_for` after this copy
/// last saw it change; `alive` says whether a process of this machine
/// still exists.
fn turn(spec: Option<&LeaseSpec>, me: &Identity, unchanged_for: Duration, alive: impl Fn(u32) -> bool) -> Turn {
    let Some(holder) = spec
        .and_then(|spec| spec.holder_identity.clone())
        .filter(|h| !h.is_empty())
    else {
        return Turn::Free;
    };
    if holder == me.render() {
        return Turn::Mine;
    }
    if let Some(held) = Identity::parse(&holder)
        && me.sees_processes_of(&held)
        && !alive(held.pid)
    {
        return Turn::Free;
    }
    let duration = spec
        .and_then(|spec| spec.lease_duration_seconds)
        .and_then(|seconds| u64::try_from(seconds).ok())
        .map_or(LEASE_DURATION, Duration::from_secs);
    match duration.checked_sub(unchanged_for) {
        Some(left) if !left.is_zero() => Turn::Theirs {
            holder,
            runs_out_in: left,
        },
        _ => Turn::Free,
    }
}

/// Joins the election for the Lease in the client's namespace, creating the
/// Lease if needed. `client` is the election's own (no limit shared with the
/// controllers); `fence` is opened while this copy leads; `account` is told
/// when the API server is out of reach.
pub(crate) async fn join(client: Client, fence: Fence, account: Account) -> anyhow::Result<Leadership> {
    let namespace = client.default_namespace().to_string();
    let leases: Api<Lease> = Api::default_namespaced(client);
    match timed(ACQUIRE_TIMEOUT, create_lease(&leases)).await {
        Ok(()) => {}
        Err(Failure::Refused(kube::Error::Api(status))) if status.code == 404 => {
            return Err(anyhow!(
                "the namespace {namespace} does not exist: create it (`kubectl create namespace {namespace}`), \
                 or name another in the kubeconfig's context"
            ));
        }
        Err(failure) => {
            return Err(anyhow!(
                "cannot read or create the Lease {LEASE_NAME} in namespace {namespace} (leader election): {failure}"
            ));
        }
    }
    let (tell, leading) = watch::channel(false);
    let (stop, stopped) = oneshot::channel();
    let wall = WallClock::from_env();
    let election = Election {
        leases,
        me: Identity::of_this_process(&wall),
        wall,
        fence,
        account,
        tell,
        lease: None,
        seen: None,
        retry_at: None,
        told_wait: String::new(),
        told_error: String::new(),
    };
    let task = tokio::spawn(election.run(stopped));
    Ok(Leadership {
        leading,
        stop: Some(stop),
        task,
    })
}

/// Why a request about the Lease failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{}", match .0 { kube::Error::Api(status) => status.message.clone(), err => err.to_string() })]
    Refused(kube::Error),
    #[error("no answer within {} s", .0.as_secs())]
    TimedOut(Duration),
}

/// `request`, failed if it takes longer than `limit`.
async fn timed<T>(limit: Duration, request: impl Future<Output = kube::Result<T>>) -> Result<T, Failure> {
    match tokio::time::timeout(limit, request).await {
        Ok(answer) => answer.map_err(Failure::Refused),
        Err(_) => Err(Failure::TimedOut(limit)),
    }
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
async fn read_lease(leases: &Api<Lease>) -> Result<Lease, Failure> {
    match timed(ACQUIRE_TIMEOUT, leases.get(LEASE_NAME)).await {
        Err(Failure::Refused(kube::Error::Api(status))) if status.code == 404 => {
            timed(ACQUIRE_TIMEOUT, create_lease(leases)).await?;
            timed(ACQUIRE_TIMEOUT, leases.get(LEASE_NAME)).await
        }
        read => read,
    }
}

/// One copy's part in the election.
struct Election {
    leases: Api<Lease>,
    me: Identity,
    wall: WallClock,
    fence: Fence,
    account: Account,
    tell: watch::Sender<bool>,
    /// The Lease as this copy last wrote it, while it leads: the next
    /// renewal needs no read.
    lease: Option<Lease>,
    /// The Lease's spec as this copy last saw it change, and when.
    seen: Option<(Option<LeaseSpec>, Instant)>,
    /// After a failure, when to try again.
    retry_at: Option<Instant>,
    /// The holder last told as such, and the last failure told: each once.
    told_wait: String,
    told_error: String,
}

impl Election {
    /// The election, until `stopped`: take the Lease when it is free, renew
    /// it while it is this copy's, watch it while it is another's; and stop
    /// leading when the renew deadline passes, whatever is under way.
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        loop {
            let fence = self.fence.clone();
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                () = fence.lapsed() => self.lapse(true),
                result = self.step() => match result {
                    Ok(()) => self.told_error.clear(),
                    Err(failure) => self.failed(failure),
                },
            }
        }
        if *self.tell.borrow() {
            self.clear().await;
        }
        self.fence.set(None);
        self.tell.send_replace(false);
    }

    /// One step: read the Lease (unless this copy leads), then renew or
    /// take it and wait [`RETRY_PERIOD`], or wait until it changes or runs out.
    async fn step(&mut self) -> Result<(), Failure> {
        if let Some(at) = self.retry_at.take() {
            tokio::time::sleep_until(at).await;
        }
        let lease = match self.lease.take() {
            Some(lease) => lease,
            None => read_lease(&self.leases).await?,
        };
        match self.turn(&lease) {
            turn @ (Turn::Mine | Turn::Free) => {
                if turn == Turn::Free {
                    self.tell_why_free(lease.spec.as_ref());
                }
                let limit = match self.fence.until() {
                    Some(_) => REQUEST_TIMEOUT,
                    None => ACQUIRE_TIMEOUT,
                };
                let (started, started_wall) = (Instant::now(), std::time::SystemTime::now());
                let take = turn == Turn::Free;
                let written = timed(limit, write(&self.leases, &lease, &self.me, &self.wall, take)).await?;
                let deadline = Deadline::after(started, started_wall);
                self.lease = Some(written);
                if deadline.passed() {
                    // Written, but too slowly to lead on it: renew at once.
                    return Ok(());
                }
                self.fence.set(Some(deadline));
                self.tell.send_replace(true);
                self.told_wait.clear();
                tokio::time::sleep(RETRY_PERIOD).await;
            }
            Turn::Theirs { holder, runs_out_in } => {
                self.lapse(false);
                if self.told_wait != holder {
                    debug!(%holder, ?runs_out_in, "the Lease is held");
                    info!(
                        "waiting to lead: another copy holds the Lease {LEASE_NAME}; \
                         this copy takes over as soon as that one stops"
                    );
                    self.told_wait.clone_from(&holder);
                }
                // A holder whose processes this copy sees is watched too: its end frees the Lease.
                let local = Identity::parse(&holder)
                    .filter(|held| self.me.sees_processes_of(held))
                    .map(|held| held.pid);
                let version = lease.resource_version().unwrap_or_default();
                self.follow(&version, runs_out_in, local).await;
            }
        }
        Ok(())
    }

    /// The Lease's turn as this copy sees it now, noting when it last saw
    /// the Lease change.
    fn turn(&mut self, lease: &Lease) -> Turn {
        let now = Instant::now();
        if self.seen.as_ref().is_none_or(|(spec, _)| *spec != lease.spec) {
            self.seen = Some((lease.spec.clone(), now));
        }
        let unchanged_for = self.seen.as_ref().map_or(Duration::ZERO, |(_, at)| now - *at);
        turn(lease.spec.as_ref(), &self.me, unchanged_for, process_exists)
    }

    /// Follows another copy's Lease with one watch from `version`, noting
    /// each renewal, until it is this copy's turn (the Lease freed, or the
    /// holder's process of this machine gone) or until it runs out as far as
    /// this copy saw (`runs_out_in`, moved on by each renewal). The Lease last
    /// seen is kept for the next step, which then needs no read. A watch
    /// that fails or ends returns too: the next step reads the Lease.
    async fn follow(&mut self, version: &str, runs_out_in: Duration, local: Option<u32>) {
        let mut runs_out = Instant::now() + runs_out_in;
        let gone = until_gone(local);
        let mut gone = std::pin::pin!(gone);
        let params = WatchParams::default()
            .fields(&format!("metadata.name={LEASE_NAME}"))
            .timeout(290);
        let leases = self.leases.clone();
        let started = tokio::select! {
            started = leases.watch(&params, version) => started,
            () = tokio::time::sleep_until(runs_out) => return,
            () = &mut gone => return,
        };
        let mut events = match started {
            Ok(events) => events.boxed(),
            Err(err) => {
                debug!(%err, "cannot watch the Lease");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PERIOD.min(runs_out_in)) => {}
                    () = &mut gone => {}
                }
                return;
            }
        };
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = tokio::time::sleep_until(runs_out) => return,
                () = &mut gone => return,
            };
            let lease = match event {
                Some(Ok(WatchEvent::Added(lease) | WatchEvent::Modified(lease))) => lease,
                Some(Ok(WatchEvent::Bookmark(_))) => continue,
                _ => return,
            };
            match self.turn(&lease) {
                Turn::Theirs { runs_out_in, .. } => runs_out = Instant::now() + runs_out_in,
                _ => {
                    self.lease = Some(lease);
                    return;
                }
            }
        }
    }

    /// Says why another copy's Lease is free to take: its process has gone,
    /// or it was not renewed for its whole duration. (A cleared Lease needs
    /// no word: its holder stopped and said so.)
    fn tell_why_free(&self, spec: Option<&LeaseSpec>) {
        let Some(holder) = spec
            .and_then(|spec| spec.holder_identity.as_deref())
            .filter(|h| !h.is_empty())
        else {
            return;
        };
        match Identity::parse(holder).filter(|held| self.me.sees_processes_of(held)) {
            Some(held) if !process_exists(held.pid) => {
                info!(
                    "the copy that held the Lease {LEASE_NAME} (process {}) has gone: taking over",
                    held.pid
                )
            }
            _ => info!(
                "the Lease {LEASE_NAME} was not renewed for {} s (its holder stopped, or lost the API server): \
                 taking over",
                LEASE_DURATION.as_secs()
            ),
        }
    }

    /// Stops leading, if this copy leads: the fence closes, and the stage
    /// stops the controllers. `deadline`: because the renew deadline passed
    /// (else another copy holds the Lease).
    fn lapse(&mut self, deadline: bool) {
        let until = self.fence.until();
        self.fence.set(None);
        self.lease = None;
        if let Some(until) = until
            && deadline
            && *self.tell.borrow()
        {
            // From the start of the last renewal, on the clock that ended it.
            let renewed = std::time::SystemTime::now()
                .duration_since(until.wall - RENEW_DEADLINE)
                .unwrap_or_default()
                .max(Instant::now() - (until.monotonic - RENEW_DEADLINE));
            if self.account.ongoing() {
                debug!(?renewed, "the Lease was not renewed within the renew deadline");
            } else {
                warn!(
                    "this copy last renewed the Lease {LEASE_NAME} {} s ago, more than {} s (the API server did not \
                     answer, or this process was paused): it stops leading, and another copy may take over",
                    renewed.as_secs(),
                    RENEW_DEADLINE.as_secs()
                );
            }
        }
        self.tell.send_replace(false);
    }

    /// A request failed: tell it once, and try again [`RETRY_PERIOD`] later
    /// (at once after a conflict, where another copy changed the Lease
    /// first, or after a time-out, which has waited already).
    ///
    /// No answer is told as an outage, once for a run of failures: after
    /// etcd came back, the API server answers some kinds seconds before
    /// others, and the probe would tell the outage over after each one.
    fn failed(&mut self, failure: Failure) {
        self.lease = None;
        let unreachable = match &failure {
            Failure::Refused(kube::Error::Api(status)) if status.code == 409 => return,
            Failure::TimedOut(_) => true,
            Failure::Refused(err) => {
                self.retry_at = Some(Instant::now() + RETRY_PERIOD);
                crate::outage::of_request_error(err) == Some(crate::outage::Trouble::Unreachable)
            }
        };
        let what = failure.to_string();
        if self.told_error == what {
            return debug!(%what, "the Lease could not be read or written");
        }
        self.told_error.clone_from(&what);
        if unreachable {
            self.account.report(crate::outage::Trouble::Unreachable, &failure);
        } else {
            warn!("cannot read or write the Lease {LEASE_NAME} (leader election): {what}; trying again");
        }
    }

    /// Clears the Lease if this copy still holds it, so that the next copy takes over at once.
    async fn clear(&self) {
        let cleared = async {
            let lease = read_lease(&self.leases).await?;
            let holder = lease.spec.as_ref().and_then(|spec| spec.holder_identity.as_deref());
            if holder == Some(self.me.render().as_str()) {
                let spec = serde_json::json!({
                    "holderIdentity": null, "acquireTime": null, "renewTime": null, "leaseDurationSeconds": null,
                });
                timed(REQUEST_TIMEOUT, patch(&self.leases, &lease, spec)).await?;
            }
            Ok::<(), Failure>(())
        };
        if let Err(failure) = cleared.await {
            warn!("could not clear the Lease {LEASE_NAME}: {failure}");
        }
    }
}

/// Writes the Lease as `me`'s: a renewal, or (`take`) a new holder.
async fn write(leases: &Api<Lease>, lease: &Lease, me: &Identity, wall: &WallClock, take: bool) -> kube::Result<Lease> {
    let now = MicroTime(wall.now());
    let seconds = LEASE_DURATION.as_secs();
    let mut spec = serde_json::json!({ "renewTime": now, "leaseDurationSeconds": seconds });
    if take {
        let transitions = lease.spec.as_ref().and_then(|spec| spec.lease_transitions).unwrap_or(0);
        spec["holderIdentity"] = serde_json::json!(me.render());
        spec["acquireTime"] = serde_json::json!(now);
        spec["leaseTransitions"] = serde_json::json!(transitions + 1);
    }
    patch(leases, lease, spec).await
}

/// Changes the Lease's spec, unless it changed since `lease` was read: the
/// resourceVersion in a patch is a precondition, so of two copies writing
/// at once one is refused (409).
async fn patch(leases: &Api<Lease>, lease: &Lease, spec: serde_json::Value) -> kube::Result<Lease> {
    let body = serde_json::json!({
        "metadata": { "resourceVersion": lease.resource_version() },
        "spec": spec,
    });
    leases
        .patch(LEASE_NAME, &PatchParams::default(), &Patch::Merge(&body))
        .await
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
            machine: "00000000000000aa".to_string(),
            pid: 100,
            started: 1,
        }
    }

    fn held_by(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            renew_time: Some(MicroTime(Timestamp::now())),
            lease_duration_seconds: Some(10),
            ..LeaseSpec::default()
        }
    }

    const SAME_MACHINE: &str = "other@00000000000000aa-200-5";
    const OTHER_MACHINE: &str = "laptop@00000000000000bb-200-5";

    #[test]
    fn an_identity_reads_back_even_with_dashes_in_the_host() {
        let identity = Identity {
            host: "my-laptop.local".to_string(),
            machine: "0123456789abcdef".to_string(),
            pid: 4242,
            started: 1_764_000_000_000,
        };
        assert_eq!(identity.render(), "my-laptop.local@0123456789abcdef-4242-1764000000000");
        assert_eq!(Identity::parse(&identity.render()), Some(identity.clone()));
        let unknown = Identity {
            machine: String::new(),
            ..identity
        };
        assert_eq!(Identity::parse(&unknown.render()), Some(unknown));
        assert_eq!(Identity::parse("no-numbers"), None);
    }

    #[test]
    fn an_empty_or_cleared_lease_is_free() {
        assert_eq!(turn(None, &me(), Duration::ZERO, |_| true), Turn::Free);
        assert_eq!(
            turn(Some(&LeaseSpec::default()), &me(), Duration::ZERO, |_| true),
            Turn::Free
        );
    }

    #[test]
    fn a_live_holder_keeps_the_lease_until_it_has_not_changed_for_its_duration() {
        let spec = held_by(OTHER_MACHINE);
        match turn(Some(&spec), &me(), Duration::from_secs(3), |_| true) {
            Turn::Theirs { holder, runs_out_in } => {
                assert_eq!(holder, OTHER_MACHINE);
                assert_eq!(runs_out_in, Duration::from_secs(7));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(turn(Some(&spec), &me(), Duration::from_secs(10), |_| true), Turn::Free);
    }

    #[test]
    fn the_holders_clock_does_not_count_only_how_long_the_lease_was_seen_unchanged() {
        // Written by a holder whose clock is an hour behind, or ahead: the
        // follower still waits the Lease's whole duration from when it saw it.
        for skew in [-3600_i64, 3600] {
            let mut spec = held_by(OTHER_MACHINE);
            let shifted = Timestamp::now().as_second() + skew;
            spec.renew_time = Some(MicroTime(Timestamp::from_second(shifted).unwrap()));
            assert!(matches!(
                turn(Some(&spec), &me(), Duration::ZERO, |_| true),
                Turn::Theirs { .. }
            ));
        }
    }

    #[test]
    fn a_dead_process_of_this_machine_is_taken_over_at_once() {
        let spec = held_by(SAME_MACHINE);
        assert_eq!(turn(Some(&spec), &me(), Duration::ZERO, |pid| pid != 200), Turn::Free);
        assert!(matches!(
            turn(Some(&spec), &me(), Duration::ZERO, |_| true),
            Turn::Theirs { .. }
        ));
    }

    #[test]
    fn a_holder_with_the_same_host_name_on_another_machine_is_never_judged_by_local_processes() {
        // Two laptops named alike, or two Pods of a StatefulSet on two nodes.
        let spec = held_by(OTHER_MACHINE);
        assert!(matches!(
            turn(Some(&spec), &me(), Duration::ZERO, |_| false),
            Turn::Theirs { .. }
        ));
        // An old identity, without the machine: no proof either.
        let spec = held_by("laptop-200-5");
        assert!(matches!(
            turn(Some(&spec), &me(), Duration::ZERO, |_| false),
            Turn::Theirs { .. }
        ));
        // A copy that cannot tell its machine proves nothing.
        let unknown = Identity {
            machine: String::new(),
            ..me()
        };
        let spec = held_by("laptop-200-5");
        assert!(matches!(
            turn(Some(&spec), &unknown, Duration::ZERO, |_| false),
            Turn::Theirs { .. }
        ));
    }

    #[test]
    fn this_copy_sees_its_own_lease() {
        let spec = held_by(&me().render());
        assert_eq!(turn(Some(&spec), &me(), Duration::from_secs(60), |_| true), Turn::Mine);
    }

    #[test]
    fn a_leader_stops_before_any_follower_may_take_over() {
        assert!(REQUEST_TIMEOUT < RENEW_DEADLINE && ACQUIRE_TIMEOUT < RENEW_DEADLINE);
        // Three renewals fit in the deadline: one in time, one timed out, one tried again.
        assert!(RETRY_PERIOD + 2 * REQUEST_TIMEOUT < RENEW_DEADLINE);
        assert!(RENEW_DEADLINE < LEASE_DURATION);
    }

    #[tokio::test(start_paused = true)]
    async fn the_fence_closes_at_the_renew_deadline_and_refuses_writes_but_not_reads() {
        use tower::{Service, ServiceExt};
        let fence = Fence::default();
        let mut client = tower::ServiceBuilder::new()
            .layer(fence.layer())
            .service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>("sent") });
        let request = |method: http::Method| http::Request::builder().method(method).body(()).unwrap();
        let mut send = async |method| client.ready().await.unwrap().call(request(method)).await;
        assert!(send(http::Method::PATCH).await.unwrap_err().is::<NotLeading>());
        assert_eq!(send(http::Method::GET).await.unwrap(), "sent");

        fence.set(Some(Deadline::after(Instant::now(), std::time::SystemTime::now())));
        assert_eq!(send(http::Method::PATCH).await.unwrap(), "sent");
        let lapsed = fence.lapsed();
        tokio::time::advance(RENEW_DEADLINE).await;
        lapsed.await;
        assert!(send(http::Method::POST).await.unwrap_err().is::<NotLeading>());
        assert!(send(http::Method::DELETE).await.unwrap_err().is::<NotLeading>());
    }

    #[test]
    fn the_deadline_passes_when_either_clock_says_so() {
        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
        assert!(!Deadline::after(now, wall).passed());
        // A machine that was suspended: its monotonic clock did not move, its wall clock did.
        assert!(Deadline::after(now, wall - 2 * RENEW_DEADLINE).passed());
        // A wall clock set back: the monotonic clock still ends the lease.
        let long_ago = now
            .checked_sub(2 * RENEW_DEADLINE)
            .expect("the machine has run for 14 s");
        assert!(Deadline::after(long_ago, wall).passed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_moves_the_deadline_on() {
        let fence = Fence::default();
        let wall = std::time::SystemTime::now();
        let first = Deadline::after(Instant::now(), wall);
        fence.set(Some(first));
        let lapsed = fence.lapsed();
        let mut lapsed = std::pin::pin!(lapsed);
        tokio::time::advance(RETRY_PERIOD).await;
        // Paused, the monotonic clock has moved 2 s; the wall clock has not.
        fence.set(Some(Deadline::after(Instant::now(), wall + RETRY_PERIOD)));
        tokio::select! {
            biased;
            () = &mut lapsed => panic!("lapsed although renewed"),
            () = tokio::time::sleep_until(first.monotonic + Duration::from_millis(1)) => {}
        }
        assert!(fence.open());
        lapsed.await;
        assert!(!fence.open());
    }
}
