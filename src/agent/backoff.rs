//! Per-cluster exponential backoff: a leaf that fails is left alone for a while, doubling
//! each time up to a ceiling, so one broken cluster costs neither the others' time nor a
//! stream of doomed requests. A success forgets its failures.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::ClusterKey;

/// How long a failing cluster waits before its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Wait after the first failure.
    pub initial: Duration,
    /// The wait never grows beyond this.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

impl BackoffPolicy {
    /// The wait after `failures` failures in a row (`failures >= 1`).
    #[must_use]
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

#[derive(Debug, Clone)]
struct Failing {
    failures: u32,
    retry_at: Instant,
    last_error: String,
}

/// The clusters that failed recently and when each may be tried again.
#[derive(Debug, Default)]
pub struct ClusterBackoff {
    policy: BackoffPolicy,
    failing: BTreeMap<ClusterKey, Failing>,
}

impl ClusterBackoff {
    #[must_use]
    pub fn new(policy: BackoffPolicy) -> Self {
        ClusterBackoff {
            policy,
            failing: BTreeMap::new(),
        }
    }

    /// Records a failed attempt; returns how long the cluster now waits.
    pub fn failed(&mut self, cluster: &ClusterKey, error: &str, now: Instant) -> Duration {
        let failures = self.failing.get(cluster).map_or(0, |f| f.failures) + 1;
        let delay = self.policy.delay(failures);
        self.failing.insert(
            cluster.clone(),
            Failing {
                failures,
                retry_at: now + delay,
                last_error: error.to_owned(),
            },
        );
        delay
    }

    /// Records a successful attempt: the cluster is tried normally again.
    pub fn succeeded(&mut self, cluster: &ClusterKey) {
        self.failing.remove(cluster);
    }

    /// The clusters still waiting at `now`, each with the reason shown in status.
    #[must_use]
    pub fn held_back(&self, now: Instant) -> BTreeMap<ClusterKey, String> {
        self.failing
            .iter()
            .filter(|(_, failing)| failing.retry_at > now)
            .map(|(cluster, failing)| {
                let wait = failing.retry_at.saturating_duration_since(now).as_secs();
                let reason = format!(
                    "backing off after {} failure(s), next attempt in {wait}s; last error: {}",
                    failing.failures, failing.last_error
                );
                (cluster.clone(), reason)
            })
            .collect()
    }

    /// When the earliest waiting cluster may be tried again.
    #[must_use]
    pub fn next_retry(&self) -> Option<Instant> {
        self.failing.values().map(|f| f.retry_at).min()
    }

    /// Clusters whose wait is over by `now`: the ones a retry is for.
    #[must_use]
    pub fn due(&self, now: Instant) -> Vec<ClusterKey> {
        self.failing
            .iter()
            .filter(|(_, failing)| failing.retry_at <= now)
            .map(|(cluster, _)| cluster.clone())
            .collect()
    }

    #[must_use]
    pub fn is_failing(&self, cluster: &ClusterKey) -> bool {
        self.failing.contains_key(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterName;

    fn key(name: &str) -> ClusterKey {
        ClusterKey {
            namespace: "default".into(),
            name: ClusterName::new(name),
        }
    }

    #[test]
    fn the_wait_doubles_up_to_the_ceiling() {
        let policy = BackoffPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        let waits: Vec<u64> = (1..=6).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(policy.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn a_failing_cluster_is_held_back_until_its_wait_is_over() {
        let now = Instant::now();
        let mut backoff = ClusterBackoff::new(BackoffPolicy::default());
        assert_eq!(
            backoff.failed(&key("leaf-1"), "connection refused", now),
            Duration::from_secs(5)
        );
        let held = backoff.held_back(now + Duration::from_secs(1));
        assert_eq!(held.len(), 1);
        assert!(held[&key("leaf-1")].contains("connection refused"));
        assert!(backoff.due(now + Duration::from_secs(1)).is_empty());

        assert!(backoff.held_back(now + Duration::from_secs(5)).is_empty());
        assert_eq!(backoff.due(now + Duration::from_secs(5)), [key("leaf-1")]);
        assert_eq!(backoff.next_retry(), Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn failures_in_a_row_wait_longer_and_a_success_forgets_them() {
        let now = Instant::now();
        let mut backoff = ClusterBackoff::new(BackoffPolicy::default());
        backoff.failed(&key("leaf-1"), "timeout", now);
        assert_eq!(
            backoff.failed(&key("leaf-1"), "timeout", now),
            Duration::from_secs(10)
        );
        backoff.succeeded(&key("leaf-1"));
        assert!(!backoff.is_failing(&key("leaf-1")));
        assert_eq!(backoff.next_retry(), None);
        assert_eq!(
            backoff.failed(&key("leaf-1"), "timeout", now),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn clusters_back_off_independently() {
        let now = Instant::now();
        let mut backoff = ClusterBackoff::new(BackoffPolicy::default());
        backoff.failed(&key("leaf-1"), "down", now);
        backoff.failed(&key("leaf-1"), "down", now);
        backoff.failed(&key("leaf-2"), "down", now);
        let later = now + Duration::from_secs(6);
        assert_eq!(backoff.due(later), [key("leaf-2")]);
        assert!(backoff.held_back(later).contains_key(&key("leaf-1")));
    }
}
