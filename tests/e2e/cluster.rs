//! Where scenarios run: a cluster per stage, a namespace per scenario, and the
//! program under test running as a process of its own.

use std::fs;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams, ValidationDirective};
use kube::core::{ApiResource, GroupVersionKind};
use xtask::cleanup;
use xtask::control_plane::{self, ControlPlane, Lifetime, Pace};

/// How long a scenario waits for the cluster to reach the state it expects:
/// 60 s, or `E2E_DEADLINE_SECS` (the checker waits less, on a warm plane).
/// A wait ends as soon as the state is reached; this is only the limit.
fn deadline() -> Duration {
    let seconds = std::env::var("E2E_DEADLINE_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

// The API group and version come from the catalogue; the manifests in the
// scenarios spell them out on purpose, as an attendee writes them.
pub use xtask::catalogue::{GROUP, VERSION};

/// A stage of the workshop: the program that implements it, and the cluster it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Step01,
    Step02,
    Step03,
    Step04,
}

pub const STAGES: [Stage; 4] = [Stage::Step01, Stage::Step02, Stage::Step03, Stage::Step04];

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Step01 => "step01_crd",
            Stage::Step02 => "step02_status",
            Stage::Step03 => "step03_tuple",
            Stage::Step04 => "step04_fermat",
        }
    }

    /// The program under test for this stage: `<dir>/<stage name>`, where dir
    /// is `E2E_PROGRAM_DIR` if set, else where cargo puts the finished stages
    /// (`cargo build --bins`). The checker sets it to the attendee's built examples.
    pub fn program(self) -> Result<PathBuf> {
        let dir = match std::env::var_os("E2E_PROGRAM_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => profile_dir()?,
        };
        built(dir.join(self.name()))
    }

    /// The workbench's program for this stage, as handed out to attendees
    /// (`cargo build --examples`), whatever `E2E_PROGRAM_DIR` says.
    pub fn workbench(self) -> Result<PathBuf> {
        built(profile_dir()?.join("examples").join(self.name()))
    }

    /// The CRDs this stage's program prints with `crd`.
    pub fn crds(self) -> Result<String> {
        xtask::cargo::stage_crds(&self.program()?)
    }
}

/// Where cargo puts what it builds for this test's profile: the test runs
/// from `<target>/<profile>/deps/`.
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .context("unexpected test location")?;
    Ok(profile.to_path_buf())
}

/// `program`, if it has been built.
fn built(program: PathBuf) -> Result<PathBuf> {
    if !program.is_file() {
        bail!(
            "{} does not exist: build the stages with `cargo build --bins --examples`",
            program.display()
        );
    }
    Ok(program)
}

/// Where a stage's scenarios run.
pub enum Cluster {
    /// A control plane of its own, started for this run with the stage's CRDs.
    Local { plane: Box<ControlPlane>, kubectl: PathBuf },
    /// The cluster of the current kubeconfig context (`USE_EXISTING_CLUSTER=true`).
    Existing { kubectl: PathBuf, gate: &'static StageGate },
    /// A local control plane that outlives this run (`E2E_PLANE=<its folder>`,
    /// the checker's warm plane): the stage's CRDs are installed on it at
    /// start, and each scenario deletes its namespace when it ends.
    Warm {
        kubeconfig: PathBuf,
        audit_log: PathBuf,
        kubectl: PathBuf,
    },
}

impl Cluster {
    /// Starts a control plane for `stage`: etcd and kube-apiserver, then the
    /// stage's CRDs, installed as attendees do
    /// (`<stage> crd | kubectl apply --server-side -f -`), then kube-controller-manager.
    pub fn start_local(stage: Stage, assets: &xtask::assets::Assets, root: &Path) -> Result<Cluster> {
        Cluster::start_locals(&[stage], assets, root)
            .pop()
            .unwrap_or_else(|| Err(anyhow!("no control plane was started")))
    }

