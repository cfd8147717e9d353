//! Running a stage program: what every stage's `main` needs and none teaches.
//!
//! In Go, kubebuilder scaffolds a `main.go` that sets up logging, builds a
//! controller-runtime manager from the kubeconfig, registers the controllers
//! with it and starts it with a signal handler; the manager also runs leader
//! election when asked. [`Stage`] does the same for the programs of this
//! workshop, and a little more for people at a workshop: with the argument
//! `crd` it prints the CRDs the stage needs, and every failure at start (no
//! kubeconfig, no cluster, refused credentials, a missing CRD) is one line
//! that says what to do, never a panic or a backtrace.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Client, Config};
use tower::limit::ConcurrencyLimitLayer;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::leader;
use crate::outage::Account;

/// Resolves when the program is asked to stop (Ctrl-C, or SIGTERM where
/// there is one). Every controller holds a clone.
///
/// One signal handler for the whole program, rather than kube-runtime's
/// `Controller::shutdown_on_signal` in each controller: the controllers stop
/// together, and the program can then clear its Lease.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// A stage program: its name, the CRDs it needs, and how its controllers run.
pub struct Stage {
    name: &'static str,
    crds: Vec<CustomResourceDefinition>,
    leader_election: bool,
}

impl Stage {
    /// The stage `name` (as `cargo run --example` names it), which needs `crds`.
    pub fn new(name: &'static str, crds: Vec<CustomResourceDefinition>) -> Stage {
        Stage {
            name,
            crds,
            leader_election: false,
        }
    }

    /// Of the copies of this program that run in one namespace, only the one
    /// that holds the Lease runs the controllers (see [`leader`]).
    pub fn with_leader_election(mut self) -> Stage {
        self.leader_election = true;
        self
    }

    /// Runs the program: prints the CRDs (argument `crd`), or connects and
    /// runs `controllers` until Ctrl-C. Every error is one line on stderr.
    pub async fn run<F, Fut>(self, controllers: F) -> ExitCode
    where
        F: Fn(Client, Shutdown) -> Fut,
        Fut: Future<Output = ()>,
    {
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(log_filter(std::env::var("RUST_LOG").ok().as_deref())))
            .with_ansi(std::io::stdout().is_terminal())
            // A log line that cannot be written is dropped. By default
            // tracing-subscriber reports it with `eprintln!`, which panics
            // when stderr is gone too: Ctrl-C on `… 2>&1 | tee log` stops
            // tee first, and the panic would leave the program unable to stop.
            .log_internal_errors(false)
            .init();
        let args: Vec<String> = std::env::args().skip(1).collect();
        match self.try_run(&args, controllers).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                // One line with the fix, never a backtrace. Some causes span
                // lines (a YAML error quotes the file): join them.
                let message = format!("{err:#}");
                let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
                // Not `eprintln!`, which panics if stderr is closed.
                let _ = writeln!(std::io::stderr(), "error: {line}");
                ExitCode::FAILURE
            }
        }
    }

    async fn try_run<F, Fut>(&self, args: &[String], controllers: F) -> anyhow::Result<()>
    where
        F: Fn(Client, Shutdown) -> Fut,
        Fut: Future<Output = ()>,
    {
        match args {
            [] => {}
            [arg] if arg == "crd" => {
                print!("{}", crds_yaml(&self.crds)?);
                return Ok(());
            }
            _ => bail!(
                "unexpected arguments {args:?}: run `{run}` to start the controller, or `{run} -- crd` to print the CRDs",
                run = self.cargo_run()
            ),
        }
        let mut config = kubeconfig().await?;
        if let Ok(value) = http::HeaderValue::from_str(&self.user_agent()) {
            config.headers.push((http::header::USER_AGENT, value));
        }
        // A copy that does not lead sends no write: its controllers' client
        // refuses them (see `leader::Fence`).
        let fence = self.leader_election.then(leader::Fence::default);
        let client = connect(config.clone(), fence.as_ref()).await?;
        self.require_crds(&client).await?;
        let required = required_resources(&self.crds);
        let account = crate::outage::Account::new(
            client.clone(),
            move |client| {
                let required = required.clone();
                async move { missing_resource(&client, &required).await.ok().flatten().is_none() }.boxed()
            },
            format!("{} -- crd | kubectl apply --server-side -f -", self.cargo_run()),
        );
        let shutdown = stop_signal().boxed().shared();
        let Some(fence) = fence else {
            info!("controllers running; press Ctrl-C to stop");
            run_controllers(&controllers, &client, &shutdown, &account).await;
            info!("stopped");
            return Ok(());
        };
        // The election's requests have a client of their own, so that they
        // never wait behind the controllers' requests.
        let election = Client::try_from(config).context("cannot build a client from the kubeconfig")?;
        let mut leadership = leader::join(election, fence, account.clone()).await?;
        loop {
            tokio::select! {
                led = leadership.leading() => led?,
                () = shutdown.clone() => break,
            }
            info!("controllers running; press Ctrl-C to stop");
            tokio::select! {
                () = run_controllers(&controllers, &client, &shutdown, &account) => break,
                lost = leadership.lost() => {
                    lost?;
                    warn!("this copy no longer leads: the controllers stop until it leads again");
                }
            }
        }
        leadership.step_down().await;
        info!("stopped");
        Ok(())
    }

    /// How the program names itself to the API server, in every request:
    /// an audit log then tells which stage, whose (the workbench's or the
    /// finished one) and which copy (its process id) sent what.
    fn user_agent(&self) -> String {
        let which = if self.cargo_run().contains("--example") {
            "workbench"
        } else {
            "finished"
        };
        format!(
            "{}-{}/{} ({which}, process {})",
            crate::CONTROLLER_NAME,
            self.name,
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        )
    }

    /// The command that runs this program: `cargo run --example …` for your
    /// workbench (built into `examples/`), `cargo run --bin …` for the finished stage.
    fn cargo_run(&self) -> String {
        let exe = std::env::current_exe().unwrap_or_default();
        let target = if exe.parent().is_some_and(|dir| dir.ends_with("examples")) {
            "--example"
        } else {
            "--bin"
        };
        format!("cargo run {target} {}", self.name)
    }

    /// Checks that this stage's CRDs are installed, so that a missing one is
    /// reported once, with the fix, instead of as a stream of watch errors.
    async fn require_crds(&self, client: &Client) -> anyhow::Result<()> {
        match missing_resource(client, &required_resources(&self.crds)).await {
            Ok(None) => Ok(()),
            Ok(Some((group_version, resource))) => bail!(
                "the API server does not serve `{resource}` in {group_version}: install this stage's CRDs with \
                 `{} -- crd | kubectl apply --server-side -f -`",
                self.cargo_run()
            ),
            Err(err) => {
                bail!("cannot ask the API server which resources it serves ({err}); check `kubectl api-resources`")
            }
        }
    }
}

