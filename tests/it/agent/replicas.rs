//! Two replicas with leader election: only the Lease holder writes; when it dies without
//! a goodbye (SIGKILL), the other takes the Lease once it expires and syncs the next change.
//! A replica stopped with SIGTERM releases the Lease; the other holds it by the time it
//! would have expired.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use super::process::AgentProcess;
use super::{Fixture, eventually};

fn elected(lease_duration: &str) -> [&str; 7] {
    [
        "--leader-election",
        "--lease-duration",
        lease_duration,
        "--interval",
        "1s",
        "--resync-schedule",
        "0 0 1 1 *",
    ]
}

/// `registry` synced to `leaf` by replica-a, then replica-b started and following; the
/// Secret `vault` is ready for the change the next leader must sync.
async fn two_replicas(
    fixture: &Fixture<'_>,
    leaf: &str,
    lease: &str,
) -> (AgentProcess, AgentProcess) {
    fixture.label_cluster(leaf, "dev").await;
    fixture.put_source_secret("registry", "lease-token-1").await;
    fixture.put_source_secret("vault", "lease-token-2").await;
    fixture.commit_sync("registry", "dev", "registry");
    let first = fixture.start_agent("replica-a", &elected(lease));
    fixture
        .until_leaf_holds(leaf, "registry", "lease-token-1")
        .await;
    let second = fixture.start_agent("replica-b", &elected(lease));
    eventually("the second replica follows", async || {
        second
            .log()
            .contains("not the leader: nothing is written")
            .then_some(())
    })
    .await;
    logs_leadership(&first).await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_takes_over_when_the_leader_dies() {
    let fixture = Fixture::new("agent-lease").await;
    let (mut first, second) = two_replicas(&fixture, "leaf-cluster-1", "6s").await;

    first.kill();
    let killed = Instant::now();
    fixture.commit_sync("vault", "dev", "vault");
    fixture
        .until_leaf_holds("leaf-cluster-1", "vault", "lease-token-2")
        .await;
    eprintln!("leader hand-over after SIGKILL: {:?}", killed.elapsed());
    logs_leadership(&second).await;
    fixture.assert_no_leaks(&first);
    fixture.assert_no_leaks(&second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_sigterm_releases_the_lease() {
    let fixture = Fixture::new("agent-release").await;
    fixture.label_cluster("leaf-cluster-2", "dev").await;
    fixture
        .put_source_secret("registry", "release-token-1")
        .await;
    fixture.put_source_secret("vault", "lease-token-2").await;
    fixture.commit_sync("registry", "dev", "registry");
    let mut first = fixture.start_agent("replica-a", &elected("10s"));
    fixture
        .until_leaf_holds("leaf-cluster-2", "registry", "release-token-1")
        .await;
    let second = fixture.start_agent("replica-b", &elected("10s"));
    eventually("the second replica follows", async || {
        second
            .log()
            .contains("not the leader: nothing is written")
            .then_some(())
    })
    .await;
    assert_eq!(lease_holder(&fixture).await.as_deref(), Some("replica-a"));

    first.terminate();
    assert!(first.exit_status(Duration::from_secs(30)).await.success());
    assert_ne!(
        lease_holder(&fixture).await.as_deref(),
        Some("replica-a"),
        "the stopped leader still holds the Lease"
    );
    fixture.commit_sync("vault", "dev", "vault");
    fixture
        .until_leaf_holds("leaf-cluster-2", "vault", "lease-token-2")
        .await;
    assert_eq!(lease_holder(&fixture).await.as_deref(), Some("replica-b"));
    fixture.assert_no_leaks(&second);
}

/// The replica says it leads. (It may write before it says so: a pass that starts as the
/// Lease is won already writes; the log line follows.)
async fn logs_leadership(replica: &AgentProcess) {
    eventually("the replica logs its leadership", async || {
        replica.log().contains("leader=true").then_some(())
    })
    .await;
}

/// Who holds the agents' Lease in the fixture's namespace.
async fn lease_holder(fixture: &Fixture<'_>) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(fixture.env.mgmt.client().await, &fixture.namespace);
    let lease = leases.get("secretsync").await.expect("the Lease");
    lease
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}
