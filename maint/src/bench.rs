//! `cargo maint bench`: how fast and how cheaply the finished controller
//! (stage 4) closes the gap, on a local control plane of its own, set against
//! what the same API server can absorb from a plain client (the floor).
//!
//! Workloads, each on the same plane:
//! - settle: K Fermats of n = 100 created at once, until every Tuple and
//!   Number exists, every object has a status for its current generation and
//!   every Fermat its answer;
//! - change: n 100 → 99 on all K, until the new subtrees have settled and the
//!   old Tuples are gone (their Numbers go with the garbage collector, at its
//!   own pace);
//! - restart: the controller stopped and started again with everything
//!   settled, and its requests in the next 30 s;
//! - idle: its requests per minute with everything settled.
//!
//! The controller runs as its own user (`math-controller-bench`), whose every
//! request the plane's audit log records: the request counts come from there.
//! An observer follows the three kinds with watches, so that measuring adds
//! no polling load.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use tokio::sync::Notify;

use crate::catalogue::{self, GROUP, VERSION, number_name, tuple_name};
use crate::control_plane::ControlPlane;

/// The user the benchmarked controller runs as; the audit policy records all of its requests.
pub const BENCH_USER: &str = "math-controller-bench";

/// The kinds, parents first.
const KINDS: [&str; 3] = [catalogue::KINDS[2], catalogue::KINDS[1], catalogue::KINDS[0]];

/// The number of every Fermat the benchmark creates; the change workload
/// takes it one lower.
const NUMBER: i64 = 100;

/// The objects of one Fermat of [`NUMBER`] once settled: itself, its Tuples
/// (one per pair) and their Numbers (two each).
const OBJECTS_PER_FERMAT: usize = 1 + 3 * (NUMBER as usize / 2);

/// How long a workload may take before the benchmark gives up on it.
const GIVE_UP: Duration = Duration::from_secs(600);

/// Whether n is a sum of two positive squares (the answer a Fermat should give).
pub fn two_squares(n: i64) -> bool {
    (1..=n / 2).any(|i| is_square(i) && is_square(n - i))
}

fn is_square(value: i64) -> bool {
    let root = (value as f64).sqrt() as i64;
    (root - 1..=root + 1).any(|r| r >= 0 && r * r == value)
}

/// The fewest writes a correct controller makes for a workload: every child
/// created once, every status written once, every unwanted Tuple deleted
/// once (its Numbers go with the garbage collector).
pub fn minimum_writes(fermats: usize, from: Option<i64>, to: i64) -> usize {
    let tuples = (to / 2) as usize;
    let created = fermats * tuples * 3;
    let statuses = fermats * (1 + tuples * 3);
    let deleted = from.map_or(0, |from| fermats * (from / 2) as usize);
    created + statuses + deleted
}

/// One object as the observer last saw it.
#[derive(Clone, Debug)]
struct Seen {
    spec: serde_json::Value,
    status: serde_json::Value,
    generation: Option<i64>,
}

impl Seen {
    fn current(&self) -> bool {
        self.status["observedGeneration"].as_i64().is_some()
            && self.status["observedGeneration"].as_i64() == self.generation
    }
}

/// What the watches have shown, by kind and name.
#[derive(Default)]
struct World {
    objects: HashMap<&'static str, HashMap<String, Seen>>,
}

/// Follows one kind in `namespace` with list + watch, forever.
async fn follow(api: Api<DynamicObject>, kind: &'static str, world: Arc<Mutex<World>>, changed: Arc<Notify>) {
    let seen = |object: DynamicObject| {
        let name = object.metadata.name.clone().unwrap_or_default();
        let value = Seen {
            spec: object.data["spec"].clone(),
            status: object.data["status"].clone(),
            generation: object.metadata.generation,
        };
        (name, value)
    };
    loop {
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let version = list.metadata.resource_version.clone().unwrap_or_default();
        {
            let mut world = world.lock().unwrap_or_else(|p| p.into_inner());
            world.objects.insert(kind, list.items.into_iter().map(seen).collect());
        }
        changed.notify_one();
        let Ok(stream) = api.watch(&WatchParams::default().timeout(290), &version).await else {
            continue;
        };
        let mut stream = stream.boxed();
        while let Some(event) = stream.next().await {
            let mut world = world.lock().unwrap_or_else(|p| p.into_inner());
            let objects = world.objects.entry(kind).or_default();
            match event {
                Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                    let (name, value) = seen(object);
                    objects.insert(name, value);
                }
                Ok(WatchEvent::Deleted(object)) => {
                    objects.remove(&object.metadata.name.unwrap_or_default());
                }
                Ok(WatchEvent::Bookmark(_)) => {}
                Ok(WatchEvent::Error(_)) | Err(_) => break,
            }
            drop(world);
            changed.notify_one();
        }
    }
}