/// Runs `controllers` until they stop after `shutdown`, or at most
/// [`STOP_GRACE`] after it: the reconciles under way finish, and no new one
/// starts. Each time a trouble ends (an outage, or CRDs that were deleted),
/// they start over, so that every watch lists afresh at once (see
/// [`crate::outage`]).
async fn run_controllers<F, Fut>(controllers: &F, client: &Client, shutdown: &Shutdown, account: &Account)
where
    F: Fn(Client, Shutdown) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut troubles_over = account.troubles_over();
    let grace_over = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            tokio::time::sleep(STOP_GRACE).await;
        }
    };
    let mut grace_over = std::pin::pin!(grace_over);
    loop {
        tokio::select! {
            () = account.scope(controllers(client.clone(), shutdown.clone())) => return,
            () = &mut grace_over => {
                info!("stopping the controllers {} s after Ctrl-C; the next run takes up what was under way", STOP_GRACE.as_secs());
                return;
            }
            Ok(()) = troubles_over.changed() => tracing::debug!("the controllers start over, from a fresh list"),
        }
    }
}

/// How long the reconciles under way may take to finish after Ctrl-C. A
/// reconcile takes a few requests; one that is not done by then waits for
/// an API server that does not answer, and the next run takes it up.
///
/// kube-runtime 5.0 has a second reason for a limit: a controller asked to
/// stop before its cache has the first list never ends
/// (tests/upstream/README.md).
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The first of `required` (group and version, resource) that the API
/// server does not serve, if any.
async fn missing_resource(client: &Client, required: &[(String, String)]) -> kube::Result<Option<(String, String)>> {
    for (group_version, resource) in required {
        let found: Vec<String> = match client.list_api_group_resources(group_version).await {
            Ok(list) => list.resources.into_iter().map(|resource| resource.name).collect(),
            // 404: not even one CRD of the group is installed. (Match the code:
            // this 404's body is not a Status, and `is_not_found()` misses it.)
            Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
            Err(err) => return Err(err),
        };
        if !found.contains(resource) {
            return Ok(Some((group_version.clone(), resource.clone())));
        }
    }
    Ok(None)
}

