//! Which SecretSyncs a management-cluster change concerns (pure): a changed source Secret
//! concerns the SecretSyncs naming it; a changed GitopsCluster those of its namespace (its
//! labels may now match a selector, or no longer).

use std::collections::BTreeSet;

use crate::cluster::{ClusterKey, ClusterName};
use crate::manifest::{ManifestSet, SecretSyncKey};
use crate::trigger::Pending;

#[must_use]
pub fn affected(set: &ManifestSet, pending: &Pending) -> BTreeSet<SecretSyncKey> {
    let cluster_namespaces: BTreeSet<&str> = pending
        .clusters
        .iter()
        .filter_map(|cluster| cluster.split_once('/').map(|(namespace, _)| namespace))
        .collect();
    set.syncs
        .iter()
        .filter(|sync| {
            let source = format!("{}/{}", sync.key.namespace, sync.spec.secret_ref.name);
            pending.secrets.contains(&source)
                || cluster_namespaces.contains(sync.key.namespace.as_str())
        })
        .map(|sync| sync.key.clone())
        .collect()
}

/// `namespace/name` back to a cluster key.
#[must_use]
pub fn cluster_key(cluster: &str) -> Option<ClusterKey> {
    let (namespace, name) = cluster.split_once('/')?;
    Some(ClusterKey {
        namespace: namespace.to_owned(),
        name: ClusterName::new(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Parser;
    use crate::source::{FileContent, Revision, Snapshot, SourceFile};

    fn set() -> ManifestSet {
        let yaml = "\
apiVersion: capi.weave.works/v1alpha1
kind: SecretSync
metadata: {name: registry, namespace: team-a}
spec:
  clusterSelector: {matchLabels: {env: dev}}
  secretRef: {name: registry-creds}
---
apiVersion: capi.weave.works/v1alpha1
kind: SecretSync
metadata: {name: vault, namespace: team-a}
spec:
  clusterSelector: {matchLabels: {env: dev}}
  secretRef: {name: vault-token}
---
apiVersion: capi.weave.works/v1alpha1
kind: SecretSync
metadata: {name: registry, namespace: team-b}
spec:
  clusterSelector: {matchLabels: {env: dev}}
  secretRef: {name: registry-creds}
";
        let snapshot = Snapshot {
            revision: Revision::new(Some("main"), &"a".repeat(40)).expect("revision"),
            commit: None,
            files: vec![SourceFile {
                path: "syncs.yaml".into(),
                id: "1".into(),
                content: FileContent::Bytes(yaml.as_bytes().into()),
            }],
        };
        let set = Parser::new("default").parse(&snapshot);
        assert_eq!(set.syncs.len(), 3, "{:?}", set.diagnostics);
        set
    }

    fn names(keys: &BTreeSet<SecretSyncKey>) -> Vec<String> {
        keys.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_rotated_secret_concerns_the_syncs_of_its_namespace_naming_it() {
        let pending = Pending {
            secrets: ["team-a/registry-creds".to_owned()].into(),
            ..Pending::default()
        };
        assert_eq!(names(&affected(&set(), &pending)), ["team-a/registry"]);
    }

    #[test]
    fn a_changed_cluster_concerns_every_sync_of_its_namespace() {
        let pending = Pending {
            clusters: ["team-b/leaf-1".to_owned()].into(),
            ..Pending::default()
        };
        assert_eq!(names(&affected(&set(), &pending)), ["team-b/registry"]);
    }

    #[test]
    fn a_change_nobody_names_concerns_nothing() {
        let pending = Pending {
            secrets: ["team-c/registry-creds".to_owned()].into(),
            clusters: ["team-c/leaf-1".to_owned()].into(),
            ..Pending::default()
        };
        assert!(affected(&set(), &pending).is_empty());
    }

    #[test]
    fn cluster_keys_round_trip() {
        let key = cluster_key("team-a/leaf-1").expect("key");
        assert_eq!(key.to_string(), "team-a/leaf-1");
        assert_eq!(cluster_key("no-slash"), None);
    }
}
