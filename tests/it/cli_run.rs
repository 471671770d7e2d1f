//! `secretsync run --once`, the real binary, through the documented scenario: a SecretSync
//! `my-dev-secret-syncer` in git, `leaf-cluster-1` labelled `environment: dev`, and the
//! Secret appearing in `my-namespace` on that leaf only, with the commit recorded.

use std::path::Path;
use std::process::Output;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use secretsync::status::SyncStatus;
use serde_json::json;

use crate::testenv::TestEnv;
use crate::testenv::git::{GitServers, Transport};
use crate::testenv::scenario::{self, SECRET_VALUE};

/// The management cluster's side: leaf-cluster-1 labelled `environment: dev` in `default`,
/// and the Secret to copy.
async fn arrange_clusters(env: &TestEnv) {
    // The scenario lives in `default`; no other test uses that namespace.
    scenario::arrange_clusters(env, "default", &["leaf-cluster-1"]).await;
}

/// Runs `secretsync run --once` against `source` with the management cluster's kubeconfig,
/// logging everything (`trace`, every crate): the output is checked for leaks.
fn run_once(env: &TestEnv, source: &str, work: &Path) -> Output {
    let audit = work.join("audit.jsonl");
    let command = [
        "run",
        "--once",
        "--audit-log",
        audit.to_str().expect("utf-8"),
    ];
    secretsync_at(env, &command, source, work, "trace")
}

/// Runs a secretsync command (`run --once`, `plan`) against `source`.
fn secretsync(env: &TestEnv, command: &[&str], source: &str, work: &Path) -> Output {
    secretsync_at(env, command, source, work, "debug")
}

