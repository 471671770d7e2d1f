//! The shipped `deploy/` manifests against the real management apiserver: rendered with
//! kustomize, server-side applied, and the agent (`secretsync run --once`, the real binary)
//! run with nothing but a token of the ServiceAccount they create. It syncs the documented
//! scenario in the namespace it serves, and the apiserver refuses it everything else.
//!
//! The token comes from the TokenRequest API: the test apiservers sign ServiceAccount tokens
//! (`--service-account-signing-key-file`), so the agent authenticates exactly as it would in
//! a pod, as `system:serviceaccount:<namespace>:secretsync`, with only the shipped roles.

mod manifests;
mod rendered;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use secretsync::status::SyncStatus;
use serde_json::{Value, json};

use self::manifests::{apply_all, render, render_repo};
use crate::agent::eventually;
use crate::agent::process::AgentProcess;
use crate::testenv::fleet::{ensure_namespace, gitops_cluster_resource, repo_path};
use crate::testenv::git::{GitServers, Transport};
use crate::testenv::kube::client_from_kubeconfig;
use crate::testenv::scenario::{self, SECRET_VALUE};
use crate::testenv::{TestEnv, unique_namespace};

/// The agent's ServiceAccount (and its Lease's name).
const AGENT: &str = "secretsync";
/// Where the standalone overlay puts the agent.
const STANDALONE_NAMESPACE: &str = "secretsync";
/// Where the flux-sidecar component puts it, and what it serves there.
const FLUX_NAMESPACE: &str = "flux-system";
/// The SecretSync of the documented scenario.
const SCENARIO: &str = "my-dev-secret-syncer";

/// Where an agent runs and what it serves.
struct Agent<'a> {
    /// The namespace of its ServiceAccount and Lease.
    namespace: &'a str,
    /// The one namespace it serves (`--namespaces`, and the RoleBinding there).
    serves: &'a str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_overlay_syncs_its_namespace_and_is_refused_the_rest() {
    let env = TestEnv::shared();
    let admin = env.mgmt.client().await;
    let tenant = unique_namespace("deploy-tenant");
    let outsider = unique_namespace("deploy-outsider");
    scenario::arrange_clusters(env, &tenant, &["leaf-cluster-1"]).await;
    arrange_outsider(&admin, &outsider).await;

    let overlay = standalone_serving(&tenant);
    let documents = render(overlay.path());
    apply_all(&admin, &documents).await;
    let agent = Agent {
        namespace: STANDALONE_NAMESPACE,
        serves: &tenant,
    };
    let manifest = scenario::manifest_in(
        "my-dev-secret-syncer",
        &tenant,
        &unique_namespace("deploy-copy"),
    );
    // With the SecretSync object in the cluster, status goes to its status subresource.
    create_secret_sync(&admin, &tenant, &manifest).await;

    let kubeconfig = agent_kubeconfig(env, &agent).await;
    let run = syncs_the_scenario(env, &agent, &kubeconfig, &manifest).await;
    let status = secret_sync_status(&admin, &tenant).await;
    assert_eq!(
        status.versions["leaf-cluster-1"], run.leaf_version,
        "status.versions on the SecretSync object"
    );
    is_refused_outside_its_roles(&agent, &kubeconfig, &outsider).await;
    cannot_serve_a_namespace_it_is_not_bound_in(&agent, &kubeconfig, &outsider, &run);
    runs_as_the_long_running_agent(env, &agent, &kubeconfig, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_sidecar_syncs_flux_system_as_its_own_service_account() {
    let env = TestEnv::shared();
    let admin = env.mgmt.client().await;
    let outsider = unique_namespace("deploy-outsider");
    // No other test uses flux-system.
    scenario::arrange_clusters(env, FLUX_NAMESPACE, &["leaf-cluster-1"]).await;
    arrange_outsider(&admin, &outsider).await;

    let documents = render_repo("fixtures/deploy/flux-system");
    apply_all(&admin, &documents).await;

    let agent = Agent {
        namespace: FLUX_NAMESPACE,
        serves: FLUX_NAMESPACE,
    };
    let kubeconfig = agent_kubeconfig(env, &agent).await;
    let manifest = scenario::manifest_in(
        "my-dev-secret-syncer",
        FLUX_NAMESPACE,
        &unique_namespace("deploy-copy"),
    );
    // Without a SecretSync object, status goes to the ConfigMap `secretsync.<name>`.
    let run = syncs_the_scenario(env, &agent, &kubeconfig, &manifest).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), FLUX_NAMESPACE);
    let status_map = configmaps
        .get(&format!("secretsync.{SCENARIO}"))
        .await
        .expect("the status ConfigMap");
    let status: SyncStatus =
        serde_yaml::from_str(&status_map.data.as_ref().expect("data")["status"]).expect("status");
    assert_eq!(status.versions["leaf-cluster-1"], run.leaf_version);
    is_refused_outside_its_roles(&agent, &kubeconfig, &outsider).await;
}

