//! Discovery, selection and readiness of the registered leaf clusters.

use secretsync::cluster::{
    KubeconfigRef, Readiness, list_clusters, list_clusters_in, readiness, select,
};
use secretsync::manifest::LabelSelector;

use super::{find, list, nobody};
use crate::testenv::fleet::set_cluster_conditions;
use crate::testenv::{TestEnv, unique_namespace};

#[tokio::test]
async fn discovery_lists_the_registered_leaves_with_labels_and_kubeconfig_refs() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-discovery");
    env.register_leaves(&namespace).await;

    let list = list(env, &namespace).await;
    let names: Vec<_> = list.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["leaf-cluster-1", "leaf-cluster-2"]);
    let first = find(&list, "leaf-cluster-1");
    assert_eq!(first.namespace, namespace);
    assert_eq!(first.labels["environment"], "staging");
    assert_eq!(first.labels["region"], "eu-west");
    assert_eq!(
        first.kubeconfig,
        KubeconfigRef::CapiCluster {
            name: "leaf-cluster-1".to_owned()
        }
    );
    let second = find(&list, "leaf-cluster-2");
    assert_eq!(second.labels["environment"], "production");
    assert_eq!(
        second.kubeconfig,
        KubeconfigRef::Secret {
            name: "leaf-cluster-2-kubeconfig".to_owned()
        }
    );

    // An allow-list: every namespace's clusters; an empty namespace adds none.
    let other = unique_namespace("cluster-discovery-other");
    env.register_leaves(&other).await;
    let empty = unique_namespace("cluster-discovery-empty");
    let all = list_clusters_in(
        &env.mgmt.client().await,
        &[namespace.clone(), other.clone(), empty],
    )
    .await;
    assert!(all.problems.is_empty(), "{:?}", all.problems);
    let keys: Vec<_> = all.clusters.iter().map(|c| c.key().to_string()).collect();
    assert_eq!(
        keys,
        [
            format!("{namespace}/leaf-cluster-1"),
            format!("{namespace}/leaf-cluster-2"),
            format!("{other}/leaf-cluster-1"),
            format!("{other}/leaf-cluster-2"),
        ]
    );
}

#[tokio::test]
async fn a_namespace_the_agent_may_not_list_is_reported_and_the_others_still_listed() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-forbidden");
    env.register_leaves(&namespace).await;
    let nobody = nobody(env).await;

    let error = list_clusters(&nobody, &namespace).await.unwrap_err();
    assert_eq!(error.reason(), "ClusterListFailed");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "listing GitopsClusters in namespace {namespace}: HTTP 403: "
        )),
        "{message}"
    );
    assert!(message.contains("forbidden"), "{message}");

    let all = list_clusters_in(&nobody, &[namespace]).await;
    assert!(all.clusters.is_empty());
    assert_eq!(all.problems.len(), 1);
}

#[tokio::test]
async fn selection_follows_the_fixture_labels() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-select");
    env.register_leaves(&namespace).await;
    let list = list(env, &namespace).await;

    let cases: [(&str, &[&str]); 5] = [
        (
            "matchLabels: {environment: production}",
            &["leaf-cluster-2"],
        ),
        (
            "matchLabels: {environment: staging, region: eu-west}",
            &["leaf-cluster-1"],
        ),
        (
            "matchExpressions: [{key: region, operator: In, values: [eu-west, us-east]}]",
            &["leaf-cluster-1", "leaf-cluster-2"],
        ),
        (
            "matchExpressions: [{key: region, operator: NotIn, values: [eu-west]}]",
            &["leaf-cluster-2"],
        ),
        ("{}", &[]),
    ];
    for (yaml, expected) in cases {
        let selector: LabelSelector = serde_yaml::from_str(yaml).expect("selector");
        let selected: Vec<_> = select(&list.clusters, &selector)
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(selected, expected, "{yaml}");
    }
}

#[tokio::test]
async fn readiness_follows_the_cluster_conditions() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-ready");
    let clusters = env.register_leaves(&namespace).await;
    let state = async |name: &str| readiness(find(&list(env, &namespace).await, name));

    assert_eq!(state("leaf-cluster-1").await, Readiness::Ready);
    assert_eq!(state("leaf-cluster-2").await, Readiness::Ready);

    let not_ready = |reason: &str| Readiness::NotReady {
        reason: reason.to_owned(),
    };
    set_cluster_conditions(&clusters, "leaf-cluster-1", &[("Ready", false)]).await;
    assert_eq!(
        state("leaf-cluster-1").await,
        not_ready("condition Ready is False (Failed): set by the test environment")
    );
    assert_eq!(state("leaf-cluster-2").await, Readiness::Ready);

    set_cluster_conditions(
        &clusters,
        "leaf-cluster-1",
        &[("Ready", true), ("ClusterConnectivity", false)],
    )
    .await;
    assert_eq!(
        state("leaf-cluster-1").await,
        not_ready("condition ClusterConnectivity is False (Failed): set by the test environment")
    );

    set_cluster_conditions(
        &clusters,
        "leaf-cluster-1",
        &[("Ready", true), ("ClusterConnectivity", true)],
    )
    .await;
    assert_eq!(state("leaf-cluster-1").await, Readiness::Ready);

    set_cluster_conditions(&clusters, "leaf-cluster-1", &[]).await;
    let error = state("leaf-cluster-1")
        .await
        .into_result(&find(&list(env, &namespace).await, "leaf-cluster-1").key())
        .unwrap_err();
    assert_eq!(error.reason(), "ClusterNotReady");
    assert!(
        error.to_string().contains("has no Ready condition yet"),
        "{error}"
    );
}
