//! A leaf that cannot be reached: the agent syncs the other leaf without waiting, retries
//! the broken one with growing pauses (its status says so), and converges once it is back.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use std::time::Duration;

use super::{Fixture, eventually};
use crate::testenv::process::free_port;

/// Points a GitopsCluster's kubeconfig Secret at `kubeconfig`.
async fn set_kubeconfig(fixture: &Fixture<'_>, leaf: &str, kubeconfig: String) {
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

/// Agents killed with SIGKILL at random points of a reconcile over 2 leaves × 50 SecretSyncs,
/// 20 times in a row, then one left running: the end state is a clean run's — every copy
/// right on both leaves, no extra copies, every status right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_mid_reconcile_leave_nothing_a_clean_run_would_not() {
    const SYNCS: usize = 50;
    const KILLS: usize = 20;
    let fixture = Fixture::new("agent-sigkill").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.label_cluster("leaf-cluster-2", "dev").await;
    for n in 0..SYNCS {
        let name = format!("secret-{n}");
        fixture
            .put_source_secret(&name, &format!("kill-token-{n}"))
            .await;
        fixture.repo.write(
            &format!("syncs/{name}.yaml"),
            super::triggers::sync_yaml(&fixture.namespace, &name),
        );
    }
    fixture.repo.commit("fifty SecretSyncs");

    for kill in 0..KILLS {
        let mut agent = fixture.start_agent(&format!("killed-{kill}"), &[]);
        // Somewhere between start-up and well into the reconcile.
        let after = Duration::from_millis(rand::random_range(200..1500));
        tokio::time::sleep(after).await;
        agent.kill();
    }
    // Half-way through, a SecretSync leaves the repository: its copies must go, not linger.
    fixture
        .repo
        .remove("syncs/secret-0.yaml")
        .commit("secret-0 removed");
    let survivor = fixture.start_agent("survivor", &[]);
    for leaf in ["leaf-cluster-1", "leaf-cluster-2"] {
        for n in 1..SYNCS {
            fixture
                .until_leaf_holds(leaf, &format!("secret-{n}"), &format!("kill-token-{n}"))
                .await;
        }
        eventually("the removed SecretSync's copy is pruned", async || {
            fixture
                .leaf_token(leaf, "secret-0")
                .await
                .is_none()
                .then_some(())
        })
        .await;
        let managed = fixture
            .leaf_secrets(leaf)
            .await
            .list(
                &kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=secretsync"),
            )
            .await
            .expect("list copies");
        assert_eq!(
            managed.items.len(),
            SYNCS - 1,
            "extra or missing copies on {leaf}"
        );
    }
    for n in 1..SYNCS {
        fixture
            .assert_versions_match_leaves(&format!("secret-{n}"))
            .await;
    }
    fixture.assert_no_leaks(&survivor);
}

/// The management kube-apiserver goes away and comes back (in an environment of this test's
/// own): the agent reports, keeps running, and its watches resume — a Secret rotated after
/// the restart reaches the leaf without a poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_rides_out_a_management_apiserver_restart() {
    let env = crate::testenv::TestEnv::start();
    let fixture = Fixture::in_env(&env, "agent-mgmt-restart").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture
        .put_source_secret("registry", "restart-token-1")
        .await;
    fixture.commit_sync("registry", "dev", "registry");
    let mut agent = fixture.start_agent(
        "mgmt-restart",
        &["--interval", "1h", "--resync-schedule", "0 0 1 1 *"],
    );
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "restart-token-1")
        .await;

    env.mgmt.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.mgmt.restart(env.reaper()).await;
    assert!(
        agent.try_exit_status().is_none(),
        "the agent died with its management cluster:\n{}",
        agent.log()
    );

    fixture
        .put_source_secret("registry", "restart-token-2")
        .await;
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "restart-token-2")
        .await;
    fixture.assert_no_leaks(&agent);
}

/// etcd goes away under every apiserver and comes back (in an environment of this test's
/// own), while a commit waits to be synced: the apiservers hold the agent's requests until
/// etcd is back; the agent keeps running and converges — the commit made during the outage
/// arrives, and the watches resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_rides_out_an_etcd_restart() {
    let env = crate::testenv::TestEnv::start();
    let fixture = Fixture::in_env(&env, "agent-etcd-restart").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.put_source_secret("registry", "etcd-token-1").await;
    fixture.put_source_secret("vault", "etcd-token-2").await;
    fixture.commit_sync("registry", "dev", "registry");
    let mut agent = fixture.start_agent(
        "etcd-restart",
        &["--interval", "1s", "--resync-schedule", "0 0 1 1 *"],
    );
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "etcd-token-1")
        .await;

    // The commit is found by a poll during the outage; nothing can be written then.
    env.stop_etcd().await;
    fixture.commit_sync("vault", "dev", "vault");
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.start_etcd().await;
    assert!(
        agent.try_exit_status().is_none(),
        "the agent died with etcd:\n{}",
        agent.log()
    );
    fixture
        .until_leaf_holds("leaf-cluster-1", "vault", "etcd-token-2")
        .await;
    // And it goes on: a Secret rotated after the outage is synced by the resumed watches.
    fixture.put_source_secret("registry", "etcd-token-3").await;
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "etcd-token-3")
        .await;
    fixture.assert_no_leaks(&agent);
}
