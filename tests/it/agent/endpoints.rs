//! The agent's HTTP side, end to end: a signed webhook makes the running agent fetch and sync
//! a new commit at once (no poll), a bad signature makes it do nothing, a burst is one fetch;
//! /readyz turns ready once the agent has read its source, and /metrics tells what it did.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use secretsync::trigger::webhook::verify::sign;

use super::process::AgentProcess;
use super::{Fixture, eventually};
use crate::webhook::{http_client, request};

const SECRET: &str = "agent-webhook-secret-8c1f";
/// No poll, no resync: only a webhook explains a fetch.
const NO_TIMERS: [&str; 4] = ["--interval", "1h", "--resync-schedule", "0 0 1 1 *"];

async fn deliver(agent: &AgentProcess, signature: &str, body: &str) -> StatusCode {
    let hook = agent.endpoint("webhook").await;
    let (status, _, _) = request(
        &http_client(),
        Method::POST,
        hook,
        "/hook/generic",
        &[("x-signature-256", signature)],
        body.as_bytes().to_vec(),
    )
    .await;
    status
}

fn reads(agent: &AgentProcess) -> usize {
    agent.log().matches("source read").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_syncs_a_new_commit_and_a_forged_one_does_nothing() {
    let fixture = Fixture::new("agent-hook").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.put_source_secret("registry", "hook-token-1").await;
    fixture.put_source_secret("vault", "hook-token-2").await;
    fixture.commit_sync("registry", "dev", "registry");
    let agent = AgentProcess::start(&fixture, "hook", &NO_TIMERS, Some(SECRET));
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "hook-token-1")
        .await;

    fixture.commit_sync("vault", "dev", "vault");
    let body = r#"{"reason":"pushed"}"#;
    let forged = sign(b"not-the-secret", body.as_bytes());
    assert_eq!(
        deliver(&agent, &forged, body).await,
        StatusCode::UNAUTHORIZED
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fixture.leaf_token("leaf-cluster-1", "vault").await,
        None,
        "a forged delivery made the agent fetch"
    );

    let signed = sign(SECRET.as_bytes(), body.as_bytes());
    assert_eq!(deliver(&agent, &signed, body).await, StatusCode::ACCEPTED);
    let took = fixture
        .until_leaf_holds("leaf-cluster-1", "vault", "hook-token-2")
        .await;
    eprintln!("webhook to leaf copy: {took:?}");

    // A burst of deliveries is one fetch (two when it straddles a fetch in flight).
    let before = reads(&agent);
    let burst = (0..20).map(|_| deliver(&agent, &signed, body));
    for status in futures::future::join_all(burst).await {
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fetches = reads(&agent) - before;
    assert!(
        (1..=2).contains(&fetches),
        "{fetches} fetches for one burst"
    );
    let log = agent.log();
    assert!(!log.contains(SECRET), "the webhook secret is in the log");
    fixture.assert_no_leaks(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_metrics_tell_what_the_agent_did() {
    let fixture = Fixture::new("agent-ops").await;
    fixture.label_cluster("leaf-cluster-2", "dev").await;
    fixture.put_source_secret("registry", "ops-token").await;
    let commit = fixture.commit_sync("registry", "dev", "registry");
    let agent = fixture.start_agent("ops", &NO_TIMERS);
    let ops = agent.endpoint("metrics").await;
    let client = http_client();
    fixture
        .until_leaf_holds("leaf-cluster-2", "registry", "ops-token")
        .await;

    eventually("/readyz says ready", async || {
        let (ready, _, _) = request(&client, Method::GET, ops, "/readyz", &[], Vec::new()).await;
        (ready == StatusCode::OK).then_some(())
    })
    .await;
    let expected = [
        "secretsync_pairs{result=\"Synced\"} 1".to_owned(),
        "secretsync_applies_total 1".to_owned(),
        format!("secretsync_last_applied_revision_info{{revision=\"main@sha1:{commit}\"}} 1"),
        format!(
            "secretsync_cluster_up{{namespace=\"{}\",cluster=\"leaf-cluster-2\"}} 1",
            fixture.namespace
        ),
        "secretsync_leader 1".to_owned(),
    ];
    // The leaf copy lands before the pass that wrote it has finished and been recorded.
    let metrics = eventually("/metrics tells the sync", async || {
        let (_, _, metrics) = request(&client, Method::GET, ops, "/metrics", &[], Vec::new()).await;
        expected
            .iter()
            .all(|line| metrics.contains(line))
            .then_some(metrics)
    })
    .await;
    assert!(!metrics.contains("ops-token"));
    fixture.assert_no_leaks(&agent);
}
