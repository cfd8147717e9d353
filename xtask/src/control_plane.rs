//! A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver and
//! kube-controller-manager, each a process of its own.
//!
//! The order matters. etcd stores everything; kube-apiserver serves the API
//! over TLS with RBAC, in front of etcd; then the run's CRDs are installed and
//! we wait until they are Established; only then starts kube-controller-manager,
//! with just the garbage collector (which deletes children whose owner is gone)
//! and the namespace controller. Its garbage collector looks for new kinds
//! only every 30 seconds, so kinds installed before it starts are seen at once.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::assets::Assets;
use crate::cleanup;
use crate::pki::{ClientIdentity, Pki, write_private};
use crate::process;

/// How the processes relate to the program that starts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Dies with the thread that started it, even if that thread is killed (tests).
    Attached,
    /// In a session of its own, so that it can outlive the program that
    /// started it (`cargo xtask up`, then `ControlPlane::keep_running`).
    Detached,
}

/// One process of the control plane, and how it was started.
struct Process {
    name: &'static str,
    child: Child,
    program: OsString,
    args: Vec<OsString>,
}

/// A running control plane.
pub struct ControlPlane {
    /// The folder holding certificates, etcd's data, logs and kubeconfigs.
    pub dir: PathBuf,
    /// A kubeconfig for the admin user (group `system:masters`).
    pub kubeconfig: PathBuf,
    /// The API server's address.
    pub server: String,
    /// The API server's audit log: one JSON line per write to a custom
    /// resource, and per request of a ServiceAccount, so tests can count the
    /// requests a controller makes.
    pub audit_log: PathBuf,
    assets: Assets,
    pki: Pki,
    lifetime: Lifetime,
    pace: Pace,
    /// Behind a lock so that a test can stop and restart one while others use the plane.
    processes: Mutex<Vec<Process>>,
    /// Set by `keep_running`: dropping no longer stops anything.
    released: bool,
}

/// How a plane is tuned: as a default cluster, or for the tests and the
/// workshop, which wait for it often. Either way it behaves the same; only
/// how often Go collects its heap, and how fast the garbage collector of
/// Kubernetes may send requests, differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// As a default cluster: the benchmark measures against it.
    Default,
    /// For the tests and the workshop (`cargo xtask up`, the checker).
    Quick,
}

impl Pace {
    /// How far Go's heap grows past what is live before its collector runs,
    /// in percent (`GOGC`), for etcd, kube-apiserver and
    /// kube-controller-manager. Go's default is 100. A plane here serves one
    /// workshop or one test run: at 200 the collector runs half as often, and
    /// the end-to-end scenarios spend about 6 % less CPU, for API servers
    /// up to about 40 % larger (figures in BENCHMARKS.md).
    pub fn go_gc_percent(self) -> u32 {
        match self {
            Pace::Default => 100,
            Pace::Quick => 200,
        }
    }

