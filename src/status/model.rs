//! A SecretSync's status (pure): `versions` exactly as the upstream API defines it (cluster
//! → leaf Secret resourceVersion), plus per cluster the commit and source version behind the
//! copy and the last outcome, conditions `Ready`/`Reconciling`/`Stalled`, and the last
//! applied and attempted revisions, Flux style.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sync::SkipReason;
use crate::sync::apply::Outcome;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The SecretSync object's `metadata.generation` this status describes (object only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The commit that produced the copy on this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// resourceVersion of the management-cluster Secret that was copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// `Synced`, `NotReady`, `Conflict`, `NotOwned`, `SourceSecretMissing`, `Suspended` or
    /// `Error`; `message` says more.
    pub result: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When secretsync last wrote the copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What one reconcile found for one cluster of a SecretSync.
#[derive(Debug, Clone)]
pub struct ClusterResult {
    pub cluster: String,
    pub outcome: Outcome,
    /// resourceVersion of the source Secret behind the desired copy, if there was one.
    pub source_version: Option<String>,
}

impl SyncStatus {
    /// Marks the status and its conditions as describing `generation` of the object.
    #[must_use]
    pub fn observing(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        for condition in &mut self.conditions {
            condition.observed_generation = generation;
        }
        self
    }

    /// The status after a reconcile of `revision` that produced `results` (one per selected
    /// cluster), given the previous status. `now` is RFC 3339.
    #[must_use]
    pub fn next(
        previous: &SyncStatus,
        revision: &str,
        results: &[ClusterResult],
        now: &str,
    ) -> SyncStatus {
        let mut status = SyncStatus {
            last_attempted_revision: Some(revision.to_owned()),
            ..SyncStatus::default()
        };
        for result in results {
            let before = previous.clusters.get(&result.cluster);
            let cluster = cluster_status(before, result, now);
            // A leaf that was not reached this time still holds its last copy.
            let version = result
                .outcome
                .resource_version()
                .map(str::to_owned)
                .or_else(|| previous.versions.get(&result.cluster).cloned());
            if let Some(version) = version {
                status.versions.insert(result.cluster.clone(), version);
            }
            status.clusters.insert(result.cluster.clone(), cluster);
        }
        let (ready, stalled) = conditions(results);
        status.last_applied_revision = if ready.status == "True" {
            Some(revision.to_owned())
        } else {
            previous.last_applied_revision.clone()
        };
        status.conditions = [ready, reconciling(), stalled]
            .into_iter()
            .map(|c| keep_transition_time(c, &previous.conditions, now))
            .collect();
        status
    }
}

/// Why the source could not be read, for the `SourceReady` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    /// `FetchFailed`, or `VerificationFailed` when the head commit's signature was refused.
    pub reason: &'static str,
    pub message: String,
}

impl SyncStatus {
    /// Adds the `SourceReady` condition: False, with the reason the source could not be
    /// read, while the copies stay as the last good revision (`last_attempted_revision`)
    /// made them; True otherwise. Only a status that was told about a failure carries the
    /// condition, so that the status of an agent whose source never failed stays as it was.
    #[must_use]
    pub fn with_source(
        mut self,
        previous: &SyncStatus,
        problem: Option<&SourceProblem>,
        now: &str,
    ) -> Self {
        let source = match problem {
            Some(problem) => condition(
                SOURCE_READY,
                false,
                problem.reason,
                format!(
                    "{}; the copies stay as revision {} made them",
                    problem.message,
                    self.last_attempted_revision.as_deref().unwrap_or("(none)")
                ),
            ),
            None if has_condition(previous, SOURCE_READY) => condition(
                SOURCE_READY,
                true,
                "Succeeded",
                "the source was read".to_owned(),
            ),
            None => return self,
        };
        self.conditions
            .push(keep_transition_time(source, &previous.conditions, now));
        self
    }
}

/// The condition that says whether the revision could be read (fetched, verified, parsed).
pub const SOURCE_READY: &str = "SourceReady";