/// Whether the namespace holds the settled tree of `fermats`, each with n:
/// every wanted object, current, and no other Tuple. Numbers of Tuples that
/// are gone may remain: the garbage collector removes them at its own pace
/// (kube-controller-manager sends at most 20 requests a second by default),
/// which measures the cluster, not the controller.
fn settled(world: &World, fermats: &[String], n: i64) -> bool {
    let empty = HashMap::new();
    let kind = |name: &str| world.objects.get(name).unwrap_or(&empty);
    let (fermat_objects, tuples, numbers) = (kind("Fermat"), kind("Tuple"), kind("Number"));
    let per_fermat = (n / 2) as usize;
    if tuples.len() != fermats.len() * per_fermat || numbers.len() < fermats.len() * per_fermat * 2 {
        return false;
    }
    let answer = two_squares(n);
    fermats.iter().all(|name| {
        let Some(fermat) = fermat_objects.get(name) else {
            return false;
        };
        fermat.spec["number"].as_i64() == Some(n)
            && fermat.current()
            && fermat.status["twoSquaresFound"].as_bool() == Some(answer)
            && (1..=n / 2).all(|i| {
                let tuple_name = tuple_name(name, i as u64, n as u64);
                let tuple_ok = tuples
                    .get(&tuple_name)
                    .is_some_and(|tuple| tuple.current() && tuple.spec["numbers"] == serde_json::json!([i, n - i]));
                tuple_ok
                    && [i, n - i].iter().enumerate().all(|(index, value)| {
                        numbers
                            .get(&number_name(&tuple_name, index))
                            .is_some_and(|number| number.current() && number.spec["value"].as_i64() == Some(*value))
                    })
            })
    })
}

/// The observer: watches of the three kinds in one namespace.
struct Observer {
    world: Arc<Mutex<World>>,
    changed: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Observer {
    fn start(client: &Client, namespace: &str) -> Observer {
        let world = Arc::new(Mutex::new(World::default()));
        let changed = Arc::new(Notify::new());
        let tasks = KINDS
            .into_iter()
            .map(|kind| {
                let api = api(client, namespace, kind);
                tokio::spawn(follow(api, kind, world.clone(), changed.clone()))
            })
            .collect();
        Observer { world, changed, tasks }
    }

    /// Waits until `done` holds for what the watches show.
    async fn wait_for(&self, what: &str, done: impl Fn(&World) -> bool) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let notified = self.changed.notified();
            if done(&self.world.lock().unwrap_or_else(|p| p.into_inner())) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > GIVE_UP {
                bail!("gave up after {} s waiting for {what}", GIVE_UP.as_secs());
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn api(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, VERSION, kind));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn fermat(name: &str, n: i64) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": format!("{GROUP}/{VERSION}"), "kind": "Fermat",
        "metadata": {"name": name}, "spec": {"number": n},
    })
}

/// The controller under test, as a process of its own (the bench's and the soak's).
pub(crate) struct Controller {
    child: Child,
}

