//! What makes the agent act: a new commit found by polling, a rotated source Secret or a
//! relabelled cluster seen by the watches (no fetch), and the resync schedule repairing a
//! leaf copy deleted by hand. And what does not: a poll that finds nothing new.

use std::time::Duration;

use super::process::AgentProcess;
use super::{Fixture, eventually};

/// Polling only: watches and resync cannot explain what happens.
const POLL_ONLY: [&str; 4] = ["--interval", "1s", "--resync-schedule", "0 0 1 1 *"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_finds_a_new_commit_and_an_unchanged_one_writes_nothing() {
    let fixture = Fixture::new("agent-poll").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.put_source_secret("registry", "poll-token-1").await;
    let agent = fixture.start_agent("poll", &POLL_ONLY);

    fixture.commit_sync("registry", "dev", "registry");
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "poll-token-1")
        .await;
    let (configmap, status) = eventually("the status is written", async || {
        fixture.status("registry").await
    })
    .await;
    let copy_version = status.versions["leaf-cluster-1"].clone();

    // Several polls find the same revision: no reconcile, no write anywhere.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (configmap_after, _) = fixture.status("registry").await.expect("status");
    assert_eq!(
        configmap_after.metadata.resource_version, configmap.metadata.resource_version,
        "the status was rewritten"
    );
    let copy = fixture
        .leaf_secrets("leaf-cluster-1")
        .await
        .get("registry")
        .await
        .expect("copy");
    assert_eq!(copy.metadata.resource_version, Some(copy_version));
    let log = agent.log();
    assert!(log.contains("nothing changed: no reconcile"), "{log}");

    // A second SecretSync in a new commit arrives by the next poll.
    fixture.put_source_secret("vault", "poll-token-2").await;
    fixture.commit_sync("vault", "dev", "vault");
    fixture
        .until_leaf_holds("leaf-cluster-1", "vault", "poll-token-2")
        .await;
    fixture.assert_no_leaks(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_sync_a_rotated_secret_and_a_new_cluster_without_a_fetch() {
    let fixture = Fixture::new("agent-watch").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.put_source_secret("registry", "watch-token-1").await;
    fixture.commit_sync("registry", "dev", "registry");
    // No poll and no resync during the test: only the watches can explain a change.
    let agent = fixture.start_agent(
        "watch",
        &["--interval", "1h", "--resync-schedule", "0 0 1 1 *"],
    );
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "watch-token-1")
        .await;
    // Let the watches finish their initial listing before changing anything.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reads_before = agent.log().matches("source read").count();

    fixture.put_source_secret("registry", "watch-token-2").await;
    let rotated = fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "watch-token-2")
        .await;

    fixture.label_cluster("leaf-cluster-2", "dev").await;
    let new_cluster = fixture
        .until_leaf_holds("leaf-cluster-2", "registry", "watch-token-2")
        .await;
    eprintln!("watch reaction: rotated Secret {rotated:?}, newly matching cluster {new_cluster:?}");

    let log = agent.log();
    assert_eq!(
        log.matches("source read").count(),
        reads_before,
        "the repository was read again:\n{log}"
    );
    fixture.assert_no_leaks(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resync_schedule_repairs_a_copy_deleted_by_hand() {
    let fixture = Fixture::new("agent-resync").await;
    fixture.label_cluster("leaf-cluster-2", "dev").await;
    fixture.put_source_secret("registry", "resync-token").await;
    fixture.commit_sync("registry", "dev", "registry");
    // Every 2 seconds (six-field cron, seconds first); no poll during the test.
    let agent = fixture.start_agent(
        "resync",
        &["--interval", "1h", "--resync-schedule", "*/2 * * * * *"],
    );
    fixture
        .until_leaf_holds("leaf-cluster-2", "registry", "resync-token")
        .await;

    fixture
        .leaf_secrets("leaf-cluster-2")
        .await
        .delete("registry", &kube::api::DeleteParams::default())
        .await
        .expect("delete the copy by hand");
    fixture
        .until_leaf_holds("leaf-cluster-2", "registry", "resync-token")
        .await;
    fixture.assert_no_leaks(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_sync_exits_cleanly_and_the_next_start_converges() {
    const SYNCS: usize = 30;
    let fixture = Fixture::new("agent-sigterm").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.label_cluster("leaf-cluster-2", "dev").await;
    for n in 0..SYNCS {
        let name = format!("secret-{n}");
        fixture
            .put_source_secret(&name, &format!("token-{n}"))
            .await;
        fixture.repo.write(
            &format!("syncs/{name}.yaml"),
            sync_yaml(&fixture.namespace, &name),
        );
    }
    fixture.repo.commit("thirty SecretSyncs");

    let mut agent = fixture.start_agent("sigterm-1", &[]);
    // Stop it as soon as the first copy lands: the reconcile is in flight.
    eventually("a first copy lands", async || {
        fixture.leaf_token("leaf-cluster-1", "secret-0").await
    })
    .await;
    agent.terminate();
    let status = agent.exit_status(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", agent.log());
    assert!(agent.log().contains("agent stopped"), "{}", agent.log());

    fixture.assert_no_leaks(&agent);
    let restarted = fixture.start_agent("sigterm-2", &[]);
    for leaf in ["leaf-cluster-1", "leaf-cluster-2"] {
        for n in 0..SYNCS {
            fixture
                .until_leaf_holds(leaf, &format!("secret-{n}"), &format!("token-{n}"))
                .await;
        }
    }
    for n in 0..SYNCS {
        fixture
            .assert_versions_match_leaves(&format!("secret-{n}"))
            .await;
    }
    fixture.assert_no_leaks(&restarted);
}

pub(super) fn sync_yaml(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: capi.weave.works/v1alpha1
kind: SecretSync
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  clusterSelector: {{matchLabels: {{environment: dev}}}}
  secretRef: {{name: {name}}}
  targetNamespace: {namespace}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_a_source_directory_is_synced_without_a_poll() {
    let fixture = Fixture::new("agent-dir").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.put_source_secret("registry", "dir-token").await;
    let directory = fixture.work.path().join("manifests");
    std::fs::create_dir_all(&directory).expect("directory");
    let agent = AgentProcess::spawn(
        &fixture.env.mgmt.admin_kubeconfig(),
        fixture.work.path(),
        "dir",
        &[
            "--source",
            directory.to_str().expect("utf-8"),
            "--namespaces",
            &fixture.namespace,
            "--interval",
            "1h",
            "--resync-schedule",
            "0 0 1 1 *",
        ],
        None,
    );
    eventually("the agent has read the empty directory", async || {
        agent.log().contains("source read").then_some(())
    })
    .await;
    std::fs::write(
        directory.join("registry.yaml"),
        sync_yaml(&fixture.namespace, "registry"),
    )
    .expect("write the manifest");
    let took = fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "dir-token")
        .await;
    eprintln!("directory change to leaf copy: {took:?}");
    fixture.assert_no_leaks(&agent);
}