fn has_condition(status: &SyncStatus, type_: &str) -> bool {
    status.conditions.iter().any(|c| c.type_ == type_)
}

fn cluster_status(
    before: Option<&ClusterStatus>,
    result: &ClusterResult,
    now: &str,
) -> ClusterStatus {
    let kept = before.cloned().unwrap_or_default();
    match &result.outcome {
        Outcome::Applied {
            resource_version,
            revision,
        } => ClusterStatus {
            revision: Some(revision.clone()),
            source_version: result.source_version.clone(),
            resource_version: Some(resource_version.clone()),
            result: SYNCED.to_owned(),
            message: String::new(),
            last_sync_time: Some(now.to_owned()),
        },
        Outcome::Unchanged {
            resource_version,
            revision,
        } => ClusterStatus {
            revision: Some(revision.clone())
                .filter(|r| !r.is_empty())
                .or(kept.revision),
            source_version: result.source_version.clone(),
            resource_version: Some(resource_version.clone()),
            result: SYNCED.to_owned(),
            message: String::new(),
            last_sync_time: kept.last_sync_time,
        },
        other => ClusterStatus {
            result: result_name(other),
            message: result_message(other),
            ..kept
        },
    }
}

/// The per-cluster outcome when the leaf holds the current copy, whether this reconcile
/// wrote it or found it right: a state, so that a no-op reconcile leaves status unchanged.
pub const SYNCED: &str = "Synced";

/// The per-cluster `result` word for an outcome.
#[must_use]
pub fn result_name(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied { .. } | Outcome::Unchanged { .. } => SYNCED.to_owned(),
        Outcome::Skipped(reason) => skip_name(reason).to_owned(),
        Outcome::NotOwned { .. } => "NotOwned".to_owned(),
        Outcome::WouldApply { create: true } => "WouldCreate".to_owned(),
        Outcome::WouldApply { create: false } => "WouldUpdate".to_owned(),
        Outcome::Failed { .. } => "Error".to_owned(),
    }
}

fn skip_name(reason: &SkipReason) -> &'static str {
    match reason {
        SkipReason::ClusterNotReady { .. } => "NotReady",
        SkipReason::SourceSecretMissing { .. } => "SourceSecretMissing",
        SkipReason::Suspended => "Suspended",
        SkipReason::Conflict { .. } => "Conflict",
    }
}

/// What a person should know about an outcome (empty when synced).
#[must_use]
pub fn result_message(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied { .. } | Outcome::Unchanged { .. } | Outcome::WouldApply { .. } => {
            String::new()
        }
        Outcome::Skipped(SkipReason::ClusterNotReady { message }) | Outcome::Failed { message } => {
            message.clone()
        }
        Outcome::Skipped(SkipReason::SourceSecretMissing { secret }) => {
            format!("Secret {secret} not found in the SecretSync's namespace")
        }
        Outcome::Skipped(SkipReason::Suspended) => "suspended by secretsync.dev/suspend".to_owned(),
        Outcome::Skipped(SkipReason::Conflict { target, others }) => {
            format!(
                "{target} is also wanted by {}; neither is applied",
                others.join(", ")
            )
        }
        Outcome::NotOwned { target } => {
            format!(
                "{target} exists and was not created by secretsync; set secretsync.dev/adopt: \"true\" to take it over"
            )
        }
    }
}