/// A namespace the agents do not serve, holding a Secret they must not read.
async fn arrange_outsider(admin: &kube::Client, outsider: &str) {
    ensure_namespace(admin, outsider).await;
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "not-yours", "namespace": outsider},
        "stringData": {"token": "outsider-token-7c1d"},
    });
    Api::<Secret>::namespaced(admin.clone(), outsider)
        .patch(
            "not-yours",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("the outsider's Secret");
}

/// A user's overlay on `deploy/overlays/standalone` that serves `tenant` instead of
/// `default`, written as README "Deploy" says: the shipped serve-default.yaml copied for
/// the namespace, the default one removed, SECRETSYNC_NAMESPACES merged.
fn standalone_serving(tenant: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let standalone = repo_path("deploy/overlays/standalone");
    let serve_default =
        std::fs::read_to_string(standalone.join("serve-default.yaml")).expect("serve-default.yaml");
    let serve_tenant = serve_default.replace("namespace: default", &format!("namespace: {tenant}"));
    assert_ne!(
        serve_tenant, serve_default,
        "serve-default.yaml names namespace default"
    );
    std::fs::write(dir.path().join("serve-tenant.yaml"), serve_tenant).expect("write");
    // kustomize takes only relative paths to other kustomizations.
    let standalone_from_dir = format!(
        "{}{}",
        "../".repeat(dir.path().components().count() - 1),
        standalone.display().to_string().trim_start_matches('/')
    );
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {standalone_from_dir}
  - serve-tenant.yaml
patches:
  - patch: |-
      $patch: delete
      apiVersion: rbac.authorization.k8s.io/v1
      kind: RoleBinding
      metadata:
        name: secretsync-tenant
        namespace: default
configMapGenerator:
  - name: secretsync-config
    behavior: merge
    literals:
      - SECRETSYNC_NAMESPACES={tenant}
"
    );
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization).expect("write");
    dir
}

/// The scenario's SecretSync, as committed to git, also as an object in the cluster.
async fn create_secret_sync(admin: &kube::Client, namespace: &str, manifest: &str) {
    let manifest: DynamicObject = serde_yaml::from_str(manifest).expect("manifest");
    Api::<DynamicObject>::namespaced_with(
        admin.clone(),
        namespace,
        &secretsync::status::writer::secret_sync_resource(),
    )
    .patch(
        SCENARIO,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&manifest),
    )
    .await
    .expect("create the SecretSync object");
}

async fn secret_sync_status(admin: &kube::Client, namespace: &str) -> SyncStatus {
    let object = Api::<DynamicObject>::namespaced_with(
        admin.clone(),
        namespace,
        &secretsync::status::writer::secret_sync_resource(),
    )
    .get(SCENARIO)
    .await
    .expect("the SecretSync object");
    serde_json::from_value(object.data["status"].clone()).expect("its status")
}

/// A kubeconfig with a token of the agent's ServiceAccount, as the shipped manifests create
/// it, from the TokenRequest API.
async fn agent_kubeconfig(env: &TestEnv, agent: &Agent<'_>) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.mgmt.client().await, agent.namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(AGENT, &PostParams::default(), &request)
        .await
        .expect("a token for the agent's ServiceAccount")
        .status
        .expect("token status")
        .token
        .expect("a token");
    env.mgmt.kubeconfig_with_token(&token)
}

/// What the agent's successful run left to check further.
struct ScenarioRun {
    source: String,
    /// The leaves' namespace the copy goes to.
    copies_to: String,
    work: tempfile::TempDir,
    leaf_version: String,
}

