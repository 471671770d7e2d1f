//! The product end to end: a SecretSync committed to a real git server, the management
//! cluster's GitopsClusters and source Secret, one reconcile, and the leaf clusters' Secrets,
//! provenance and status that come out of it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams};
use secretsync::cluster::ClientCache;
use secretsync::manifest::{ManifestSet, Parser, SecretSyncKey};
use secretsync::source::Selection;
use secretsync::source::git::{GitAuth, GitReference, GitSource, RemoteUrl};
use secretsync::status::SyncStatus;
use secretsync::sync::{ReconcileOptions, ReconcileReport, Reconciler, Scope};
use serde_json::json;

use crate::testenv::fleet::set_cluster_conditions;
use crate::testenv::git::{GitServers, Repo, Transport};
use crate::testenv::{TestEnv, unique_namespace};

/// A test's world: a namespace of the management cluster with both leaves registered, a
/// config repository, and the agent's parts.
struct World<'e> {
    env: &'e TestEnv,
    namespace: String,
    repo: Repo,
    source: GitSource,
    parser: Parser,
    reconciler: Reconciler,
    _cache: tempfile::TempDir,
}

impl World<'static> {
    async fn new() -> Self {
        World::in_env(TestEnv::shared()).await
    }
}

impl<'e> World<'e> {
    async fn in_env(env: &'e TestEnv) -> World<'e> {
        let namespace = unique_namespace("sync");
        env.register_leaves(&namespace).await;
        let servers = GitServers::shared();
        let repo = servers.create_repo("sync");
        let cache = tempfile::tempdir().expect("tempdir");
        let url = RemoteUrl::parse(&servers.url(&repo, Transport::File)).expect("url");
        let source = GitSource::new(
            url,
            GitReference::default(),
            GitAuth::default(),
            cache.path(),
        );
        // Serving only this test's namespace keeps prune away from the other tests' copies.
        let options = ReconcileOptions {
            namespaces: Some(vec![namespace.clone()]),
            ..ReconcileOptions::default()
        };
        let reconciler =
            Reconciler::new(env.mgmt.client().await, ClientCache::default()).with_options(options);
        World {
            env,
            parser: Parser::new(&namespace),
            namespace,
            repo,
            source,
            reconciler,
            _cache: cache,
        }
    }

    /// Commits a SecretSync manifest (`{ns}` is replaced by the test's namespace).
    fn commit_sync(&self, path: &str, yaml: &str) -> String {
        self.repo
            .write(path, yaml.replace("{ns}", &self.namespace))
            .commit(&format!("update {path}"))
    }

    async fn reconcile(&mut self) -> (ManifestSet, ReconcileReport) {
        let (set, report) = self.reconcile_with_problems().await;
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        (set, report)
    }

    async fn reconcile_with_problems(&mut self) -> (ManifestSet, ReconcileReport) {
        let set = self.parse_head();
        assert!(!set.has_errors(), "{:?}", set.diagnostics);
        let report = self.reconciler.reconcile(&set).await;
        (set, report)
    }

    /// Fetches the repository and parses its head commit, as the agent does.
    fn parse_head(&mut self) -> ManifestSet {
        let fetched = tokio::task::block_in_place(|| self.source.fetch()).expect("fetch");
        let snapshot =
            tokio::task::block_in_place(|| self.source.snapshot(&fetched, &Selection::default()))
                .expect("snapshot");
        self.parser.parse(&snapshot)
    }

    /// The common start: the source Secret holds `token`, the production SecretSync is
    /// committed, and one reconcile has run.
    async fn with_production_sync(mut self, token: &str) -> Self {
        self.put_source_secret("registry-credentials", token).await;
        self.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
        self.reconcile().await;
        self
    }

    async fn put_source_secret(&self, name: &str, value: &str) -> Secret {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(BTreeMap::from([
                    ("team".to_owned(), "platform".to_owned()),
                    (
                        "kustomize.toolkit.fluxcd.io/name".to_owned(),
                        "infra".to_owned(),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([(
                "token".to_owned(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        };
        let secrets: Api<Secret> = Api::namespaced(self.env.mgmt.client().await, &self.namespace);
        secrets
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&secret),
            )
            .await
            .expect("source Secret")
    }

    async fn leaf_secret(&self, leaf: &str, namespace: &str, name: &str) -> Option<Secret> {
        let client = self
            .env
            .leaves
            .iter()
            .find(|l| l.name == leaf)
            .expect("leaf")
            .client()
            .await;
        Api::<Secret>::namespaced(client, namespace)
            .get_opt(name)
            .await
            .expect("read leaf Secret")
    }

    async fn status_configmap(&self, sync: &str) -> (ConfigMap, SyncStatus) {
        let configmaps: Api<ConfigMap> =
            Api::namespaced(self.env.mgmt.client().await, &self.namespace);
        let configmap = configmaps
            .get(&format!("secretsync.{sync}"))
            .await
            .expect("status ConfigMap");
        let status = serde_yaml::from_str(&configmap.data.as_ref().expect("data")["status"])
            .expect("status YAML");
        (configmap, status)
    }
}

impl World<'_> {
    /// An `Applied` Event about `kind`/`name` names the commit and the cluster, and no data.
    async fn assert_applied_event(&self, kind: &str, name: &str, commit: &str) {
        let events = self.events_about(kind, name).await;
        let applied = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("Applied"))
            .expect("an Applied Event");
        let note = applied.note.as_deref().unwrap_or_default();
        assert!(
            note.contains(&format!("main@sha1:{commit}")) && note.contains("leaf-cluster-2"),
            "{note}"
        );
        assert!(!note.contains("s3cr3t"), "{note}");
    }

    /// The Events secretsync published about `kind`/`name` in the test's namespace.
    async fn events_about(
        &self,
        kind: &str,
        name: &str,
    ) -> Vec<k8s_openapi::api::events::v1::Event> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.env.mgmt.client().await, &self.namespace);
        let list = events
            .list(&kube::api::ListParams::default())
            .await
            .expect("list Events");
        list.items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                })
            })
            .collect()
    }
}