/// Ready when every selected cluster holds the right copy; Stalled when only a change by
/// someone (a missing Secret, a conflict, a foreign Secret) can fix what is wrong.
fn conditions(results: &[ClusterResult]) -> (Condition, Condition) {
    let failed: Vec<&ClusterResult> = results
        .iter()
        .filter(|r| r.outcome.resource_version().is_none())
        .collect();
    let needs_user = failed.iter().find(|r| {
        matches!(
            r.outcome,
            Outcome::NotOwned { .. }
                | Outcome::Skipped(
                    SkipReason::SourceSecretMissing { .. } | SkipReason::Conflict { .. }
                )
        )
    });
    let ready = match failed.first() {
        None if results.is_empty() => condition(
            "Ready",
            true,
            "NoClusterSelected",
            "the selector matches no GitopsCluster".to_owned(),
        ),
        None => condition(
            "Ready",
            true,
            "Synced",
            format!("{} cluster(s) hold the current copy", results.len()),
        ),
        Some(first) => condition(
            "Ready",
            false,
            &result_name(&first.outcome),
            format!(
                "{} of {} cluster(s) not synced; {}: {}",
                failed.len(),
                results.len(),
                first.cluster,
                result_message(&first.outcome)
            ),
        ),
    };
    let stalled = match needs_user {
        Some(result) => condition(
            "Stalled",
            true,
            &result_name(&result.outcome),
            result_message(&result.outcome),
        ),
        None => condition("Stalled", false, "Progressing", String::new()),
    };
    (ready, stalled)
}

fn reconciling() -> Condition {
    condition(
        "Reconciling",
        false,
        "ReconciliationSucceeded",
        "reconciliation finished".to_owned(),
    )
}

fn condition(type_: &str, ok: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: String::new(),
        observed_generation: None,
    }
}