    /// kube-controller-manager's request rate, a second (twice that in
    /// bursts). The default is 20: its garbage collector then spends 7.5 s
    /// of requests on the 150 children of one deleted Fermat of 100, and the
    /// tests and the workshop wait for it often.
    pub fn controller_manager_qps(self) -> u32 {
        match self {
            Pace::Default => 20,
            Pace::Quick => 300,
        }
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver in `dir` and waits until the API server is ready.
    pub fn start(assets: &Assets, dir: PathBuf, lifetime: Lifetime, pace: Pace) -> Result<ControlPlane> {
        let plane = ControlPlane::launch(assets, dir, lifetime, pace)?;
        plane.wait_until_ready()?;
        Ok(plane)
    }

    /// Starts etcd and kube-apiserver in `dir`, without waiting for them:
    /// [`ControlPlane::wait_until_ready`] does, on any thread. An attached
    /// plane's processes end with the thread that launches them
    /// (`PR_SET_PDEATHSIG` follows the thread, not the process), so several
    /// planes start side by side when one long-lived thread launches them all
    /// and others wait.
    pub fn launch(assets: &Assets, dir: PathBuf, lifetime: Lifetime, pace: Pace) -> Result<ControlPlane> {
        fs::create_dir_all(dir.join("logs")).with_context(|| format!("cannot create {}", dir.display()))?;
        if lifetime == Lifetime::Attached {
            cleanup::register_folder(dir.clone());
        }
        let pki = Pki::create(&dir)?;
        let [etcd_client_port, etcd_peer_port, api_port] = free_ports()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("kubeconfig");
        let audit_log = dir.join("logs").join("audit.log");
        write_private(
            &kubeconfig,
            &kubeconfig_yaml(&server, &pki.ca_pem, &pki.client("admin", &["system:masters"])?)?,
        )?;

        let mut plane = ControlPlane {
            dir,
            kubeconfig,
            server,
            audit_log,
            assets: assets.clone(),
            pki,
            lifetime,
            pace,
            processes: Mutex::new(Vec::new()),
            released: false,
        };
        let etcd_client = format!("http://127.0.0.1:{etcd_client_port}");
        let mut etcd = plane.etcd_command(&etcd_client, etcd_peer_port);
        plane.spawn("etcd", &mut etcd)?;
        let audit_policy = plane.dir.join("audit-policy.yaml");
        fs::write(&audit_policy, AUDIT_POLICY)?;
        let mut apiserver = plane.apiserver_command(&etcd_client, api_port, &audit_policy);
        plane.spawn("kube-apiserver", &mut apiserver)?;
        Ok(plane)
    }

    /// The command that starts etcd, serving clients at `client` and its
    /// peers on port `peer_port`, with its data in `etcd/`.
    fn etcd_command(&self, client: &str, peer_port: u16) -> Command {
        let peer = format!("http://127.0.0.1:{peer_port}");
        let data = self.dir.join("etcd");
        let mut etcd = Command::new(self.assets.etcd());
        etcd.arg("--name=local")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=local={peer}"))
            // Tests and workshops keep nothing: skip the disk flushes.
            .arg("--unsafe-no-fsync");
        etcd
    }

    /// The command that starts kube-apiserver on `port`, in front of the
    /// etcd at `etcd_client`, with TLS, RBAC and the audit log.
    fn apiserver_command(&self, etcd_client: &str, port: u16, audit_policy: &Path) -> Command {
        let pki = &self.pki;
        let mut apiserver = Command::new(self.assets.kube_apiserver());
        apiserver
            .arg(format!("--etcd-servers={etcd_client}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", self.dir.join("certs").display()))
            .arg(format!("--tls-cert-file={}", pki.serving_cert.display()))
            .arg(format!("--tls-private-key-file={}", pki.serving_key.display()))
            .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
            .arg("--authorization-mode=RBAC")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!(
                "--service-account-key-file={}",
                pki.service_account_public_key.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ))
            .arg("--disable-admission-plugins=ServiceAccount")
            // No nodes and no Services here: nothing needs the `kubernetes` Service's endpoints.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--audit-policy-file={}", audit_policy.display()))
            .arg(format!("--audit-log-path={}", self.audit_log.display()))
            // The log is rotated at this size (100 MB when not set). A full
            // benchmark writes more than 100 MB of it, and reads each
            // workload's requests from where the file stood when it began.
            .arg(format!("--audit-log-maxsize={AUDIT_LOG_MEGABYTES}"));
        apiserver
    }

    /// A client of this control plane as admin.
    pub async fn client(&self) -> Result<kube::Client> {
        client_for(&self.kubeconfig).await
    }

    /// A kubectl command that talks to this control plane as admin.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.assets.kubectl());
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// Installs CRDs (YAML documents) with server-side apply, and waits until
    /// the API server serves them.
    pub fn install_crds(&self, yaml: &str) -> Result<()> {
        install_crds(&self.assets.kubectl(), Some(&self.kubeconfig), yaml)
    }

