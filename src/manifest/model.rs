//! The `SecretSync` model (`capi.weave.works/v1alpha1`) exactly as the upstream API defines
//! it, plus secretsync's options, which live in annotations so that a manifest stays valid
//! for the upstream CRD.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::selector::LabelSelector;
use crate::source::Revision;

pub const API_GROUP: &str = "capi.weave.works";
pub const API_VERSION: &str = "capi.weave.works/v1alpha1";
pub const KIND: &str = "SecretSync";

/// Annotation: what happens to the leaf copies when they are no longer wanted.
pub const DELETION_POLICY_ANNOTATION: &str = "secretsync.dev/deletion-policy";
/// Annotation: `"true"` lets the SecretSync take over a leaf Secret it did not create.
pub const ADOPT_ANNOTATION: &str = "secretsync.dev/adopt";
/// Annotation: `"true"` stops syncing and pruning this SecretSync.
pub const SUSPEND_ANNOTATION: &str = "secretsync.dev/suspend";

/// `namespace/name` of a SecretSync.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SecretSyncKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for SecretSyncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSyncSpec {
    pub cluster_selector: LabelSelector,
    pub secret_ref: SecretRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    pub name: String,
}

/// What happens to leaf copies that are no longer wanted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum DeletionPolicy {
    /// Delete the copies this SecretSync owns (the default).
    #[default]
    Delete,
    /// Leave them where they are.
    Orphan,
}

/// secretsync's options for one SecretSync, read from its annotations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncOptions {
    pub deletion_policy: DeletionPolicy,
    pub adopt: bool,
    pub suspend: bool,
}

/// Where a SecretSync was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub revision: Revision,
    /// Path of the file in the repository.
    pub path: String,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    /// 1-based line where the object starts.
    pub line: usize,
}

/// A valid SecretSync of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretSync {
    pub key: SecretSyncKey,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: SecretSyncSpec,
    pub options: SyncOptions,
    pub provenance: Provenance,
}

impl SecretSync {
    /// The namespace the copies go to on each leaf cluster.
    #[must_use]
    pub fn target_namespace(&self) -> &str {
        self.spec
            .target_namespace
            .as_deref()
            .unwrap_or(&self.key.namespace)
    }
}

impl SyncOptions {
    /// Reads the options from annotations; the error names the annotation and what it takes.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, (String, String)> {
        let mut options = SyncOptions::default();
        if let Some(policy) = annotations.get(DELETION_POLICY_ANNOTATION) {
            options.deletion_policy = match policy.as_str() {
                "Delete" => DeletionPolicy::Delete,
                "Orphan" => DeletionPolicy::Orphan,
                other => {
                    return Err(invalid(
                        DELETION_POLICY_ANNOTATION,
                        other,
                        "Delete or Orphan",
                    ));
                }
            };
        }
        options.adopt = flag(annotations, ADOPT_ANNOTATION)?;
        options.suspend = flag(annotations, SUSPEND_ANNOTATION)?;
        Ok(options)
    }
}

fn flag(annotations: &BTreeMap<String, String>, name: &str) -> Result<bool, (String, String)> {
    match annotations.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(invalid(name, other, "\"true\" or \"false\"")),
    }
}

fn invalid(annotation: &str, value: &str, expected: &str) -> (String, String) {
    (
        format!("metadata.annotations.{annotation}"),
        format!("{value:?} is not valid: expected {expected}"),
    )
}