/// Kubernetes moves `lastTransitionTime` only when the status flips.
fn keep_transition_time(mut condition: Condition, previous: &[Condition], now: &str) -> Condition {
    condition.last_transition_time = previous
        .iter()
        .find(|p| p.type_ == condition.type_ && p.status == condition.status)
        .map_or_else(|| now.to_owned(), |p| p.last_transition_time.clone());
    condition
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(cluster: &str, outcome: Outcome) -> ClusterResult {
        ClusterResult {
            cluster: cluster.to_owned(),
            outcome,
            source_version: Some("77".to_owned()),
        }
    }

    fn applied(rv: &str) -> Outcome {
        Outcome::Applied {
            resource_version: rv.to_owned(),
            revision: "main@sha1:aa".to_owned(),
        }
    }

    #[test]
    fn a_source_that_cannot_be_read_is_told_until_it_can_again() {
        let results = [result("leaf-1", applied("5"))];
        let ok = SyncStatus::next(&SyncStatus::default(), "main@sha1:aa", &results, "T1")
            .with_source(&SyncStatus::default(), None, "T1");
        assert!(
            !has_condition(&ok, SOURCE_READY),
            "no failure, no condition"
        );

        let problem = SourceProblem {
            reason: "FetchFailed",
            message: "fetching https://git.example/repo: connection refused".to_owned(),
        };
        let failing = SyncStatus::next(&ok, "main@sha1:aa", &results, "T2").with_source(
            &ok,
            Some(&problem),
            "T2",
        );
        let source = failing
            .conditions
            .iter()
            .find(|c| c.type_ == SOURCE_READY)
            .expect("SourceReady");
        assert_eq!(
            (source.status.as_str(), source.reason.as_str()),
            ("False", "FetchFailed")
        );
        assert!(
            source.message.contains("connection refused")
                && source.message.contains("main@sha1:aa"),
            "{}",
            source.message
        );
        assert_eq!(failing.versions, ok.versions, "the copies are still there");
        let ready = failing.conditions.iter().find(|c| c.type_ == "Ready");
        assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));

        // The same failure again, nothing else changed: the same status (nothing to write).
        let unchanged = [result(
            "leaf-1",
            Outcome::Unchanged {
                resource_version: "5".to_owned(),
                revision: "main@sha1:aa".to_owned(),
            },
        )];
        let again = SyncStatus::next(&failing, "main@sha1:aa", &unchanged, "T3").with_source(
            &failing,
            Some(&problem),
            "T3",
        );
        assert_eq!(again, failing);

        let recovered = SyncStatus::next(&again, "main@sha1:aa", &unchanged, "T4")
            .with_source(&again, None, "T4");
        let source = recovered
            .conditions
            .iter()
            .find(|c| c.type_ == SOURCE_READY)
            .expect("SourceReady");
        assert_eq!(
            (source.status.as_str(), source.last_transition_time.as_str()),
            ("True", "T4")
        );
    }

    #[test]
    fn versions_and_revision_follow_the_leaves() {
        let status = SyncStatus::next(
            &SyncStatus::default(),
            "main@sha1:aa",
            &[
                result("leaf-1", applied("211496")),
                result("leaf-2", applied("9")),
            ],
            "T1",
        );
        assert_eq!(
            status.versions,
            BTreeMap::from([
                ("leaf-1".to_owned(), "211496".to_owned()),
                ("leaf-2".to_owned(), "9".to_owned())
            ])
        );
        assert_eq!(
            status.clusters["leaf-1"].revision.as_deref(),
            Some("main@sha1:aa")
        );
        assert_eq!(
            status.clusters["leaf-1"].source_version.as_deref(),
            Some("77")
        );
        assert_eq!(
            status.last_applied_revision.as_deref(),
            Some("main@sha1:aa")
        );
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.conditions[0].last_transition_time, "T1");
    }

    #[test]
    fn an_unchanged_reconcile_changes_nothing() {
        let first = SyncStatus::next(
            &SyncStatus::default(),
            "main@sha1:aa",
            &[result("leaf-1", applied("5"))],
            "T1",
        );
        let unchanged = Outcome::Unchanged {
            resource_version: "5".to_owned(),
            revision: "main@sha1:aa".to_owned(),
        };
        let second = SyncStatus::next(&first, "main@sha1:aa", &[result("leaf-1", unchanged)], "T2");
        assert_eq!(second, first);
        assert_eq!(second.clusters["leaf-1"].result, SYNCED);
        let third = SyncStatus::next(
            &second,
            "main@sha1:aa",
            &[result(
                "leaf-1",
                Outcome::Unchanged {
                    resource_version: "5".to_owned(),
                    revision: "main@sha1:aa".to_owned(),
                },
            )],
            "T3",
        );
        assert_eq!(
            third, second,
            "a no-op reconcile must produce the same status, so nothing is written"
        );
    }

    #[test]
    fn an_unreachable_leaf_keeps_its_last_version_and_is_not_ready() {
        let first = SyncStatus::next(
            &SyncStatus::default(),
            "main@sha1:aa",
            &[result("leaf-1", applied("5"))],
            "T1",
        );
        let down = Outcome::Skipped(SkipReason::ClusterNotReady {
            message: "Ready is False".to_owned(),
        });
        let second = SyncStatus::next(&first, "main@sha1:bb", &[result("leaf-1", down)], "T2");
        assert_eq!(second.versions["leaf-1"], "5");
        assert_eq!(
            second.clusters["leaf-1"].revision.as_deref(),
            Some("main@sha1:aa")
        );
        assert_eq!(second.clusters["leaf-1"].result, "NotReady");
        assert_eq!(
            second.last_applied_revision.as_deref(),
            Some("main@sha1:aa")
        );
        assert_eq!(
            second.last_attempted_revision.as_deref(),
            Some("main@sha1:bb")
        );
        assert_eq!(
            (
                second.conditions[0].status.as_str(),
                second.conditions[0].reason.as_str()
            ),
            ("False", "NotReady")
        );
        assert_eq!(
            second.conditions[2].status, "False",
            "an unreachable cluster is retried, not stalled"
        );
    }

    #[test]
    fn a_missing_source_secret_stalls() {
        let missing = Outcome::Skipped(SkipReason::SourceSecretMissing {
            secret: "registry".to_owned(),
        });
        let status = SyncStatus::next(
            &SyncStatus::default(),
            "main@sha1:aa",
            &[result("leaf-1", missing)],
            "T1",
        );
        assert_eq!(status.conditions[2].status, "True");
        assert_eq!(status.conditions[2].reason, "SourceSecretMissing");
        assert!(status.versions.is_empty());
    }
}
