//! The plan (pure): which leaf Secret each SecretSync wants on each cluster it selects, and
//! why a pair is skipped (cluster not ready, source Secret missing, suspended, or two
//! SecretSyncs wanting the same leaf Secret). No I/O: everything comes in as data.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;

use super::desired::leaf_secret;
use crate::manifest::{SecretSync, SecretSyncKey};
use crate::source::Revision;

/// A leaf cluster as the plan sees it (a GitopsCluster of the management cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `Err(reason)` when the cluster is not Ready.
    pub readiness: Result<(), String>,
}

/// What to do for one (SecretSync, cluster) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanItem {
    pub sync: SecretSyncKey,
    pub cluster: String,
    pub action: Action,
}

/// `Debug` names the leaf Secret, never its data.
#[derive(Clone, PartialEq)]
pub enum Action {
    /// Make the leaf hold this Secret. The same copy goes to every cluster a SecretSync
    /// selects, so it is built once and shared: a fleet's plan holds one per SecretSync.
    Apply(Arc<Secret>),
    /// Leave the leaf alone this time.
    Skip(SkipReason),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Apply(secret) => write!(f, "Apply({})", secret_name(secret)),
            Action::Skip(reason) => f.debug_tuple("Skip").field(reason).finish(),
        }
    }
}

/// `namespace/name` of a Secret, for messages that must not show its data.
#[must_use]
pub fn secret_name(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        secret.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Why a pair is not applied. Never holds secret data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "PascalCase")]
pub enum SkipReason {
    ClusterNotReady {
        message: String,
    },
    SourceSecretMissing {
        secret: String,
    },
    Suspended,
    /// Another SecretSync wants the same leaf Secret on this cluster.
    Conflict {
        target: String,
        others: Vec<String>,
    },
}

/// Plans every pair of `syncs` × the clusters of their namespace that their selectors match.
/// `sources` holds the management-cluster Secrets by `(namespace, name)`.
#[must_use]
pub fn plan(
    syncs: &[SecretSync],
    clusters: &[ClusterTarget],
    sources: &BTreeMap<(String, String), Arc<Secret>>,
    revision: &Revision,
) -> Vec<PlanItem> {
    let mut items: Vec<PlanItem> = syncs
        .iter()
        .flat_map(|sync| {
            let desired = OnceCell::new();
            clusters
                .iter()
                .filter(|cluster| {
                    cluster.namespace == sync.key.namespace
                        && sync.spec.cluster_selector.matches(&cluster.labels)
                })
                .map(move |cluster| PlanItem {
                    sync: sync.key.clone(),
                    cluster: cluster.name.clone(),
                    action: action(sync, cluster, sources, revision, &desired),
                })
        })
        .collect();
    mark_conflicts(&mut items);
    items
}

fn action(
    sync: &SecretSync,
    cluster: &ClusterTarget,
    sources: &BTreeMap<(String, String), Arc<Secret>>,
    revision: &Revision,
    desired: &OnceCell<Arc<Secret>>,
) -> Action {
    if sync.options.suspend {
        return Action::Skip(SkipReason::Suspended);
    }
    if let Err(message) = &cluster.readiness {
        return Action::Skip(SkipReason::ClusterNotReady {
            message: message.clone(),
        });
    }
    let source_key = (
        sync.key.namespace.clone(),
        sync.spec.secret_ref.name.clone(),
    );
    match sources.get(&source_key) {
        Some(source) => Action::Apply(Arc::clone(
            desired.get_or_init(|| Arc::new(leaf_secret(sync, source, revision))),
        )),
        None => Action::Skip(SkipReason::SourceSecretMissing {
            secret: sync.spec.secret_ref.name.clone(),
        }),
    }
}

/// Two SecretSyncs writing the same Secret on the same cluster would overwrite each other
/// on every reconcile; neither wins silently: both are skipped and told about the other.
fn mark_conflicts(items: &mut [PlanItem]) {
    let mut writers: BTreeMap<(String, String, String), BTreeSet<SecretSyncKey>> = BTreeMap::new();
    for item in items.iter() {
        if let Some(target) = target_of(item) {
            writers.entry(target).or_default().insert(item.sync.clone());
        }
    }
    for item in items.iter_mut() {
        let Some(target) = target_of(item) else {
            continue;
        };
        let syncs = &writers[&target];
        if syncs.len() > 1 {
            let others = syncs
                .iter()
                .filter(|s| **s != item.sync)
                .map(ToString::to_string)
                .collect();
            item.action = Action::Skip(SkipReason::Conflict {
                target: format!("{}/{}", target.1, target.2),
                others,
            });
        }
    }
}

