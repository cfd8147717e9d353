//! Stage 3: a parent resource that owns children.
//!
//! Adds: the `Tuple` custom resource, whose controller keeps one child Number
//! per element of `spec.numbers`: it creates missing children, puts back edited
//! ones, deletes the ones no longer wanted, and brings back deleted ones
//! (self-healing). `status.allSquares` follows the children's status. Deleting
//! a Tuple deletes its Numbers through Kubernetes' garbage collector.
//!
//! Assumes: a cluster in the current kubeconfig context (kind, minikube, k3d, or
//! `cargo xtask up`) and kubectl. The controller watches the namespace of that
//! context (`default` unless the context names another).
//!
//! ```text
//! cargo run --example step03_tuple -- crd | kubectl apply --server-side -f -
//! cargo run --example step03_tuple
//! kubectl apply -f solutions/step03_tuple/samples/tuples.yaml     # in a second terminal
//! kubectl get tuples,numbers
//! kubectl delete number squares-1                   # and watch it come back
//! ```
//!
//! `RUST_LOG=debug cargo run --example step03_tuple` also shows the watch requests
//! that kube-runtime makes underneath.

mod backoff;
mod children;
mod number;
mod tuple;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use kube::{Client, Config, CustomResourceExt, Resource};
use tracing_subscriber::EnvFilter;

use crate::number::Number;
use crate::tuple::Tuple;

/// The name of this program, for the commands printed in error messages.
const STAGE: &str = "step03_tuple";

/// The name under which this program's writes are recorded in each object's
/// `managedFields`: server-side apply tracks which fields each manager owns.
pub const FIELD_MANAGER: &str = "math-controller";

/// The resources this stage needs, as the API server's discovery lists them.
const REQUIRED_RESOURCES: &[&str] = &["numbers", "numbers/status", "tuples", "tuples/status"];

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line with the fix, never a backtrace.
            eprintln!("error: {err:#}");
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
            "unexpected arguments {args:?}: run `cargo run --example {STAGE}` to start the controller, \
             or `cargo run --example {STAGE} -- crd` to print the CRDs"
        ),
    }
    let client = connect().await?;
    require_crds(&client).await?;
    // Each controller watches its own kind; they run side by side.
    tokio::join!(number::run(client.clone()), tuple::run(client));
    Ok(())
}

/// The CRDs of this stage as YAML documents, ready for `kubectl apply -f -`.
fn crds_yaml() -> anyhow::Result<String> {
    let crds = [Number::crd(), Tuple::crd()];
    serde_saphyr::to_string_multiple(&crds).context("cannot print the CRDs as YAML")
}

/// Connects to the cluster of the current kubeconfig context, and checks that it answers.
async fn connect() -> anyhow::Result<Client> {
    let config = Config::infer().await.map_err(|err| {
        anyhow!(
            "no usable kubeconfig ({err}); start a cluster (kind, minikube, k3d or `cargo xtask up`) \
             and point KUBECONFIG at its kubeconfig"
        )
    })?;
    let server = config.cluster_url.clone();
    let client = Client::try_from(config).context("cannot build a client from the kubeconfig")?;
    client.apiserver_version().await.map_err(|err| {
        anyhow!(
            "the Kubernetes API server at {server} does not answer ({err}); \
             start the cluster, then check it with `kubectl cluster-info`"
        )
    })?;
    Ok(client)
}

/// Checks that this stage's CRDs are installed, so that a missing one is reported
/// once, with the fix, instead of as a stream of watch errors.
async fn require_crds(client: &Client) -> anyhow::Result<()> {
    let group_version = Number::api_version(&());
    let found: Vec<String> = match client.list_api_group_resources(&group_version).await {
        Ok(list) => list.resources.into_iter().map(|resource| resource.name).collect(),
        Err(kube::Error::Api(status)) if status.is_not_found() => Vec::new(),
        Err(err) => bail!("cannot ask the API server which resources it serves ({err}); check `kubectl api-resources`"),
    };
    if let Some(missing) = REQUIRED_RESOURCES.iter().find(|name| !found.iter().any(|f| f == *name)) {
        bail!(
            "the API server does not serve `{missing}` in {group_version}: install this stage's CRDs with \
             `cargo run --example {STAGE} -- crd | kubectl apply --server-side -f -`"
        );
    }
    Ok(())
}
