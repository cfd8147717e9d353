//! Stage 1: a new kind of resource, and a controller that only watches it.
//!
//! Adds: the `Number` custom resource (one integer, `spec.value`), the
//! CustomResourceDefinition (CRD) that teaches the API server this new kind, and a
//! controller that logs every Number it sees. Nothing is written back yet.
//!
//! Assumes: a cluster in the current kubeconfig context (kind, minikube, k3d, or
//! `cargo xtask up`) and kubectl. The controller watches the namespace of that
//! context (`default` unless the context names another).
//!
//! ```text
//! cargo run --example step01_crd -- crd | kubectl apply --server-side -f -
//! cargo run --example step01_crd            # your workbench; `--bin step01_crd`: the finished stage
//! kubectl apply -f solutions/step01_crd/samples/numbers.yaml    # in a second terminal
//! kubectl get numbers
//! ```
//!
//! What to expect: `kubectl get numbers` lists fifteen, sixteen and minus-nine
//! with their VALUE, and the controller logs `saw Number` once for each (and
//! again for every later change). Numbers have no status yet.
//!
//! `RUST_LOG=debug cargo run --example step01_crd` also shows the watch requests
//! that kube-runtime makes underneath.

mod number;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use kube::{Client, Config, CustomResourceExt, Resource};
use tracing_subscriber::EnvFilter;

use crate::number::Number;

/// The name of this program, for the commands printed in error messages.
const STAGE: &str = "step01_crd";

/// The resources this stage needs, as the API server's discovery lists them.
const REQUIRED_RESOURCES: &[&str] = &["numbers"];

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
    number::run(client).await;
    Ok(())
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
    let crds = [Number::crd()];
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
