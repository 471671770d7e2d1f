//! How fast the running agent reacts, and what it costs while idle: a benchmark, not a test.
//! `cargo test` skips it (it asserts nothing about time, and takes minutes); run it with
//!
//! ```text
//! cargo test --release --test it -- --ignored --nocapture agent::latency
//! ```
//!
//! and copy the figures it prints into bench/RESULTS.md. The agent is the real (release)
//! binary, the environment a private one (no other test's load), the repository served by the
//! git daemon (`git://` on loopback).

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use secretsync::trigger::webhook::verify::sign;

use super::Fixture;
use super::process::AgentProcess;
use crate::testenv::TestEnv;
use crate::testenv::git::{GitServers, Transport};
use crate::webhook::{http_client, request};
use secretsync::testenv::procfs::Proc;

const ROUNDS: usize = 40;
const SECRET: &str = "latency-webhook-secret-3e9a";
/// No poll, no resync: what is measured is the webhook's and the watches' doing.
const NO_TIMERS: [&str; 4] = ["--interval", "1h", "--resync-schedule", "0 0 1 1 *"];
/// How long the idle agent is watched.
const IDLE: Duration = Duration::from_secs(120);
const LEAVES: [&str; 2] = ["leaf-cluster-1", "leaf-cluster-2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test --release --test it -- --ignored --nocapture agent::latency"]
async fn latency() {
    let env = TestEnv::start();
    let mut fixture = Fixture::in_env(&env, "latency").await;
    fixture.url = GitServers::shared().url(&fixture.repo, Transport::GitDaemon);
    for leaf in LEAVES {
        fixture.label_cluster(leaf, "dev").await;
    }
    for round in 0..ROUNDS {
        fixture
            .put_source_secret(&source(round), &token(round))
            .await;
    }
    fixture.commit_sync("bench", "dev", &source(0));
    let agent = AgentProcess::start(&fixture, "latency", &NO_TIMERS, Some(SECRET));
    for leaf in LEAVES {
        fixture.until_leaf_holds(leaf, &source(0), &token(0)).await;
    }

    // A commit pushed, then its webhook: the SecretSync now copies another Secret, which
    // must arrive on both leaves (and the previous copy is pruned).
    let hook = agent.endpoint("webhook").await;
    let body = r#"{"reason":"pushed"}"#;
    let signature = sign(SECRET.as_bytes(), body.as_bytes());
    let mut webhook = Vec::new();
    for round in 1..ROUNDS {
        fixture.commit_sync("bench", "dev", &source(round));
        let started = Instant::now();
        let (status, _, _) = request(
            &http_client(),
            Method::POST,
            hook,
            "/hook/generic",
            &[("x-signature-256", &signature)],
            body.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        for leaf in LEAVES {
            until(&fixture, leaf, &source(round), Some(&token(round))).await;
        }
        webhook.push(started.elapsed());
    }

    // A GitopsCluster starts matching (labelled `environment: dev`): the copy must arrive
    // on it, by the GitopsCluster watch alone.
    let current = source(ROUNDS - 1);
    let mut new_cluster = Vec::new();
    for _ in 0..ROUNDS {
        fixture.label_cluster("leaf-cluster-2", "none").await;
        until(&fixture, "leaf-cluster-2", &current, None).await;
        let started = Instant::now();
        fixture.label_cluster("leaf-cluster-2", "dev").await;
        until(
            &fixture,
            "leaf-cluster-2",
            &current,
            Some(&token(ROUNDS - 1)),
        )
        .await;
        new_cluster.push(started.elapsed());
    }
    fixture.assert_no_leaks(&agent);
    drop(agent);

    // Idle: an agent with the default poll (1m) and resync (10 min) schedules, after its
    // first reconcile, doing nothing but polling and watching.
    let idle_agent = fixture.start_agent("latency-idle", &[]);
    super::eventually("the idle agent's first reconcile", async || {
        idle_agent.log().contains("reconciled").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agent = Proc::Pid(idle_agent.pid());
    let cpu_before = agent.cpu_time();
    tokio::time::sleep(IDLE).await;
    let cpu = agent.cpu_time().saturating_sub(cpu_before);
    let (rss, peak) = agent.memory_kib();

    println!("\nagent latency, {ROUNDS} rounds (release build)");
    println!("webhook -> copy on both leaves: {}", summary(&mut webhook));
    println!(
        "GitopsCluster starts matching -> copy on it: {}",
        summary(&mut new_cluster)
    );
    let share = cpu.as_secs_f64() / IDLE.as_secs_f64() * 100.0;
    println!(
        "idle over {IDLE:?}: CPU {share:.2} % of one core ({cpu:?}), RSS {} MiB (peak {} MiB)",
        rss / 1024,
        peak / 1024
    );
}

fn source(round: usize) -> String {
    format!("src-{round}")
}

fn token(round: usize) -> String {
    format!("latency-token-{round}")
}

/// Polls (every 10 ms) until `leaf` holds `name` with `token`, or (`None`) no longer holds it.
async fn until(fixture: &Fixture<'_>, leaf: &str, name: &str, token: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fixture.leaf_token(leaf, name).await.as_deref() != token {
        assert!(
            Instant::now() < deadline,
            "{leaf}: {name} never became {token:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// p50, p95 and max of `samples`, in milliseconds.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |quantile: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )] // an index into a short list
        let index = ((samples.len() - 1) as f64 * quantile).round() as usize;
        samples[index].as_millis()
    };
    format!(
        "p50 {} ms, p95 {} ms, max {} ms (n = {})",
        at(0.5),
        at(0.95),
        at(1.0),
        samples.len()
    )
}
