//! Fleet scale: M SecretSyncs × N GitopsClusters on the real test environment (etcd, a
//! management kube-apiserver, two leaf kube-apiservers), through five scenarios — cold
//! converge, no-op reconcile, one source Secret rotated, one manifest changed, one new
//! cluster — each with wall time, requests the apiservers served, peak RSS and CPU seconds
//! of this process. In the same run, a bare loop server-side-applies the same leaf Secrets
//! with the same concurrency and no logic: the limit secretsync is compared with.
//!
//! Run: `cargo bench --bench fleet` (figures and the cluster mapping in bench/RESULTS.md).
//! Scales: `FLEET_SCALES=100x10,1000x10` (M x N, comma-separated); leaf apiservers:
//! `FLEET_LEAVES=8`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams};
use secretsync::cluster::ClientCache;
use secretsync::manifest::{ManifestSet, Parser, SecretSyncKey};
use secretsync::source::{LocalSource, Selection};
use secretsync::sync::desired::leaf_secret;
use secretsync::sync::reconcile::CLUSTER_CONCURRENCY;
use secretsync::sync::{ReconcileOptions, ReconcileReport, Reconciler, Scope};
use secretsync::testenv::TestEnv;
use secretsync::testenv::fleet::{
    ensure_namespace, gitops_cluster_resource, set_cluster_conditions,
};
use secretsync::testenv::kube::KubeCluster;
use secretsync::testenv::procfs::{Proc, reset_peak_rss};
use serde_json::json;

const DEFAULT_SCALES: &str = "10x2,100x2,10x10,100x10";
/// Leaf kube-apiservers (the issue allows up to 8): the more there are, the fewer group
/// namespaces a scale needs, and the closer it is to M SecretSyncs over N clusters.
const DEFAULT_LEAVES: usize = 8;
const SETUP_MANAGER: &str = "fleet-bench-setup";
const BARE_MANAGER: &str = "bench-bare";
const SYNCS_PER_FILE: usize = 10;
/// Management-cluster writes in flight while setting up (not measured).
const SETUP_CONCURRENCY: usize = 16;

fn main() {
    // `RUST_LOG=secretsync=debug` shows what the reconciles do, with timestamps.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let scales = parse_scales(&std::env::var("FLEET_SCALES").unwrap_or(DEFAULT_SCALES.into()));
    let leaves: usize = std::env::var("FLEET_LEAVES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_LEAVES);
    let env =
        TestEnv::start_with_leaves((1..=leaves).map(|n| format!("leaf-cluster-{n}")).collect());
    // The agent runs on a current-thread runtime (src/cli/mod.rs); so does the bench.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "leaf apiservers: {}; cluster concurrency {CLUSTER_CONCURRENCY}",
        env.leaves.len()
    );
    for (index, (syncs, clusters)) in scales.into_iter().enumerate() {
        let fleet = Fleet::new(&env, index, syncs, clusters);
        let figures = runtime.block_on(fleet.run());
        println!("{}", table(&fleet, &figures));
    }
}

fn parse_scales(text: &str) -> Vec<(usize, usize)> {
    text.split(',')
        .map(|scale| {
            let (m, n) = scale
                .trim()
                .split_once('x')
                .unwrap_or_else(|| panic!("scale {scale:?} is not MxN"));
            (
                m.parse().expect("M is a number"),
                n.parse().expect("N is a number"),
            )
        })
        .collect()
}

/// One scale's world. Cluster k (0-based) takes slot k+1; slot s belongs to management
/// namespace `group(s) = s / L` and leaf apiserver `s % L` (L leaves). Slot 0 is kept free
/// for the "new cluster" scenario. Each group namespace holds the same M SecretSyncs (each
/// selecting every cluster of its namespace, copying into the leaf namespace of the same
/// name), so every cluster receives M copies and no two (SecretSync, cluster) pairs write
/// the same leaf object: M × N leaf Secrets in all.
struct Fleet<'a> {
    env: &'a TestEnv,
    prefix: String,
    syncs: usize,
    clusters: usize,
    manifests: tempfile::TempDir,
}

