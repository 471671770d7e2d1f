//! The agent's observer for operators: metrics from every read and reconcile, readiness once
//! the agent has read its source and looked at the clusters.

use std::collections::BTreeMap;
use std::time::Duration;

use super::health::Health;
use super::metrics::Metrics;
use crate::agent::Observer;
use crate::manifest::ManifestSet;
use crate::sync::ReconcileReport;
use crate::sync::SkipReason;
use crate::sync::apply::Outcome;

/// Feeds `Metrics` and `Health` from the agent loop.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub metrics: Metrics,
    pub health: Health,
}

impl Observer for Telemetry {
    fn source_read(&self, elapsed: Duration, error: Option<&str>) {
        self.metrics.record_fetch(elapsed, error.is_none());
    }

    fn reconciled(&self, elapsed: Duration, set: &ManifestSet, report: &ReconcileReport) {
        self.metrics.record_reconcile(elapsed, report);
        for ((namespace, cluster), up) in clusters_up(report) {
            self.metrics.set_cluster_up(&namespace, &cluster, up);
        }
        if report.synced() == report.pairs() && !set.has_errors() {
            self.metrics.set_revision(&set.revision.to_string());
        }
    }

    fn leading(&self, leader: bool) {
        self.metrics.set_leader(leader);
    }

    fn ready(&self) {
        self.health.mark_ready();
    }
}

/// Per GitopsCluster (`namespace`, `name`): did it answer? A cluster is down when a write to
/// it failed or it could not be reached; not Ready (by its own conditions) counts as down.
fn clusters_up(report: &ReconcileReport) -> BTreeMap<(String, String), bool> {
    let mut up = BTreeMap::new();
    for (sync, results) in &report.results {
        for result in results {
            let answered = !matches!(
                result.outcome,
                Outcome::Failed { .. } | Outcome::Skipped(SkipReason::ClusterNotReady { .. })
            );
            up.entry((sync.namespace.clone(), result.cluster.clone()))
                .and_modify(|all: &mut bool| *all &= answered)
                .or_insert(answered);
        }
    }
    up
}
