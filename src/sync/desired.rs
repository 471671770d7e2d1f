//! The leaf copy of a source Secret (pure): its data, type and user metadata, minus what
//! tooling put there, plus secretsync's provenance; and whether a leaf Secret already
//! matches it, so that a no-op reconcile sends no write.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::manifest::{DeletionPolicy, SecretSync};
use crate::source::Revision;

/// Field manager of every write to a leaf cluster.
pub const FIELD_MANAGER: &str = "secretsync";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "secretsync";
/// Label naming the owning SecretSync (`<ns>.<name>`, hashed when too long for a label),
/// what prune lists owned copies by.
pub const OWNER_LABEL: &str = "secretsync.dev/owner";
/// The SecretSync (`<ns>/<name>`) a copy, or a status ConfigMap, belongs to.
pub const SOURCE_ANNOTATION: &str = "secretsync.dev/source";
pub const REVISION_ANNOTATION: &str = "secretsync.dev/revision";
pub const MANIFEST_ANNOTATION: &str = "secretsync.dev/manifest";
pub const SOURCE_VERSION_ANNOTATION: &str = "secretsync.dev/source-version";
/// The SecretSync's own annotation, set to `Orphan` on copies whose SecretSync orphans them
/// too, so that the policy still holds when the SecretSync has left the repository.
pub use crate::manifest::DELETION_POLICY_ANNOTATION;

/// Label and annotation prefixes that belong to the tools that manage the source Secret
/// in the management cluster, not to the Secret itself: never copied.
const TOOLING_PREFIXES: &[&str] = &[
    "kubectl.kubernetes.io/",
    "kustomize.toolkit.fluxcd.io/",
    "helm.toolkit.fluxcd.io/",
    "helm.sh/",
    "meta.helm.sh/",
    "secretsync.dev/",
    SHARD_LABEL_PREFIX,
    "app.kubernetes.io/managed-by",
];

/// Labels of a SecretSync under this prefix mark its shard (`--watch-label-selector`); they
/// are carried to its leaf copies, so that the shard that wrote a copy is the one that
/// prunes it, even after the SecretSync left the repository.
pub const SHARD_LABEL_PREFIX: &str = "sharding.secretsync.dev/";

