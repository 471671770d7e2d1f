//! Leaf clusters against the real management and leaf API servers: discovery and selection
//! of GitopsClusters, readiness from their conditions, kubeconfig resolution and its errors,
//! the client cache, and the reachability probe.

mod clients;
mod discovery;
mod kubeconfig;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use secretsync::cluster::{
    ClientCache, ClusterError, ClusterList, GitopsCluster, LeafClient, list_clusters,
    read_kubeconfig,
};
use serde_json::json;

use crate::testenv::TestEnv;
use crate::testenv::kube::{KubeCluster, client_from_kubeconfig};

const FIELD_MANAGER: &str = "secretsync-test";

/// A kubeconfig Secret in the management cluster, created or replaced.
pub async fn put_secret(mgmt: &kube::Client, namespace: &str, name: &str, data: &[(&str, &[u8])]) {
    let secrets: Api<Secret> = Api::namespaced(mgmt.clone(), namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    };
    // Replace, not apply: a key left out must be gone afterwards.
    let _ = secrets.delete(name, &DeleteParams::default()).await;
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create Secret {namespace}/{name}: {e}"));
}

/// A GitopsCluster with `spec`, read back the way discovery reads it.
pub async fn add_cluster(
    clusters: &Api<DynamicObject>,
    name: &str,
    spec: serde_json::Value,
) -> GitopsCluster {
    let object = json!({
        "apiVersion": "gitops.weave.works/v1alpha1", "kind": "GitopsCluster",
        "metadata": {"name": name}, "spec": spec,
    });
    let created = clusters
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("create GitopsCluster {name}: {e}"));
    GitopsCluster::from_dynamic(&created).expect("a valid GitopsCluster")
}

pub async fn list(env: &TestEnv, namespace: &str) -> ClusterList {
    let list = list_clusters(&env.mgmt.client().await, namespace)
        .await
        .expect("list GitopsClusters");
    assert!(list.problems.is_empty(), "{:?}", list.problems);
    list
}

pub fn find<'a>(list: &'a ClusterList, name: &str) -> &'a GitopsCluster {
    list.clusters
        .iter()
        .find(|c| c.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

pub fn leaf<'a>(env: &'a TestEnv, name: &str) -> &'a KubeCluster {
    env.leaves
        .iter()
        .find(|l| l.name == name)
        .expect("leaf cluster")
}

/// Reads the cluster's kubeconfig and builds its client: the whole path from a
/// GitopsCluster to a leaf client.
pub async fn leaf_client(
    mgmt: &kube::Client,
    cache: &ClientCache,
    cluster: &GitopsCluster,
) -> Result<Arc<LeafClient>, ClusterError> {
    let kubeconfig = read_kubeconfig(mgmt, cluster).await?;
    cache.client(&kubeconfig).await
}

/// A client of the management cluster for a user without any role.
pub async fn nobody(env: &TestEnv) -> kube::Client {
    client_from_kubeconfig(
        &env.mgmt
            .kubeconfig_for(&env.pki.client("cluster-nobody", None)),
    )
    .await
}