/// `secretsync` logging at `log`.
fn secretsync_at(env: &TestEnv, command: &[&str], source: &str, work: &Path, log: &str) -> Output {
    let data = work.join("data");
    let mut args = command.to_vec();
    args.extend([
        "--namespaces",
        "default",
        "--source",
        source,
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    scenario::secretsync_logging(env, &args, work, log)
}

/// `plan` says what `run --once` would do and writes nothing.
async fn plan_writes_nothing(env: &TestEnv, url: &str, work: &Path) {
    let planned = secretsync(env, &["plan"], url, work);
    let plan_text = String::from_utf8_lossy(&planned.stdout);
    assert_eq!(
        planned.status.code(),
        Some(0),
        "{plan_text}{}",
        String::from_utf8_lossy(&planned.stderr)
    );
    assert!(
        plan_text.contains("default/my-dev-secret-syncer → leaf-cluster-1: WouldCreate"),
        "{plan_text}"
    );
    assert!(plan_text.contains("nothing was written"), "{plan_text}");
    let leaf_1: Api<Secret> = Api::namespaced(env.leaves[0].client().await, "my-namespace");
    assert!(
        leaf_1
            .get_opt("my-dev-secret")
            .await
            .expect("read")
            .is_none(),
        "plan wrote to a leaf"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_scenario_end_to_end() {
    let env = TestEnv::shared();
    arrange_clusters(env).await;
    let servers = GitServers::shared();
    let repo = servers.create_repo("scenario");
    let manifest = scenario::manifest();
    let commit = repo
        .write("clusters/my-dev-secret-syncer.yaml", manifest)
        .commit("sync my-dev-secret to dev clusters");

    let work = tempfile::tempdir().expect("tempdir");
    let url = servers.url(&repo, Transport::File);

    plan_writes_nothing(env, &url, work.path()).await;
    let leaf_1: Api<Secret> = Api::namespaced(env.leaves[0].client().await, "my-namespace");
    let output = run_once(env, &url, work.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("default/my-dev-secret-syncer → leaf-cluster-1: Synced"),
        "{stdout}"
    );

    let copy = leaf_1
        .get("my-dev-secret")
        .await
        .expect("the Secret on leaf-cluster-1");
    let leaf_version = copy.metadata.resource_version.clone().expect("rv");
    assert_eq!(
        copy.data.as_ref().expect("data")["password"].0,
        SECRET_VALUE.as_bytes()
    );
    let revision = format!("main@sha1:{commit}");
    assert_eq!(
        copy.metadata.annotations.as_ref().expect("annotations")["secretsync.dev/revision"],
        revision
    );
    let leaf_2: Api<Secret> = Api::namespaced(env.leaves[1].client().await, "my-namespace");
    assert!(
        leaf_2
            .get_opt("my-dev-secret")
            .await
            .expect("read")
            .is_none(),
        "leaf-cluster-2 does not match"
    );

    let configmaps: Api<ConfigMap> = Api::namespaced(env.mgmt.client().await, "default");
    let status_map = configmaps
        .get("secretsync.my-dev-secret-syncer")
        .await
        .expect("status ConfigMap");
    let status: SyncStatus =
        serde_yaml::from_str(&status_map.data.as_ref().expect("data")["status"]).expect("status");
    assert_eq!(status.versions["leaf-cluster-1"], leaf_version);
    assert_eq!(
        status.clusters["leaf-cluster-1"].revision.as_deref(),
        Some(revision.as_str())
    );

    let audit_text = std::fs::read_to_string(work.path().join("audit.jsonl")).expect("audit log");
    let record: serde_json::Value =
        serde_json::from_str(audit_text.lines().next().expect("a line")).expect("JSON line");
    assert_eq!(
        (&record["action"], &record["cluster"], &record["target"]),
        (
            &json!("apply"),
            &json!("default/leaf-cluster-1"),
            &json!("my-namespace/my-dev-secret")
        )
    );
    assert_eq!(
        (&record["revision"], &record["leafVersion"]),
        (&json!(revision), &json!(leaf_version))
    );

    // The secret value appears nowhere: not in output, logs (trace level, every crate),
    // status, audit or Events.
    let encoded = base64_of(SECRET_VALUE);
    let status_text = serde_json::to_string(&status_map).expect("json");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.mgmt.client().await, "default");
    let events_text = serde_json::to_string(
        &events
            .list(&kube::api::ListParams::default())
            .await
            .expect("list Events")
            .items,
    )
    .expect("json");
    assert!(
        events_text.contains("my-namespace/my-dev-secret"),
        "no Event"
    );
    assert!(stderr.lines().count() > 100, "trace logging is on");
    for (what, text) in [
        ("stdout", &*stdout),
        ("logs", &*stderr),
        ("audit", &*audit_text),
        ("status", &*status_text),
        ("events", &*events_text),
    ] {
        assert!(
            !text.contains(SECRET_VALUE) && !text.contains(&encoded),
            "the secret value leaked into {what}"
        );
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A data directory or audit log where nothing can be written (a read-only filesystem here)
/// stops the command with an error that names the path and the reason; nothing is synced
/// with half a cache.
#[test]
fn an_unwritable_data_dir_or_audit_log_is_a_clear_error() {
    let env = TestEnv::shared();
    let servers = GitServers::shared();
    let repo = servers.create_repo("unwritable");
    repo.write("clusters/my-dev-secret-syncer.yaml", scenario::manifest())
        .commit("a manifest");
    let url = servers.url(&repo, Transport::File);
    let work = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            ["--data-dir", "/proc/secretsync-data"],
            "/proc/secretsync-data",
        ),
        (
            ["--audit-log", "/proc/secretsync-audit.jsonl"],
            "opening audit log /proc/secretsync-audit.jsonl",
        ),
    ];
    for (flag, expected) in cases {
        let mut args = vec!["run", "--once", "--namespaces", "nowhere", "--source", &url];
        args.extend(flag);
        if flag[0] != "--data-dir" {
            args.extend(["--data-dir", work.path().to_str().expect("utf-8")]);
        }
        let output = scenario::secretsync(env, &args, work.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