    /// Starts a control plane per stage, as [`Cluster::start_local`] does,
    /// side by side: this thread launches every plane (their processes end
    /// with it) and starts their kube-controller-managers; other threads
    /// wait for the API servers and install the CRDs meanwhile.
    pub fn start_locals(stages: &[Stage], assets: &xtask::assets::Assets, root: &Path) -> Vec<Result<Cluster>> {
        let launched: Vec<Result<ControlPlane>> = stages
            .iter()
            .map(|stage| ControlPlane::launch(assets, root.join(stage.name()), Lifetime::Attached, Pace::Quick))
            .collect();
        let ready: Vec<Result<ControlPlane>> = std::thread::scope(|scope| {
            let waits: Vec<_> = launched
                .into_iter()
                .zip(stages)
                .map(|(plane, &stage)| {
                    scope.spawn(move || {
                        let plane = plane?;
                        plane.wait_until_ready()?;
                        plane.install_crds(&stage.crds()?)?;
                        Ok(plane)
                    })
                })
                .collect();
            waits
                .into_iter()
                .map(|wait| {
                    wait.join()
                        .unwrap_or_else(|_| Err(anyhow!("starting the control plane panicked")))
                })
                .collect()
        });
        ready
            .into_iter()
            .map(|plane| {
                let mut plane = plane?;
                plane.start_controller_manager()?;
                Ok(Cluster::Local {
                    kubectl: assets.kubectl(),
                    plane: Box::new(plane),
                })
            })
            .collect()
    }

    /// The warm plane in `dir`, which must have been started with `stage`'s
    /// CRDs (`xtask::planes` records them): CRDs installed on a running plane
    /// reach its garbage collector only up to 30 s later.
    pub fn warm(stage: Stage, dir: &Path, kubectl: PathBuf) -> Result<Cluster> {
        if xtask::planes::installed_crds(dir) != Some(stage.crds()?) {
            bail!(
                "the plane in {} was not started with the CRDs of {}: `cargo xtask check {}` starts one that is",
                dir.display(),
                stage.name(),
                stage.name()
            );
        }
        Ok(Cluster::Warm {
            kubeconfig: dir.join("kubeconfig"),
            audit_log: dir.join("logs").join("audit.log"),
            kubectl,
        })
    }

    /// Starts a control plane with no CRD at all.
    pub fn start_bare(assets: &xtask::assets::Assets, dir: &Path) -> Result<Cluster> {
        let mut plane = ControlPlane::start(assets, dir.to_path_buf(), Lifetime::Attached, Pace::Quick)?;
        plane.start_controller_manager()?;
        Ok(Cluster::Local {
            plane: Box::new(plane),
            kubectl: assets.kubectl(),
        })
    }

    /// The local control plane, for scenarios that break it on purpose.
    pub fn plane(&self) -> Option<&ControlPlane> {
        match self {
            Cluster::Local { plane, .. } => Some(plane),
            Cluster::Existing { .. } | Cluster::Warm { .. } => None,
        }
    }

    /// The kubectl that scenarios use with this cluster.
    pub fn kubectl_program(&self) -> &Path {
        match self {
            Cluster::Local { kubectl, .. } | Cluster::Existing { kubectl, .. } | Cluster::Warm { kubectl, .. } => {
                kubectl
            }
        }
    }

    /// The API server's audit log, which only a local control plane has.
    pub fn audit_log(&self) -> Option<&Path> {
        match self {
            Cluster::Local { plane, .. } => Some(&plane.audit_log),
            Cluster::Warm { audit_log, .. } => Some(audit_log),
            Cluster::Existing { .. } => None,
        }
    }

