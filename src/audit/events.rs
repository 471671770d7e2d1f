//! Kubernetes Events for the writes to the leaves, on the SecretSync object (or, when there
//! is none, on the source Secret), so that `kubectl describe` shows what secretsync did and
//! from which commit: one Event per SecretSync, action and revision in a reconcile, naming
//! the clusters. Never holds secret data.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::{AuditAction, AuditRecord};

/// Publishes Events in the management cluster as `secretsync`.
#[derive(Clone)]
pub struct EventPublisher {
    recorder: Recorder,
}

impl EventPublisher {
    #[must_use]
    pub fn new(mgmt: kube::Client) -> Self {
        // The pod name tells replicas apart; outside a pod, the host's name.
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok();
        let reporter = Reporter {
            controller: "secretsync".to_owned(),
            instance,
        };
        EventPublisher {
            recorder: Recorder::new(mgmt, reporter),
        }
    }

    /// Publishes one Event for `writes` (the same action on the same Secret at the same
    /// revision, on one or more clusters) about `regarding`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        writes: &EventSummary<'_>,
    ) -> Result<(), kube::Error> {
        let (reason, action) = match writes.action {
            AuditAction::Apply => ("Applied", "Apply"),
            AuditAction::Prune => ("Pruned", "Prune"),
        };
        let event = Event {
            type_: EventType::Normal,
            reason: reason.to_owned(),
            note: Some(writes.note()),
            action: action.to_owned(),
            secondary: None,
        };
        self.recorder.publish(&event, regarding).await
    }
}

/// Clusters named in one Event's note; the rest are counted. (A note holds at most 1 KiB.)
const CLUSTERS_NAMED: usize = 8;

/// What one Event tells: one action on one leaf Secret at one revision, on some clusters. A
/// reconcile that writes a Secret to a thousand clusters publishes one Event, not a thousand;
/// the audit log keeps a line per cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary<'a> {
    pub action: AuditAction,
    /// `namespace/name` of the leaf Secret.
    pub target: &'a str,
    pub revision: Option<&'a str>,
    /// `namespace/name` of each GitopsCluster.
    pub clusters: Vec<&'a str>,
}

impl<'a> EventSummary<'a> {
    /// Groups audit records into summaries, one per (SecretSync, action, target, revision),
    /// each with the SecretSync (`namespace/name`, empty when unknown) it is about.
    #[must_use]
    pub fn group(records: &'a [AuditRecord]) -> Vec<(&'a str, EventSummary<'a>)> {
        type Key<'k> = (&'k str, AuditAction, &'k str, Option<&'k str>);
        let mut groups: BTreeMap<Key<'a>, Vec<&'a str>> = BTreeMap::new();
        for record in records {
            let key = (
                record.secret_sync.as_deref().unwrap_or_default(),
                record.action,
                record.target.as_str(),
                record.revision.as_deref(),
            );
            groups.entry(key).or_default().push(&record.cluster);
        }
        groups
            .into_iter()
            .map(|((sync, action, target, revision), clusters)| {
                let summary = EventSummary {
                    action,
                    target,
                    revision,
                    clusters,
                };
                (sync, summary)
            })
            .collect()
    }

    /// "Secret ns/name applied to cluster ns/c1 at REV", or, for several clusters,
    /// "... applied to 12 clusters (ns/c1, ..., ns/c8 and 4 more) at REV".
    #[must_use]
    pub fn note(&self) -> String {
        let verb = match self.action {
            AuditAction::Apply => "applied to",
            AuditAction::Prune => "pruned from",
        };
        let at = self
            .revision
            .map(|revision| format!(" at {revision}"))
            .unwrap_or_default();
        let clusters = match self.clusters.as_slice() {
            [one] => format!("cluster {one}"),
            all => {
                let named = all[..all.len().min(CLUSTERS_NAMED)].join(", ");
                let more = all.len().saturating_sub(CLUSTERS_NAMED);
                let rest = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("{} clusters ({named}{rest})", all.len())
            }
        };
        format!("Secret {} {verb} {clusters}{at}", self.target)
    }
}

/// A reference to a SecretSync object.
#[must_use]
pub fn secret_sync_reference(namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(crate::manifest::API_VERSION.to_owned()),
        kind: Some(crate::manifest::KIND.to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid,
        ..ObjectReference::default()
    }
}

/// A reference to a Secret of the management cluster.
#[must_use]
pub fn secret_reference(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Secret".to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sync: &str, action: AuditAction, cluster: &str) -> AuditRecord {
        AuditRecord {
            time: "2026-12-04T00:00:00Z".to_owned(),
            action,
            cluster: cluster.to_owned(),
            target: "apps/registry".to_owned(),
            secret_sync: Some(sync.to_owned()),
            revision: Some("main@sha1:abc".to_owned()),
            manifest: None,
            source_version: None,
            leaf_version: None,
        }
    }

    #[test]
    fn one_event_per_secret_sync_and_action_naming_its_clusters() {
        let records: Vec<AuditRecord> = (1..=10)
            .map(|n| record("team/registry", AuditAction::Apply, &format!("team/c{n}")))
            .chain([
                record("team/registry", AuditAction::Prune, "team/old"),
                record("team/vault", AuditAction::Apply, "team/c1"),
            ])
            .collect();
        let groups = EventSummary::group(&records);
        let notes: Vec<(&str, String)> = groups.iter().map(|(s, e)| (*s, e.note())).collect();
        assert_eq!(
            notes,
            [
                (
                    "team/registry",
                    "Secret apps/registry applied to 10 clusters (team/c1, team/c2, team/c3, \
                     team/c4, team/c5, team/c6, team/c7, team/c8 and 2 more) at main@sha1:abc"
                        .to_owned()
                ),
                (
                    "team/registry",
                    "Secret apps/registry pruned from cluster team/old at main@sha1:abc".to_owned()
                ),
                (
                    "team/vault",
                    "Secret apps/registry applied to cluster team/c1 at main@sha1:abc".to_owned()
                ),
            ]
        );
    }
}
