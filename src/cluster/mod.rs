//! Leaf clusters as the management cluster knows them: `GitopsCluster` discovery and
//! selection, readiness, kubeconfig resolution, and a cache of leaf clients.

mod clients;
mod discovery;
mod kubeconfig;
pub mod lean;
mod model;
mod readiness;

use std::fmt;

pub use self::clients::{ClientCache, ClientSettings, KubeconfigDigest, LeafClient};
pub use self::discovery::{
    ClusterList, list_all_clusters, list_clusters, list_clusters_in, select, select_for,
};
pub use self::kubeconfig::{Kubeconfig, KubeconfigBytes, read_kubeconfig};
pub use self::model::{
    API_GROUP, API_VERSION, ClusterKey, ClusterName, Condition, ConditionStatus, GitopsCluster,
    KIND, KUBECONFIG_KEY, KUBECONFIG_KEY_YAML, KubeconfigLocation, KubeconfigRef, PLURAL,
    api_resource,
};
pub use self::readiness::{
    CLUSTER_CONNECTIVITY, PROBE_TIMEOUT, READY, Readiness, probe, readiness,
};

/// Everything that keeps a cluster from being synced. Messages name the cluster and the
/// Secret; none ever holds kubeconfig content.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("listing GitopsClusters in namespace {namespace}: {source}")]
    ListFailed {
        namespace: String,
        source: ApiFailure,
    },
    #[error("GitopsCluster {cluster}: {reason}")]
    ClusterInvalid { cluster: ClusterKey, reason: String },
    #[error("GitopsCluster {cluster} is not ready: {reason}")]
    NotReady { cluster: ClusterKey, reason: String },
    #[error(
        "GitopsCluster {cluster}: kubeconfig Secret {secret} not found in namespace {}",
        cluster.namespace
    )]
    KubeconfigMissing { cluster: ClusterKey, secret: String },
    #[error(
        "GitopsCluster {cluster}: kubeconfig Secret {secret} has no key {}",
        keys.join(" or ")
    )]
    KubeconfigKeyMissing {
        cluster: ClusterKey,
        secret: String,
        keys: Vec<String>,
    },
    #[error("GitopsCluster {cluster}: reading kubeconfig Secret {secret}: {source}")]
    KubeconfigUnreadable {
        cluster: ClusterKey,
        secret: String,
        source: ApiFailure,
    },
    /// `reason` names the Secret and key, and what is wrong, never the content.
    #[error("GitopsCluster {cluster}: invalid kubeconfig: {reason}")]
    KubeconfigInvalid { cluster: ClusterKey, reason: String },
    #[error("GitopsCluster {cluster}: API server {server} is unreachable: {reason}")]
    Unreachable {
        cluster: ClusterKey,
        server: String,
        reason: String,
    },
}

impl ClusterError {
    /// A stable, short reason for conditions, events and metrics.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            ClusterError::ListFailed { .. } => "ClusterListFailed",
            ClusterError::ClusterInvalid { .. } => "ClusterInvalid",
            ClusterError::NotReady { .. } => "ClusterNotReady",
            ClusterError::KubeconfigMissing { .. } => "KubeconfigMissing",
            ClusterError::KubeconfigKeyMissing { .. } => "KubeconfigKeyMissing",
            ClusterError::KubeconfigUnreadable { .. } => "KubeconfigUnreadable",
            ClusterError::KubeconfigInvalid { .. } => "KubeconfigInvalid",
            ClusterError::Unreachable { .. } => "ClusterUnreachable",
        }
    }

    /// The cluster the error is about; `None` for a failed listing.
    #[must_use]
    pub fn cluster(&self) -> Option<&ClusterKey> {
        match self {
            ClusterError::ListFailed { .. } => None,
            ClusterError::ClusterInvalid { cluster, .. }
            | ClusterError::NotReady { cluster, .. }
            | ClusterError::KubeconfigMissing { cluster, .. }
            | ClusterError::KubeconfigKeyMissing { cluster, .. }
            | ClusterError::KubeconfigUnreadable { cluster, .. }
            | ClusterError::KubeconfigInvalid { cluster, .. }
            | ClusterError::Unreachable { cluster, .. } => Some(cluster),
        }
    }
}

/// A failed request to an API server, reduced to what is safe to show: the HTTP code and
/// the server's message, or the transport error. Response bodies are not kept, since the
/// request may have been for a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub code: Option<u16>,
    pub message: String,
}

impl ApiFailure {
    #[must_use]
    pub fn from_kube(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => ApiFailure {
                code: Some(status.code),
                message: if status.message.is_empty() {
                    status.reason.clone()
                } else {
                    status.message.clone()
                },
            },
            // A decoding error may quote the value it could not decode.
            kube::Error::SerdeError(_) => ApiFailure {
                code: None,
                message: "the response could not be decoded".to_owned(),
            },
            other => ApiFailure {
                code: None,
                message: kube_error_chain(other),
            },
        }
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "HTTP {code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ApiFailure {}

/// A transport error of kube on one line, without kube's own wrapper ("ServiceError: ").
fn kube_error_chain(error: &kube::Error) -> String {
    match error {
        kube::Error::Service(inner) => error_chain(inner.as_ref()),
        kube::Error::HyperError(inner) => error_chain(inner),
        other => error_chain(other),
    }
}

/// An error and its sources on one line, without the repetitions layered errors tend to
/// have ("client error (Connect): tcp connect error: Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_names_its_cluster_and_has_a_stable_reason() {
        let cluster = ClusterKey {
            namespace: "fleet".to_owned(),
            name: ClusterName::new("leaf-1"),
        };
        let errors = [
            ClusterError::KubeconfigMissing {
                cluster: cluster.clone(),
                secret: "leaf-1-kubeconfig".to_owned(),
            },
            ClusterError::KubeconfigKeyMissing {
                cluster: cluster.clone(),
                secret: "creds".to_owned(),
                keys: vec!["value".to_owned(), "value.yaml".to_owned()],
            },
            ClusterError::Unreachable {
                cluster: cluster.clone(),
                server: "https://127.0.0.1:1".to_owned(),
                reason: "connection refused".to_owned(),
            },
        ];
        let expected = [
            (
                "KubeconfigMissing",
                "GitopsCluster fleet/leaf-1: kubeconfig Secret leaf-1-kubeconfig not found in namespace fleet",
            ),
            (
                "KubeconfigKeyMissing",
                "GitopsCluster fleet/leaf-1: kubeconfig Secret creds has no key value or value.yaml",
            ),
            (
                "ClusterUnreachable",
                "GitopsCluster fleet/leaf-1: API server https://127.0.0.1:1 is unreachable: connection refused",
            ),
        ];
        for (error, (reason, message)) in errors.iter().zip(expected) {
            assert_eq!(error.reason(), reason);
            assert_eq!(error.to_string(), message);
            assert_eq!(error.cluster(), Some(&cluster));
        }
    }

    #[test]
    fn error_chains_drop_repeated_parts() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<Box<Layer>>);
        impl fmt::Display for Layer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|l| l as _)
            }
        }
        let error = Layer(
            "client error (Connect)",
            Some(Box::new(Layer(
                "Connect",
                Some(Box::new(Layer("Connection refused", None))),
            ))),
        );
        assert_eq!(
            error_chain(&error),
            "client error (Connect): Connection refused"
        );
    }
}