impl Controller {
    /// Starts `program` on `kubeconfig`, its output appended to `log`, with
    /// `RUST_LOG` set to `rust_log` (or left to the program's default).
    pub(crate) fn start(program: &Path, kubeconfig: &Path, log: &Path, rust_log: Option<&str>) -> Result<Controller> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut command = Command::new(program);
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let child = command
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        crate::cleanup::register_process(child.id());
        Ok(Controller { child })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::cleanup::forget_process(self.child.id());
    }

    /// CPU seconds used so far, and the peak resident memory in MiB (Linux).
    fn usage(&self) -> (f64, f64) {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // After the command name: state is field 3, utime 14 and stime 15 (1-based).
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&index| fields.get(index).and_then(|v| v.parse::<f64>().ok()))
            .sum();
        let per_second = crate::process::clock_ticks_per_second();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let peak_kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0);
        (ticks / per_second.max(1.0), peak_kib / 1024.0)
    }

    /// Stops it as Ctrl-C does, so that it clears its Lease; kills it if it lingers.
    fn stop(mut self) {
        crate::process::signal(self.child.id(), crate::process::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                crate::cleanup::forget_process(self.child.id());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::cleanup::forget_process(self.child.id());
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The requests of the benchmarked controller that the audit log recorded
/// after byte `from`, counted by "verb resource[/subresource]".
fn requests_since(audit_log: &Path, from: u64) -> Result<BTreeMap<String, usize>> {
    let mut file = std::fs::File::open(audit_log).with_context(|| format!("cannot read {}", audit_log.display()))?;
    let size = file.metadata()?.len();
    if size < from {
        bail!(
            "the API server's audit log was rotated during a workload ({} is {size} bytes, and was {from} when the workload began): its requests cannot be counted",
            audit_log.display()
        );
    }
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["user"]["username"] != BENCH_USER {
            continue;
        }
        let counted = match event["verb"].as_str() {
            Some("watch") => event["stage"] == "ResponseStarted",
            _ => event["stage"] == "ResponseComplete",
        };
        if !counted {
            continue;
        }
        let object = &event["objectRef"];
        let mut resource = object["resource"].as_str().unwrap_or("(other)").to_string();
        if let Some(subresource) = object["subresource"].as_str() {
            resource = format!("{resource}/{subresource}");
        }
        *counts
            .entry(format!("{} {resource}", event["verb"].as_str().unwrap_or("?")))
            .or_insert(0) += 1;
    }
    Ok(counts)
}

fn audit_size(audit_log: &Path) -> u64 {
    std::fs::metadata(audit_log).map(|m| m.len()).unwrap_or(0)
}

/// Writes among `counts` (creates, patches, deletes) to resources that `counted` selects.
fn writes_to(counts: &BTreeMap<String, usize>, counted: impl Fn(&str) -> bool) -> usize {
    counts
        .iter()
        .filter(|(key, _)| {
            let (verb, resource) = key.split_once(' ').unwrap_or(("", ""));
            ["create", "update", "patch", "delete"].contains(&verb) && counted(resource)
        })
        .map(|(_, count)| count)
        .sum()
}

/// Writes to the workshop's kinds among `counts`: not the Lease, not Events.
fn writes(counts: &BTreeMap<String, usize>) -> usize {
    writes_to(counts, |resource| {
        ["fermats", "tuples", "numbers"].contains(&resource.split('/').next().unwrap_or_default())
    })
}

/// Writes of Events among `counts`: the story the controller tells, beyond the minimum.
fn event_writes(counts: &BTreeMap<String, usize>) -> usize {
    writes_to(counts, |resource| resource == "events")
}

/// Where a workload starts from: the audit log's length, the controller's
/// CPU time (0 for one not started yet), the clock.
struct Window {
    offset: u64,
    cpu: f64,
    started: Instant,
}

impl Window {
    fn open(audit_log: &Path, controller: Option<&Controller>) -> Window {
        Window {
            offset: audit_size(audit_log),
            cpu: controller.map_or(0.0, |controller| controller.usage().0),
            started: Instant::now(),
        }
    }

    /// What happened since: a measure of `workload` on `build`, with no minimum of writes.
    fn close(
        self,
        audit_log: &Path,
        controller: &Controller,
        (build, workload, fermats, run): (&str, &str, usize, usize),
    ) -> Result<Measure> {
        let seconds = self.started.elapsed().as_secs_f64();
        let (cpu, peak_mib) = controller.usage();
        let requests = requests_since(audit_log, self.offset)?;
        Ok(Measure {
            build: build.to_string(),
            workload: workload.to_string(),
            fermats,
            run,
            seconds,
            writes: writes(&requests),
            events: event_writes(&requests),
            minimum_writes: 0,
            requests,
            cpu_seconds: cpu - self.cpu,
            peak_mib,
        })
    }
}

/// One measured run of a workload.
#[derive(Clone, Debug)]
pub struct Measure {
    pub build: String,
    pub workload: String,
    pub fermats: usize,
    /// Which run of the build and size, from 1.
    pub run: usize,
    pub seconds: f64,
    /// Writes to Fermats, Tuples and Numbers.
    pub writes: usize,
    /// Writes of Events (creates, and patches of a series).
    pub events: usize,
    pub minimum_writes: usize,
    pub requests: BTreeMap<String, usize>,
    pub cpu_seconds: f64,
    pub peak_mib: f64,
}

/// The floor's writes: the Fermats `names` of n created one by one, as the
/// settle workload creates them, then every child and status a correct
/// controller writes for them, from a plain client with `concurrency`
/// requests in flight, in `namespace`.
async fn floor_writes(client: &Client, namespace: &str, names: &[String], n: i64, concurrency: usize) -> Result<()> {
    let fermat_api = api(client, namespace, "Fermat");
    for name in names {
        let object: DynamicObject = serde_json::from_value(fermat(name, n))?;
        fermat_api.create(&PostParams::default(), &object).await?;
    }
    let apply = PatchParams::apply(&format!("{}-floor", catalogue::PROJECT)).force();
    let units = floor_units(client, namespace, names, n);
    let results: Vec<Result<()>> = futures::stream::iter(units)
        .map(|(api, name, object, status)| {
            let apply = apply.clone();
            async move {
                if !object.is_null() {
                    let object: DynamicObject = serde_json::from_value(object)?;
                    api.create(&PostParams::default(), &object).await?;
                }
                if let Some(status) = status {
                    let kind = api.resource_url().rsplit('/').next().unwrap_or_default().to_string();
                    let patch = serde_json::json!({"apiVersion": format!("{GROUP}/{VERSION}"),
                        "kind": kind_of(&kind), "status": status});
                    api.patch_status(&name, &apply, &Patch::Apply(&patch)).await?;
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// One request of the floor, or two: an object to create (none for a
/// Fermat, created first) and the status to write.
type FloorUnit = (Api<DynamicObject>, String, serde_json::Value, Option<serde_json::Value>);

/// The writes a correct controller makes for the Fermats `names` of `n`.
fn floor_units(client: &Client, namespace: &str, names: &[String], n: i64) -> Vec<FloorUnit> {
    let (fermat_api, tuple_api, number_api) = (
        api(client, namespace, "Fermat"),
        api(client, namespace, "Tuple"),
        api(client, namespace, "Number"),
    );
    let mut units: Vec<FloorUnit> = Vec::new();
    for name in names {
        for i in 1..=n / 2 {
            let tuple = tuple_name(name, i as u64, n as u64);
            units.push((
                tuple_api.clone(),
                tuple.clone(),
                serde_json::json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "Tuple",
                    "metadata": {"name": tuple}, "spec": {"numbers": [i, n - i]}}),
                Some(serde_json::json!({"allSquares": is_square(i) && is_square(n - i), "observedGeneration": 1})),
            ));
            for (index, value) in [i, n - i].into_iter().enumerate() {
                let number = number_name(&tuple, index);
                units.push((
                    number_api.clone(),
                    number.clone(),
                    serde_json::json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "Number",
                        "metadata": {"name": number}, "spec": {"value": value}}),
                    Some(serde_json::json!({"fizzBuzz": value.to_string(), "isSquare": is_square(value), "observedGeneration": 1})),
                ));
            }
        }
        units.push((
            fermat_api.clone(),
            name.clone(),
            serde_json::Value::Null,
            Some(serde_json::json!({"twoSquaresFound": two_squares(n), "observedGeneration": 1})),
        ));
    }
    units
}

fn kind_of(resource: &str) -> &'static str {
    match resource {
        "fermats" => "Fermat",
        "tuples" => "Tuple",
        _ => "Number",
    }
}

/// What to run.
pub struct Plan {
    /// Numbers of Fermats of 100 to settle at once.
    pub sizes: Vec<usize>,
    pub repetitions: usize,
    /// Programs to measure, by build name ("debug", "release").
    pub builds: Vec<(String, PathBuf)>,
    /// How long the idle workload lasts.
    pub idle: Duration,
    /// Concurrencies to try for the floor.
    pub floor_concurrency: Vec<usize>,
}

/// Everything a run measured.
pub struct Results {
    pub measures: Vec<Measure>,
    /// The floor's measures: the sweep of the concurrencies (run 0), then
    /// one beside each run of the builds.
    pub floors: Vec<Floor>,
}

/// One measure of the floor: `fermats` Fermats of [`NUMBER`] at
/// `concurrency` requests in flight, in `run` (0 for the sweep).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Floor {
    pub fermats: usize,
    pub run: usize,
    pub seconds: f64,
    pub concurrency: usize,
}

