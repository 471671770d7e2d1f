//! Whether a leaf cluster can be synced: what its `GitopsCluster` conditions say (pure), and
//! whether its API server answers `/readyz` right now (a probe with a short timeout).

use std::time::Duration;

use super::clients::LeafClient;
use super::model::{ClusterKey, ConditionStatus, GitopsCluster};
use super::{ApiFailure, ClusterError, kube_error_chain};

pub const READY: &str = "Ready";
pub const CLUSTER_CONNECTIVITY: &str = "ClusterConnectivity";

/// How long the reachability probe waits: long enough for a healthy API server across a
/// WAN, short enough that a dead cluster does not hold up a reconcile.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest part of a `/readyz` failure body kept in a reason (it lists every check).
const BODY_EXCERPT: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// `reason` says which condition is in the way, with its reason and message.
    NotReady {
        reason: String,
    },
}

impl Readiness {
    #[must_use]
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready)
    }

    /// `Ok` when ready, else a `NotReady` error naming the cluster.
    pub fn into_result(self, cluster: &ClusterKey) -> Result<(), ClusterError> {
        match self {
            Readiness::Ready => Ok(()),
            Readiness::NotReady { reason } => Err(ClusterError::NotReady {
                cluster: cluster.clone(),
                reason,
            }),
        }
    }
}

/// Ready when the `Ready` condition is True and, when the connectivity check has reported,
/// `ClusterConnectivity` is True too.
#[must_use]
pub fn readiness(cluster: &GitopsCluster) -> Readiness {
    let Some(ready) = cluster.condition(READY) else {
        return Readiness::NotReady {
            reason: "it has no Ready condition yet (nothing has reported on this cluster)"
                .to_owned(),
        };
    };
    for condition in std::iter::once(ready).chain(cluster.condition(CLUSTER_CONNECTIVITY)) {
        if condition.status != ConditionStatus::True {
            let why = if condition.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", condition.reason)
            };
            let message = if condition.message.is_empty() {
                String::new()
            } else {
                format!(": {}", condition.message)
            };
            let reason = format!(
                "condition {} is {}{why}{message}",
                condition.kind, condition.status
            );
            return Readiness::NotReady { reason };
        }
    }
    Readiness::Ready
}

/// Asks the leaf API server whether it is ready (`GET /readyz`), giving up after `timeout`.
/// `/readyz` needs no permissions, so this proves the server is up and its certificate
/// trusted, not that the kubeconfig's credentials are accepted.
pub async fn probe(
    cluster: &ClusterKey,
    leaf: &LeafClient,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let unreachable = |reason: String| ClusterError::Unreachable {
        cluster: cluster.clone(),
        server: leaf.server().to_owned(),
        reason,
    };
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| unreachable(format!("building the request: {e}")))?;
    match tokio::time::timeout(timeout, leaf.client().request_text(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) => {
            let body: String = status.message.trim().chars().take(BODY_EXCERPT).collect();
            Err(unreachable(format!(
                "/readyz answered HTTP {}: {}",
                status.code,
                body.replace('\n', "; ")
            )))
        }
        Ok(Err(error)) => Err(unreachable(transport_reason(&error))),
        Err(_) => Err(unreachable(format!(
            "no answer to /readyz within {timeout:?}"
        ))),
    }
}

fn transport_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::SerdeError(_) => ApiFailure::from_kube(error).message,
        other => kube_error_chain(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterName, Condition, KubeconfigRef};

    /// `(type, status, reason, message)`
    type Row<'a> = (&'a str, ConditionStatus, &'a str, &'a str);

    fn cluster(conditions: &[Row]) -> GitopsCluster {
        GitopsCluster {
            name: ClusterName::new("leaf"),
            namespace: "fleet".to_owned(),
            labels: std::collections::BTreeMap::new(),
            kubeconfig: KubeconfigRef::Default,
            conditions: conditions
                .iter()
                .map(|(kind, status, reason, message)| Condition {
                    kind: (*kind).to_owned(),
                    status: *status,
                    reason: (*reason).to_owned(),
                    message: (*message).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn ready_needs_ready_true_and_connectivity_true_when_reported() {
        use ConditionStatus::{False, True, Unknown};
        let cases: [(&[Row], Option<&str>); 7] = [
            (&[("Ready", True, "", "")], None),
            (
                &[
                    ("Ready", True, "", ""),
                    ("ClusterConnectivity", True, "", ""),
                ],
                None,
            ),
            (
                &[],
                Some("it has no Ready condition yet (nothing has reported on this cluster)"),
            ),
            (
                &[("ClusterConnectivity", True, "", "")],
                Some("it has no Ready condition yet (nothing has reported on this cluster)"),
            ),
            (
                &[(
                    "Ready",
                    False,
                    "WaitingForSecret",
                    "secret leaf-kubeconfig not found",
                )],
                Some(
                    "condition Ready is False (WaitingForSecret): secret leaf-kubeconfig not found",
                ),
            ),
            (
                &[("Ready", Unknown, "", "")],
                Some("condition Ready is Unknown"),
            ),
            (
                &[
                    ("Ready", True, "", ""),
                    (
                        "ClusterConnectivity",
                        False,
                        "ConnectionFailed",
                        "dial tcp: i/o timeout",
                    ),
                ],
                Some(
                    "condition ClusterConnectivity is False (ConnectionFailed): dial tcp: i/o timeout",
                ),
            ),
        ];
        for (conditions, expected) in cases {
            let got = readiness(&cluster(conditions));
            let expected = match expected {
                None => Readiness::Ready,
                Some(reason) => Readiness::NotReady {
                    reason: reason.to_owned(),
                },
            };
            assert_eq!(got, expected, "{conditions:?}");
        }
    }

    #[test]
    fn not_ready_becomes_an_error_naming_the_cluster() {
        let cluster = cluster(&[("Ready", ConditionStatus::False, "Failed", "no")]);
        let error = readiness(&cluster).into_result(&cluster.key()).unwrap_err();
        assert_eq!(error.reason(), "ClusterNotReady");
        assert_eq!(
            error.to_string(),
            "GitopsCluster fleet/leaf is not ready: condition Ready is False (Failed): no"
        );
    }
}