struct Slot {
    group: usize,
    leaf: usize,
}

impl<'a> Fleet<'a> {
    fn new(env: &'a TestEnv, index: usize, syncs: usize, clusters: usize) -> Self {
        Fleet {
            env,
            prefix: format!("fleet{index}"),
            syncs,
            clusters,
            manifests: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn leaves(&self) -> usize {
        self.env.leaves.len()
    }

    fn groups(&self) -> usize {
        (self.clusters + 1).div_ceil(self.leaves())
    }

    fn namespace(&self, group: usize) -> String {
        format!("{}-g{group}", self.prefix)
    }

    fn namespaces(&self) -> Vec<String> {
        (0..self.groups()).map(|g| self.namespace(g)).collect()
    }

    fn slot(&self, slot: usize) -> Slot {
        Slot {
            group: slot / self.leaves(),
            leaf: slot % self.leaves(),
        }
    }

    /// Slots of the clusters registered at the start.
    fn cluster_slots(&self) -> impl Iterator<Item = usize> + use<> {
        1..=self.clusters
    }

    async fn mgmt(&self) -> kube::Client {
        self.env.mgmt.client().await
    }
}

/// One scenario's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    wall: Duration,
    cpu: Duration,
    peak_rss_mib: u64,
    reads: u64,
    writes: u64,
    applied: usize,
}

/// The resources secretsync reads and writes (leader-election Leases and the apiservers'
/// own heartbeats are left out).
const RESOURCES: &[&str] = &[
    "secrets",
    "configmaps",
    "namespaces",
    "secretsyncs",
    "gitopsclusters",
    "events",
];

/// Requests the management and leaf apiservers have served so far, (reads, writes), from
/// their own `apiserver_request_total`: reads are GET and LIST (no WATCH: nothing here
/// watches), writes are POST, PUT, PATCH, APPLY and DELETE.
async fn served(env: &TestEnv) -> (u64, u64) {
    let mut total = (0, 0);
    for cluster in std::iter::once(&env.mgmt).chain(&env.leaves) {
        total.0 += cluster.read_requests(RESOURCES).await;
        total.1 += cluster.write_requests(RESOURCES).await;
    }
    total
}

/// Runs `work` and measures it.
async fn measure<F>(env: &TestEnv, work: F) -> Figures
where
    F: std::future::Future<Output = usize>,
{
    let before = served(env).await;
    reset_peak_rss();
    let cpu = Proc::Current.cpu_time();
    let started = Instant::now();
    let applied = work.await;
    let wall = started.elapsed();
    let cpu = Proc::Current.cpu_time().saturating_sub(cpu);
    let peak_rss_mib = Proc::Current.memory_kib().1 / 1024;
    let after = served(env).await;
    Figures {
        wall,
        cpu,
        peak_rss_mib,
        reads: after.0 - before.0,
        writes: after.1 - before.1,
        applied,
    }
}

/// The source Secret of SecretSync `j` (the same data in every group).
fn source_secret(name: &str, round: usize) -> Secret {
    let data = (0..3)
        .map(|key| {
            (
                format!("key-{key}"),
                ByteString(format!("{name}-{key}-{round}-{}", "x".repeat(48)).into_bytes()),
            )
        })
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([("team".to_owned(), "bench".to_owned())])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    }
}

fn sync_yaml(namespace: &str, index: usize, source: &str) -> String {
    format!(
        "apiVersion: capi.weave.works/v1alpha1\nkind: SecretSync\nmetadata:\n  name: sync-{index}\n  namespace: {namespace}\nspec:\n  clusterSelector:\n    matchLabels:\n      fleet: bench\n  secretRef:\n    name: {source}\n---\n"
    )
}

