//! What the management cluster holds for the agent: the CRDs `secretsync crds` prints, and, per
//! namespace, the leaf clusters as `GitopsCluster`s with their `<name>-kubeconfig` Secrets.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use serde::Deserialize;
use serde_json::json;

use super::TestEnv;
use crate::cli::crds::{GITOPS_CLUSTER_CRD, SECRET_SYNC_CRD};

const FIELD_MANAGER: &str = "secretsync-testenv";

/// The leaf clusters as `GitopsCluster`s, as the documentation's example registers them.
const GITOPS_CLUSTERS: &str = include_str!("../../fixtures/testenv/gitopsclusters.yaml");

/// The `GitopsCluster` resource (`gitops.weave.works/v1alpha1`).
#[must_use]
pub fn gitops_cluster_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("gitops.weave.works", "v1alpha1", "GitopsCluster");
    ApiResource::from_gvk_with_plural(&gvk, "gitopsclusters")
}

/// Installs the CRDs `secretsync crds` prints (compiled into the binary) and waits until
/// the apiserver serves them.
pub async fn install_crds(client: &kube::Client) {
    for yaml in [GITOPS_CLUSTER_CRD, SECRET_SYNC_CRD] {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(yaml).expect("the compiled-in CRDs parse");
        apply_crd(client, &crd).await;
    }
}

/// Applies a CRD (idempotent) and waits until the apiserver serves it.
pub async fn apply_crd(client: &kube::Client, crd: &CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("CRD name");
    crds.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .unwrap_or_else(|_| panic!("CRD {name} not established within 30s"))
    .expect("watch CRD");
    // "Established" comes a moment before the resource is served: the first request would
    // be answered 503 and retried by the client a second later, inside whatever is timed.
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            &crd.spec.group,
            &crd.spec.versions[0].name,
            &crd.spec.names.kind,
        ),
        &crd.spec.names.plural,
    );
    Api::<DynamicObject>::all_with(client.clone(), &resource)
        .list(&ListParams::default().limit(1))
        .await
        .unwrap_or_else(|e| panic!("CRD {name} not served: {e}"));
}

pub async fn ensure_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    namespaces
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&namespace),
        )
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// Sets (replaces) the status conditions of a `GitopsCluster`, e.g. `[("Ready", true)]`.
pub async fn set_cluster_conditions(
    clusters: &Api<DynamicObject>,
    name: &str,
    conditions: &[(&str, bool)],
) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions: Vec<_> = conditions
        .iter()
        .map(|(kind, ok)| {
            json!({
                "type": kind,
                "status": if *ok { "True" } else { "False" },
                "reason": if *ok { "Succeeded" } else { "Failed" },
                "message": "set by the test environment",
                "lastTransitionTime": now,
            })
        })
        .collect();
    clusters
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions}})),
        )
        .await
        .unwrap_or_else(|e| panic!("patch status of GitopsCluster {name}: {e}"));
}

impl TestEnv {
    /// Registers both leaf clusters in `namespace` of the management cluster, as the
    /// fixture `fixtures/testenv/gitopsclusters.yaml` describes them: a `<leaf>-kubeconfig`
    /// Secret (key `value`, admin of that leaf) and a `GitopsCluster` marked Ready.
    pub async fn register_leaves(&self, namespace: &str) -> Api<DynamicObject> {
        let client = self.mgmt.client().await;
        ensure_namespace(&client, namespace).await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for leaf in &self.leaves {
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("{}-kubeconfig", leaf.name)),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(
                    "value".to_owned(),
                    ByteString(leaf.admin_kubeconfig().into_bytes()),
                )])),
                ..Default::default()
            };
            let name = secret.metadata.name.clone().expect("name");
            secrets
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Apply(&secret),
                )
                .await
                .unwrap_or_else(|e| panic!("create Secret {namespace}/{name}: {e}"));
        }

        let clusters = Api::namespaced_with(client, namespace, &gitops_cluster_resource());
        for document in serde_yaml::Deserializer::from_str(GITOPS_CLUSTERS) {
            let mut cluster =
                DynamicObject::deserialize(document).expect("the GitopsCluster fixture parses");
            let name = cluster.metadata.name.clone().expect("GitopsCluster name");
            cluster.metadata.namespace = Some(namespace.to_owned());
            clusters
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Apply(&cluster),
                )
                .await
                .unwrap_or_else(|e| panic!("create GitopsCluster {namespace}/{name}: {e}"));
            set_cluster_conditions(&clusters, &name, &[("Ready", true)]).await;
        }
        clusters
    }
}