/// Runs `plan` on `plane` (which has stage 4's CRDs and kube-controller-manager).
///
/// The machine's speed moves by half within an hour, so the floor is
/// measured beside each run: each size and run measures the floor and each
/// build in turn, in an order that turns from one run to the next, and each
/// build's settle is set against the floor of its own run. A sweep of the
/// concurrencies on the fresh plane first picks the one the floor uses.
/// The floor is timed as the settle is, by the same observer (see
/// [`Bench::floor`]).
pub async fn run(plane: &ControlPlane, plan: &Plan) -> Result<Results> {
    let admin = plane.client().await?;
    let bench = Bench {
        plane,
        controller_kubeconfig: plane.kubeconfig_for(BENCH_USER, &["system:masters"])?,
        observer: Observer::start(&admin, NAMESPACE),
        fermats: api(&admin, NAMESPACE, "Fermat"),
        admin,
    };
    let mut floors = Vec::new();
    for &size in &plan.sizes {
        for &concurrency in &plan.floor_concurrency {
            floors.push(bench.floor(size, 0, concurrency).await?);
        }
    }
    // Restart and idle once per size, with the last build only (the
    // requests do not depend on the build).
    let last_build = plan.builds.last().map(|(name, _)| name);
    let mut measures = Vec::new();
    for &size in &plan.sizes {
        let concurrency = swept_concurrency(&floors, size);
        for repetition in 0..plan.repetitions {
            let run = repetition + 1;
            // None is the floor's turn.
            let mut turns: Vec<Option<&(String, PathBuf)>> =
                std::iter::once(None).chain(plan.builds.iter().map(Some)).collect();
            let first = repetition % turns.len();
            turns.rotate_left(first);
            for turn in turns {
                match turn {
                    None => floors.push(bench.floor(size, run, concurrency).await?),
                    Some((build, program)) => {
                        let with_restart = (repetition == 0 && last_build == Some(build)).then_some(plan.idle);
                        measures.extend(bench.one_run(build, program, size, run, with_restart).await?);
                    }
                }
            }
        }
    }
    Ok(Results { measures, floors })
}

/// The names of `size` Fermats.
fn fermat_names(size: usize) -> Vec<String> {
    (0..size).map(|index| format!("b{index}")).collect()
}

/// The concurrency of the sweep's best floor for `size` (64 if none).
fn swept_concurrency(floors: &[Floor], size: usize) -> usize {
    floors
        .iter()
        .filter(|floor| floor.run == 0 && floor.fermats == size)
        .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
        .map_or(64, |floor| floor.concurrency)
}

/// The namespace the controller works in during the benchmark.
const NAMESPACE: &str = "default";

/// What every run of the benchmark uses.
struct Bench<'a> {
    plane: &'a ControlPlane,
    admin: Client,
    controller_kubeconfig: PathBuf,
    observer: Observer,
    fermats: Api<DynamicObject>,
}

