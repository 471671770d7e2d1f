//! The `GitopsCluster` model (`gitops.weave.works/v1alpha1`): what the agent needs of one
//! leaf cluster, read from the management cluster's object.

use std::collections::BTreeMap;
use std::fmt;

use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};

use super::ClusterError;

pub const API_GROUP: &str = "gitops.weave.works";
pub const API_VERSION: &str = "gitops.weave.works/v1alpha1";
pub const KIND: &str = "GitopsCluster";
pub const PLURAL: &str = "gitopsclusters";

/// Kubeconfig key of a Cluster API kubeconfig Secret, and the first one tried elsewhere.
pub const KUBECONFIG_KEY: &str = "value";
/// The key Weave GitOps also accepts in a `secretRef` Secret.
pub const KUBECONFIG_KEY_YAML: &str = "value.yaml";

/// The `GitopsCluster` resource, for `Api::namespaced_with`.
#[must_use]
pub fn api_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk(API_GROUP, "v1alpha1", KIND);
    ApiResource::from_gvk_with_plural(&gvk, PLURAL)
}

/// The name of a `GitopsCluster`: the key of `status.versions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterName(String);

impl ClusterName {
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        ClusterName(name.into())
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ClusterName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `namespace/name` of a `GitopsCluster`: how errors and logs name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ClusterKey {
    pub namespace: String,
    pub name: ClusterName,
}

impl fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a cluster's kubeconfig lives, as its spec says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeconfigRef {
    /// `spec.secretRef.name`: key `value`, else `value.yaml`.
    Secret { name: String },
    /// `spec.capiClusterRef.name`: Cluster API's Secret `<name>-kubeconfig`, key `value`.
    CapiCluster { name: String },
    /// Neither is set: `<cluster name>-kubeconfig`, key `value`, as the upstream controller
    /// falls back to.
    Default,
}

/// A kubeconfig Secret (in the cluster's namespace) and the keys to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigLocation {
    pub secret: String,
    pub keys: &'static [&'static str],
}

impl KubeconfigRef {
    #[must_use]
    pub fn resolve(&self, cluster: &ClusterName) -> KubeconfigLocation {
        match self {
            KubeconfigRef::Secret { name } => KubeconfigLocation {
                secret: name.clone(),
                keys: &[KUBECONFIG_KEY, KUBECONFIG_KEY_YAML],
            },
            KubeconfigRef::CapiCluster { name } => KubeconfigLocation {
                secret: format!("{name}-kubeconfig"),
                keys: &[KUBECONFIG_KEY],
            },
            KubeconfigRef::Default => KubeconfigLocation {
                secret: format!("{cluster}-kubeconfig"),
                keys: &[KUBECONFIG_KEY],
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        })
    }
}

/// One entry of `status.conditions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// The condition's `type` (`Ready`, `ClusterConnectivity`).
    pub kind: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

/// A leaf cluster as the management cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitopsCluster {
    pub name: ClusterName,
    pub namespace: String,
    /// What a SecretSync's `clusterSelector` matches.
    pub labels: BTreeMap<String, String>,
    pub kubeconfig: KubeconfigRef,
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    secret_ref: Option<NameRef>,
    #[serde(default)]
    capi_cluster_ref: Option<NameRef>,
}

#[derive(Deserialize)]
struct NameRef {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct RawCondition {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

impl GitopsCluster {
    /// Reads a `GitopsCluster` as the API server returns it. A spec naming both a kubeconfig
    /// Secret and a Cluster API cluster is refused rather than guessed at: which credentials
    /// a cluster is reached with must never be ambiguous.
    pub fn from_dynamic(object: &DynamicObject) -> Result<Self, ClusterError> {
        let key = ClusterKey {
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            name: ClusterName::new(object.metadata.name.clone().unwrap_or_default()),
        };
        let invalid = |reason: String| ClusterError::ClusterInvalid {
            cluster: key.clone(),
            reason,
        };
        if key.name.as_str().is_empty() || key.namespace.is_empty() {
            return Err(invalid("has no name or namespace".to_owned()));
        }
        let spec = match &object.data["spec"] {
            serde_json::Value::Null => Spec::default(),
            value => Spec::deserialize(value).map_err(|e| invalid(format!("spec: {e}")))?,
        };
        let kubeconfig = kubeconfig_ref(spec).map_err(|reason| invalid(reason.to_owned()))?;
        let conditions = match &object.data["status"]["conditions"] {
            serde_json::Value::Null => Vec::new(),
            value => Vec::<RawCondition>::deserialize(value)
                .map_err(|e| invalid(format!("status.conditions: {e}")))?
                .into_iter()
                .map(Condition::from)
                .collect(),
        };
        Ok(GitopsCluster {
            name: key.name,
            namespace: key.namespace,
            labels: object.metadata.labels.clone().unwrap_or_default(),
            kubeconfig,
            conditions,
        })
    }

