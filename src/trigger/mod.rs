//! Triggers: everything that can make the agent reconcile (poll timer, webhook, file change,
//! cron resync, management-cluster watches, a manual request) feeds one coalescing queue.
//! However many triggers arrive while a reconcile runs, the agent does one more pass that
//! covers all of them: a burst of webhooks becomes one fetch.

pub mod webhook;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub mod request;
pub mod timer;
pub mod watch;

/// One reason to reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The poll interval elapsed.
    Poll,
    /// A verified webhook delivery announced a push.
    Webhook,
    /// A file under a local source path changed.
    SourceChanged,
    /// The resync schedule fired: reconcile every pair, repairing drift.
    Resync,
    /// Someone asked (annotation `secretsync.dev/requestedAt`, `secretsync reconcile`).
    Requested,
    /// A GitopsCluster was added, changed or removed: `namespace/name`.
    ClusterChanged { namespace: String, name: String },
    /// A management-cluster Secret named by a SecretSync changed: `namespace/name`.
    SecretChanged { namespace: String, name: String },
}

/// The merged work waiting for the agent. Taken as a whole by [`Triggers::next`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// Fetch the source again before reconciling.
    pub fetch: bool,
    /// Reconcile every pair even when neither the revision nor the cluster view changed.
    pub full: bool,
    /// GitopsClusters (`namespace/name`) whose change asks for their pairs to be reconciled.
    pub clusters: BTreeSet<String>,
    /// Source Secrets (`namespace/name`) whose change asks for their pairs to be reconciled.
    pub secrets: BTreeSet<String>,
}

impl Pending {
    fn add(&mut self, trigger: Trigger) {
        match trigger {
            Trigger::Poll | Trigger::Webhook | Trigger::SourceChanged => self.fetch = true,
            Trigger::Resync | Trigger::Requested => {
                self.fetch = true;
                self.full = true;
            }
            Trigger::ClusterChanged { namespace, name } => {
                self.clusters.insert(format!("{namespace}/{name}"));
            }
            Trigger::SecretChanged { namespace, name } => {
                self.secrets.insert(format!("{namespace}/{name}"));
            }
        }
    }

    /// Adds what `other` asks for.
    pub fn merge(&mut self, other: Pending) {
        self.fetch |= other.fetch;
        self.full |= other.full;
        self.clusters.extend(other.clusters);
        self.secrets.extend(other.secrets);
    }

    /// Nothing is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Pending::default()
    }
}

/// The agent's trigger queue; cheap to clone, shared by every trigger source.
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Triggers {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reason to reconcile and wakes the agent. Never blocks.
    pub fn request(&self, trigger: Trigger) {
        tracing::debug!(?trigger, "reconcile requested");
        self.lock().add(trigger);
        self.inner.wake.notify_one();
    }

    /// Waits until something is pending and takes all of it.
    pub async fn next(&self) -> Pending {
        loop {
            let pending = std::mem::take(&mut *self.lock());
            if !pending.is_empty() {
                return pending;
            }
            self.inner.wake.notified().await;
        }
    }

    /// Waits until something is pending, then lets the burst it may belong to arrive for
    /// `settle` before taking all of it: twenty webhooks for one push make one fetch.
    pub async fn next_settled(&self, settle: std::time::Duration) -> Pending {
        let mut pending = self.next().await;
        tokio::time::sleep(settle).await;
        pending.merge(self.take());
        pending
    }

    /// Takes what is pending without waiting (possibly nothing).
    #[must_use]
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave `Pending` half-updated in a way that
        // matters (every field is a flag or a set), so a poisoned lock is used as it is.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_webhooks_is_one_fetch() {
        let triggers = Triggers::new();
        for _ in 0..50 {
            triggers.request(Trigger::Webhook);
        }
        let pending = triggers.next().await;
        assert!(pending.fetch);
        assert!(!pending.full);
        assert!(triggers.take().is_empty(), "the burst was taken as a whole");
    }

    #[tokio::test]
    async fn watch_triggers_name_what_changed_without_asking_for_a_fetch() {
        let triggers = Triggers::new();
        triggers.request(Trigger::SecretChanged {
            namespace: "default".into(),
            name: "registry".into(),
        });
        triggers.request(Trigger::ClusterChanged {
            namespace: "default".into(),
            name: "leaf-1".into(),
        });
        let pending = triggers.next().await;
        assert!(!pending.fetch);
        assert_eq!(
            pending.secrets.iter().collect::<Vec<_>>(),
            ["default/registry"]
        );
        assert_eq!(
            pending.clusters.iter().collect::<Vec<_>>(),
            ["default/leaf-1"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_spread_over_the_settle_time_is_one_pass() {
        let triggers = Triggers::new();
        let burst = tokio::spawn({
            let triggers = triggers.clone();
            async move {
                for _ in 0..10 {
                    triggers.request(Trigger::Webhook);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        });
        let pending = triggers
            .next_settled(std::time::Duration::from_millis(200))
            .await;
        burst.await.expect("burst");
        assert!(pending.fetch);
        assert!(triggers.take().is_empty(), "the whole burst was taken");
    }

    #[tokio::test]
    async fn a_resync_fetches_and_covers_every_pair() {
        let triggers = Triggers::new();
        triggers.request(Trigger::Resync);
        let pending = triggers.next().await;
        assert!(pending.fetch && pending.full);
    }

    #[tokio::test]
    async fn next_waits_for_a_request_made_later() {
        let triggers = Triggers::new();
        let waiter = tokio::spawn({
            let triggers = triggers.clone();
            async move { triggers.next().await }
        });
        tokio::task::yield_now().await;
        triggers.request(Trigger::Poll);
        let pending = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert!(pending.fetch);
    }
}