impl Bench<'_> {
    /// One run of one build: settle `size` Fermats, change them, then (with
    /// `idle`) restart the controller and leave it idle that long; the
    /// namespace is emptied afterwards.
    async fn one_run(
        &self,
        build: &str,
        program: &Path,
        size: usize,
        run: usize,
        idle: Option<Duration>,
    ) -> Result<Vec<Measure>> {
        let names = fermat_names(size);
        let log = self.plane.dir.join("logs").join(format!("bench-{build}.log"));
        let mut controller = Controller::start(program, &self.controller_kubeconfig, &log, Some("warn"))?;
        // The controller leads and has listed everything before the clock starts.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut measures = vec![self.settle(&controller, build, &names, run).await?];
        measures.push(self.change(&controller, build, &names, run).await?);
        if let Some(idle) = idle {
            controller.stop();
            let window = Window::open(&self.plane.audit_log, None);
            controller = Controller::start(program, &self.controller_kubeconfig, &log, Some("warn"))?;
            tokio::time::sleep(Duration::from_secs(30)).await;
            let audit_log = &self.plane.audit_log;
            measures.push(window.close(audit_log, &controller, (build, "restart", size, run))?);
            let window = Window::open(audit_log, Some(&controller));
            tokio::time::sleep(idle).await;
            measures.push(window.close(audit_log, &controller, (build, "idle", size, run))?);
        }
        controller.stop();
        self.empty_namespace().await?;
        Ok(measures)
    }

    /// The settle workload: the Fermats `names` of [`NUMBER`] created at
    /// once, measured until every Tuple and Number is in place.
    async fn settle(&self, controller: &Controller, build: &str, names: &[String], run: usize) -> Result<Measure> {
        let size = names.len();
        let window = Window::open(&self.plane.audit_log, Some(controller));
        for name in names {
            let object: DynamicObject = serde_json::from_value(fermat(name, NUMBER))?;
            self.fermats.create(&PostParams::default(), &object).await?;
        }
        self.observer
            .wait_for("the Fermats to settle", |world| settled(world, names, NUMBER))
            .await?;
        let measure = window.close(&self.plane.audit_log, controller, (build, "settle", size, run))?;
        eprintln!(
            "  {build} settle {size} × {NUMBER} (run {run}): {:.1} s",
            measure.seconds
        );
        Ok(Measure {
            minimum_writes: minimum_writes(size, None, NUMBER),
            ..measure
        })
    }

    /// The change workload: every Fermat's number taken one lower, measured
    /// until the new subtrees have settled and the old Tuples are gone.
    async fn change(&self, controller: &Controller, build: &str, names: &[String], run: usize) -> Result<Measure> {
        let size = names.len();
        let window = Window::open(&self.plane.audit_log, Some(controller));
        for name in names {
            let patch = serde_json::json!({"spec": {"number": NUMBER - 1}});
            self.fermats
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        self.observer
            .wait_for("the changed Fermats to settle", |world| {
                settled(world, names, NUMBER - 1)
            })
            .await?;
        let measure = window.close(&self.plane.audit_log, controller, (build, "change", size, run))?;
        eprintln!(
            "  {build} change {size} × {NUMBER} → {} (run {run}): {:.1} s",
            NUMBER - 1,
            measure.seconds
        );
        Ok(Measure {
            minimum_writes: minimum_writes(size, Some(NUMBER), NUMBER - 1),
            ..measure
        })
    }

    /// The floor of `size` Fermats at `concurrency`, for `run` (0 for the
    /// sweep): the settle workload with [`floor_writes`] in place of a
    /// controller, timed the same way, from the first create until the
    /// observer sees the tree settled; the namespace is emptied afterwards.
    async fn floor(&self, size: usize, run: usize, concurrency: usize) -> Result<Floor> {
        let names = fermat_names(size);
        let started = Instant::now();
        floor_writes(&self.admin, NAMESPACE, &names, NUMBER, concurrency).await?;
        self.observer
            .wait_for("the floor's tree to settle", |world| settled(world, &names, NUMBER))
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let when = if run == 0 {
            "sweep".to_string()
        } else {
            format!("run {run}")
        };
        eprintln!("  floor {size} × {NUMBER} at concurrency {concurrency} ({when}): {seconds:.1} s");
        self.empty_namespace().await?;
        Ok(Floor {
            fermats: size,
            run,
            seconds,
            concurrency,
        })
    }

    /// Deletes everything for the next run (not measured): one request per
    /// kind, instead of thousands from the garbage collector.
    async fn empty_namespace(&self) -> Result<()> {
        for kind in KINDS {
            api(&self.admin, NAMESPACE, kind)
                .delete_collection(&Default::default(), &ListParams::default())
                .await?;
        }
        self.observer
            .wait_for("the namespace to be empty", |world| {
                KINDS
                    .iter()
                    .all(|kind| world.objects.get(kind).is_none_or(HashMap::is_empty))
            })
            .await?;
        Ok(())
    }
}

/// The floors of `size` measured beside the runs (the sweep left out).
fn run_floors(results: &Results, size: usize) -> impl Iterator<Item = &Floor> {
    (results.floors.iter()).filter(move |floor| floor.fermats == size && floor.run > 0)
}