fn target_of(item: &PlanItem) -> Option<(String, String, String)> {
    match &item.action {
        Action::Apply(secret) => Some((
            item.cluster.clone(),
            secret.metadata.namespace.clone().unwrap_or_default(),
            secret.metadata.name.clone().unwrap_or_default(),
        )),
        Action::Skip(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::manifest::{LabelSelector, Provenance, SecretRef, SecretSyncSpec, SyncOptions};

    fn revision() -> Revision {
        Revision::new(Some("main"), &"a".repeat(40)).unwrap()
    }

    fn sync(name: &str, environment: &str, secret: &str, target: Option<&str>) -> SecretSync {
        SecretSync {
            key: SecretSyncKey {
                namespace: "flux-system".to_owned(),
                name: name.to_owned(),
            },
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            spec: SecretSyncSpec {
                cluster_selector: LabelSelector {
                    match_labels: BTreeMap::from([(
                        "environment".to_owned(),
                        environment.to_owned(),
                    )]),
                    match_expressions: Vec::new(),
                },
                secret_ref: SecretRef {
                    name: secret.to_owned(),
                },
                target_namespace: target.map(str::to_owned),
            },
            options: SyncOptions::default(),
            provenance: Provenance {
                revision: revision(),
                path: "s.yaml".to_owned(),
                document: 1,
                line: 1,
            },
        }
    }

    fn cluster(namespace: &str, name: &str, environment: &str, ready: bool) -> ClusterTarget {
        ClusterTarget {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            labels: BTreeMap::from([("environment".to_owned(), environment.to_owned())]),
            readiness: if ready {
                Ok(())
            } else {
                Err("Ready is False".to_owned())
            },
        }
    }

    fn sources(names: &[&str]) -> BTreeMap<(String, String), Arc<Secret>> {
        names
            .iter()
            .map(|name| {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some((*name).to_owned()),
                        namespace: Some("flux-system".to_owned()),
                        ..ObjectMeta::default()
                    },
                    ..Secret::default()
                };
                (
                    ("flux-system".to_owned(), (*name).to_owned()),
                    Arc::new(secret),
                )
            })
            .collect()
    }

    fn summary(items: &[PlanItem]) -> Vec<(String, String, String)> {
        items
            .iter()
            .map(|item| {
                let action = match &item.action {
                    Action::Apply(secret) => format!(
                        "apply {}",
                        secret.metadata.namespace.as_deref().unwrap_or_default()
                    ),
                    Action::Skip(reason) => format!(
                        "skip {}",
                        serde_json::to_value(reason).unwrap()["reason"]
                            .as_str()
                            .unwrap()
                    ),
                };
                (item.sync.name.clone(), item.cluster.clone(), action)
            })
            .collect()
    }

    #[test]
    fn pairs_each_sync_with_the_ready_clusters_of_its_namespace_it_selects() {
        let clusters = [
            cluster("flux-system", "prod-1", "production", true),
            cluster("flux-system", "prod-2", "production", false),
            cluster("flux-system", "stage-1", "staging", true),
            // Same labels, another namespace: never selected (namespace boundary).
            cluster("team-b", "prod-b", "production", true),
        ];
        let syncs = [
            sync("registry", "production", "registry", Some("kube-system")),
            sync("token", "staging", "missing", None),
        ];
        let items = plan(&syncs, &clusters, &sources(&["registry"]), &revision());
        let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            summary(&items),
            [
                s("registry", "prod-1", "apply kube-system"),
                s("registry", "prod-2", "skip ClusterNotReady"),
                s("token", "stage-1", "skip SourceSecretMissing"),
            ]
        );
    }

    #[test]
    fn two_syncs_writing_one_leaf_secret_both_conflict() {
        let clusters = [cluster("flux-system", "prod-1", "production", true)];
        let syncs = [
            sync("a", "production", "registry", Some("kube-system")),
            sync("b", "production", "registry", Some("kube-system")),
            sync("c", "production", "registry", Some("other")),
        ];
        let items = plan(&syncs, &clusters, &sources(&["registry"]), &revision());
        let actions: Vec<_> = summary(&items).into_iter().map(|(_, _, a)| a).collect();
        assert_eq!(actions, ["skip Conflict", "skip Conflict", "apply other"]);
        let Action::Skip(SkipReason::Conflict { target, others }) = &items[0].action else {
            panic!()
        };
        assert_eq!(target, "kube-system/registry");
        assert_eq!(others, &["flux-system/b".to_owned()]);
    }

    #[test]
    fn debug_output_never_shows_secret_data() {
        let mut sources = sources(&["registry"]);
        let source = Arc::make_mut(sources.values_mut().next().unwrap());
        source.data = Some(BTreeMap::from([(
            "token".to_owned(),
            k8s_openapi::ByteString(b"hunter2".to_vec()),
        )]));
        let items = plan(
            &[sync("registry", "production", "registry", None)],
            &[cluster("flux-system", "prod-1", "production", true)],
            &sources,
            &revision(),
        );
        let shown = format!("{items:?}");
        assert!(shown.contains("Apply(flux-system/registry)"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("104, 117, 110"),
            "{shown}"
        );
    }

    #[test]
    fn a_suspended_sync_is_skipped() {
        let mut suspended = sync("registry", "production", "registry", None);
        suspended.options.suspend = true;
        let items = plan(
            &[suspended],
            &[cluster("flux-system", "prod-1", "production", true)],
            &sources(&["registry"]),
            &revision(),
        );
        assert_eq!(items[0].action, Action::Skip(SkipReason::Suspended));
    }
}