/// The log filter for `RUST_LOG` (`info` when unset). kube-client logs
/// every failed request at error level (during an outage, several a
/// second), and kube-runtime's watcher each refused list: the kit tells the
/// outage or the refusal once instead (see [`crate::outage`]), so those
/// lines are left out unless `RUST_LOG` asks for debug or trace, or names
/// kube_client.
fn log_filter(rust_log: Option<&str>) -> String {
    let asked = rust_log
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .unwrap_or("info");
    if ["debug", "trace", "kube_client"]
        .iter()
        .any(|word| asked.contains(word))
    {
        asked.to_string()
    } else {
        format!("{asked},kube_client::client=off,kube_runtime::watcher=error")
    }
}

/// The resources that `crds` define, as the API server's discovery lists
/// them, each with its group and version: `numbers`, and `numbers/status`
/// where the status subresource is on.
fn required_resources(crds: &[CustomResourceDefinition]) -> Vec<(String, String)> {
    let mut resources = Vec::new();
    for crd in crds {
        let plural = &crd.spec.names.plural;
        for version in crd.spec.versions.iter().filter(|version| version.served) {
            let group_version = format!("{}/{}", crd.spec.group, version.name);
            resources.push((group_version.clone(), plural.clone()));
            if version.subresources.as_ref().is_some_and(|s| s.status.is_some()) {
                resources.push((group_version, format!("{plural}/status")));
            }
        }
    }
    resources
}

/// The CRDs as YAML documents, ready for `kubectl apply -f -`.
fn crds_yaml(crds: &[CustomResourceDefinition]) -> anyhow::Result<String> {
    serde_saphyr::to_string_multiple(crds).context("cannot print the CRDs as YAML")
}

/// Every `description` in the CRDs, with where it is: what `kubectl explain`
/// shows. A stage's tests read them to check that they speak to the people
/// who use the cluster.
pub fn descriptions(crds: &[CustomResourceDefinition]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for crd in crds {
        let value = serde_json::to_value(crd).unwrap_or_default();
        collect_descriptions(&value, crd.metadata.name.as_deref().unwrap_or_default(), &mut found);
    }
    found
}

fn collect_descriptions(value: &serde_json::Value, path: &str, found: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("description", serde_json::Value::String(text)) => found.push((path.to_string(), text.clone())),
                    _ => collect_descriptions(value, &format!("{path}.{key}"), found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_descriptions(item, path, found)),
        _ => {}
    }
}

/// How many requests the program has in flight at most; the others wait
/// their turn. kube-rs speaks HTTP/1.1, one request per connection, each
/// connection with its TLS state and buffers: without a limit, 1,500 Tuples
/// reconciled at once open hundreds of connections, which then idle for 90 s.
/// The API server itself is fastest at about this many (BENCHMARKS.md, the floor).
pub const REQUESTS_AT_ONCE: usize = 64;

/// The settings of the current kubeconfig context, or one line that says what to do.
async fn kubeconfig() -> anyhow::Result<Config> {
    Config::infer().await.map_err(|err| {
        // Outside a cluster, what went wrong with the kubeconfig is the cause that matters.
        let cause = std::error::Error::source(&err).map_or_else(|| err.to_string(), ToString::to_string);
        anyhow!(
            "no usable kubeconfig ({cause}); start a cluster (kind, minikube, k3d or `cargo xtask up`) \
             and point KUBECONFIG at its kubeconfig"
        )
    })
}

/// Connects to the cluster of `config`, at most
/// [`REQUESTS_AT_ONCE`] requests at once, sending writes only while `fence`
/// is open (when there is one), and checks that it answers.
async fn connect(config: Config, fence: Option<&leader::Fence>) -> anyhow::Result<Client> {
    let server = config.cluster_url.clone();
    let builder = kube::client::ClientBuilder::try_from(config).context("cannot build a client from the kubeconfig")?;
    // The fence inside the limit: a write is checked when its turn comes, just before it is sent.
    let client = match fence {
        Some(fence) => builder
            .with_layer(&fence.layer())
            .with_layer(&ConcurrencyLimitLayer::new(REQUESTS_AT_ONCE))
            .build(),
        None => builder
            .with_layer(&ConcurrencyLimitLayer::new(REQUESTS_AT_ONCE))
            .build(),
    };
    client.apiserver_version().await.map_err(|err| match err {
        kube::Error::Api(status) if status.code == 401 => anyhow!(
            "the Kubernetes API server at {server} does not accept the kubeconfig's credentials \
             (401 Unauthorized): log in again, or pick another context with `kubectl config use-context`"
        ),
        err => anyhow!(
            "the Kubernetes API server at {server} does not answer ({err}); \
             start the cluster, then check it with `kubectl cluster-info`"
        ),
    })?;
    Ok(client)
}