/// The median of the floors of `size` beside the runs.
fn median_floor(results: &Results, size: usize) -> Option<f64> {
    let floors: Vec<f64> = run_floors(results, size).map(|floor| floor.seconds).collect();
    (!floors.is_empty()).then(|| spread(floors).1)
}

/// The settle of `build` for `size` against the floor: each run's settle
/// divided by the floor of the same run, and the median of those ratios.
fn ratio_to_floor(results: &Results, build: &str, size: usize) -> Option<f64> {
    let ratios: Vec<f64> = (results.measures.iter())
        .filter(|m| m.build == build && m.workload == "settle" && m.fermats == size)
        .filter_map(|m| {
            let floor = run_floors(results, size).find(|floor| floor.run == m.run)?;
            Some(m.seconds / floor.seconds)
        })
        .collect();
    (!ratios.is_empty()).then(|| spread(ratios).1)
}

/// Minimum, median and maximum.
pub fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => (0.0, 0.0, 0.0),
        len => (values[0], values[len / 2], values[len - 1]),
    }
}

/// The figures as a Markdown section.
pub fn report(results: &Results, machine: &str, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Measured with `{command}` on {machine}.\n");
    let _ = writeln!(
        out,
        "| build | workload | Fermats (objects) | seconds: min / median / max | floor (s) | ratio | writes (minimum) | events | CPU s | peak MiB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    let mut keys: Vec<(String, String, usize)> = results
        .measures
        .iter()
        .map(|m| (m.build.clone(), m.workload.clone(), m.fermats))
        .collect();
    let order = |workload: &str| {
        ["settle", "change", "restart", "idle"]
            .iter()
            .position(|w| *w == workload)
    };
    keys.sort_by_key(|(build, workload, size)| (build.clone(), *size, order(workload)));
    keys.dedup();
    for (build, workload, size) in keys {
        let _ = writeln!(out, "{}", figures_row(results, &build, &workload, size));
    }
    requests_table(&mut out, results);
    floors_list(&mut out, results);
    out
}

/// The floor of each size: the sweep of the concurrencies, then the
/// measures beside the runs.
fn floors_list(out: &mut String, results: &Results) {
    let _ = writeln!(
        out,
        "\nFloor, per size: a sweep of the concurrencies on the fresh plane, then, at the best of them, one measure beside each run (min / median / max):\n"
    );
    let mut sizes: Vec<usize> = results.floors.iter().map(|floor| floor.fermats).collect();
    sizes.sort();
    sizes.dedup();
    for size in sizes {
        let sweep: Vec<String> = (results.floors.iter())
            .filter(|floor| floor.fermats == size && floor.run == 0)
            .map(|floor| format!("{:.2} s at {}", floor.seconds, floor.concurrency))
            .collect();
        let runs: Vec<&Floor> = run_floors(results, size).collect();
        let concurrency = runs.first().map_or(0, |floor| floor.concurrency);
        let (min, median, max) = spread(runs.iter().map(|floor| floor.seconds).collect());
        let _ = writeln!(
            out,
            "- {size} × {NUMBER}: sweep {}; beside the runs, at {concurrency} requests in flight: {min:.2} / {median:.2} / {max:.2} s",
            sweep.join(", ")
        );
    }
}

/// One row of the figures: the runs of one build, workload and size.
fn figures_row(results: &Results, build: &str, workload: &str, size: usize) -> String {
    let runs: Vec<&Measure> = results
        .measures
        .iter()
        .filter(|m| m.build == build && m.workload == workload && m.fermats == size)
        .collect();
    let (min, median, max) = spread(runs.iter().map(|m| m.seconds).collect());
    let (floor_cell, ratio) = match (
        workload,
        median_floor(results, size),
        ratio_to_floor(results, build, size),
    ) {
        ("settle", Some(floor), Some(ratio)) => (format!("{floor:.2}"), format!("{ratio:.2}×")),
        _ => ("".into(), "".into()),
    };
    let writes = runs.iter().map(|m| m.writes).max().unwrap_or(0);
    let events = runs.iter().map(|m| m.events).max().unwrap_or(0);
    let minimum = runs.first().map_or(0, |m| m.minimum_writes);
    let cpu = spread(runs.iter().map(|m| m.cpu_seconds).collect()).1;
    let peak = runs.iter().map(|m| m.peak_mib).fold(0.0, f64::max);
    let seconds = match workload {
        "restart" | "idle" => format!("{median:.0} (window)"),
        _ => format!("{min:.2} / {median:.2} / {max:.2}"),
    };
    format!(
        "| {build} | {workload} | {size} ({}) | {seconds} | {floor_cell} | {ratio} | {writes} ({minimum}) | {events} | {cpu:.2} | {peak:.0} |",
        size * OBJECTS_PER_FERMAT
    )
}

/// The requests of the first run of each build, workload and size, by verb and resource.
fn requests_table(out: &mut String, results: &Results) {
    let _ = writeln!(out, "\nRequests by verb and resource, in the first run of each:\n");
    let _ = writeln!(out, "| build | workload | Fermats | requests |\n|---|---|---|---|");
    let mut seen = std::collections::BTreeSet::new();
    for m in &results.measures {
        if seen.insert((m.build.clone(), m.workload.clone(), m.fermats)) {
            let requests: Vec<String> = m
                .requests
                .iter()
                .map(|(key, count)| format!("{key}: {count}"))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                m.build,
                m.workload,
                m.fermats,
                requests.join(", ")
            );
        }
    }
}