impl Fleet<'_> {
    /// Writes the manifest files: `g<group>/syncs-<chunk>.yaml`, 10 SecretSyncs a file.
    /// SecretSync 0 points at `src-0`, or at `src-0-next` once `changed`.
    fn write_manifests(&self, changed: bool) {
        for group in 0..self.groups() {
            let namespace = self.namespace(group);
            let dir = self.manifests.path().join(format!("g{group}"));
            std::fs::create_dir_all(&dir).expect("manifest dir");
            for chunk in 0..self.syncs.div_ceil(SYNCS_PER_FILE) {
                let mut text = String::new();
                for j in chunk * SYNCS_PER_FILE..((chunk + 1) * SYNCS_PER_FILE).min(self.syncs) {
                    let source = if j == 0 && changed {
                        "src-0-next".to_owned()
                    } else {
                        format!("src-{j}")
                    };
                    text.push_str(&sync_yaml(&namespace, j, &source));
                }
                let path = dir.join(format!("syncs-{chunk}.yaml"));
                if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                    std::fs::write(&path, text).expect("write manifest");
                }
            }
        }
    }

    fn parse(&self, parser: &mut Parser) -> ManifestSet {
        let snapshot = LocalSource::new(self.manifests.path(), Selection::default())
            .read()
            .expect("read manifests");
        let set = parser.parse(&snapshot);
        assert_eq!(
            set.syncs.len(),
            self.syncs * self.groups(),
            "{:?}",
            set.diagnostics.first()
        );
        set
    }

    /// The management cluster's side: per group namespace the M source Secrets (and
    /// `src-0-next`); per cluster a kubeconfig Secret and a Ready GitopsCluster.
    async fn set_up(&self) {
        let client = self.mgmt().await;
        for namespace in self.namespaces() {
            ensure_namespace(&client, &namespace).await;
        }
        let mut names: Vec<String> = (0..self.syncs).map(|j| format!("src-{j}")).collect();
        names.push("src-0-next".to_owned());
        let writes = self.namespaces().into_iter().flat_map(|namespace| {
            let client = client.clone();
            names.clone().into_iter().map(move |name| {
                let client = client.clone();
                let namespace = namespace.clone();
                async move { apply_source(&client, &namespace, &name, 0).await }
            })
        });
        futures::stream::iter(writes)
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
        for slot in self.cluster_slots() {
            self.register(slot).await;
        }
    }

    /// Registers the cluster of `slot`: its own client certificate (so that the agent keeps
    /// one client per cluster, as in a real fleet) for the slot's leaf apiserver.
    async fn register(&self, slot: usize) {
        let Slot { group, leaf } = self.slot(slot);
        let namespace = self.namespace(group);
        let name = format!("c{slot}");
        let leaf = &self.env.leaves[leaf];
        let cert = self.env.pki.client(
            &format!("{}-{namespace}-{name}", leaf.name),
            Some("system:masters"),
        );
        let kubeconfig = leaf.kubeconfig_for(&cert);
        let client = self.mgmt().await;
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{name}-kubeconfig"), "namespace": namespace},
            "stringData": {"value": kubeconfig},
        });
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .patch(
                &format!("{name}-kubeconfig"),
                &PatchParams::apply(SETUP_MANAGER),
                &Patch::Apply(&secret),
            )
            .await
            .expect("create kubeconfig Secret");
        let clusters: Api<DynamicObject> =
            Api::namespaced_with(client, &namespace, &gitops_cluster_resource());
        let cluster = json!({
            "apiVersion": "gitops.weave.works/v1alpha1", "kind": "GitopsCluster",
            "metadata": {"name": name, "namespace": namespace, "labels": {"fleet": "bench"}},
            "spec": {"secretRef": {"name": format!("{name}-kubeconfig")}},
        });
        clusters
            .patch(
                &name,
                &PatchParams::apply(SETUP_MANAGER),
                &Patch::Apply(&cluster),
            )
            .await
            .expect("create GitopsCluster");
        set_cluster_conditions(&clusters, &name, &[("Ready", true)]).await;
    }
}