/// The documented scenario (`manifest`, in the served namespace) synced by `run --once`
/// with the agent's credentials: exit code 0, the copy on leaf-cluster-1 with the commit,
/// an Event.
async fn syncs_the_scenario(
    env: &TestEnv,
    agent: &Agent<'_>,
    kubeconfig: &str,
    manifest: &str,
) -> ScenarioRun {
    let copies_to =
        serde_yaml::from_str::<Value>(manifest).expect("manifest")["spec"]["targetNamespace"]
            .as_str()
            .expect("targetNamespace")
            .to_owned();
    let servers = GitServers::shared();
    let repo = servers.create_repo("deploy");
    let commit = repo
        .write("clusters/my-dev-secret-syncer.yaml", manifest)
        .commit("sync my-dev-secret to dev clusters");
    let source = servers.url(&repo, Transport::File);
    let work = tempfile::tempdir().expect("tempdir");

    let output = secretsync_as(
        kubeconfig,
        agent.serves,
        &["run", "--once"],
        &source,
        work.path(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "{}/{SCENARIO} → leaf-cluster-1: Synced",
            agent.serves
        )),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains(SECRET_VALUE), "the secret value was printed");
    }

    let leaf: Api<Secret> = Api::namespaced(env.leaves[0].client().await, &copies_to);
    let copy = leaf
        .get("my-dev-secret")
        .await
        .expect("the copy on leaf-cluster-1");
    assert!(
        copy.data.as_ref().expect("data")["password"].0 == SECRET_VALUE.as_bytes(),
        "the copy holds the source's value"
    );
    assert_eq!(
        copy.metadata.annotations.as_ref().expect("annotations")["secretsync.dev/revision"],
        format!("main@sha1:{commit}")
    );
    has_published_an_event(&env.mgmt.client().await, agent.serves).await;
    ScenarioRun {
        source,
        copies_to,
        work,
        leaf_version: copy.metadata.resource_version.expect("resourceVersion"),
    }
}

async fn has_published_an_event(admin: &kube::Client, namespace: &str) {
    let events: Api<Event> = Api::namespaced(admin.clone(), namespace);
    let listed = events
        .list(&ListParams::default())
        .await
        .expect("list Events");
    assert!(
        listed.items.iter().any(|e| {
            e.reason.as_deref() == Some("Applied")
                && e.reporting_controller.as_deref() == Some("secretsync")
        }),
        "an Applied Event from secretsync in {namespace}"
    );
}

/// Requests outside the shipped roles, each answered 403 by the apiserver; and what the
/// roles do allow in the agent's own namespace: its one Lease.
async fn is_refused_outside_its_roles(agent: &Agent<'_>, kubeconfig: &str, outsider: &str) {
    let client = client_from_kubeconfig(kubeconfig).await;
    holds_its_lease(&client, agent.namespace).await;
    let secrets_of = |namespace: &str| Api::<Secret>::namespaced(client.clone(), namespace);
    let leases: Api<Lease> = Api::namespaced(client.clone(), agent.namespace);
    let clusters_served = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        agent.serves,
        &gitops_cluster_resource(),
    );
    let written = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "written-by-secretsync"}, "stringData": {"k": "v"}});
    let mut attempts = vec![
        (
            "read a Secret of a namespace it does not serve",
            secrets_of(outsider).get("not-yours").await.map(drop),
        ),
        (
            "list Secrets in every namespace",
            Api::<Secret>::all(client.clone())
                .list_metadata(&ListParams::default())
                .await
                .map(drop),
        ),
        (
            "list GitopsClusters in every namespace",
            Api::<DynamicObject>::all_with(client.clone(), &gitops_cluster_resource())
                .list_metadata(&ListParams::default())
                .await
                .map(drop),
        ),
        (
            "write a Secret in the served namespace",
            secrets_of(agent.serves)
                .patch(
                    "written-by-secretsync",
                    &PatchParams::apply(AGENT),
                    &Patch::Apply(&written),
                )
                .await
                .map(drop),
        ),
        (
            "delete a GitopsCluster",
            clusters_served
                .delete("leaf-cluster-2", &DeleteParams::default())
                .await
                .map(drop),
        ),
        (
            "read another Lease of its namespace",
            leases.get("someone-else").await.map(drop),
        ),
    ];
    if agent.namespace != agent.serves {
        attempts.push((
            "read a Secret of its own namespace, which it does not serve",
            secrets_of(agent.namespace)
                .get("secretsync-git")
                .await
                .map(drop),
        ));
    }
    for (what, result) in attempts {
        match result {
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            // Never print a successful answer: it may hold Secret data.
            Ok(()) => panic!("the agent may {what}"),
            Err(error) => panic!("{what}: expected 403 Forbidden, got {error}"),
        }
    }
}