    /// Starts kube-controller-manager with the garbage collector, the
    /// namespace controller, and the Deployment and ReplicaSet controllers,
    /// at the request rate of the plane's [`Pace`].
    pub fn start_controller_manager(&mut self) -> Result<()> {
        let qps = self.pace.controller_manager_qps();
        let kubeconfig = self.dir.join("controller-manager.kubeconfig");
        let identity = self.pki.client("system:kube-controller-manager", &["system:masters"])?;
        write_private(
            &kubeconfig,
            &kubeconfig_yaml(&self.server, &self.pki.ca_pem, &identity)?,
        )?;
        self.spawn(
            "kube-controller-manager",
            Command::new(self.assets.kube_controller_manager())
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                // The garbage collector and the namespace controller for the
                // stages; the Deployment and ReplicaSet controllers for the
                // warm-up, where a deleted Pod comes back.
                .arg(
                    "--controllers=garbage-collector-controller,namespace-controller,\
                     deployment-controller,replicaset-controller",
                )
                .arg("--leader-elect=false")
                .arg(format!("--kube-api-qps={qps}"))
                .arg(format!("--kube-api-burst={}", qps * 2))
                // Serve no health endpoint: nothing scrapes it, and no port can clash.
                .arg("--secure-port=0"),
        )?;
        Ok(())
    }

