//! Leader election: when several copies of a program run in one namespace,
//! only one runs the controllers.
//!
//! Two copies would both see every change and both write: every create
//! twice (one refused), every status twice. Real controllers (the ones inside
//! kube-controller-manager too) take turns through a `Lease` object in the
//! cluster. The copy named in `spec.holderIdentity` leads and renews
//! `spec.renewTime` every few seconds; the others wait. When the leader stops,
//! it clears the Lease and the next copy takes over; when it dies without a
//! word, the Lease runs out after `LEASE_SECONDS` and the next copy takes over
//! then.
//!
//! In Go, controller-runtime's manager does this when it is started with
//! `LeaderElection: true` (client-go's `leaderelection` package underneath).
//! kube-runtime has no leader election; the `kube-lease-manager` crate does
//! the bookkeeping of the Lease, and this module only decides what the
//! program does as leadership comes and goes.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tracing::{error, info};

use crate::CONTROLLER_NAME;

/// The Lease that the copies of a program share, in the namespace they watch.
pub const LEASE_NAME: &str = CONTROLLER_NAME;

/// How long a leader that stopped renewing still counts as the leader.
const LEASE_SECONDS: u64 = 10;

/// The leader renews this long before its lease would run out.
const RENEW_MARGIN_SECONDS: u64 = 3;

/// This copy's name in the Lease: the host (a Pod's name, in a cluster), the
/// process id and the start time, so that no two copies share it.
fn identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string());
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or(0);
    format!("{host}-{}-{started}", std::process::id())
}

/// This copy's place in the election: leading or not, as it changes.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Joins the election for the Lease in the client's namespace, creating the Lease if needed.
pub async fn join(client: Client) -> anyhow::Result<Leadership> {
    let identity = identity();
    let namespace = client.default_namespace().to_string();
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace.as_str())
        .with_identity(identity.as_str())
        .with_duration(LEASE_SECONDS)
        .with_grace(RENEW_MARGIN_SECONDS)
        .build()
        .await
        .map_err(|err| match err {
            LeaseManagerError::KubeError(kube::Error::Api(status)) if status.code == 404 => anyhow!(
                "the namespace {namespace} does not exist: create it (`kubectl create namespace {namespace}`), \
                 or name another in the kubeconfig's context"
            ),
            LeaseManagerError::KubeError(kube::Error::Api(status)) => anyhow!(
                "cannot read or create the Lease {LEASE_NAME} in namespace {namespace} (leader election): {}",
                status.message
            ),
            err => anyhow!(
                "cannot read or create the Lease {LEASE_NAME} in namespace {namespace} (leader election): {err}"
            ),
        })?;
    let (leading, task) = manager.watch().await;
    Ok(Leadership { leading, task })
}

impl Leadership {
    /// Waits until this copy leads. The first answer takes a moment: the
    /// Lease is read, then taken if free. If the election itself has ended
    /// (it only does on an error), this copy never leads again.
    pub async fn leading(&mut self) {
        let first_answer = std::time::Duration::from_secs(2);
        if tokio::time::timeout(first_answer, self.leading.wait_for(|leading| *leading))
            .await
            .is_err()
        {
            info!("waiting to lead: another copy holds the Lease {LEASE_NAME}");
        }
        if self.leading.wait_for(|leading| *leading).await.is_err() {
            error!("the leader election stopped: this copy will not run the controllers; restart it");
            return futures::future::pending().await;
        }
        info!("leading: this copy holds the Lease {LEASE_NAME}");
    }

    /// Resolves when this copy no longer leads (another copy took the Lease,
    /// for example after this one could not renew it during an outage), or
    /// when the election has ended.
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|leading| !*leading).await;
    }

    /// Leaves the election, clearing the Lease if this copy holds it, so that
    /// the next copy takes over at once.
    pub async fn step_down(self) {
        drop(self.leading);
        if let Ok(Err(err)) = self.task.await {
            tracing::warn!("could not clear the Lease {LEASE_NAME}: {err}");
        }
    }
}