    /// The kubeconfig to start from: the admin one that the workshop wrote
    /// for a local or warm plane; `None` for the user's own (kubectl's default).
    fn base_kubeconfig(&self) -> Option<&Path> {
        match self {
            Cluster::Local { plane, .. } => Some(&plane.kubeconfig),
            Cluster::Warm { kubeconfig, .. } => Some(kubeconfig),
            Cluster::Existing { .. } => None,
        }
    }
}

/// On an existing cluster, stages run one at a time: each needs its own
/// version of the CRDs installed. Scenarios of the same stage share a turn.
#[derive(Default)]
pub struct StageGate {
    state: Mutex<(Option<Stage>, usize)>,
    changed: Condvar,
}

impl StageGate {
    /// Waits for `stage`'s turn; installs its CRDs when the turn begins.
    /// The turn lasts as long as the returned guard.
    fn enter(&self, stage: Stage, kubectl: &Path) -> Result<Turn<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match *state {
                (Some(current), ref mut active) if current == stage => {
                    *active += 1;
                    return Ok(Turn { gate: self });
                }
                (_, 0) => {
                    control_plane::install_crds(kubectl, None, &stage.crds()?)?;
                    *state = (Some(stage), 1);
                    return Ok(Turn { gate: self });
                }
                _ => state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }
}

/// A scenario's share of its stage's turn; dropping it ends the share.
pub struct Turn<'a> {
    gate: &'a StageGate,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 -= 1;
        self.gate.changed.notify_all();
    }
}

/// One scenario's world: a fresh namespace, a kubeconfig whose context points
/// at it, and at most one running controller.
pub struct Scenario<'a> {
    pub namespace: String,
    pub kubeconfig: PathBuf,
    pub client: Client,
    cluster: &'a Cluster,
    dir: tempfile::TempDir,
    /// The running copies of the program under test (usually one), behind a
    /// lock so that a wait can see one exit.
    controllers: Mutex<Vec<Child>>,
    /// Where this scenario's part of the audit log begins (a warm plane's log
    /// holds every earlier run too).
    audit_start: u64,
    /// Held until the namespace is deleted (existing clusters only).
    _turn: Option<Turn<'a>>,
}