    /// Writes a kubeconfig for another identity (a client certificate with
    /// common name `user`, in `groups`) and returns its path.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let path = self.dir.join(format!("{user}.kubeconfig"));
        let identity = self.pki.client(user, groups)?;
        write_private(&path, &kubeconfig_yaml(&self.server, &self.pki.ca_pem, &identity)?)?;
        Ok(path)
    }

    /// The process ids, for `cargo xtask down`.
    pub fn pids(&self) -> Vec<u32> {
        self.processes().iter().map(|process| process.child.id()).collect()
    }

    fn processes(&self) -> MutexGuard<'_, Vec<Process>> {
        self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Kills one of the processes (`etcd`, `kube-apiserver`, `kube-controller-manager`)
    /// at once, as a crash would. Returns false if no such process runs.
    pub fn kill(&self, name: &str) -> bool {
        let mut processes = self.processes();
        let Some(process) = processes.iter_mut().find(|process| process.name == name) else {
            return false;
        };
        let _ = process.child.kill();
        let _ = process.child.wait();
        cleanup::forget_process(process.child.id());
        true
    }

    /// Starts a process that `kill` stopped again, with the same arguments,
    /// and waits until the API server is ready.
    pub fn restart(&self, name: &str) -> Result<()> {
        let stopped = {
            let mut processes = self.processes();
            let index = processes
                .iter()
                .position(|process| process.name == name)
                .with_context(|| format!("no {name} was started"))?;
            processes.remove(index)
        };
        let mut command = Command::new(&stopped.program);
        command.args(&stopped.args);
        self.spawn_logged(stopped.name, &mut command, true)?;
        self.wait_until_ready()
    }

    /// Leaves a detached control plane running after this program exits, and
    /// returns its process ids (for `cargo xtask down`).
    pub fn keep_running(mut self) -> Vec<u32> {
        self.released = true;
        self.pids()
    }

    fn spawn(&mut self, name: &'static str, command: &mut Command) -> Result<()> {
        self.spawn_logged(name, command, false)
    }

    /// Starts `command`, its output going to `logs/<name>.log` (appended to when `append`).
    fn spawn_logged(&self, name: &'static str, command: &mut Command, append: bool) -> Result<()> {
        let path = self.dir.join("logs").join(format!("{name}.log"));
        let log = File::options()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)?;
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        command.env("GOGC", self.pace.go_gc_percent().to_string());
        configure_lifetime(command, self.lifetime);
        let child = command.spawn().with_context(|| format!("cannot start {name}"))?;
        after_spawn(child.id(), self.lifetime)?;
        if self.lifetime == Lifetime::Attached {
            cleanup::register_process(child.id());
        }
        self.processes().push(Process {
            name,
            child,
            program: command.get_program().to_owned(),
            args: command.get_args().map(ToOwned::to_owned).collect(),
        });
        Ok(())
    }

    /// Polls `/readyz` until the API server says it is ready, or a process exits.
    pub fn wait_until_ready(&self) -> Result<()> {
        // On a thread of its own, with a runtime of its own: callers may be
        // inside an async runtime (a scenario restarting a process).
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.poll_until_ready())
                .join()
                .unwrap_or_else(|_| bail!("the wait for the API server panicked"))
        })
    }

    fn poll_until_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = runtime.block_on(client_for(&self.kubeconfig))?;
        loop {
            for process in self.processes().iter_mut() {
                if let Some(status) = process.child.try_wait()? {
                    bail!(
                        "{} exited ({status}) while the control plane was starting; the end of its log:\n{}",
                        process.name,
                        log_tail(&self.dir.join("logs").join(format!("{}.log", process.name)))
                    );
                }
            }
            if runtime.block_on(answers_ready(&client)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver was not ready after 120 s; the end of its log:\n{}",
                    log_tail(&self.dir.join("logs").join("kube-apiserver.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Whether the API server answers `GET /readyz` with `ok` within 5 s
/// (`kubectl get --raw=/readyz`, without starting kubectl).
async fn answers_ready(client: &kube::Client) -> bool {
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await,
        Ok(Ok(answer)) if answer.trim() == "ok"
    )
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Its data is about to be deleted, so there is nothing to shut down
        // gracefully: a kill is instant, where SIGTERM lets kube-apiserver
        // spend seconds draining connections.
        let processes = self
            .processes
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for process in processes.iter_mut() {
            let _ = process.child.kill();
        }
        for process in processes.iter_mut() {
            let _ = process.child.wait();
            cleanup::forget_process(process.child.id());
        }
        let _ = fs::remove_dir_all(&self.dir);
        cleanup::forget_folder(&self.dir);
    }
}

/// The audit log's size before it is rotated, in megabytes.
const AUDIT_LOG_MEGABYTES: u64 = 2048;

/// Record every request of a ServiceAccount (the controllers under their own
/// Role) and of the benchmark's controller (user `math-controller-bench`),
/// and writes to custom resources (any group but the built-in ones) by
/// anyone; nothing else.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: [system:serviceaccounts]
- level: Metadata
  users: [math-controller-bench]
- level: None
  resources:
  - group: \"\"
  - group: apiextensions.k8s.io
  - group: coordination.k8s.io
  - group: events.k8s.io
  - group: flowcontrol.apiserver.k8s.io
  - group: rbac.authorization.k8s.io
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
";

/// Installs CRDs with `kubectl apply --server-side` and waits until they are Established.
/// `kubeconfig` names the cluster; without it, kubectl's own default applies.
pub fn install_crds(kubectl: &Path, kubeconfig: Option<&Path>, yaml: &str) -> Result<()> {
    let command = || {
        let mut command = Command::new(kubectl);
        if let Some(kubeconfig) = kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        command
    };
    let mut apply = command()
        .args(["apply", "--server-side", "--force-conflicts", "-o", "name", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run kubectl")?;
    apply
        .stdin
        .take()
        .context("kubectl has no stdin")?
        .write_all(yaml.as_bytes())?;
    let output = apply.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "kubectl apply refused the CRDs: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let wait = command()
        .args(["wait", "--for=condition=Established", "--timeout=60s"])
        .args(&names)
        .output()
        .context("cannot run kubectl")?;
    if !wait.status.success() {
        bail!(
            "the CRDs did not become Established: {}",
            String::from_utf8_lossy(&wait.stderr).trim()
        );
    }
    Ok(())
}

fn configure_lifetime(command: &mut Command, lifetime: Lifetime) {
    match lifetime {
        #[cfg(target_os = "linux")]
        Lifetime::Attached => process::killed_with_parent_thread(command),
        // Elsewhere a watchdog does it, once the process runs (`after_spawn`).
        #[cfg(not(target_os = "linux"))]
        Lifetime::Attached => {}
        Lifetime::Detached => process::in_own_session(command),
    }
}

/// After a spawn: where the kernel cannot tie an attached process to its
/// parent, a watchdog does.
fn after_spawn(child: u32, lifetime: Lifetime) -> Result<()> {
    if lifetime == Lifetime::Attached && !cfg!(target_os = "linux") {
        process::kill_when_parent_ends(std::process::id(), child)?;
    }
    Ok(())
}

/// A client of the cluster that the kubeconfig file `kubeconfig` names.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// A kubeconfig with the identity's certificate and key embedded, as YAML,
/// written from kube's own type for kubeconfig files.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, identity: &ClientIdentity) -> Result<String> {
    use kube::config::{AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
    const NAME: &str = "local";
    let config = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: NAME.into(),
            cluster: Some(Cluster {
                server: Some(server.into()),
                certificate_authority_data: Some(STANDARD.encode(ca_pem)),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: identity.user.clone(),
            auth_info: Some(AuthInfo {
                client_certificate_data: Some(STANDARD.encode(&identity.cert_pem)),
                client_key_data: Some(STANDARD.encode(&identity.key_pem).into()),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: NAME.into(),
            context: Some(Context {
                cluster: NAME.into(),
                user: Some(identity.user.clone()),
                namespace: Some("default".into()),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(NAME.into()),
        ..Kubeconfig::default()
    };
    serde_saphyr::to_string(&config).context("cannot write a kubeconfig as YAML")
}

/// The kubeconfig at `path` with its current context set to `namespace`, as
/// YAML: `kubectl config set-context --current --namespace=…` on a copy,
/// without starting kubectl. For the kubeconfigs this crate writes, which
/// hold their credentials inline.
pub fn kubeconfig_in_namespace(path: &Path, namespace: &str) -> Result<String> {
    let mut config = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
    let current = config.current_context.clone();
    let context = config
        .contexts
        .iter_mut()
        .find(|context| Some(&context.name) == current.as_ref())
        .and_then(|context| context.context.as_mut())
        .with_context(|| format!("the kubeconfig {} has no current context", path.display()))?;
    context.namespace = Some(namespace.to_string());
    serde_saphyr::to_string(&config).context("cannot write a kubeconfig as YAML")
}

/// Three different ports on 127.0.0.1 that nothing listens on right now,
/// and that this process has not handed out before. The ports are released
/// before etcd and the API server bind them: a plane started at the same
/// time by another thread (the tests start several) must not be given the
/// same ones in between.
fn free_ports() -> Result<[u16; 3]> {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Held open together while choosing, so that the kernel cannot hand out one twice.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a port on 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        if !handed_out.contains(&port) {
            ports.push(port);
        }
        held.push(listener);
        if held.len() > 64 {
            bail!("cannot find three free ports on 127.0.0.1");
        }
    }
    handed_out.extend(&ports);
    Ok([ports[0], ports[1], ports[2]])
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(length.saturating_sub(4000)));
        let _ = file.read_to_string(&mut text);
    }
    last_lines(&text, 20)
}

/// The last `count` lines of `text`.
pub fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_started_at_once_never_share_a_port() {
        let handed: Vec<u16> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4).map(|_| scope.spawn(|| free_ports().unwrap())).collect();
            threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect()
        });
        let mut unique = handed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), handed.len(), "{handed:?}");
    }

    #[test]
    fn a_kubeconfig_in_a_namespace_keeps_the_cluster_and_the_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        let identity = ClientIdentity {
            user: "admin".into(),
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        fs::write(
            &path,
            kubeconfig_yaml("https://127.0.0.1:6443", "CA", &identity).unwrap(),
        )
        .unwrap();
        let written = kubeconfig_in_namespace(&path, "scenario-1").unwrap();
        let config: kube::config::Kubeconfig = serde_saphyr::from_str(&written).unwrap();
        let before = kube::config::Kubeconfig::read_from(&path).unwrap();
        let context = config.contexts[0].context.as_ref().unwrap();
        assert_eq!(context.namespace.as_deref(), Some("scenario-1"));
        assert_eq!(config.current_context, before.current_context);
        assert_eq!(
            serde_saphyr::to_string(&config.clusters).unwrap(),
            serde_saphyr::to_string(&before.clusters).unwrap()
        );
        assert_eq!(
            serde_saphyr::to_string(&config.auth_infos).unwrap(),
            serde_saphyr::to_string(&before.auth_infos).unwrap()
        );
    }
}
