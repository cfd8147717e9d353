//! End-to-end scenarios: the stages' real programs against a real API server.
//!
//! Each stage gets a control plane of its own (etcd, kube-apiserver and
//! kube-controller-manager, see `xtask::control_plane`) with that stage's CRDs
//! installed from its own `crd` output. Each scenario gets a fresh namespace
//! and runs the stage's program as a separate process, exactly as an attendee
//! runs it, then checks what a person would see with kubectl or the API.
//!
//! ```text
//! cargo xtask test                                         # everything, building what is missing
//! cargo test -p workshop-tests --test e2e -- step03        # the scenarios of one stage
//! USE_EXISTING_CLUSTER=true cargo test -p workshop-tests --test e2e  # the current kubeconfig context instead
//! E2E_PROGRAM_DIR=some/dir cargo test -p workshop-tests --test e2e   # other programs named step01_crd, …
//! ```
//!
//! `cargo xtask check` runs one stage's lesson scenarios (`E2E_SCOPE=lesson`:
//! not the robustness, outage and load ones) on its warm plane
//! (`E2E_PLANE=<folder>`), a local control plane kept running between checks,
//! each wait ending after `E2E_DEADLINE_SECS` (60 s unless set). Any wait ends
//! at once when the program under test has panicked or exited.
//!
//! On an existing cluster, the stages take turns (each installs its own CRDs,
//! which replace the previous stage's) and every scenario deletes its namespace.

mod checker;
mod cluster;
mod deploy;
mod election;
mod guides;
mod http_proxy;
mod robustness;
mod step01;
mod step02;
mod step03;
mod step04;

use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use libtest_mimic::{Arguments, Failed, Trial};

use crate::cluster::{Cluster, STAGES, Scenario, Stage, StageGate};

/// A scenario: its name, the cluster it runs on, and what it does.
#[derive(Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub cluster: Stage,
    /// Reads the API server's audit log, which only a local control plane has.
    pub needs_audit_log: bool,
    /// Runs on a local control plane of its own instead of the stage's shared
    /// one, because it breaks the plane or needs it bare. Never on an existing cluster.
    pub own_plane: Option<OwnPlane>,
    /// Spends most of its time waiting (an outage of 20 s): it starts first
    /// and runs beside the scenarios that keep the cores busy, instead of
    /// taking one of their places (see [`Places`]).
    pub mostly_waits: bool,
    /// Checks what the stage's guide teaches; the others (robustness,
    /// outages, load) run in CI and with `cargo xtask check STAGE --all`.
    pub lesson: bool,
    /// The first part of the scenario's name, instead of its stage's name:
    /// `cargo xtask check STAGE` runs only the scenarios named after STAGE.
    pub group: Option<&'static str>,
    pub run: for<'a> fn(Scenario<'a>) -> futures::future::BoxFuture<'a, anyhow::Result<()>>,
}

/// What a plane of a scenario's own starts with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OwnPlane {
    /// The stage's CRDs, like the shared planes.
    WithCrds,
    /// No CRD at all.
    Bare,
}

/// The places for scenarios that keep the cores busy: as many as there
/// are test threads (4 unless `--test-threads` says otherwise). The
/// scenarios that mostly wait run on threads of their own, beside them.
struct Places {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Places {
    /// Waits for a free place, and holds it until the returned guard is dropped.
    fn take(&self) -> Place<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Place(self)
    }
}

