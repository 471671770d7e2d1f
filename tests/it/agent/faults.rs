//! A leaf that cannot be reached: the agent syncs the other leaf without waiting, retries
//! the broken one with growing pauses (its status says so), and converges once it is back.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use super::{Fixture, eventually};
use crate::testenv::process::free_port;

/// Points a GitopsCluster's kubeconfig Secret at `kubeconfig`.
async fn set_kubeconfig(fixture: &Fixture, leaf: &str, kubeconfig: String) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("{leaf}-kubeconfig")),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "value".to_owned(),
            ByteString(kubeconfig.into_bytes()),
        )])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(fixture.env.mgmt.client().await, &fixture.namespace)
        .patch(
            &format!("{leaf}-kubeconfig"),
            &PatchParams::apply("test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("kubeconfig Secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leaf_backs_off_alone_and_converges_when_it_returns() {
    let fixture = Fixture::new("agent-backoff").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.label_cluster("leaf-cluster-2", "dev").await;
    let leaf_2 = fixture.env.leaf("leaf-cluster-2").admin_kubeconfig();
    let server = leaf_2
        .lines()
        .find_map(|line| line.trim().strip_prefix("server: "))
        .expect("server line")
        .to_owned();
    // Nothing listens there: every request is refused.
    let dead = leaf_2.replace(&server, &format!("https://127.0.0.1:{}", free_port()));
    set_kubeconfig(&fixture, "leaf-cluster-2", dead).await;
    fixture.put_source_secret("registry", "backoff-token").await;
    fixture.commit_sync("registry", "dev", "registry");
    // No poll, no resync: only the backoff's own retries can bring leaf-cluster-2 in.
    let agent = fixture.start_agent(
        "backoff",
        &[
            "--interval",
            "1h",
            "--resync-schedule",
            "0 0 1 1 *",
            "--retry-backoff",
            "3s",
            "--max-retry-backoff",
            "6s",
        ],
    );
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "backoff-token")
        .await;
    // Rotations make passes while leaf-cluster-2 waits: it is held back, not tried, and
    // leaf-cluster-1 gets every new value without waiting for it.
    let mut token = String::from("backoff-token");
    let mut rotation = 0;
    let message = eventually("the status says leaf-cluster-2 backs off", async || {
        rotation += 1;
        token = format!("backoff-token-{rotation}");
        fixture.put_source_secret("registry", &token).await;
        fixture
            .until_leaf_holds("leaf-cluster-1", "registry", &token)
            .await;
        let (_, status) = fixture.status("registry").await?;
        let message = status.clusters.get("leaf-cluster-2")?.message.clone();
        message.contains("backing off after").then_some(message)
    })
    .await;
    assert!(!message.contains("backoff-token"), "{message}");

    set_kubeconfig(&fixture, "leaf-cluster-2", leaf_2).await;
    fixture
        .until_leaf_holds("leaf-cluster-2", "registry", &token)
        .await;
    let log = agent.log();
    assert!(log.contains("cluster failed; backing off"), "{log}");
    fixture.assert_no_leaks(&agent);
}