/// Waits for Ctrl-C (or SIGTERM, which a Pod gets when it is stopped). The
/// controllers then finish the reconciles under way and stop; a second
/// Ctrl-C stops the program at once.
async fn stop_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => signal.recv().await,
            Err(_) => futures::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = futures::future::pending::<Option<()>>();
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => if interrupted.is_err() {
            // No signal handler could be installed: run until killed.
            return futures::future::pending().await;
        },
        _ = terminate => {}
    }
    info!("stopping after the reconciles under way (Ctrl-C again to stop at once)");
    tokio::spawn(async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = tokio::time::sleep(STOP_LIMIT) => warn!(
                "still stopping after {} s: stopping at once; the next run takes up what was under way",
                STOP_LIMIT.as_secs()
            ),
        }
        std::process::exit(130);
    });
}

/// How long the program may take to stop after Ctrl-C: a reconcile takes a
/// few requests, and a stop that takes longer is stuck on something (a
/// request to an API server that no longer answers).
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinitionNames, CustomResourceDefinitionSpec, CustomResourceDefinitionVersion,
        CustomResourceSubresources,
    };

    fn crd(plural: &str, with_status: bool) -> CustomResourceDefinition {
        CustomResourceDefinition {
            spec: CustomResourceDefinitionSpec {
                group: "math.workshop.example".to_string(),
                names: CustomResourceDefinitionNames {
                    plural: plural.to_string(),
                    ..Default::default()
                },
                versions: vec![CustomResourceDefinitionVersion {
                    name: "v1beta1".to_string(),
                    served: true,
                    subresources: with_status.then(|| CustomResourceSubresources {
                        status: Some(Default::default()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// kube-runtime 5.0's controller asked to stop before its first list
    /// never ends (tests/upstream/README.md): the program stops all the same.
    #[tokio::test(start_paused = true)]
    async fn controllers_that_do_not_stop_after_ctrl_c_are_left_after_the_grace() {
        let client = crate::children::tests::unused_client();
        let shutdown: Shutdown = futures::future::ready(()).boxed().shared();
        let started = tokio::time::Instant::now();
        let account = crate::outage::tests::account(&client);
        run_controllers(&|_, _| futures::future::pending::<()>(), &client, &shutdown, &account).await;
        assert_eq!(started.elapsed(), STOP_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn controllers_that_stop_by_themselves_are_not_held() {
        let client = crate::children::tests::unused_client();
        let shutdown: Shutdown = futures::future::pending().boxed().shared();
        let started = tokio::time::Instant::now();
        let account = crate::outage::tests::account(&client);
        run_controllers(&|_, _| async {}, &client, &shutdown, &account).await;
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    }

    #[test]
    fn failed_requests_are_logged_only_when_debug_is_asked_for() {
        assert_eq!(
            log_filter(None),
            "info,kube_client::client=off,kube_runtime::watcher=error"
        );
        assert_eq!(
            log_filter(Some("info")),
            "info,kube_client::client=off,kube_runtime::watcher=error"
        );
        assert_eq!(log_filter(Some("debug")), "debug");
        assert_eq!(log_filter(Some("info,kube_client=debug")), "info,kube_client=debug");
    }

    #[test]
    fn a_stage_needs_each_plural_and_the_status_of_those_that_have_one() {
        let needed = required_resources(&[crd("numbers", false), crd("tuples", true)]);
        let names: Vec<&str> = needed.iter().map(|(_, resource)| resource.as_str()).collect();
        assert_eq!(names, ["numbers", "tuples", "tuples/status"]);
        assert!(
            needed
                .iter()
                .all(|(group_version, _)| group_version == "math.workshop.example/v1beta1")
        );
    }

    #[test]
    fn descriptions_are_found_at_any_depth_with_their_path() {
        let mut with_text = crd("numbers", false);
        with_text.metadata.name = Some("numbers.math.workshop.example".to_string());
        with_text.spec.versions[0].schema = serde_json::from_value(serde_json::json!({
            "openAPIV3Schema": {"description": "top", "properties": {"spec": {"description": "inner"}}}
        }))
        .unwrap();
        let found = descriptions(&[with_text]);
        let texts: Vec<&str> = found.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(texts, ["top", "inner"]);
        assert!(
            found[1].0.ends_with("openAPIV3Schema.properties.spec"),
            "{}",
            found[1].0
        );
    }
}
