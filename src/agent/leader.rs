//! Leader election through a `coordination.k8s.io` Lease (`kube-lease-manager`): of several
//! replicas only the holder writes. The Lease is released on a clean shutdown, so a
//! successor takes over at once instead of after the lease time.

use std::time::Duration;

use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the Lease lives and who is asking for it.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity, e.g. its Pod name.
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub duration: Duration,
}

/// Whether this replica may write, and the task that keeps it so.
#[derive(Debug)]
pub struct Leadership {
    state: watch::Receiver<bool>,
    /// Kept so that an agent without election stays leader forever.
    _always: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("setting up leader election with Lease {namespace}/{name}: {source}")]
pub struct LeaderError {
    namespace: String,
    name: String,
    #[source]
    source: LeaseManagerError,
}

impl Leadership {
    /// A single replica: always the leader.
    #[must_use]
    pub fn always() -> Self {
        let (sender, state) = watch::channel(true);
        Leadership {
            state,
            _always: Some(sender),
            task: None,
        }
    }

    /// Competes for the Lease in the background; starts as a follower.
    pub async fn elect(
        client: kube::Client,
        settings: &LeaseSettings,
    ) -> Result<Self, LeaderError> {
        let seconds = settings.duration.as_secs().max(3);
        let manager = LeaseManagerBuilder::new(client, &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_field_manager("secretsync")
            .with_duration(seconds)
            // Renew when a third of the lease time is left: two missed renewals still hold.
            .with_grace((seconds / 3).max(1))
            .build()
            .await
            .map_err(|source| LeaderError {
                namespace: settings.namespace.clone(),
                name: settings.name.clone(),
                source,
            })?;
        let (state, task) = manager.watch().await;
        Ok(Leadership {
            state,
            _always: None,
            task: Some(task),
        })
    }

    #[must_use]
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Waits until leadership is gained or lost; returns the new state.
    pub async fn changed(&mut self) -> bool {
        if self.state.changed().await.is_err() {
            // The election task ended (it only does so on shutdown): never leader again.
            std::future::pending::<()>().await;
        }
        *self.state.borrow_and_update()
    }

    /// Gives the Lease up (when held) so a successor need not wait for it to expire.
    pub async fn release(self) {
        let Leadership { state, task, .. } = self;
        drop(state);
        if let Some(task) = task {
            match task.await {
                Ok(Ok(_)) => tracing::info!("leader lease released"),
                Ok(Err(error)) => tracing::warn!(%error, "releasing the leader lease"),
                Err(error) => tracing::warn!(%error, "the leader election task failed"),
            }
        }
    }
}