/// The agent may create, read and renew its Lease `secretsync` (leader election).
async fn holds_its_lease(client: &kube::Client, namespace: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(AGENT.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("deploy-test".to_owned()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }),
    };
    match leases.create(&PostParams::default(), &lease).await {
        // 409: an earlier test of this environment created it.
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("create its Lease: {error}"),
    }
    let mut current = leases.get(AGENT).await.expect("read its Lease");
    current
        .spec
        .get_or_insert_with(LeaseSpec::default)
        .lease_transitions = Some(1);
    leases
        .replace(AGENT, &PostParams::default(), &current)
        .await
        .expect("renew its Lease");
}

/// The long-running agent with the same credentials, as the Deployment runs it: it takes
/// the Lease, its watches are allowed (a rotated source Secret reaches the leaf without a
/// poll), nothing it asks is refused, and SIGTERM releases the Lease.
async fn runs_as_the_long_running_agent(
    env: &TestEnv,
    agent: &Agent<'_>,
    kubeconfig: &str,
    run: &ScenarioRun,
) {
    const ROTATED: &str = "rotated-by-the-deploy-test";
    let mut process = AgentProcess::spawn(
        kubeconfig,
        run.work.path(),
        "deployed",
        &[
            "--source",
            &run.source,
            "--namespaces",
            agent.serves,
            "--leader-election",
            "--lease-namespace",
            agent.namespace,
            "--interval",
            "1h",
            "--resync-schedule",
            "0 0 1 1 *",
        ],
        None,
    );
    eventually("the deployed agent leads", async || {
        process.log().contains("leader=true").then_some(())
    })
    .await;
    let admin = env.mgmt.client().await;
    let rotated = json!({"data": {"password": base64(ROTATED)}});
    Api::<Secret>::namespaced(admin.clone(), agent.serves)
        .patch(
            "my-dev-secret",
            &PatchParams::default(),
            &Patch::Merge(rotated),
        )
        .await
        .expect("rotate the source Secret");
    let leaf: Api<Secret> = Api::namespaced(env.leaves[0].client().await, &run.copies_to);
    eventually("the rotated value reaches the leaf", async || {
        let copy = leaf.get("my-dev-secret").await.expect("the copy");
        (copy.data?.get("password")?.0 == ROTATED.as_bytes()).then_some(())
    })
    .await;
    process.terminate();
    let exit = process
        .exit_status(std::time::Duration::from_secs(30))
        .await;
    let log = process.log();
    assert!(exit.success(), "{exit:?}\n{log}");
    let lowered = log.to_lowercase();
    assert!(
        !lowered.contains("forbidden") && !lowered.contains(" 403"),
        "a request of the agent was refused:\n{log}"
    );
    for value in [SECRET_VALUE, ROTATED] {
        assert!(
            !log.contains(value) && !log.contains(&base64(value)),
            "a secret value was logged"
        );
    }
    let lease = Api::<Lease>::namespaced(admin, agent.namespace)
        .get(AGENT)
        .await
        .expect("the Lease");
    let holder = lease.spec.and_then(|spec| spec.holder_identity);
    assert!(
        holder.as_deref().is_none_or(str::is_empty),
        "the Lease was not released: {holder:?}"
    );
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Told to serve a namespace its roles do not reach, the agent says so (the apiserver's
/// 403), still syncs the namespace it may serve, and exits 1.
fn cannot_serve_a_namespace_it_is_not_bound_in(
    agent: &Agent<'_>,
    kubeconfig: &str,
    outsider: &str,
    run: &ScenarioRun,
) {
    let output = secretsync_as(
        kubeconfig,
        &format!("{},{outsider}", agent.serves),
        &["run", "--once"],
        &run.source,
        run.work.path(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("problem:") && l.contains(outsider) && l.contains("403")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}/{SCENARIO} → leaf-cluster-1: Synced",
            agent.serves
        )),
        "{stdout}"
    );
}

/// Runs a secretsync command with the management-cluster credentials of `kubeconfig`,
/// serving `namespaces` (comma-separated).
fn secretsync_as(
    kubeconfig: &str,
    namespaces: &str,
    command: &[&str],
    source: &str,
    work: &std::path::Path,
) -> std::process::Output {
    let data = work.join("data");
    let mut args = command.to_vec();
    args.extend([
        "--namespaces",
        namespaces,
        "--source",
        source,
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    scenario::secretsync_with(kubeconfig, &args, work)
}