async fn apply_source(client: &kube::Client, namespace: &str, name: &str, round: usize) {
    let mut secret = source_secret(name, round);
    secret.metadata.namespace = Some(namespace.to_owned());
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(SETUP_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap_or_else(|e| panic!("apply source Secret {namespace}/{name}: {e}"));
}

/// The figures of one scale, in the order of `SCENARIOS`.
struct ScaleFigures {
    scenarios: Vec<(&'static str, Figures)>,
    bare_cold: Figures,
    bare_again: Figures,
}

impl Fleet<'_> {
    async fn run(&self) -> ScaleFigures {
        let setup = Instant::now();
        self.set_up().await;
        self.write_manifests(false);
        let mut parser = Parser::new(&self.namespace(0));
        let set = self.parse(&mut parser);
        eprintln!(
            "fleet {}x{}: set up in {:.1?} ({} groups)",
            self.syncs,
            self.clusters,
            setup.elapsed(),
            self.groups()
        );
        let reconciler = Reconciler::new(self.mgmt().await, ClientCache::default()).with_options(
            ReconcileOptions {
                namespaces: Some(self.namespaces()),
                ..ReconcileOptions::default()
            },
        );
        let pairs = self.syncs * self.clusters;
        let mut scenarios = Vec::new();

        let cold = measure(self.env, async {
            expect(&reconciler.reconcile(&set).await, pairs, pairs)
        })
        .await;
        scenarios.push(("cold converge", cold));
        let noop = measure(self.env, async {
            expect(&reconciler.reconcile(&set).await, pairs, 0)
        })
        .await;
        scenarios.push(("no-op reconcile", noop));
        scenarios.push((
            "source Secret rotated",
            self.rotate(&reconciler, &set).await,
        ));
        let (changed, set) = self.change_manifest(&reconciler, &mut parser).await;
        scenarios.push(("manifest changed", changed));
        scenarios.push(("new cluster", self.add_cluster(&reconciler, &set).await));

        let bare_cold = measure(self.env, self.bare_apply(&set)).await;
        let bare_again = measure(self.env, self.bare_apply(&set)).await;
        ScaleFigures {
            scenarios,
            bare_cold,
            bare_again,
        }
    }

    /// `src-0` rotated in every group (the one logical source Secret behind N copies); the
    /// reconcile is scoped to the SecretSyncs that read it, as the agent's watch scopes it.
    async fn rotate(&self, reconciler: &Reconciler, set: &ManifestSet) -> Figures {
        let client = self.mgmt().await;
        for namespace in self.namespaces() {
            apply_source(&client, &namespace, "src-0", 1).await;
        }
        let scope = Scope {
            syncs: Some(
                self.namespaces()
                    .into_iter()
                    .map(|namespace| SecretSyncKey {
                        namespace,
                        name: "sync-0".to_owned(),
                    })
                    .collect::<BTreeSet<_>>(),
            ),
            ..Scope::default()
        };
        measure(self.env, async {
            expect(
                &reconciler.reconcile_scoped(set, &scope).await,
                self.clusters,
                self.clusters,
            )
        })
        .await
    }

    /// SecretSync `sync-0` (in every group) now points at `src-0-next`: its N old copies are
    /// pruned and N new ones written. Reading and parsing the directory is measured too.
    async fn change_manifest(
        &self,
        reconciler: &Reconciler,
        parser: &mut Parser,
    ) -> (Figures, ManifestSet) {
        self.write_manifests(true);
        let mut changed = None;
        let figures = measure(self.env, async {
            let set = self.parse(parser);
            let report = reconciler.reconcile(&set).await;
            assert_eq!(report.pruned, self.clusters, "{:?}", report.problems);
            changed = Some(set);
            expect(&report, self.syncs * self.clusters, self.clusters)
        })
        .await;
        (figures, changed.expect("parsed"))
    }

    /// A cluster registered in the free slot 0: every SecretSync of its group matches it.
    async fn add_cluster(&self, reconciler: &Reconciler, set: &ManifestSet) -> Figures {
        self.register(0).await;
        measure(self.env, async {
            expect(
                &reconciler.reconcile(set).await,
                self.syncs * (self.clusters + 1),
                self.syncs,
            )
        })
        .await
    }
}

/// Checks a report (every pair synced, `applied` written) and returns what it applied.
fn expect(report: &ReconcileReport, pairs: usize, applied: usize) -> usize {
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.pairs(), pairs, "pairs");
    assert_eq!(report.synced(), pairs, "synced");
    assert_eq!(report.applied, applied, "applied");
    report.applied
}