struct Place<'a>(&'a Places);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // Scenarios mostly wait on the cluster, so run more of them than there are cores.
    let asked_threads = args.test_threads;
    let busy_places = asked_threads.unwrap_or(4);
    // Ctrl-C must not leave control-plane processes or temporary folders behind.
    let _ = ctrlc::set_handler(|| {
        xtask::cleanup::remove_everything();
        std::process::exit(130);
    });

    let lesson_only = std::env::var("E2E_SCOPE").is_ok_and(|scope| scope == "lesson");
    let cases: Vec<Case> = [
        step01::cases(),
        step02::cases(),
        step03::cases(),
        step04::cases(),
        deploy::cases(),
        election::cases(),
        robustness::cases(),
        checker::cases(),
    ]
    .concat();
    let selected = |name: &str| match &args.filter {
        Some(filter) if args.exact => name == filter,
        Some(filter) => name.contains(filter.as_str()),
        None => true,
    } && !args.skip.iter().any(|skip| name.contains(skip.as_str()));
    let full_name = |case: &Case| format!("{}::{}", case.group.unwrap_or(case.cluster.name()), case.name);
    let (mut cases, left_out): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|case| case.lesson || !lesson_only);
    // The scenarios that mostly wait start first, each on a thread of its own.
    cases.sort_by_key(|case| !case.mostly_waits);
    let waiting = cases
        .iter()
        .filter(|case| case.mostly_waits && selected(&full_name(case)))
        .count();
    if asked_threads.is_none() {
        args.test_threads = Some(busy_places + waiting);
    }
    let places: &'static Places = Box::leak(Box::new(Places {
        free: Mutex::new(busy_places),
        freed: Condvar::new(),
    }));
    // Said on a line of its own, so that the checker can tell what `--all` adds.
    let left_out = left_out.iter().filter(|case| selected(&full_name(case))).count();
    if lesson_only && !args.list {
        println!("beyond the lesson: {left_out} scenarios not run");
    }

    // Start the clusters before any scenario: a control plane lives as long as
    // the thread that started it, and this one outlives them all.
    let existing = std::env::var("USE_EXISTING_CLUSTER").is_ok_and(|value| value == "true");
    let warm = std::env::var_os("E2E_PLANE").map(std::path::PathBuf::from);
    let root = match xtask::temporary_folder("planes") {
        Ok(root) => root,
        Err(err) => {
            eprintln!("error: cannot create a temporary folder: {err}");
            return ExitCode::FAILURE;
        }
    };
    xtask::cleanup::register_folder(root.path().to_path_buf());
    let mut clusters: Vec<(Stage, Result<Arc<Cluster>, String>)> = Vec::new();
    let needed: Vec<Stage> = STAGES
        .into_iter()
        .filter(|stage| {
            cases
                .iter()
                .any(|case| case.cluster == *stage && case.own_plane.is_none() && selected(&full_name(case)))
        })
        .collect();
    let wants_own_plane = cases
        .iter()
        .any(|case| case.own_plane.is_some() && selected(&full_name(case)));
    let mut assets_for_own_planes: Option<Result<Arc<xtask::assets::Assets>, String>> = None;
    if wants_own_plane && !existing && !args.list {
        assets_for_own_planes = Some(
            xtask::assets::locate_or_build()
                .map(Arc::new)
                .map_err(|err| format!("{err:#}")),
        );
    }
    if !needed.is_empty() && !args.list {
        if existing {
            let gate: &'static StageGate = Box::leak(Box::default());
            let kubectl = std::path::PathBuf::from("kubectl");
            for stage in needed {
                clusters.push((
                    stage,
                    Ok(Arc::new(Cluster::Existing {
                        kubectl: kubectl.clone(),
                        gate,
                    })),
                ));
            }
        } else if let Some(dir) = &warm {
            // One plane holds one stage's CRDs at a time.
            if needed.len() > 1 {
                eprintln!("error: a warm plane (E2E_PLANE) serves one stage at a time: name one, e.g. `-- step02`");
                return ExitCode::FAILURE;
            }
            let kubectl = match xtask::assets::locate() {
                Some(assets) => assets.kubectl(),
                None => std::path::PathBuf::from("kubectl"),
            };
            for stage in needed {
                let cluster = Cluster::warm(stage, dir, kubectl.clone())
                    .map(Arc::new)
                    .map_err(|err| format!("{err:#}"));
                clusters.push((stage, cluster));
            }
        } else {
            let assets = match xtask::assets::locate_or_build() {
                Ok(assets) => assets,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    return ExitCode::FAILURE;
                }
            };
            let names: Vec<&str> = needed.iter().map(|stage| stage.name()).collect();
            eprintln!("starting a control plane for each of {}…", names.join(", "));
            let started = Cluster::start_locals(&needed, &assets, root.path());
            for (stage, cluster) in needed.into_iter().zip(started) {
                clusters.push((stage, cluster.map(Arc::new).map_err(|err| format!("{err:#}"))));
            }
        }
    }

    let trials = cases
        .into_iter()
        .map(|case| {
            let name = full_name(&case);
            let mut cluster = clusters
                .iter()
                .find(|(stage, _)| *stage == case.cluster)
                .map(|(_, cluster)| cluster.clone());
            // Breaking someone else's cluster is not ours to do: those
            // scenarios are reported as ignored there, never as passed.
            let ignored = existing && (case.needs_audit_log || case.own_plane.is_some());
            let assets = assets_for_own_planes.clone();
            let planes_root = root.path().to_path_buf();
            Trial::test(name, move || {
                let _place = (!case.mostly_waits).then(|| places.take());
                if let (Some(kind), Some(assets)) = (case.own_plane, assets) {
                    let assets = assets.map_err(|err| Failed::from(format!("no control-plane binaries: {err}")))?;
                    let dir = planes_root.join(format!("{}-{}", case.cluster.name(), case.name));
                    let own = match kind {
                        OwnPlane::WithCrds => Cluster::start_local(case.cluster, &assets, &dir),
                        OwnPlane::Bare => Cluster::start_bare(&assets, &dir),
                    };
                    cluster = Some(own.map(Arc::new).map_err(|err| format!("{err:#}")));
                }
                // A cluster that could not start is a failure, never a skip.
                let cluster = match cluster {
                    Some(Ok(cluster)) => cluster,
                    Some(Err(err)) => return Err(Failed::from(format!("the control plane did not start: {err}"))),
                    None => return Err(Failed::from("no cluster was started for this scenario")),
                };
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime
                    .block_on(async {
                        let scenario = Scenario::new(&cluster, case.cluster, case.name).await?;
                        (case.run)(scenario).await
                    })
                    .map_err(|err| Failed::from(format!("{err:#}")))
            })
            .with_ignored_flag(ignored)
        })
        .collect();

    let conclusion = libtest_mimic::run(&args, trials);
    drop(clusters);
    drop(root);
    conclusion.exit_code()
}