impl<'a> Scenario<'a> {
    pub async fn new(cluster: &'a Cluster, stage: Stage, label: &str) -> Result<Scenario<'a>> {
        let turn = match cluster {
            Cluster::Existing { gate, kubectl } => Some(gate.enter(stage, kubectl)?),
            Cluster::Local { .. } | Cluster::Warm { .. } => None,
        };
        let audit_start = cluster
            .audit_log()
            .and_then(|path| fs::metadata(path).ok())
            .map_or(0, |meta| meta.len());
        let dir = xtask::temporary_folder("e2e")?;
        cleanup::register_folder(dir.path().to_path_buf());
        let namespace = namespace_name(label);
        let kubeconfig = dir.path().join("kubeconfig");

        // A copy of the cluster's kubeconfig whose context names our namespace:
        // the program under test, like kubectl, works in the context's namespace.
        match cluster.base_kubeconfig() {
            // Written by the workshop, its credentials inline.
            Some(base) => fs::write(
                &kubeconfig,
                xtask::control_plane::kubeconfig_in_namespace(base, &namespace)?,
            )?,
            // The user's own: kubectl copies in the files it names.
            None => {
                let flattened = checked(
                    Command::new(cluster.kubectl_program())
                        .args(["config", "view", "--minify", "--flatten"])
                        .output()?,
                    "kubectl config view",
                )?;
                fs::write(&kubeconfig, flattened.stdout)?;
                checked(
                    Command::new(cluster.kubectl_program())
                        .env("KUBECONFIG", &kubeconfig)
                        .args([
                            "config",
                            "set-context",
                            "--current",
                            &format!("--namespace={namespace}"),
                        ])
                        .output()?,
                    "kubectl config set-context",
                )?;
            }
        }

        let client = xtask::control_plane::client_for(&kubeconfig).await?;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let mut object = k8s_openapi::api::core::v1::Namespace::default();
        object.metadata.name = Some(namespace.clone());
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .context("cannot create the scenario's namespace")?;
        Ok(Scenario {
            namespace,
            kubeconfig,
            client,
            cluster,
            dir,
            controllers: Mutex::new(Vec::new()),
            audit_start,
            _turn: turn,
        })
    }

    /// The cluster this scenario runs on.
    pub fn cluster(&self) -> &Cluster {
        self.cluster
    }

    /// The writes to custom resources in this scenario's namespace that the
    /// API server recorded, oldest first (local control planes only).
    pub fn recorded_writes(&self) -> Result<Vec<RecordedWrite>> {
        self.recorded(|event| event["stage"] == "ResponseComplete")
    }

    /// The scenario's own temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every request that `username` made in this scenario's namespace, as
    /// the audit log recorded it (the local plane's policy records all of a
    /// ServiceAccount's requests). A watch counts when its answer starts.
    pub fn recorded_requests_by(&self, username: &str) -> Result<Vec<RecordedWrite>> {
        self.recorded(|event| {
            let counted = match event["verb"].as_str() {
                Some("watch") => event["stage"] == "ResponseStarted",
                _ => event["stage"] == "ResponseComplete",
            };
            counted && event["user"]["username"] == username
        })
    }

    /// The audit log's events in this scenario's namespace that `keep` selects, oldest first.
    fn recorded(&self, keep: impl Fn(&serde_json::Value) -> bool) -> Result<Vec<RecordedWrite>> {
        let path = self
            .cluster
            .audit_log()
            .context("only a local control plane keeps an audit log")?;
        let text = read_from(path, self.audit_start).with_context(|| format!("cannot read {}", path.display()))?;
        let mut found = Vec::new();
        for line in text.lines() {
            // The first or last line may be half written: it belongs to no scenario's writes yet.
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let object = &event["objectRef"];
            if object["namespace"] != self.namespace.as_str() || !keep(&event) {
                continue;
            }
            let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
            found.push(RecordedWrite {
                code: event["responseStatus"]["code"].as_u64().unwrap_or(0),
                verb: text(&event["verb"]),
                resource: text(&object["resource"]),
                subresource: text(&object["subresource"]),
                name: text(&object["name"]),
                request_uri: text(&event["requestURI"]),
                user_agent: text(&event["userAgent"]),
                received: event["requestReceivedTimestamp"]
                    .as_str()
                    .and_then(seconds_of)
                    .unwrap_or(0.0),
            });
        }
        Ok(found)
    }

    /// Stops the running controllers at once (SIGKILL: nothing is cleaned up).
    pub fn stop_controller(&mut self) {
        for mut child in self.controllers_mut().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
            cleanup::forget_process(child.id());
        }
    }

    /// Whether every controller started is still running (none has exited).
    pub fn controllers_still_running(&mut self) -> bool {
        self.controllers_mut()
            .iter_mut()
            .all(|child| matches!(child.try_wait(), Ok(None)))
    }