impl Fleet<'_> {
    /// The limit: the same leaf Secrets (as secretsync builds them) server-side applied
    /// with no reads and no logic, into namespace `bare-<group namespace>` of each cluster's
    /// leaf, `CLUSTER_CONCURRENCY` clusters at a time and one after another within a
    /// cluster, as secretsync's apply does. Each cluster first applies its namespace.
    async fn bare_apply(&self, set: &ManifestSet) -> usize {
        let mut work = Vec::new();
        for slot in self.cluster_slots() {
            let Slot { group, leaf } = self.slot(slot);
            let group_namespace = self.namespace(group);
            let target = format!("bare-{group_namespace}");
            let secrets: Vec<Secret> = set
                .syncs
                .iter()
                .filter(|sync| sync.key.namespace == group_namespace)
                .map(|sync| {
                    let mut source = source_secret(&sync.spec.secret_ref.name, 0);
                    source.metadata.resource_version = Some("1".to_owned());
                    let mut secret = leaf_secret(sync, &source, &set.revision);
                    secret.metadata.namespace = Some(target.clone());
                    secret
                })
                .collect();
            work.push((&self.env.leaves[leaf], target, secrets));
        }
        futures::stream::iter(work)
            .map(|(leaf, namespace, secrets)| async move {
                bare_cluster(leaf, &namespace, &secrets).await
            })
            .buffer_unordered(CLUSTER_CONCURRENCY)
            .fold(0, |total, n| async move { total + n })
            .await
    }
}

async fn bare_cluster(leaf: &KubeCluster, namespace: &str, secrets: &[Secret]) -> usize {
    // A client of its own per cluster, as secretsync has.
    let client = leaf.client().await;
    ensure_namespace(&client, namespace).await;
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let params = PatchParams::apply(BARE_MANAGER).force();
    for secret in secrets {
        let name = secret.metadata.name.as_deref().expect("name");
        api.patch(name, &params, &Patch::Apply(secret))
            .await
            .unwrap_or_else(|e| panic!("bare apply {namespace}/{name}: {e}"));
    }
    secrets.len()
}

fn table(fleet: &Fleet<'_>, figures: &ScaleFigures) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### M = {} x N = {}: {} leaf Secrets ({} SecretSyncs in {} group namespace(s), each selecting the <= {} clusters of its group; {} leaf apiservers)\n",
        fleet.syncs,
        fleet.clusters,
        fleet.syncs * fleet.clusters,
        fleet.syncs * fleet.groups(),
        fleet.groups(),
        fleet.leaves(),
        fleet.leaves()
    );
    let _ = writeln!(
        out,
        "| scenario | wall | vs bare | leaf Secrets written | writes | reads | CPU | peak RSS |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    let row = |out: &mut String, name: &str, f: &Figures, ratio: &str| {
        let _ = writeln!(
            out,
            "| {name} | {:.2} s | {ratio} | {} | {} | {} | {:.2} s | {} MiB |",
            f.wall.as_secs_f64(),
            f.applied,
            f.writes,
            f.reads,
            f.cpu.as_secs_f64(),
            f.peak_rss_mib
        );
    };
    let bare_cold = figures.bare_cold.wall.as_secs_f64();
    for (name, f) in &figures.scenarios {
        let ratio = if *name == "cold converge" {
            format!("{:.2}x", f.wall.as_secs_f64() / bare_cold)
        } else {
            String::new()
        };
        row(&mut out, name, f, &ratio);
    }
    row(&mut out, "bare apply, cold", &figures.bare_cold, "");
    row(&mut out, "bare apply, again", &figures.bare_again, "");
    out
}