    #[must_use]
    pub fn key(&self) -> ClusterKey {
        ClusterKey {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The condition of type `kind`, when the cluster reports one.
    #[must_use]
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// The kubeconfig Secret of this cluster and the keys to try.
    #[must_use]
    pub fn kubeconfig_location(&self) -> KubeconfigLocation {
        self.kubeconfig.resolve(&self.name)
    }
}

fn kubeconfig_ref(spec: Spec) -> Result<KubeconfigRef, &'static str> {
    match (spec.secret_ref, spec.capi_cluster_ref) {
        (Some(_), Some(_)) => Err("spec sets both secretRef and capiClusterRef; set one"),
        (Some(r), None) if r.name.is_empty() => Err("spec.secretRef.name is empty"),
        (None, Some(r)) if r.name.is_empty() => Err("spec.capiClusterRef.name is empty"),
        (Some(r), None) => Ok(KubeconfigRef::Secret { name: r.name }),
        (None, Some(r)) => Ok(KubeconfigRef::CapiCluster { name: r.name }),
        (None, None) => Ok(KubeconfigRef::Default),
    }
}

impl From<RawCondition> for Condition {
    fn from(raw: RawCondition) -> Self {
        // Kubernetes conditions are exactly "True", "False" or "Unknown"; anything else is
        // as good as unknown.
        let status = match raw.status.as_str() {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        };
        Condition {
            kind: raw.kind,
            status,
            reason: raw.reason,
            message: raw.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(yaml: &str) -> DynamicObject {
        let mut object: DynamicObject = serde_yaml::from_str(yaml).unwrap();
        object.metadata.namespace = Some("fleet".to_owned());
        object
    }

    #[test]
    fn reads_labels_kubeconfig_ref_and_conditions() {
        let cluster = GitopsCluster::from_dynamic(&object(
            "apiVersion: gitops.weave.works/v1alpha1\nkind: GitopsCluster\n\
             metadata: {name: leaf-1, labels: {environment: staging}}\n\
             spec: {capiClusterRef: {name: capi-leaf}}\n\
             status:\n  conditions:\n  - {type: Ready, status: 'True', reason: Ok, message: fine}\n\
             \x20 - {type: ClusterConnectivity, status: Maybe}\n",
        ))
        .unwrap();
        assert_eq!(cluster.key().to_string(), "fleet/leaf-1");
        assert_eq!(cluster.labels["environment"], "staging");
        assert_eq!(
            cluster.kubeconfig_location(),
            KubeconfigLocation {
                secret: "capi-leaf-kubeconfig".to_owned(),
                keys: &["value"],
            }
        );
        assert_eq!(cluster.condition("Ready").unwrap().message, "fine");
        assert_eq!(
            cluster.condition("ClusterConnectivity").unwrap().status,
            ConditionStatus::Unknown
        );
    }

    #[test]
    fn resolves_each_kind_of_kubeconfig_reference() {
        let cases = [
            (
                "spec: {secretRef: {name: creds}}",
                "creds",
                &["value", "value.yaml"][..],
            ),
            (
                "spec: {capiClusterRef: {name: capi}}",
                "capi-kubeconfig",
                &["value"][..],
            ),
            ("spec: {}", "leaf-kubeconfig", &["value"][..]),
            ("", "leaf-kubeconfig", &["value"][..]),
        ];
        for (spec, secret, keys) in cases {
            let yaml = format!("metadata: {{name: leaf}}\n{spec}\n");
            let cluster = GitopsCluster::from_dynamic(&object(&yaml)).unwrap();
            let location = cluster.kubeconfig_location();
            assert_eq!(
                (location.secret.as_str(), location.keys),
                (secret, keys),
                "{spec}"
            );
        }
    }

    #[test]
    fn refuses_ambiguous_or_empty_references() {
        for spec in [
            "spec: {secretRef: {name: a}, capiClusterRef: {name: b}}",
            "spec: {secretRef: {name: ''}}",
            "spec: {capiClusterRef: {}}",
            "spec: {secretRef: 3}",
        ] {
            let yaml = format!("metadata: {{name: leaf}}\n{spec}\n");
            let error = GitopsCluster::from_dynamic(&object(&yaml)).unwrap_err();
            assert_eq!(error.reason(), "ClusterInvalid", "{spec}");
            assert!(error.to_string().contains("fleet/leaf"), "{error}");
        }
    }
}