/// The figures as JSON.
pub fn to_json(results: &Results) -> serde_json::Value {
    serde_json::json!({
        "measures": results.measures.iter().map(|m| serde_json::json!({
            "build": m.build, "workload": m.workload, "fermats": m.fermats, "run": m.run, "seconds": m.seconds,
            "writes": m.writes, "events": m.events, "minimum_writes": m.minimum_writes, "requests": m.requests,
            "cpu_seconds": m.cpu_seconds, "peak_mib": m.peak_mib,
        })).collect::<Vec<_>>(),
        "floors": results.floors.iter().map(|floor| serde_json::json!({
            "fermats": floor.fermats, "run": floor.run, "seconds": floor.seconds, "concurrency": floor.concurrency,
        })).collect::<Vec<_>>(),
    })
}

/// An SVG plot of the median settle time per size for each build, and the floor.
pub fn plot(results: &Results) -> String {
    let mut sizes: Vec<usize> = results.floors.iter().map(|floor| floor.fermats).collect();
    sizes.sort();
    sizes.dedup();
    let series = settle_series(results, &sizes);
    let max_y = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, y)| *y))
        .fold(1.0, f64::max)
        * 1.1;
    let canvas = Canvas {
        width: 640.0,
        height: 400.0,
        margin: 60.0,
        max_x: sizes.iter().map(|s| objects(*s)).fold(1.0, f64::max),
        max_y,
    };
    let mut svg = canvas.frame();
    canvas.ticks(&mut svg, &sizes);
    canvas.lines(&mut svg, &series);
    svg.push_str("</svg>\n");
    svg
}

/// The objects of `size` settled Fermats, as a plot's x.
fn objects(size: usize) -> f64 {
    (size * OBJECTS_PER_FERMAT) as f64
}

/// The plot's lines: the median settle time of each build per size, and the floor.
fn settle_series(results: &Results, sizes: &[usize]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut builds: Vec<String> = results.measures.iter().map(|m| m.build.clone()).collect();
    builds.sort();
    builds.dedup();
    for build in builds {
        let points = sizes
            .iter()
            .map(|&size| {
                let runs: Vec<f64> = results
                    .measures
                    .iter()
                    .filter(|m| m.build == build && m.workload == "settle" && m.fermats == size)
                    .map(|m| m.seconds)
                    .collect();
                (objects(size), spread(runs).1)
            })
            .collect();
        series.push((format!("controller ({build})"), points));
    }
    let floor = (sizes.iter())
        .map(|&size| (objects(size), median_floor(results, size).unwrap_or(0.0)))
        .collect();
    series.push(("floor (plain client)".into(), floor));
    series
}

/// The plot's area, in SVG units, and the largest values its axes show.
struct Canvas {
    width: f64,
    height: f64,
    margin: f64,
    max_x: f64,
    max_y: f64,
}

impl Canvas {
    fn x(&self, value: f64) -> f64 {
        self.margin + value / self.max_x * (self.width - 2.0 * self.margin)
    }

    fn y(&self, value: f64) -> f64 {
        self.height - self.margin - value / self.max_y * (self.height - 2.0 * self.margin)
    }

