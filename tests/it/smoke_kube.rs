//! The Kubernetes side of the test environment is real: three separate kube-apiservers with
//! client-certificate auth, RBAC, the shipped CRDs, and the leaf clusters registered as
//! GitopsClusters the way the agent will find them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use crate::testenv::fleet::{ensure_namespace, set_cluster_conditions};
use crate::testenv::kube::client_from_kubeconfig;
use crate::testenv::{TestEnv, unique_namespace};

fn secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_cluster_stores_secrets_of_its_own() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("smoke-secrets");
    let clusters: Vec<_> = std::iter::once(&env.mgmt).chain(&env.leaves).collect();

    for cluster in &clusters {
        let client = client_from_kubeconfig(&cluster.admin_kubeconfig()).await;
        ensure_namespace(&client, &namespace).await;
        let secrets: Api<Secret> = Api::namespaced(client, &namespace);
        let created = secrets
            .create(
                &PostParams::default(),
                &secret("greeting", "cluster", &cluster.name),
            )
            .await
            .unwrap_or_else(|e| panic!("create Secret on {}: {e}", cluster.name));
        assert!(created.metadata.resource_version.is_some());
    }

    // Each apiserver stores under its own etcd prefix: every cluster reads back its own value.
    for cluster in &clusters {
        let secrets: Api<Secret> = Api::namespaced(cluster.client().await, &namespace);
        let read = secrets.get("greeting").await.expect("read Secret back");
        let value = &read.data.expect("data")["cluster"];
        assert_eq!(
            value.0,
            cluster.name.as_bytes(),
            "Secret on {} holds another cluster's value",
            cluster.name
        );
    }
}

#[tokio::test]
async fn leaf_clusters_are_registered_as_ready_gitops_clusters() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("smoke-fleet");
    let clusters = env.register_leaves(&namespace).await;

    let production = clusters
        .list(&ListParams::default().labels("environment=production"))
        .await
        .expect("list GitopsClusters by label");
    let names: Vec<_> = production
        .items
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["leaf-cluster-2"]);

    let in_eu = clusters
        .list(
            &ListParams::default().labels("region in (eu-west,eu-central),environment!=production"),
        )
        .await
        .expect("list GitopsClusters by set-based selector");
    let names: Vec<_> = in_eu
        .items
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["leaf-cluster-1"]);

    let cluster = clusters
        .get_status("leaf-cluster-1")
        .await
        .expect("read status");
    assert_eq!(condition_status(&cluster, "Ready").as_deref(), Some("True"));

    set_cluster_conditions(
        &clusters,
        "leaf-cluster-1",
        &[("Ready", true), ("ClusterConnectivity", false)],
    )
    .await;
    let cluster = clusters
        .get_status("leaf-cluster-1")
        .await
        .expect("read status");
    assert_eq!(condition_status(&cluster, "Ready").as_deref(), Some("True"));
    assert_eq!(
        condition_status(&cluster, "ClusterConnectivity").as_deref(),
        Some("False")
    );
}

#[tokio::test]
async fn kubeconfig_secret_reaches_its_leaf_cluster() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("smoke-kubeconfig");
    env.register_leaves(&namespace).await;
    let secrets: Api<Secret> = Api::namespaced(env.mgmt.client().await, &namespace);

    for leaf in &env.leaves {
        let kubeconfig = secrets
            .get(&format!("{}-kubeconfig", leaf.name))
            .await
            .expect("kubeconfig Secret");
        let value = &kubeconfig.data.expect("data")["value"];
        let leaf_client =
            client_from_kubeconfig(std::str::from_utf8(&value.0).expect("utf-8")).await;
        ensure_namespace(&leaf_client, &namespace).await;
        let leaf_secrets: Api<Secret> = Api::namespaced(leaf_client, &namespace);
        leaf_secrets
            .create(
                &PostParams::default(),
                &secret("via-kubeconfig", "leaf", &leaf.name),
            )
            .await
            .expect("write to the leaf through its kubeconfig Secret");
        let direct: Api<Secret> = Api::namespaced(leaf.client().await, &namespace);
        assert!(
            direct
                .get_opt("via-kubeconfig")
                .await
                .expect("read")
                .is_some()
        );
    }
}

#[tokio::test]
async fn rbac_denies_a_user_without_roles() {
    let env = TestEnv::shared();
    let nobody = env.pki.client("nobody", None);
    let client = client_from_kubeconfig(&env.mgmt.kubeconfig_for(&nobody)).await;
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("a user without roles listed Secrets: {other:?}"),
    }
}

#[tokio::test]
async fn secretsync_crd_refuses_what_the_api_forbids() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("smoke-crd");
    let client = env.mgmt.client().await;
    ensure_namespace(&client, &namespace).await;
    let gvk = GroupVersionKind::gvk("capi.weave.works", "v1alpha1", "SecretSync");
    let syncs: Api<DynamicObject> = Api::namespaced_with(
        client,
        &namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "secretsyncs"),
    );
    let apply = PatchParams::apply("secretsync-smoke");
    let sync = |name: &str, spec: serde_json::Value| {
        json!({"apiVersion": "capi.weave.works/v1alpha1", "kind": "SecretSync",
               "metadata": {"name": name}, "spec": spec})
    };

    let valid = sync(
        "registry",
        json!({"clusterSelector": {"matchLabels": {"environment": "production"}},
               "secretRef": {"name": "registry-credentials"}}),
    );
    syncs
        .patch("registry", &apply, &Patch::Apply(&valid))
        .await
        .expect("valid SecretSync accepted");
    syncs
        .patch_status(
            "registry",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"versions": {"leaf-cluster-2": "211496"}}})),
        )
        .await
        .expect("status subresource");
    let stored = syncs.get("registry").await.expect("read SecretSync");
    assert_eq!(
        stored.data["status"]["versions"]["leaf-cluster-2"],
        "211496"
    );

    let refused = [
        (
            "empty-selector",
            json!({"clusterSelector": {}, "secretRef": {"name": "s"}}),
        ),
        (
            "no-secret",
            json!({"clusterSelector": {"matchLabels": {"a": "b"}}}),
        ),
        (
            "in-without-values",
            json!({"clusterSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}, "secretRef": {"name": "s"}}),
        ),
        (
            "bad-operator",
            json!({"clusterSelector": {"matchExpressions": [{"key": "a", "operator": "Like", "values": ["b"]}]}, "secretRef": {"name": "s"}}),
        ),
    ];
    for (name, spec) in refused {
        match syncs
            .patch(name, &apply, &Patch::Apply(&sync(name, spec)))
            .await
        {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{name}: {status:?}"),
            other => panic!("{name}: an invalid SecretSync was accepted: {other:?}"),
        }
    }
}

fn condition_status(object: &DynamicObject, kind: &str) -> Option<String> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .map(str::to_owned)
}