    fn controllers_mut(&mut self) -> &mut Vec<Child> {
        self.controllers.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// The process ids of the running controllers, oldest first.
    pub fn controller_pids(&self) -> Vec<u32> {
        let controllers = self.controllers.lock().unwrap_or_else(|p| p.into_inner());
        controllers.iter().map(Child::id).collect()
    }

    /// Why the program under test can no longer reach what a wait expects:
    /// it panicked (the panic's message and place, a `todo!` first of all),
    /// or a copy exited.
    fn controller_stopped(&self) -> Option<String> {
        if let Some(panic) = panic_in(&self.controller_log()) {
            return Some(panic);
        }
        let mut controllers = self.controllers.lock().unwrap_or_else(|p| p.into_inner());
        controllers.iter_mut().find_map(|child| match child.try_wait() {
            Ok(Some(status)) => Some(format!("the controller exited ({status})")),
            _ => None,
        })
    }

    /// Takes running controller `pid` out of the scenario's list, to stop it.
    fn take_controller(&mut self, pid: u32) -> Result<Child> {
        let controllers = self.controllers_mut();
        let index = controllers
            .iter()
            .position(|child| child.id() == pid)
            .with_context(|| format!("no running controller has process id {pid}"))?;
        Ok(controllers.remove(index))
    }

    /// Kills one running controller (SIGKILL), as a crash would.
    pub fn kill_controller(&mut self, pid: u32) -> Result<()> {
        let mut child = self.take_controller(pid)?;
        let killed = child.kill();
        let waited = child.wait();
        cleanup::forget_process(pid);
        killed?;
        waited?;
        Ok(())
    }

    /// Starts `stage`'s program without arguments, as `cargo run --example <stage>` does.
    /// Each call starts one more copy; they all write to the same log.
    pub fn start_controller(&mut self, stage: Stage) -> Result<()> {
        let kubeconfig = self.kubeconfig.clone();
        self.start_controller_as(stage, &kubeconfig)
    }

    /// Starts `stage`'s program with another identity's kubeconfig.
    pub fn start_controller_as(&mut self, stage: Stage, kubeconfig: &Path) -> Result<()> {
        self.start_program_as(&stage.program()?, kubeconfig)
    }

    /// Starts `program` as the controller under test, with the scenario's kubeconfig.
    pub fn start_program(&mut self, program: &Path) -> Result<()> {
        let kubeconfig = self.kubeconfig.clone();
        self.start_program_as(program, &kubeconfig)
    }

    fn start_program_as(&mut self, program: &Path, kubeconfig: &Path) -> Result<()> {
        self.spawn(program, kubeconfig, "controller.log", &[])?;
        Ok(())
    }

    /// Starts `program` with `kubeconfig` and the environment `env`
    /// besides, appending its output to `log` in the scenario's folder;
    /// returns its process id.
    fn spawn(&mut self, program: &Path, kubeconfig: &Path, log: &str, env: &[(&str, &str)]) -> Result<u32> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(log))?;
        let child = Command::new(program)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let pid = child.id();
        cleanup::register_process(pid);
        self.controllers_mut().push(child);
        Ok(pid)
    }

    /// Starts `stage`'s program as `cargo run … | tee` runs it in a terminal:
    /// its output goes through a pipe to another process, both in a process
    /// group of their own, which [`Scenario::press_ctrl_c`] signals as a
    /// terminal does. Returns the group's id (the shell's process id).
    pub fn start_controller_through_a_pipe(&mut self, stage: Stage) -> Result<u32> {
        use std::os::unix::process::CommandExt;
        let log = self.dir.path().join("controller.log");
        let child = Command::new("sh")
            .args(["-c", r#""$0" 2>&1 | tee -a "$1" >/dev/null"#])
            .arg(stage.program()?)
            .arg(&log)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()?;
        let group = child.id();
        cleanup::register_process(group);
        self.controllers_mut().push(child);
        Ok(group)
    }

    /// Ctrl-C in a terminal: SIGINT to every process of the group (the
    /// program and the one reading its pipe alike); waits until the group's
    /// leader has exited. A program still running after the deadline fails
    /// the scenario (and is killed) instead of holding up the run.
    pub fn press_ctrl_c(&mut self, group: u32) -> Result<()> {
        checked(
            Command::new("kill")
                .args(["-INT", "--", &format!("-{group}")])
                .output()?,
            "kill -INT",
        )?;
        let mut child = self.take_controller(group)?;
        let started = Instant::now();
        while child.try_wait()?.is_none() {
            if started.elapsed() > deadline() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{group}")])
                    .status();
                let _ = child.wait();
                cleanup::forget_process(group);
                bail!("the program was still running {} s after Ctrl-C", deadline().as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cleanup::forget_process(group);
        Ok(())
    }

    /// What the controllers printed so far: `controller.log`, then the log
    /// of each copy started with a name of its own.
    pub fn controller_log(&self) -> String {
        let mut logs: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
                name.starts_with("controller-") && name.ends_with(".log")
            })
            .collect();
        logs.sort();
        let mut text = fs::read_to_string(self.dir.path().join("controller.log")).unwrap_or_default();
        for log in logs {
            text.push_str(&fs::read_to_string(log).unwrap_or_default());
        }
        text
    }

    /// What the copy started as `name` ([`Scenario::start_copy`]) printed so far.
    pub fn copy_log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("controller-{name}.log"))).unwrap_or_default()
    }

    /// Starts a copy of `stage`'s program named `name` (its host name, and
    /// its log's), with `kubeconfig` and the environment `env` besides; returns its process id.
    pub fn start_copy(&mut self, stage: Stage, name: &str, kubeconfig: &Path, env: &[(&str, &str)]) -> Result<u32> {
        let env: Vec<(&str, &str)> = [("HOSTNAME", name)].into_iter().chain(env.iter().copied()).collect();
        self.spawn(&stage.program()?, kubeconfig, &format!("controller-{name}.log"), &env)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the running controller `pid`.
    pub fn signal(&self, pid: u32, signal: &str) -> Result<()> {
        checked(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .output()?,
            &format!("kill -{signal}"),
        )?;
        Ok(())
    }

    /// Runs kubectl in the scenario's namespace and returns its output, failing on a non-zero exit.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let output = self.kubectl_output(args, None)?;
        let output = checked(output, &format!("kubectl {}", args.join(" ")))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs kubectl with `stdin` as input, and returns the whole output whatever the exit.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        self.kubectl_output_as(&self.kubeconfig, args, stdin)
    }

    /// Runs kubectl with another kubeconfig (another identity, or a broken
    /// one) and returns its output, failing on a non-zero exit.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<String> {
        let output = self.kubectl_output_as(kubeconfig, args, None)?;
        let output = checked(output, &format!("kubectl {}", args.join(" ")))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs kubectl with another kubeconfig, and returns the whole output whatever the exit.
    pub fn kubectl_output_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut child = Command::new(self.cluster.kubectl_program())
            .env("KUBECONFIG", kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut input = child.stdin.take().context("kubectl has no stdin")?;
        input.write_all(stdin.unwrap_or("").as_bytes())?;
        drop(input);
        Ok(child.wait_with_output()?)
    }

    /// Applies a manifest (YAML) in the scenario's namespace, as `kubectl
    /// apply -f -` does. Objects of the workshop's kinds go through the
    /// scenario's client, with server-side apply: field manager `kubectl`,
    /// fields that others set taken over, unknown fields refused (kubectl's
    /// strict validation). A kubectl process costs about 0.09 CPU-seconds
    /// and the scenarios apply over a hundred manifests. A manifest with
    /// any other kind, or an object without a name, goes to kubectl.
    pub async fn apply(&self, manifest: &str) -> Result<()> {
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(manifest).context("the manifest is not YAML")?;
        // Each object of a workshop's kind, with its resource and name; `None`
        // if the manifest has any other.
        let group = format!("{GROUP}/");
        let objects: Option<Vec<(ApiResource, &str, &serde_json::Value)>> = documents
            .iter()
            .filter(|document| !document.is_null())
            .map(|document| {
                let version = document["apiVersion"].as_str()?.strip_prefix(&group)?;
                let kind = document["kind"].as_str()?;
                let name = document["metadata"]["name"].as_str()?;
                let gvk = GroupVersionKind::gvk(GROUP, version, kind);
                Some((ApiResource::from_gvk(&gvk), name, document))
            })
            .collect();
        let Some(objects) = objects.filter(|objects| !objects.is_empty()) else {
            checked(
                self.kubectl_output(&["apply", "-f", "-"], Some(manifest))?,
                "kubectl apply",
            )?;
            return Ok(());
        };
        let params = PatchParams {
            field_validation: Some(ValidationDirective::Strict),
            ..PatchParams::apply("kubectl").force()
        };
        for (resource, name, object) in objects {
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &resource)
                .patch(name, &params, &Patch::Apply(object))
                .await
                .with_context(|| format!("cannot apply {} {name}", resource.kind))?;
        }
        Ok(())
    }

    /// What `kubectl patch KIND NAME --type=merge -p PATCH` does in the
    /// scenario's namespace (under kubectl's field manager), for one of the
    /// workshop's kinds (`Number`, `Tuple`, `Fermat`), through the client.
    pub async fn merge_patch(&self, kind: &str, name: &str, patch: &str) -> Result<()> {
        let patch: serde_json::Value =
            serde_json::from_str(patch).with_context(|| format!("the patch for {kind} {name} is not JSON"))?;
        let params = PatchParams {
            field_manager: Some("kubectl-patch".to_string()),
            ..PatchParams::default()
        };
        self.api(kind)
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("cannot patch {kind} {name}"))?;
        Ok(())
    }

    /// An API for one of the workshop's kinds in the scenario's namespace.
    pub fn api(&self, kind: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, VERSION, kind));
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    /// Waits until the status of `kind` `name` holds `expected` at `key`.
    pub async fn expect_status_field(
        &self,
        kind: &str,
        name: &str,
        key: &str,
        expected: serde_json::Value,
    ) -> Result<()> {
        let api = self.api(kind);
        self.eventually(&format!("{kind} {name} to report {key} {expected}"), || {
            let (api, expected) = (api.clone(), expected.clone());
            async move {
                let object = api.get(name).await.map_err(|err| err.to_string())?;
                let status = field(&object, &["status"]);
                if status[key] == expected {
                    Ok(())
                } else {
                    Err(format!("status {status}"))
                }
            }
        })
        .await
    }

    /// Waits until `kind` `name` is marked for deletion (held by a finalizer).
    pub async fn expect_marked_for_deletion(&self, kind: &str, name: &str) -> Result<()> {
        let api = self.api(kind);
        self.eventually(&format!("{kind} {name} to be marked for deletion"), || {
            let api = api.clone();
            async move {
                let object = api.get(name).await.map_err(|err| err.to_string())?;
                match object.metadata.deletion_timestamp {
                    Some(_) => Ok(()),
                    None => Err("no deletionTimestamp".to_string()),
                }
            }
        })
        .await
    }

    /// Polls `check` until it returns `Ok`, and fails with the last thing it
    /// saw (and the controller's log) if that takes longer than the deadline.
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let started = Instant::now();
        loop {
            let seen = match check().await {
                Ok(value) => return Ok(value),
                Err(seen) => seen,
            };
            // A stopped program reaches nothing more: say so now, not at the deadline.
            if let Some(stopped) = self.controller_stopped() {
                return Err(anyhow!(
                    "{stopped}\nwhile waiting for {what}; saw: {seen}\n--- controller log (last lines; {}) ---\n{}",
                    self.keep_log(),
                    last_lines(&self.controller_log(), 30)
                ));
            }
            if started.elapsed() > deadline() {
                return Err(anyhow!(
                    "waited {} s for {what}, but saw: {seen}\n--- controller log (last lines; {}) ---\n{}",
                    deadline().as_secs(),
                    self.keep_log(),
                    last_lines(&self.controller_log(), 30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Keeps the controller's whole log (the scenario's folder goes when it
    /// ends), and says where.
    fn keep_log(&self) -> String {
        let kept = (std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
            .unwrap_or_else(|| xtask::repository_root().join("target"))
            .join("e2e-logs")
            .join(format!("{}.log", self.namespace));
        match fs::create_dir_all(kept.parent().unwrap_or(&kept)).and_then(|()| fs::write(&kept, self.controller_log()))
        {
            Ok(()) => format!("the whole log: {}", kept.display()),
            Err(err) => format!("the whole log could not be kept: {err}"),
        }
    }
}

/// The first panic in a program's output: its message, then where it
/// happened (`not yet implemented: 2.4: …` for an open part).
pub fn panic_in(log: &str) -> Option<String> {
    let mut lines = log.lines();
    let place = lines.find_map(|line| {
        line.split_once("panicked at ")
            .map(|(_, place)| place.trim_end_matches(':'))
    })?;
    let message = lines.next().unwrap_or_default().trim();
    Some(format!("the controller panicked: {message}\n  at {place}"))
}

/// The text of `path` from byte `start` on.
fn read_from(path: &Path, start: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs::File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Drop for Scenario<'_> {
    fn drop(&mut self) {
        self.stop_controller();
        cleanup::forget_folder(&self.dir.path().to_path_buf());
        if let Cluster::Existing { kubectl, .. } | Cluster::Warm { kubectl, .. } = self.cluster {
            // Leave nothing behind on someone else's cluster.
            let _ = Command::new(kubectl)
                .env("KUBECONFIG", &self.kubeconfig)
                .args(["delete", "namespace", &self.namespace, "--wait=false"])
                .output();
        }
    }
}

/// One write request, as the API server's audit log recorded it.
#[derive(Debug)]
pub struct RecordedWrite {
    /// The HTTP status of the answer: 201 for a create, 409 for a refused one…
    pub code: u64,
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub request_uri: String,
    pub user_agent: String,
    /// When the API server received it, in seconds since 1970.
    pub received: f64,
}

/// An RFC 3339 time in UTC as the audit log writes it
/// (`2026-12-01T03:16:12.208774Z`), in seconds since 1970.
pub fn seconds_of(time: &str) -> Option<f64> {
    let (date, clock) = time.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let mut clock = clock.splitn(3, ':');
    let (hours, minutes) = (clock.next()?.parse::<f64>().ok()?, clock.next()?.parse::<f64>().ok()?);
    let seconds = clock.next()?.parse::<f64>().ok()?;
    // Days since 1970-01-01 of a date in the proleptic Gregorian calendar.
    let (year, month) = if month <= 2 {
        (year - 1, month + 12)
    } else {
        (year, month)
    };
    let days = 365 * year + year / 4 - year / 100 + year / 400 + (153 * (month - 3) + 2) / 5 + day - 719_469;
    Some(days as f64 * 86_400.0 + hours * 3600.0 + minutes * 60.0 + seconds)
}

/// A namespace name for a scenario, unique across runs.
fn namespace_name(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("{}-{:06x}", label.trim_matches('-'), nanos & 0xff_ffff)
}

fn checked(output: Output, what: &str) -> Result<Output> {
    if output.status.success() {
        Ok(output)
    } else {
        Err(anyhow!(
            "`{what}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

pub use xtask::control_plane::last_lines;

/// Runs `program` with `args` until it exits, with the scenario's kubeconfig
/// unless `kubeconfig` names another. A program still running after the
/// deadline is killed, and that is an error: these runs are meant to end.
pub fn run_to_exit(program: &Path, args: &[&str], kubeconfig: &Path) -> Result<Output> {
    // Output goes to files, not pipes: a pipe nobody reads would block a chatty program.
    let stdout = tempfile::tempfile()?;
    let stderr = tempfile::tempfile()?;
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > deadline() {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} was still running after {} s; it printed:\n{}{}",
                program.display(),
                deadline().as_secs(),
                read_all(stdout)?,
                read_all(stderr)?
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(Output {
        status,
        stdout: read_all(stdout)?.into_bytes(),
        stderr: read_all(stderr)?.into_bytes(),
    })
}

fn read_all(mut file: fs::File) -> Result<String> {
    use std::io::{Read, Seek};
    let mut text = String::new();
    file.rewind()?;
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// Checks that a failed run explained itself as a person wants: a non-zero
/// exit and a single line on stderr, with no panic or backtrace.
pub fn expect_one_line_error(output: &Output) -> Result<String> {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if output.status.success() {
        bail!("expected a failure, but it exited successfully; stderr: {stderr}");
    }
    if stderr.lines().count() != 1 || stderr.contains("panicked") {
        bail!("expected one line on stderr, got:\n{stderr}");
    }
    Ok(stderr)
}

/// A field of an object, as JSON (`null` when absent).
pub fn field<'o>(object: &'o DynamicObject, path: &[&str]) -> &'o serde_json::Value {
    path.iter().fold(&object.data, |value, key| &value[*key])
}