    /// The SVG's start: background, title, axes and their names.
    fn frame(&self) -> String {
        let Canvas {
            width, height, margin, ..
        } = *self;
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">Time to settle K Fermats of {NUMBER}, against the floor</text>\n\
             <line x1=\"{margin}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
             <line x1=\"{margin}\" y1=\"{margin}\" x2=\"{margin}\" y2=\"{}\" stroke=\"black\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">objects (K × {OBJECTS_PER_FERMAT})</text>\n\
             <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">seconds</text>\n",
            width / 2.0,
            height - margin,
            width - margin,
            height - margin,
            height - margin,
            width / 2.0,
            height - 15.0,
            height / 2.0,
            height / 2.0
        )
    }

    /// The values along the axes: objects per size, five steps of seconds.
    fn ticks(&self, svg: &mut String, sizes: &[usize]) {
        for &size in sizes {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                self.x(objects(size)),
                self.height - self.margin + 18.0,
                size * OBJECTS_PER_FERMAT
            );
        }
        for step in 0..=4 {
            let value = self.max_y * step as f64 / 4.0;
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{value:.0}</text>",
                self.margin - 6.0,
                self.y(value) + 4.0
            );
        }
    }

    /// One coloured line with dots per series, and its name.
    fn lines(&self, svg: &mut String, series: &[(String, Vec<(f64, f64)>)]) {
        let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
        for (index, (name, points)) in series.iter().enumerate() {
            let colour = colours[index % colours.len()];
            let path: Vec<String> = points
                .iter()
                .map(|(px, py)| format!("{:.1},{:.1}", self.x(*px), self.y(*py)))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                path.join(" ")
            );
            for (px, py) in points {
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                    self.x(*px),
                    self.y(*py)
                );
            }
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>",
                self.margin + 10.0,
                self.margin + 16.0 * index as f64
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answers_follow_fermat() {
        assert!(two_squares(100) && two_squares(13) && two_squares(2));
        assert!(!two_squares(99) && !two_squares(7) && !two_squares(3));
    }

    #[test]
    fn the_minimum_counts_every_child_and_status_once() {
        // 50 Tuples and 100 Numbers created, 151 statuses.
        assert_eq!(minimum_writes(1, None, 100), 150 + 151);
        // 49 Tuples and 98 Numbers created, 148 statuses, 50 Tuples deleted.
        assert_eq!(minimum_writes(1, Some(100), 99), 147 + 148 + 50);
    }

    fn measure(build: &str, fermats: usize, run: usize, seconds: f64) -> Measure {
        Measure {
            build: build.into(),
            workload: "settle".into(),
            fermats,
            run,
            seconds,
            writes: 301 * fermats,
            events: 150 * fermats,
            minimum_writes: 301 * fermats,
            requests: BTreeMap::from([("create numbers".to_string(), 100 * fermats)]),
            cpu_seconds: 0.5,
            peak_mib: 30.0,
        }
    }

    #[test]
    fn the_plot_has_a_line_per_build_and_the_floor() {
        let results = Results {
            measures: vec![
                measure("debug", 1, 1, 1.0),
                measure("debug", 10, 1, 9.0),
                measure("release", 1, 1, 0.8),
            ],
            floors: vec![floor(1, 0, 0.4, 16), floor(1, 1, 0.5, 16), floor(10, 1, 4.0, 64)],
        };
        let svg = plot(&results);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("controller (debug)") && svg.contains("floor (plain client)"));
        let report = report(&results, "a machine", "cargo maint bench");
        assert!(
            report.contains("| debug | settle | 10 (1510) | 9.00 / 9.00 / 9.00 | 4.00 | 2.25× |"),
            "{report}"
        );
    }

    #[test]
    fn writes_leave_out_reads_the_lease_and_events() {
        let counts = BTreeMap::from([
            ("create numbers".to_string(), 3),
            ("patch numbers/status".to_string(), 2),
            ("patch leases".to_string(), 5),
            ("list tuples".to_string(), 1),
            ("delete tuples".to_string(), 1),
            ("create events".to_string(), 4),
            ("patch events".to_string(), 1),
        ]);
        assert_eq!(writes(&counts), 6);
        assert_eq!(event_writes(&counts), 5);
    }

    #[test]
    fn an_audit_log_rotated_during_a_workload_is_an_error_not_zero_requests() {
        let folder = tempfile::tempdir().unwrap();
        let log = folder.path().join("audit.log");
        std::fs::write(&log, "{}\n").unwrap();
        assert!(requests_since(&log, 0).unwrap().is_empty());
        let error = requests_since(&log, 1_000).unwrap_err().to_string();
        assert!(error.contains("rotated"), "{error}");
    }

    fn floor(fermats: usize, run: usize, seconds: f64, concurrency: usize) -> Floor {
        Floor {
            fermats,
            run,
            seconds,
            concurrency,
        }
    }

    #[test]
    fn each_run_is_set_against_the_floor_beside_it() {
        // The machine slows down from run to run: the floor with it.
        let results = Results {
            measures: vec![
                measure("debug", 30, 1, 12.0),
                measure("debug", 30, 2, 30.0),
                measure("debug", 30, 3, 26.0),
            ],
            floors: vec![
                floor(30, 0, 8.0, 64),
                floor(1, 0, 0.5, 64),
                floor(1, 1, 0.5, 64),
                floor(30, 1, 10.0, 64),
                floor(30, 2, 20.0, 64),
                floor(30, 3, 20.0, 64),
            ],
        };
        // Ratios 1.2, 1.5 and 1.3: their median; the sweep is no run's floor.
        assert_eq!(ratio_to_floor(&results, "debug", 30), Some(1.3));
        assert_eq!(median_floor(&results, 30), Some(20.0));
        assert_eq!(ratio_to_floor(&results, "release", 30), None);
        let report = report(&results, "a machine", "cargo maint bench");
        assert!(report.contains("| 20.00 | 1.30× |"), "{report}");
        assert_eq!(report.matches("- 30 × 100: sweep").count(), 1, "{report}");
        assert!(
            report.contains(
                "- 30 × 100: sweep 8.00 s at 64; beside the runs, at 64 requests in flight: 10.00 / 20.00 / 20.00 s"
            ),
            "{report}"
        );
    }

    #[test]
    fn the_sweep_picks_the_concurrency_of_its_best_floor() {
        let floors = [
            floor(1, 0, 0.5, 4),
            floor(1, 0, 0.3, 16),
            floor(1, 1, 0.1, 64),
            floor(10, 0, 3.0, 64),
        ];
        assert_eq!(swept_concurrency(&floors, 1), 16);
        assert_eq!(swept_concurrency(&floors, 10), 64);
    }

    #[test]
    fn spread_gives_minimum_median_and_maximum() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
    }
}
