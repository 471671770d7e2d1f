//! Prune: the leaf copies secretsync owns minus the ones still wanted (Flux's "inventory
//! minus desired"), as a pure decision, and the deletes that carry it out. A copy whose
//! SecretSync is invalid or unreadable in this revision, suspended, or whose cluster is not
//! reachable is kept: a bad commit never destroys the last good state.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};

use super::desired::{
    DELETION_POLICY_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, MANIFEST_ANNOTATION, OWNER_LABEL,
    SOURCE_ANNOTATION,
};
use super::plan::{Action, PlanItem, SkipReason};
use crate::manifest::{DeletionPolicy, ManifestSet, SecretSyncKey};

/// A leaf Secret secretsync wrote, as found on a leaf cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedCopy {
    /// The GitopsCluster (namespace of the management cluster, name) it was found through.
    pub cluster_namespace: String,
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// The SecretSync that wrote it (`secretsync.dev/source`).
    pub owner: Option<SecretSyncKey>,
    /// The manifest that defined it (`secretsync.dev/manifest`).
    pub manifest: Option<String>,
    /// Its SecretSync asked to orphan it (kept for when the SecretSync itself is gone).
    pub orphan: bool,
    /// Its labels, which name its shard.
    pub labels: BTreeMap<String, String>,
}

/// Why nothing at all is pruned this time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PruneRefused {
    #[error(
        "revision {revision} holds no SecretSync while {copies} leaf copies exist: refusing to prune them all (allow it with --allow-empty-source)"
    )]
    EmptyRevision { revision: String, copies: usize },
}

impl OwnedCopy {
    /// Reads ownership from a leaf Secret's metadata; `None` when it is not secretsync's.
    #[must_use]
    pub fn from_secret(cluster_namespace: &str, cluster: &str, secret: &Secret) -> Option<Self> {
        let meta = &secret.metadata;
        let labels = meta.labels.as_ref()?;
        if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
            return None;
        }
        let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key)).cloned();
        let owner = annotation(SOURCE_ANNOTATION).and_then(|source| {
            let (namespace, name) = source.split_once('/')?;
            Some(SecretSyncKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        });
        Some(OwnedCopy {
            cluster_namespace: cluster_namespace.to_owned(),
            cluster: cluster.to_owned(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
            owner,
            manifest: annotation(MANIFEST_ANNOTATION),
            orphan: annotation(DELETION_POLICY_ANNOTATION).as_deref() == Some("Orphan"),
            labels: labels.clone(),
        })
    }
}

/// Judges the owned copies of one leaf after another against one reconcile's plan (indexed
/// once): only the copies to delete are kept, so a fleet's inventory is never all in memory.
pub struct PruneJudge<'a> {
    planned: BTreeMap<(&'a SecretSyncKey, &'a str), &'a Action>,
    syncs: BTreeMap<&'a SecretSyncKey, &'a crate::manifest::SecretSync>,
    set: &'a ManifestSet,
    allow_empty: bool,
}

impl<'a> PruneJudge<'a> {
    #[must_use]
    pub fn new(items: &'a [PlanItem], set: &'a ManifestSet, allow_empty: bool) -> Self {
        PruneJudge {
            planned: items
                .iter()
                .map(|item| ((&item.sync, item.cluster.as_str()), &item.action))
                .collect(),
            syncs: set.syncs.iter().map(|s| (&s.key, s)).collect(),
            set,
            allow_empty,
        }
    }

    /// The copies of `owned` (one leaf's) to delete. Refused as a whole when the revision
    /// holds no SecretSync at all while copies exist, unless empty revisions may prune.
    pub fn to_prune(&self, owned: Vec<OwnedCopy>) -> Result<Vec<OwnedCopy>, PruneRefused> {
        let set = self.set;
        let clean_empty =
            set.syncs.is_empty() && set.invalid.is_empty() && set.broken_files.is_empty();
        if clean_empty && !owned.is_empty() && !self.allow_empty {
            return Err(PruneRefused::EmptyRevision {
                revision: set.revision.to_string(),
                copies: owned.len(),
            });
        }
        Ok(owned
            .into_iter()
            .filter(|copy| unwanted(copy, &self.planned, &self.syncs, set))
            .collect())
    }
}

fn unwanted(
    copy: &OwnedCopy,
    planned: &BTreeMap<(&SecretSyncKey, &str), &Action>,
    syncs: &BTreeMap<&SecretSyncKey, &crate::manifest::SecretSync>,
    set: &ManifestSet,
) -> bool {
    // Not attributable, or attributed to a SecretSync of another namespace: not ours to judge.
    let Some(owner) = &copy.owner else {
        return false;
    };
    if owner.namespace != copy.cluster_namespace {
        return false;
    }
    // Last good state: the SecretSync (or its file) is broken in this revision.
    if set.invalid.contains(owner)
        || copy
            .manifest
            .as_ref()
            .is_some_and(|m| set.broken_files.contains(m))
    {
        return false;
    }
    let orphan = match syncs.get(owner) {
        Some(sync) if sync.options.suspend => return false,
        Some(sync) => sync.options.deletion_policy == DeletionPolicy::Orphan,
        None => copy.orphan,
    };
    let wanted = match planned.get(&(owner, copy.cluster.as_str())) {
        Some(Action::Apply(secret)) => {
            secret.metadata.namespace.as_deref() == Some(copy.namespace.as_str())
                && secret.metadata.name.as_deref() == Some(copy.name.as_str())
        }
        // Unreachable, conflicting or suspended: decide later.
        Some(Action::Skip(reason)) => !matches!(reason, SkipReason::SourceSecretMissing { .. }),
        // The SecretSync left the repository or no longer selects this cluster (or, above,
        // its source Secret is gone): its copies go too.
        None => false,
    };
    !wanted && !orphan
}

/// Every copy secretsync owns on one leaf cluster; with `owners` (owner label values), only
/// the copies of those SecretSyncs.
pub async fn list_owned(
    client: &kube::Client,
    cluster_namespace: &str,
    cluster: &str,
    owners: Option<&[String]>,
) -> Result<Vec<OwnedCopy>, kube::Error> {
    let selector = match owners {
        Some(owners) if !owners.is_empty() => format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{OWNER_LABEL} in ({})",
            owners.join(",")
        ),
        _ => format!("{MANAGED_BY_LABEL}={MANAGED_BY}"),
    };
    let params = ListParams::default().labels(&selector);
    Ok(crate::cluster::lean::secret_metadata(client, None, &params)
        .await?
        .iter()
        .filter_map(|secret| OwnedCopy::from_secret(cluster_namespace, cluster, secret))
        .collect())
}

/// Deletes one copy, only if it is still the object that was listed (same uid).
pub async fn delete(client: &kube::Client, copy: &OwnedCopy) -> Result<(), kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &copy.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: copy.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match secrets.delete(&copy.name, &params).await {
        Ok(_) => Ok(()),
        // Already gone: as good.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}