/// The Secret secretsync wants on a leaf cluster for one SecretSync.
#[must_use]
pub fn leaf_secret(sync: &SecretSync, source: &Secret, revision: &Revision) -> Secret {
    let source_meta = &source.metadata;
    let mut labels = user_entries(source_meta.labels.as_ref());
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels.insert(OWNER_LABEL.to_owned(), owner_label(sync));
    labels.extend(
        sync.labels
            .iter()
            .filter(|(key, _)| key.starts_with(SHARD_LABEL_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let mut annotations = user_entries(source_meta.annotations.as_ref());
    annotations.insert(SOURCE_ANNOTATION.to_owned(), sync.key.to_string());
    annotations.insert(REVISION_ANNOTATION.to_owned(), revision.to_string());
    annotations.insert(MANIFEST_ANNOTATION.to_owned(), sync.provenance.path.clone());
    if sync.options.deletion_policy == DeletionPolicy::Orphan {
        annotations.insert(DELETION_POLICY_ANNOTATION.to_owned(), "Orphan".to_owned());
    }
    annotations.insert(
        SOURCE_VERSION_ANNOTATION.to_owned(),
        source_meta.resource_version.clone().unwrap_or_default(),
    );
    Secret {
        metadata: ObjectMeta {
            name: source_meta.name.clone(),
            namespace: Some(sync.target_namespace().to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        type_: source.type_.clone(),
        data: source.data.clone(),
        immutable: source.immutable,
        ..Secret::default()
    }
}

/// The owner label value for a SecretSync: `<namespace>.<name>`, or, when that is longer
/// than a label value may be, a prefix and a hash of it.
#[must_use]
pub fn owner_label(sync: &SecretSync) -> String {
    let full = format!("{}.{}", sync.key.namespace, sync.key.name);
    if full.len() <= 63 {
        return full;
    }
    let hash = hex::encode(&Sha256::digest(full.as_bytes())[..8]);
    format!("{}-{hash}", full[..46].trim_end_matches(['.', '-']))
}

/// Whether `existing` already is `desired`, as far as secretsync owns it: same type, data
/// and immutability, and every label and annotation secretsync sets has the same value.
/// The revision annotation is not compared: it names the commit that produced the content,
/// and a new commit that changes nothing for this copy does not produce it again.
#[must_use]
pub fn matches(existing: &Secret, desired: &Secret) -> bool {
    let contains = |have: Option<&BTreeMap<String, String>>,
                    want: Option<&BTreeMap<String, String>>| {
        want.into_iter().flatten().all(|(key, value)| {
            key == REVISION_ANNOTATION || have.and_then(|h| h.get(key)) == Some(value)
        })
    };
    existing.type_.as_deref().unwrap_or("Opaque") == desired.type_.as_deref().unwrap_or("Opaque")
        && existing.data.as_ref().filter(|d| !d.is_empty())
            == desired.data.as_ref().filter(|d| !d.is_empty())
        && existing.immutable.unwrap_or(false) == desired.immutable.unwrap_or(false)
        && contains(
            existing.metadata.labels.as_ref(),
            desired.metadata.labels.as_ref(),
        )
        && contains(
            existing.metadata.annotations.as_ref(),
            desired.metadata.annotations.as_ref(),
        )
}

/// An annotation of a Secret.
#[must_use]
pub fn annotation(secret: &Secret, key: &str) -> Option<String> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
}

/// Whether a leaf Secret was written by secretsync (for any SecretSync).
#[must_use]
pub fn is_managed(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MANAGED_BY)
}

fn user_entries(entries: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    entries
        .into_iter()
        .flatten()
        .filter(|(key, _)| {
            !TOOLING_PREFIXES
                .iter()
                .any(|prefix| key.starts_with(prefix))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;
    use crate::manifest::{
        LabelSelector, Provenance, SecretRef, SecretSyncKey, SecretSyncSpec, SyncOptions,
    };

    fn sync(namespace: &str, name: &str, target: Option<&str>) -> SecretSync {
        SecretSync {
            key: SecretSyncKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            spec: SecretSyncSpec {
                cluster_selector: LabelSelector::default(),
                secret_ref: SecretRef {
                    name: "registry".to_owned(),
                },
                target_namespace: target.map(str::to_owned),
            },
            options: SyncOptions::default(),
            provenance: Provenance {
                revision: revision('a'),
                path: "clusters/registry.yaml".to_owned(),
                document: 1,
                line: 1,
            },
        }
    }

    fn revision(c: char) -> Revision {
        Revision::new(Some("main"), &c.to_string().repeat(40)).unwrap()
    }

    fn source() -> Secret {
        let map = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        Secret {
            metadata: ObjectMeta {
                name: Some("registry".to_owned()),
                namespace: Some("flux-system".to_owned()),
                resource_version: Some("4711".to_owned()),
                labels: map(&[
                    ("team", "platform"),
                    ("kustomize.toolkit.fluxcd.io/name", "infra"),
                    ("app.kubernetes.io/managed-by", "Helm"),
                ]),
                annotations: map(&[
                    ("note", "rotated monthly"),
                    (
                        "kubectl.kubernetes.io/last-applied-configuration",
                        "{\"data\":…}",
                    ),
                    ("meta.helm.sh/release-name", "x"),
                ]),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/dockerconfigjson".to_owned()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_owned(),
                ByteString(b"{}".to_vec()),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn copies_data_and_user_metadata_and_adds_provenance() {
        let leaf = leaf_secret(
            &sync("flux-system", "registry-sync", Some("kube-system")),
            &source(),
            &revision('b'),
        );
        assert_eq!(leaf.metadata.name.as_deref(), Some("registry"));
        assert_eq!(leaf.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(leaf.type_, source().type_);
        assert_eq!(leaf.data, source().data);
        let labels = leaf.metadata.labels.unwrap();
        assert_eq!(
            labels.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "app.kubernetes.io/managed-by",
                "secretsync.dev/owner",
                "team"
            ]
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "secretsync");
        assert_eq!(labels["secretsync.dev/owner"], "flux-system.registry-sync");
        let annotations = leaf.metadata.annotations.unwrap();
        assert_eq!(annotations["note"], "rotated monthly");
        assert_eq!(
            annotations["secretsync.dev/source"],
            "flux-system/registry-sync"
        );
        assert_eq!(
            annotations["secretsync.dev/revision"],
            format!("main@sha1:{}", "b".repeat(40))
        );
        assert_eq!(
            annotations["secretsync.dev/manifest"],
            "clusters/registry.yaml"
        );
        assert_eq!(annotations["secretsync.dev/source-version"], "4711");
        assert!(
            !annotations
                .keys()
                .any(|k| k.starts_with("kubectl.") || k.starts_with("meta.helm.sh"))
        );
    }

    #[test]
    fn target_namespace_defaults_to_the_secretsyncs() {
        let leaf = leaf_secret(&sync("team-a", "s", None), &source(), &revision('b'));
        assert_eq!(leaf.metadata.namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn a_new_commit_alone_is_no_change() {
        let sync = sync("flux-system", "registry-sync", None);
        let mut existing = leaf_secret(&sync, &source(), &revision('a'));
        existing.metadata.resource_version = Some("12".to_owned());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("added-by-someone".to_owned(), "x".to_owned());
        assert!(matches(
            &existing,
            &leaf_secret(&sync, &source(), &revision('b'))
        ));

        let mut rotated = source();
        rotated.data = Some(BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            ByteString(b"{\"auths\":{}}".to_vec()),
        )]));
        rotated.metadata.resource_version = Some("4712".to_owned());
        assert!(!matches(
            &existing,
            &leaf_secret(&sync, &rotated, &revision('b'))
        ));

        let mut edited = existing.clone();
        edited
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".to_owned(), "someone-else".to_owned());
        assert!(!matches(
            &edited,
            &leaf_secret(&sync, &source(), &revision('b'))
        ));
    }

    #[test]
    fn long_owner_names_fit_a_label_value() {
        let long = sync(&"n".repeat(63), &"x".repeat(200), None);
        let label = owner_label(&long);
        assert!(label.len() <= 63, "{label}");
        assert_ne!(
            label,
            owner_label(&sync(&"n".repeat(63), &"y".repeat(200), None))
        );
    }
}
