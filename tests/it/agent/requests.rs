//! Requests on the management cluster: `secretsync reconcile` (the `requestedAt`
//! annotation) makes a running agent fetch and reconcile now, and `secretsync.dev/suspend`
//! on the SecretSync object pauses it until the annotation goes.

use std::process::Command;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use secretsync::status::writer::secret_sync_resource;
use serde_json::json;

use super::{Fixture, eventually};

/// No poll, no resync: only a request explains a fetch.
const NO_TIMERS: [&str; 4] = ["--interval", "1h", "--resync-schedule", "0 0 1 1 *"];

fn reconcile_command(fixture: &Fixture<'_>, name: &str) -> std::process::Output {
    let kubeconfig = fixture.work.path().join("cli.kubeconfig");
    std::fs::write(&kubeconfig, fixture.env.mgmt.admin_kubeconfig()).expect("kubeconfig");
    Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(["reconcile", name, "--namespace", &fixture.namespace])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run secretsync reconcile")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secretsync_reconcile_makes_the_agent_fetch_now() {
    let fixture = Fixture::new("agent-request").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture
        .put_source_secret("registry", "request-token-1")
        .await;
    fixture.put_source_secret("vault", "request-token-2").await;
    fixture.commit_sync("registry", "dev", "registry");
    let agent = fixture.start_agent("request", &NO_TIMERS);
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "request-token-1")
        .await;
    eventually("the status ConfigMap exists", async || {
        fixture.status("registry").await
    })
    .await;
    // Let the request watch finish its first listing.
    tokio::time::sleep(Duration::from_secs(1)).await;

    fixture.commit_sync("vault", "dev", "vault");
    let output = reconcile_command(&fixture, "registry");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("requested"), "{stdout}");
    fixture
        .until_leaf_holds("leaf-cluster-1", "vault", "request-token-2")
        .await;

    let unknown = reconcile_command(&fixture, "no-such-sync");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("neither an object nor a status"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    fixture.assert_no_leaks(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_on_the_object_pauses_the_secretsync_until_removed() {
    let fixture = Fixture::new("agent-suspend").await;
    fixture.label_cluster("leaf-cluster-2", "dev").await;
    fixture
        .put_source_secret("registry", "suspend-token-1")
        .await;
    fixture.commit_sync("registry", "dev", "registry");
    let objects: Api<DynamicObject> = Api::namespaced_with(
        fixture.env.mgmt.client().await,
        &fixture.namespace,
        &secret_sync_resource(),
    );
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "capi.weave.works/v1alpha1",
        "kind": "SecretSync",
        "metadata": {"name": "registry", "namespace": fixture.namespace},
        "spec": {
            "clusterSelector": {"matchLabels": {"environment": "dev"}},
            "secretRef": {"name": "registry"},
            "targetNamespace": fixture.namespace,
        }
    }))
    .expect("object");
    objects
        .create(&PostParams::default(), &object)
        .await
        .expect("create the SecretSync object");
    let agent = fixture.start_agent("suspend", &NO_TIMERS);
    fixture
        .until_leaf_holds("leaf-cluster-2", "registry", "suspend-token-1")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let suspend = |value: Option<&str>| {
        Patch::Merge(json!({"metadata": {"annotations": {"secretsync.dev/suspend": value}}}))
    };
    objects
        .patch("registry", &PatchParams::default(), &suspend(Some("true")))
        .await
        .expect("suspend");
    eventually("the status says Suspended", async || {
        let object = objects.get("registry").await.expect("read");
        let result = object.data["status"]["clusters"]["leaf-cluster-2"]["result"].clone();
        (result == json!("Suspended")).then_some(())
    })
    .await;
    fixture
        .put_source_secret("registry", "suspend-token-2")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fixture
            .leaf_token("leaf-cluster-2", "registry")
            .await
            .as_deref(),
        Some("suspend-token-1"),
        "a suspended SecretSync was synced"
    );

    objects
        .patch("registry", &PatchParams::default(), &suspend(None))
        .await
        .expect("resume");
    fixture
        .until_leaf_holds("leaf-cluster-2", "registry", "suspend-token-2")
        .await;
    fixture.assert_no_leaks(&agent);
}
