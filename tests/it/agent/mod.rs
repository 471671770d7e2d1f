//! The long-running agent, as the real binary: `secretsync run` started as a process against
//! the test environment, driven by commits, management-cluster changes and signals, and
//! judged by what arrives on the leaves.

mod endpoints;
mod faults;
mod hanging;
mod latency;
pub(crate) mod process;
mod replicas;
mod requests;
mod shards;
mod signatures;
mod triggers;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use secretsync::status::model::SOURCE_READY;
use secretsync::status::{Condition, SyncStatus};
use serde_json::json;

use self::process::AgentProcess;
use crate::testenv::git::{GitServers, Repo, Transport};
use crate::testenv::{TestEnv, unique_namespace};

/// A namespace of the management cluster with both leaves registered, a config repository,
/// and the agents started for it.
struct Fixture<'e> {
    env: &'e TestEnv,
    /// Every value put into a source Secret: none may appear in the agents' logs.
    secret_values: std::sync::Mutex<Vec<String>>,
    namespace: String,
    repo: Repo,
    url: String,
    work: tempfile::TempDir,
}

impl Fixture<'static> {
    async fn new(prefix: &str) -> Fixture<'static> {
        Fixture::in_env(TestEnv::shared(), prefix).await
    }
}

impl<'e> Fixture<'e> {
    /// A fixture in a test environment of the test's own (one it may break).
    async fn in_env(env: &'e TestEnv, prefix: &str) -> Fixture<'e> {
        let namespace = unique_namespace(prefix);
        env.register_leaves(&namespace).await;
        let servers = GitServers::shared();
        let repo = servers.create_repo(prefix);
        let url = servers.url(&repo, Transport::File);
        Fixture {
            env,
            secret_values: std::sync::Mutex::default(),
            namespace,
            repo,
            url,
            work: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Commits SecretSync `name` copying Secret `secret` to the clusters labelled
    /// `environment: <environment>`, into the leaves' namespace of the test's name.
    fn commit_sync(&self, name: &str, environment: &str, secret: &str) -> String {
        self.write_sync(name, environment, secret)
            .commit(&format!("sync {secret} to {environment} clusters"))
    }

    /// Writes what `commit_sync` commits, leaving the commit to the caller.
    fn write_sync(&self, name: &str, environment: &str, secret: &str) -> &Repo {
        let yaml = format!(
            "apiVersion: capi.weave.works/v1alpha1
kind: SecretSync
metadata:
  name: {name}
  namespace: {ns}
spec:
  clusterSelector:
    matchLabels:
      environment: {environment}
  secretRef:
    name: {secret}
  targetNamespace: {ns}
",
            ns = self.namespace
        );
        self.repo.write(&format!("syncs/{name}.yaml"), yaml)
    }

    async fn put_source_secret(&self, name: &str, value: &str) {
        self.secret_values
            .lock()
            .expect("values")
            .push(value.to_owned());
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "token".to_owned(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(self.env.mgmt.client().await, &self.namespace)
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&secret),
            )
            .await
            .expect("source Secret");
    }

    async fn label_cluster(&self, cluster: &str, environment: &str) {
        let clusters = Api::<kube::api::DynamicObject>::namespaced_with(
            self.env.mgmt.client().await,
            &self.namespace,
            &secretsync::cluster::api_resource(),
        );
        let patch = json!({"metadata": {"labels": {"environment": environment}}});
        clusters
            .patch(cluster, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("label the GitopsCluster");
    }

    fn leaf_secrets(&self, leaf: &str) -> impl Future<Output = Api<Secret>> + '_ {
        let cluster = self.env.leaf(leaf);
        async move { Api::namespaced(cluster.client().await, &self.namespace) }
    }

    /// The leaf copy's `token`, when there is a copy.
    async fn leaf_token(&self, leaf: &str, name: &str) -> Option<String> {
        let secret = self
            .leaf_secrets(leaf)
            .await
            .get_opt(name)
            .await
            .expect("read the leaf Secret")?;
        let token = secret.data?.remove("token")?;
        Some(String::from_utf8_lossy(&token.0).into_owned())
    }

    /// Waits until `leaf` holds `name` with `token`; returns how long that took.
    async fn until_leaf_holds(&self, leaf: &str, name: &str, token: &str) -> Duration {
        let started = Instant::now();
        eventually(
            &format!("{leaf} holds {name} = the expected token"),
            async || (self.leaf_token(leaf, name).await.as_deref() == Some(token)).then_some(()),
        )
        .await;
        started.elapsed()
    }

    async fn status(&self, sync: &str) -> Option<(ConfigMap, SyncStatus)> {
        let configmaps: Api<ConfigMap> =
            Api::namespaced(self.env.mgmt.client().await, &self.namespace);
        let configmap = configmaps
            .get_opt(&format!("secretsync.{sync}"))
            .await
            .expect("read the status ConfigMap")?;
        let status = serde_yaml::from_str(&configmap.data.as_ref()?["status"]).ok()?;
        Some((configmap, status))
    }

    /// Waits until SecretSync `sync`'s status has a `SourceReady` condition of `status`
    /// (`"True"` or `"False"`), and returns it; `what` names the wait in a timeout.
    async fn until_source_ready(&self, sync: &str, status: &str, what: &str) -> Condition {
        eventually(what, async || {
            self.status(sync)
                .await?
                .1
                .conditions
                .into_iter()
                .find(|c| c.type_ == SOURCE_READY && c.status == status)
        })
        .await
    }

    /// Waits until the status of SecretSync `name` has both leaves, then checks that each
    /// `status.versions` entry is the resourceVersion of that leaf's copy.
    async fn assert_versions_match_leaves(&self, name: &str) {
        let (_, status) = eventually("the status holds both leaves", async || {
            self.status(name)
                .await
                .filter(|(_, s)| s.versions.len() == 2)
        })
        .await;
        for leaf in ["leaf-cluster-1", "leaf-cluster-2"] {
            let copy = self.leaf_secrets(leaf).await.get(name).await.expect("copy");
            assert_eq!(
                status.versions.get(leaf),
                copy.metadata.resource_version.as_ref(),
                "status.versions of {name} on {leaf}"
            );
        }
    }

    /// The agent's log (at debug level for secretsync) holds no secret value, plain or
    /// base64.
    fn assert_no_leaks(&self, agent: &AgentProcess) {
        use base64::Engine as _;
        let log = agent.log();
        for value in self.secret_values.lock().expect("values").iter() {
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            assert!(
                !log.contains(value.as_str()) && !log.contains(&encoded),
                "a secret value is in the agent's log"
            );
        }
    }

    /// Starts `secretsync run` for this fixture with extra arguments.
    fn start_agent(&self, name: &str, extra: &[&str]) -> AgentProcess {
        AgentProcess::start(self, name, extra, None)
    }
}

/// How long the tests wait for the agent to get something done.
const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` until it yields a value, failing the test after `PATIENCE`.
pub(crate) async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
