//! Stage 4: a parent of parents, and the cluster decides a theorem.
//!
//! Adds: the `Fermat` custom resource, whose controller owns one Tuple
//! `[i, n - i]` per i in 1..=n/2, each owning two Numbers.
//! `status.twoSquaresFound` turns true when some Tuple reports that both its
//! numbers are squares: the cluster finds out whether n is a sum of two squares.
//!
//! Assumes: a cluster in the current kubeconfig context (kind, minikube, k3d, or
//! `cargo xtask up`) and kubectl. The controller watches the namespace of that
//! context (`default` unless the context names another).
//!
//! ```text
//! cargo run --example step04_fermat -- crd | kubectl apply --server-side -f -
//! cargo run --example step04_fermat            # your workbench; `--bin step04_fermat`: the finished stage
//! kubectl apply -f solutions/step04_fermat/samples/fermats.yaml    # in a second terminal
//! kubectl get fermats
//! kubectl get fermat thirteen -w                    # in a third terminal, then:
//! kubectl delete number thirteen-4-and-9-1          # it comes back, and so does the answer
//! ```
//!
//! What to expect: thirteen, two and twenty-five say TWOSQUARESFOUND true,
//! seven and three false. After the delete, `-w` shows thirteen turn false and
//! then true again: the status reports what is observed, and for a moment the
//! Number 9 that makes 4 + 9 is missing. Its Tuple creates it again, the new
//! Number reports being a square, and the answer travels back up.
//!
//! `RUST_LOG=debug cargo run --example step04_fermat` also shows the watch requests
//! that kube-runtime makes underneath.

mod backoff;
mod children;
mod fermat;
mod leader;
mod number;
mod tuple;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::{Client, Config, CustomResourceExt, Resource};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::fermat::Fermat;
use crate::number::Number;
use crate::tuple::Tuple;

/// The name of this program, for the commands printed in error messages.
const STAGE: &str = "step04_fermat";

/// The name under which this program's writes are recorded in each object's
/// `managedFields`: server-side apply tracks which fields each manager owns.
pub const FIELD_MANAGER: &str = "math-controller";

/// Resolves when the program is asked to stop. Every controller holds a clone.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// The resources this stage needs, as the API server's discovery lists them.
const REQUIRED_RESOURCES: &[&str] = &[
    "numbers",
    "numbers/status",
    "tuples",
    "tuples/status",
    "fermats",
    "fermats/status",
];

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line with the fix, never a backtrace. Some causes span
            // lines (a YAML error quotes the file): join them.
            let message = format!("{err:#}");
            eprintln!("error: {}", message.split_whitespace().collect::<Vec<_>>().join(" "));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> anyhow::Result<()> {
    match args.as_slice() {
        [] => {}
        [arg] if arg == "crd" => {
            print!("{}", crds_yaml()?);
            return Ok(());
        }
        _ => bail!(
            "unexpected arguments {args:?}: run `{run}` to start the controller, or `{run} -- crd` to print the CRDs",
            run = cargo_run()
        ),
    }
    let client = connect().await?;
    require_crds(&client).await?;
    let shutdown = ctrl_c().boxed().shared();
    // Of the copies of this program in a namespace, only the leader runs the
    // controllers (see leader.rs).
    let mut leadership = leader::join(client.clone()).await?;
    loop {
        tokio::select! {
            () = leadership.leading() => {}
            () = shutdown.clone() => break,
        }
        info!("controllers running; press Ctrl-C to stop");
        // Each controller watches its own kind; they run side by side and stop together.
        let controllers = async {
            tokio::join!(
                number::run(client.clone(), shutdown.clone()),
                tuple::run(client.clone(), shutdown.clone()),
                fermat::run(client.clone(), shutdown.clone())
            )
        };
        tokio::select! {
            _ = controllers => break,
            () = leadership.lost() => warn!("another copy took the Lease: the controllers stop until this copy leads again"),
        }
    }
    leadership.step_down().await;
    Ok(())
}

/// Waits for Ctrl-C. The controllers then finish the reconciles under way and
/// stop; a second Ctrl-C stops the program at once.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handler could be installed: run until killed.
        return futures::future::pending().await;
    }
    info!("stopping after the reconciles under way (Ctrl-C again to stop at once)");
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
}

/// The command that runs this program: `cargo run --example …` for your
/// workbench (built into `examples/`), `cargo run --bin …` for the finished stage.
fn cargo_run() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let target = if exe.parent().is_some_and(|dir| dir.ends_with("examples")) {
        "--example"
    } else {
        "--bin"
    };
    format!("cargo run {target} {STAGE}")
}

/// The CRDs of this stage as YAML documents, ready for `kubectl apply -f -`.
fn crds_yaml() -> anyhow::Result<String> {
    let crds = [Number::crd(), Tuple::crd(), Fermat::crd()];
    serde_saphyr::to_string_multiple(&crds).context("cannot print the CRDs as YAML")
}

/// Connects to the cluster of the current kubeconfig context, and checks that it answers.
async fn connect() -> anyhow::Result<Client> {
    let config = Config::infer().await.map_err(|err| {
        // Outside a cluster, what went wrong with the kubeconfig is the cause that matters.
        let cause = std::error::Error::source(&err).map_or_else(|| err.to_string(), ToString::to_string);
        anyhow!(
            "no usable kubeconfig ({cause}); start a cluster (kind, minikube, k3d or `cargo xtask up`) \
             and point KUBECONFIG at its kubeconfig"
        )
    })?;
    let server = config.cluster_url.clone();
    let client = Client::try_from(config).context("cannot build a client from the kubeconfig")?;
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

/// Checks that this stage's CRDs are installed, so that a missing one is reported
/// once, with the fix, instead of as a stream of watch errors.
async fn require_crds(client: &Client) -> anyhow::Result<()> {
    let group_version = Number::api_version(&());
    let found: Vec<String> = match client.list_api_group_resources(&group_version).await {
        Ok(list) => list.resources.into_iter().map(|resource| resource.name).collect(),
        // 404: not even one CRD of the group is installed. (Match the code:
        // this 404's body is not a Status, and `is_not_found()` misses it.)
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(err) => bail!("cannot ask the API server which resources it serves ({err}); check `kubectl api-resources`"),
    };
    if let Some(missing) = REQUIRED_RESOURCES.iter().find(|name| !found.iter().any(|f| f == *name)) {
        bail!(
            "the API server does not serve `{missing}` in {group_version}: install this stage's CRDs with \
             `{} -- crd | kubectl apply --server-side -f -`",
            cargo_run()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `description` in a JSON schema, with where it is.
    fn descriptions(value: &serde_json::Value, path: &str, found: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("description", serde_json::Value::String(text)) => {
                            found.push((path.to_string(), text.clone()))
                        }
                        _ => descriptions(value, &format!("{path}.{key}"), found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| descriptions(item, path, found)),
            _ => {}
        }
    }

    #[test]
    fn crd_descriptions_speak_to_cluster_users_not_rust_readers() {
        let crds: Vec<serde_json::Value> = serde_saphyr::from_multiple(&crds_yaml().unwrap()).unwrap();
        let mut found = Vec::new();
        for crd in &crds {
            descriptions(crd, "", &mut found);
        }
        assert!(!found.is_empty());
        for (path, text) in found {
            for rust in ["derive", "#[", "::", "serde", "struct", "Rust", "`//`"] {
                assert!(!text.contains(rust), "{path} says {text:?}");
            }
        }
    }
}