const PRODUCTION_SYNC: &str = "\
apiVersion: capi.weave.works/v1alpha1
kind: SecretSync
metadata:
  name: registry
  namespace: {ns}
spec:
  clusterSelector:
    matchLabels:
      environment: production
  secretRef:
    name: registry-credentials
  targetNamespace: {ns}-apps
";

fn annotation<'a>(secret: &'a Secret, key: &str) -> &'a str {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map_or("", String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_secretsync_puts_the_secret_on_the_selected_leaf_and_records_the_commit() {
    let mut world = World::new().await;
    let source = world
        .put_source_secret("registry-credentials", "s3cr3t-token-1")
        .await;
    let commit = world.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
    let target_ns = format!("{}-apps", world.namespace);

    let (_, report) = world.reconcile().await;
    assert_eq!(report.applied, 1);

    // leaf-cluster-2 is the production cluster: it gets the copy, in a namespace created for it.
    let copy = world
        .leaf_secret("leaf-cluster-2", &target_ns, "registry-credentials")
        .await
        .expect("copy on leaf-cluster-2");
    assert_eq!(
        copy.data.as_ref().expect("data")["token"].0,
        b"s3cr3t-token-1"
    );
    assert_eq!(
        annotation(&copy, "secretsync.dev/revision"),
        format!("main@sha1:{commit}")
    );
    assert_eq!(
        annotation(&copy, "secretsync.dev/source"),
        format!("{}/registry", world.namespace)
    );
    assert_eq!(
        annotation(&copy, "secretsync.dev/manifest"),
        "clusters/registry.yaml"
    );
    assert_eq!(
        annotation(&copy, "secretsync.dev/source-version"),
        source.metadata.resource_version.as_deref().unwrap()
    );
    let labels = copy.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "secretsync");
    assert_eq!(labels["team"], "platform");
    assert!(
        !labels.contains_key("kustomize.toolkit.fluxcd.io/name"),
        "tooling labels are not copied"
    );
    // leaf-cluster-1 (staging) is not selected.
    assert!(
        world
            .leaf_secret("leaf-cluster-1", &target_ns, "registry-credentials")
            .await
            .is_none()
    );

    // No SecretSync object exists: status goes to the fallback ConfigMap.
    let (configmap, status) = world.status_configmap("registry").await;
    assert_eq!(
        status.versions,
        BTreeMap::from([(
            "leaf-cluster-2".to_owned(),
            copy.metadata.resource_version.clone().unwrap()
        )])
    );
    assert_eq!(
        status.clusters["leaf-cluster-2"].revision.as_deref(),
        Some(format!("main@sha1:{commit}").as_str())
    );
    assert_eq!(
        status.last_applied_revision.as_deref(),
        Some(format!("main@sha1:{commit}").as_str())
    );
    assert_eq!(status.conditions[0].status, "True");
    let rendered = serde_json::to_string(&configmap).expect("json");
    assert!(
        !rendered.contains("s3cr3t") && !rendered.contains("czNjcjN0"),
        "status holds secret data: {rendered}"
    );
    // Without a SecretSync object, the Event is about the source Secret.
    world
        .assert_applied_event("Secret", "registry-credentials", &commit)
        .await;

    // Nothing changed: nothing is written, neither to the leaf nor to the status.
    let (_, report) = world.reconcile().await;
    assert_eq!((report.applied, report.status_writes), (0, 0));
    let again = world
        .leaf_secret("leaf-cluster-2", &target_ns, "registry-credentials")
        .await
        .expect("copy");
    assert_eq!(
        again.metadata.resource_version,
        copy.metadata.resource_version
    );
    let (configmap_again, _) = world.status_configmap("registry").await;
    assert_eq!(
        configmap_again.metadata.resource_version,
        configmap.metadata.resource_version
    );

    // A commit that does not touch this SecretSync does not produce its copy again.
    world.repo.write("README.md", "docs").commit("docs only");
    let (_, report) = world.reconcile().await;
    assert_eq!(report.applied, 0);
    let unchanged = world
        .leaf_secret("leaf-cluster-2", &target_ns, "registry-credentials")
        .await
        .expect("copy");
    assert_eq!(
        annotation(&unchanged, "secretsync.dev/revision"),
        format!("main@sha1:{commit}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_source_secret_reaches_the_leaf_and_the_status() {
    let mut world = World::new()
        .await
        .with_production_sync("token-before")
        .await;
    let target_ns = format!("{}-apps", world.namespace);
    let before = world
        .leaf_secret("leaf-cluster-2", &target_ns, "registry-credentials")
        .await
        .expect("copy");

    let rotated = world
        .put_source_secret("registry-credentials", "token-after")
        .await;
    let (_, report) = world.reconcile().await;
    assert_eq!(report.applied, 1);
    let after = world
        .leaf_secret("leaf-cluster-2", &target_ns, "registry-credentials")
        .await
        .expect("copy");
    assert_eq!(
        after.data.as_ref().expect("data")["token"].0,
        b"token-after"
    );
    assert_eq!(
        annotation(&after, "secretsync.dev/source-version"),
        rotated.metadata.resource_version.as_deref().unwrap()
    );
    assert_ne!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    let (_, status) = world.status_configmap("registry").await;
    assert_eq!(
        status.versions["leaf-cluster-2"],
        after.metadata.resource_version.clone().unwrap()
    );
    assert_eq!(
        status.clusters["leaf-cluster-2"].source_version,
        rotated.metadata.resource_version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_goes_to_the_secretsync_object_when_it_exists() {
    let mut world = World::new().await;
    world
        .put_source_secret("registry-credentials", "token")
        .await;
    world.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
    // The same manifest applied to the management cluster (as Flux would).
    let gvk = kube::core::GroupVersionKind::gvk("capi.weave.works", "v1alpha1", "SecretSync");
    let syncs: Api<DynamicObject> = Api::namespaced_with(
        world.env.mgmt.client().await,
        &world.namespace,
        &kube::core::ApiResource::from_gvk_with_plural(&gvk, "secretsyncs"),
    );
    let object: serde_json::Value =
        serde_yaml::from_str(&PRODUCTION_SYNC.replace("{ns}", &world.namespace)).expect("yaml");
    syncs
        .patch(
            "registry",
            &PatchParams::apply("flux"),
            &Patch::Apply(&object),
        )
        .await
        .expect("create SecretSync");

    world.reconcile().await;
    let target_ns = format!("{}-apps", world.namespace);
    let copy = world
        .leaf_secret("leaf-cluster-2", &target_ns, "registry-credentials")
        .await
        .expect("copy");
    let stored = syncs.get_status("registry").await.expect("status");
    assert_eq!(
        stored.data["status"]["versions"],
        json!({"leaf-cluster-2": copy.metadata.resource_version.clone().unwrap()})
    );
    assert_eq!(stored.data["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(stored.data["status"]["conditions"][0]["status"], "True");
    let generation = stored.metadata.generation.expect("generation");
    assert_eq!(stored.data["status"]["observedGeneration"], generation);
    assert_eq!(
        stored.data["status"]["conditions"][0]["observedGeneration"],
        generation
    );
    // Reconciling again with nothing changed leaves the object's status alone.
    let (_, report) = world.reconcile().await;
    assert_eq!(report.status_writes, 0);
    let events = world.events_about("SecretSync", "registry").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Applied")),
        "no Applied Event on the SecretSync: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_is_not_ready_is_skipped_and_keeps_its_last_version() {
    let mut world = World::new().await;
    world
        .put_source_secret("registry-credentials", "token")
        .await;
    world.commit_sync(
        "clusters/registry.yaml",
        &PRODUCTION_SYNC.replace("environment: production", "region: us-east"),
    );
    world.reconcile().await;
    let (_, first) = world.status_configmap("registry").await;

    let clusters: Api<DynamicObject> = Api::namespaced_with(
        world.env.mgmt.client().await,
        &world.namespace,
        &crate::testenv::fleet::gitops_cluster_resource(),
    );
    set_cluster_conditions(&clusters, "leaf-cluster-2", &[("Ready", false)]).await;
    let commit = world.commit_sync(
        "clusters/registry.yaml",
        &format!("{PRODUCTION_SYNC}# touched\n")
            .replace("environment: production", "region: us-east"),
    );
    let (_, report) = world.reconcile().await;
    assert_eq!(report.applied, 0);
    let (_, status) = world.status_configmap("registry").await;
    assert_eq!(
        status.versions, first.versions,
        "the leaf still holds its last copy"
    );
    assert_eq!(status.clusters["leaf-cluster-2"].result, "NotReady");
    assert_eq!(
        status.last_attempted_revision.as_deref(),
        Some(format!("main@sha1:{commit}").as_str())
    );
    assert_eq!(status.last_applied_revision, first.last_applied_revision);
    assert_eq!(status.conditions[0].status, "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_secret_secretsync_did_not_create_is_left_alone_unless_adopted() {
    let mut world = World::new().await;
    world
        .put_source_secret("registry-credentials", "ours")
        .await;
    let target_ns = format!("{}-apps", world.namespace);
    // Someone else's Secret of the same name on the production leaf.
    let leaf = world
        .env
        .leaves
        .iter()
        .find(|l| l.name == "leaf-cluster-2")
        .expect("leaf")
        .client()
        .await;
    crate::testenv::fleet::ensure_namespace(&leaf, &target_ns).await;
    let theirs = Secret {
        metadata: ObjectMeta {
            name: Some("registry-credentials".to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "token".to_owned(),
            ByteString(b"theirs".to_vec()),
        )])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(leaf, &target_ns)
        .patch(
            "registry-credentials",
            &PatchParams::apply("someone"),
            &Patch::Apply(&theirs),
        )
        .await
        .expect("foreign Secret");

    world.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
    world.reconcile().await;
    let copy = world
        .leaf_secret("leaf-cluster-2", &target_ns, "registry-credentials")
        .await
        .expect("secret");
    assert_eq!(
        copy.data.as_ref().expect("data")["token"].0,
        b"theirs",
        "a foreign Secret was overwritten"
    );
    let (_, status) = world.status_configmap("registry").await;
    assert_eq!(status.clusters["leaf-cluster-2"].result, "NotOwned");
    assert_eq!(
        status.conditions[2].status, "True",
        "needs a person: Stalled"
    );

    let adopting = PRODUCTION_SYNC.replace(
        "  namespace: {ns}\n",
        "  namespace: {ns}\n  annotations:\n    secretsync.dev/adopt: \"true\"\n",
    );
    world.commit_sync("clusters/registry.yaml", &adopting);
    world.reconcile().await;
    let copy = world
        .leaf_secret("leaf-cluster-2", &target_ns, "registry-credentials")
        .await
        .expect("secret");
    assert_eq!(copy.data.as_ref().expect("data")["token"].0, b"ours");
    assert_eq!(
        copy.metadata.labels.as_ref().expect("labels")["app.kubernetes.io/managed-by"],
        "secretsync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_secret_is_reported_and_the_others_go_on() {
    let mut world = World::new().await;
    world
        .put_source_secret("registry-credentials", "token")
        .await;
    world.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
    world.commit_sync(
        "clusters/missing.yaml",
        &PRODUCTION_SYNC
            .replace("name: registry\n", "name: missing\n")
            .replace("registry-credentials", "does-not-exist"),
    );
    let (_, report) = world.reconcile().await;
    assert_eq!(report.applied, 1);
    let (_, missing) = world.status_configmap("missing").await;
    assert_eq!(
        missing.clusters["leaf-cluster-2"].result,
        "SourceSecretMissing"
    );
    assert_eq!(missing.conditions[2].reason, "SourceSecretMissing");
    let (_, registry) = world.status_configmap("registry").await;
    assert_eq!(registry.conditions[0].status, "True");
}

impl World<'_> {
    fn target_namespace(&self) -> String {
        format!("{}-apps", self.namespace)
    }

    async fn production_copy(&self) -> Option<Secret> {
        self.leaf_secret(
            "leaf-cluster-2",
            &self.target_namespace(),
            "registry-credentials",
        )
        .await
    }

    async fn gitops_clusters(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.env.mgmt.client().await,
            &self.namespace,
            &crate::testenv::fleet::gitops_cluster_resource(),
        )
    }
}

const OTHER_SYNC: &str = "\
apiVersion: capi.weave.works/v1alpha1
kind: SecretSync
metadata:
  name: other
  namespace: {ns}
spec:
  clusterSelector:
    matchLabels:
      environment: staging
  secretRef:
    name: registry-credentials
  targetNamespace: {ns}-other
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secretsync_removed_from_git_prunes_its_copies_unless_it_orphans_them() {
    let mut world = World::new().await;
    world
        .put_source_secret("registry-credentials", "token")
        .await;
    world.commit_sync("clusters/other.yaml", OTHER_SYNC);
    world.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
    world.reconcile().await;
    assert!(world.production_copy().await.is_some());

    world
        .repo
        .remove("clusters/registry.yaml")
        .commit("remove the registry sync");
    let (_, report) = world.reconcile().await;
    assert_eq!(report.pruned, 1);
    assert!(
        world.production_copy().await.is_none(),
        "the copy outlived its SecretSync"
    );
    assert!(
        world
            .leaf_secret(
                "leaf-cluster-1",
                &format!("{}-other", world.namespace),
                "registry-credentials"
            )
            .await
            .is_some(),
        "another SecretSync's copy was pruned"
    );

    let orphaning = PRODUCTION_SYNC.replace(
        "  namespace: {ns}\n",
        "  namespace: {ns}\n  annotations:\n    secretsync.dev/deletion-policy: Orphan\n",
    );
    world.commit_sync("clusters/registry.yaml", &orphaning);
    world.reconcile().await;
    world
        .repo
        .remove("clusters/registry.yaml")
        .commit("remove it again");
    let (_, report) = world.reconcile().await;
    assert_eq!(report.pruned, 0);
    assert!(
        world.production_copy().await.is_some(),
        "Orphan must keep the copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_starts_or_stops_matching_gains_or_loses_the_copy() {
    let mut world = World::new().await.with_production_sync("token").await;
    let target = world.target_namespace();
    assert!(
        world
            .leaf_secret("leaf-cluster-1", &target, "registry-credentials")
            .await
            .is_none()
    );

    let clusters = world.gitops_clusters().await;
    let relabel =
        |environment: &'static str| json!({"metadata": {"labels": {"environment": environment}}});
    clusters
        .patch(
            "leaf-cluster-1",
            &PatchParams::default(),
            &Patch::Merge(relabel("production")),
        )
        .await
        .expect("label");
    clusters
        .patch(
            "leaf-cluster-2",
            &PatchParams::default(),
            &Patch::Merge(relabel("retired")),
        )
        .await
        .expect("label");
    let (_, report) = world.reconcile().await;
    assert_eq!((report.applied, report.pruned), (1, 1));
    assert!(
        world
            .leaf_secret("leaf-cluster-1", &target, "registry-credentials")
            .await
            .is_some(),
        "newly matching cluster"
    );
    assert!(
        world.production_copy().await.is_none(),
        "de-labelled cluster kept the copy"
    );
    let (_, status) = world.status_configmap("registry").await;
    assert_eq!(
        status.versions.keys().collect::<Vec<_>>(),
        ["leaf-cluster-1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_without_any_secretsync_prunes_nothing() {
    let mut world = World::new().await.with_production_sync("token").await;

    world
        .repo
        .remove("clusters/registry.yaml")
        .write("README.md", "emptied by mistake")
        .commit("oops");
    let (_, report) = world.reconcile_with_problems().await;
    assert_eq!(report.pruned, 0);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("holds no SecretSync")),
        "{:?}",
        report.problems
    );
    assert!(
        world.production_copy().await.is_some(),
        "an empty revision wiped the fleet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_manifest_keeps_the_last_good_copy() {
    let mut world = World::new().await;
    world
        .put_source_secret("registry-credentials", "token")
        .await;
    world.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
    world.commit_sync("clusters/other.yaml", OTHER_SYNC);
    world.reconcile().await;

    // The registry SecretSync becomes invalid: its copy must stay, the other goes on.
    world.commit_sync(
        "clusters/registry.yaml",
        &PRODUCTION_SYNC
            .replace("operator", "x")
            .replace("environment: production", "environment: 'not valid!'"),
    );
    let set = world.parse_head();
    assert!(set.has_errors());
    let report = world.reconciler.reconcile(&set).await;
    assert_eq!(report.pruned, 0, "{:?}", report.problems);
    assert!(
        world.production_copy().await.is_some(),
        "a bad commit destroyed the last good copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_on_a_leaf_is_repaired_and_a_deleted_source_prunes() {
    let mut world = World::new()
        .await
        .with_production_sync("the-real-token")
        .await;
    let target = world.target_namespace();
    let leaf = world
        .env
        .leaves
        .iter()
        .find(|l| l.name == "leaf-cluster-2")
        .expect("leaf")
        .client()
        .await;
    let leaf_secrets: Api<Secret> = Api::namespaced(leaf, &target);

    // Someone edits the copy by hand: put back.
    let edit = json!({"data": {"token": "dGFtcGVyZWQ="}});
    leaf_secrets
        .patch(
            "registry-credentials",
            &PatchParams::default(),
            &Patch::Merge(edit),
        )
        .await
        .expect("edit");
    let (_, report) = world.reconcile().await;
    assert_eq!(report.applied, 1);
    let repaired = world.production_copy().await.expect("copy");
    assert_eq!(
        repaired.data.as_ref().expect("data")["token"].0,
        b"the-real-token"
    );

    // Someone deletes it: recreated.
    leaf_secrets
        .delete("registry-credentials", &kube::api::DeleteParams::default())
        .await
        .expect("delete");
    world.reconcile().await;
    assert!(world.production_copy().await.is_some());

    // The source Secret is deleted in the management cluster: the copies go too.
    let secrets: Api<Secret> = Api::namespaced(world.env.mgmt.client().await, &world.namespace);
    secrets
        .delete("registry-credentials", &kube::api::DeleteParams::default())
        .await
        .expect("delete source");
    let (_, report) = world.reconcile().await;
    assert_eq!(report.pruned, 1);
    assert!(world.production_copy().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_kubeconfig_affects_only_its_cluster() {
    let mut world = World::new().await;
    world
        .put_source_secret("registry-credentials", "token")
        .await;
    // Both leaves selected; leaf-cluster-1's kubeconfig is garbage.
    let everywhere = PRODUCTION_SYNC.replace(
        "environment: production",
        "app.kubernetes.io/part-of: fleet",
    );
    let clusters = world.gitops_clusters().await;
    for leaf in ["leaf-cluster-1", "leaf-cluster-2"] {
        let label = json!({"metadata": {"labels": {"app.kubernetes.io/part-of": "fleet"}}});
        clusters
            .patch(leaf, &PatchParams::default(), &Patch::Merge(label))
            .await
            .expect("label");
    }
    let secrets: Api<Secret> = Api::namespaced(world.env.mgmt.client().await, &world.namespace);
    let garbage = json!({"data": {"value": "bm90IGEga3ViZWNvbmZpZw=="}});
    secrets
        .patch(
            "leaf-cluster-1-kubeconfig",
            &PatchParams::default(),
            &Patch::Merge(garbage),
        )
        .await
        .expect("break kubeconfig");
    world.commit_sync("clusters/registry.yaml", &everywhere);

    let (_, report) = world.reconcile().await;
    assert_eq!(report.applied, 1);
    assert!(
        world.production_copy().await.is_some(),
        "the healthy cluster was held back"
    );
    let (_, status) = world.status_configmap("registry").await;
    assert_eq!(status.clusters["leaf-cluster-1"].result, "NotReady");
    assert!(
        status.clusters["leaf-cluster-1"]
            .message
            .contains("kubeconfig"),
        "{:?}",
        status.clusters["leaf-cluster-1"]
    );
    assert_eq!(status.clusters["leaf-cluster-2"].result, "Synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_reconcile_sends_no_write_request() {
    // A private environment: no other test writes there, so the apiservers' own request
    // counters tell exactly what secretsync sent.
    let env = TestEnv::start();
    let mut world = World::in_env(&env).await;
    world
        .put_source_secret("registry-credentials", "token")
        .await;
    world.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
    world.commit_sync("clusters/other.yaml", OTHER_SYNC);
    let (_, first) = world.reconcile().await;
    assert_eq!(first.applied, 2);

    let resources = ["secrets", "configmaps", "namespaces", "secretsyncs"];
    let clusters = std::iter::once(&env.mgmt).chain(&env.leaves);
    let before: Vec<u64> =
        futures::future::join_all(clusters.clone().map(|c| c.write_requests(&resources))).await;
    let (_, report) = world.reconcile().await;
    let after: Vec<u64> =
        futures::future::join_all(clusters.map(|c| c.write_requests(&resources))).await;
    assert_eq!(
        (report.applied, report.pruned, report.status_writes),
        (0, 0, 0)
    );
    assert_eq!(
        after, before,
        "write requests (mgmt, leaf-1, leaf-2) during a no-op reconcile"
    );
    assert!(
        before.iter().all(|&count| count > 0),
        "the counters did not see the first reconcile: {before:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_that_goes_down_delays_only_itself_and_catches_up_when_back() {
    let env = TestEnv::start();
    let mut world = World::in_env(&env).await;
    world
        .put_source_secret("registry-credentials", "token-1")
        .await;
    world.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
    world.commit_sync("clusters/other.yaml", OTHER_SYNC);
    world.reconcile().await;

    env.stop_leaf("leaf-cluster-2").await;
    world
        .put_source_secret("registry-credentials", "token-2")
        .await;
    let started = std::time::Instant::now();
    let (_, report) = world.reconcile_with_problems().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "a dead leaf stalled the reconcile: {:?}",
        started.elapsed()
    );
    assert_eq!(
        report.applied, 1,
        "the live leaf must still get the rotated Secret: {:?}",
        report.results
    );
    let other = world
        .leaf_secret(
            "leaf-cluster-1",
            &format!("{}-other", world.namespace),
            "registry-credentials",
        )
        .await
        .expect("copy");
    assert_eq!(other.data.as_ref().expect("data")["token"].0, b"token-2");
    let (_, status) = world.status_configmap("registry").await;
    assert_ne!(status.clusters["leaf-cluster-2"].result, "Synced");
    assert!(
        status.versions.contains_key("leaf-cluster-2"),
        "the last known version is kept while the leaf is down"
    );

    env.restart_leaf("leaf-cluster-2").await;
    let (_, report) = world.reconcile().await;
    assert_eq!(report.applied, 1);
    let copy = world.production_copy().await.expect("copy");
    assert_eq!(copy.data.as_ref().expect("data")["token"].0, b"token-2");
    let (_, status) = world.status_configmap("registry").await;
    assert_eq!(status.clusters["leaf-cluster-2"].result, "Synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_secret_is_replaced_when_its_source_changes() {
    let mut world = World::new().await;
    let secrets: Api<Secret> = Api::namespaced(world.env.mgmt.client().await, &world.namespace);
    let immutable = |value: &str| Secret {
        metadata: ObjectMeta {
            name: Some("registry-credentials".to_owned()),
            ..ObjectMeta::default()
        },
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            "token".to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    secrets
        .create(&kube::api::PostParams::default(), &immutable("first"))
        .await
        .expect("source");
    world.commit_sync("clusters/registry.yaml", PRODUCTION_SYNC);
    world.reconcile().await;
    let first = world.production_copy().await.expect("copy");
    assert_eq!(first.immutable, Some(true));

    // An immutable source is rotated by replacing it; the leaf copy must follow.
    secrets
        .delete("registry-credentials", &kube::api::DeleteParams::default())
        .await
        .expect("delete source");
    secrets
        .create(&kube::api::PostParams::default(), &immutable("second"))
        .await
        .expect("new source");
    let (_, report) = world.reconcile().await;
    assert_eq!(report.applied, 1);
    let second = world.production_copy().await.expect("copy");
    assert_eq!(second.data.as_ref().expect("data")["token"].0, b"second");
    assert_ne!(
        second.metadata.uid, first.metadata.uid,
        "the immutable copy was replaced, not edited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sources_in_a_namespace_are_listed_and_a_rotated_one_is_read_again() {
    // A private environment: the management apiserver's counters are this test's alone.
    let env = TestEnv::start();
    let mut world = World::in_env(&env).await;
    // Enough SecretSyncs in one namespace that their sources are listed, not read one by one.
    let count = 20;
    for n in 0..count {
        world
            .put_source_secret(&format!("source-{n}"), &format!("many-token-{n}-a"))
            .await;
        let sync = PRODUCTION_SYNC
            .replace("name: registry\n", &format!("name: sync-{n}\n"))
            .replace("name: registry-credentials", &format!("name: source-{n}"));
        world.commit_sync(&format!("clusters/sync-{n}.yaml"), &sync);
    }
    let (_, first) = world.reconcile().await;
    assert_eq!(first.applied, count);

    // Nothing changed: the sources are listed (metadata), none is read whole; the copies on
    // the leaf are listed with their namespace, none is read one by one.
    let secret_gets = async || env.mgmt.requests(&["GET"], &["secrets"]).await;
    let leaf_gets = async || {
        let leaf = env.leaf("leaf-cluster-2");
        leaf.requests(&["GET"], &["secrets"]).await
    };
    let (before, leaf_before) = (secret_gets().await, leaf_gets().await);
    let (_, noop) = world.reconcile().await;
    assert_eq!(noop.applied, 0);
    // The kubeconfig Secrets of the two leaves are read each time; no source Secret is.
    assert_eq!(
        secret_gets().await - before,
        2,
        "GETs of Secrets in a no-op"
    );
    assert_eq!(
        leaf_gets().await,
        leaf_before,
        "GETs of leaf copies in a no-op"
    );

    // One source rotated: its new data reaches the leaf, the others are untouched.
    world.put_source_secret("source-7", "many-token-7-b").await;
    let (_, rotated) = world.reconcile().await;
    assert_eq!(rotated.applied, 1);
    let copy = world
        .leaf_secret("leaf-cluster-2", &world.target_namespace(), "source-7")
        .await
        .expect("copy of source-7");
    assert_eq!(copy.data.expect("data")["token"].0, b"many-token-7-b");

    // One source deleted: its copy is pruned. The reconcile is scoped to its SecretSync, as
    // the agent's Secret watch scopes it: only that SecretSync's copies are listed for prune.
    Api::<Secret>::namespaced(env.mgmt.client().await, &world.namespace)
        .delete("source-3", &kube::api::DeleteParams::default())
        .await
        .expect("delete source-3");
    let set = world.parse_head();
    let scope = Scope {
        syncs: Some(std::collections::BTreeSet::from([SecretSyncKey {
            namespace: world.namespace.clone(),
            name: "sync-3".to_owned(),
        }])),
        ..Scope::default()
    };
    let deleted = world.reconciler.reconcile_scoped(&set, &scope).await;
    assert!(deleted.problems.is_empty(), "{:?}", deleted.problems);
    assert_eq!(deleted.pruned, 1, "{:?}", deleted.prunes);
    assert!(
        world
            .leaf_secret("leaf-cluster-2", &world.target_namespace(), "source-3")
            .await
            .is_none()
    );
}
