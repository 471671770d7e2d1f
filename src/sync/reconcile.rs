//! One reconcile: (revision's SecretSyncs, management-cluster view) → plan → apply on each
//! leaf → status. Level-triggered and idempotent: run again with nothing changed, it writes
//! nothing. A cluster that cannot be reached delays only its own pairs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;

use super::apply::{ApplyOptions, ApplyRequest, Outcome, apply_all};
use super::desired::{MANIFEST_ANNOTATION, SOURCE_VERSION_ANNOTATION, annotation, owner_label};
use super::plan::{Action, ClusterTarget, PlanItem, plan};
use super::prune;
use super::sources::{SecretKey, SourceCache};
use crate::audit::events::{EventPublisher, EventSummary, secret_reference, secret_sync_reference};
use crate::audit::{AuditAction, AuditLog, AuditRecord};
use crate::cluster::{
    ClientCache, ClusterKey, ClusterName, LeafClient, list_all_clusters, list_clusters_in,
    read_kubeconfig, readiness,
};
use crate::manifest::{LabelSelector, ManifestSet, SecretSync, SecretSyncKey};
use crate::status::{
    ClusterResult, SourceProblem, StatusSnapshot, StatusStore, StatusTarget, SyncStatus,
};

/// Leaf clusters written to at the same time.
pub const CLUSTER_CONCURRENCY: usize = 8;

/// Management-cluster requests (source reads, status writes, Events) in flight at once:
/// thousands of SecretSyncs are not read and recorded one round trip after another.
pub(crate) const MANAGEMENT_CONCURRENCY: usize = 16;

/// What one reconcile did, per SecretSync.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    pub results: BTreeMap<SecretSyncKey, Vec<ClusterResult>>,
    /// Leaf Secrets written.
    pub applied: usize,
    /// Leaf Secrets deleted because no SecretSync wants them any more.
    pub pruned: usize,
    /// What was (or, in a dry run, would be) pruned: `cluster: namespace/name`.
    pub prunes: Vec<String>,
    /// Statuses written (unchanged statuses are not).
    pub status_writes: usize,
    /// Problems that are not one pair's: clusters that could not be listed, status writes
    /// that failed. Never secret data.
    pub problems: Vec<String>,
}

impl ReconcileReport {
    /// (SecretSync, cluster) pairs reported.
    #[must_use]
    pub fn pairs(&self) -> usize {
        self.results.values().map(Vec::len).sum()
    }

    /// Pairs whose cluster holds its copy.
    #[must_use]
    pub fn synced(&self) -> usize {
        self.results
            .values()
            .flatten()
            .filter(|r| r.outcome.resource_version().is_some())
            .count()
    }
}

/// What a reconciler serves and how carefully it prunes.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// Namespaces of the management cluster to serve; `None` serves all of them. Copies are
    /// pruned only through GitopsClusters of served namespaces.
    pub namespaces: Option<Vec<String>>,
    /// Prune even when a revision holds no SecretSync at all.
    pub allow_empty_source: bool,
    /// Where every apply and prune is recorded.
    pub audit: Option<Arc<AuditLog>>,
    /// Read everything, write nothing: outcomes say what would be written and pruned.
    pub dry_run: bool,
    /// This agent's shard: only SecretSyncs whose labels match are served, and only leaf
    /// copies whose (shard) labels match are pruned. `None` serves every SecretSync.
    pub shard: Option<LabelSelector>,
}

impl ReconcileOptions {
    /// Whether this agent serves `sync` (it is in the agent's shard).
    #[must_use]
    pub fn serves(&self, sync: &SecretSync) -> bool {
        self.shard
            .as_ref()
            .is_none_or(|shard| shard.matches(&sync.labels))
    }

    fn prunes(&self, copy: &prune::OwnedCopy) -> bool {
        self.shard
            .as_ref()
            .is_none_or(|shard| shard.matches(&copy.labels))
    }
}

/// Which part of the world one reconcile covers. The default covers everything.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only these SecretSyncs are planned, applied, pruned and given a status (`None`: all).
    /// A management-cluster change (a rotated source Secret, a relabelled cluster) touches
    /// only the SecretSyncs it concerns.
    pub syncs: Option<BTreeSet<SecretSyncKey>>,
    /// Clusters not contacted this time, with the reason (backing off after failures). Their
    /// pairs are reported not ready and their copies are neither written nor pruned.
    pub held_back: BTreeMap<ClusterKey, String>,
}

impl Scope {
    fn covers(&self, key: &SecretSyncKey) -> bool {
        self.syncs.as_ref().is_none_or(|syncs| syncs.contains(key))
    }
}

/// Which owned copies one reconcile may judge, and whether an empty set may prune.
struct PruneRules<'a> {
    judged: &'a dyn Fn(&prune::OwnedCopy) -> bool,
    allow_empty: bool,
    /// Owner label values of the SecretSyncs a scoped reconcile covers: only their copies
    /// are listed. `None` lists every copy (a full reconcile judges them all).
    owners: Option<Vec<String>>,
}

/// Up to this many SecretSyncs, a scoped reconcile lists only their copies (by owner
/// label) for prune; beyond, a label selector would grow too long and all are listed.
const OWNERS_SELECTED_UP_TO: usize = 50;

pub struct Reconciler {
    mgmt: kube::Client,
    clients: ClientCache,
    status: StatusStore,
    events: EventPublisher,
    options: ReconcileOptions,
    /// Why the source could not be read the last time, while the last good revision is
    /// reconciled instead: every status says so (condition `SourceReady`).
    source_problem: Mutex<Option<SourceProblem>>,
    /// Source Secrets as last read: a no-op reconcile lists them instead of reading each.
    sources: SourceCache,
}

impl Reconciler {
    #[must_use]
    pub fn new(mgmt: kube::Client, clients: ClientCache) -> Self {
        Reconciler {
            status: StatusStore::new(mgmt.clone()),
            events: EventPublisher::new(mgmt.clone()),
            mgmt,
            clients,
            options: ReconcileOptions::default(),
            source_problem: Mutex::new(None),
            sources: SourceCache::default(),
        }
    }

    #[must_use]
    pub fn with_options(mut self, options: ReconcileOptions) -> Self {
        self.options = options;
        self
    }

    /// Records whether the source could be read (`None`) or why not; says whether that
    /// changed, in which case every status needs writing again.
    pub fn set_source_problem(&self, problem: Option<SourceProblem>) -> bool {
        let mut current = self
            .source_problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = *current != problem;
        *current = problem;
        changed
    }

    fn source_problem(&self) -> Option<SourceProblem> {
        self.source_problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reconciles every SecretSync of `set` on every cluster.
    pub async fn reconcile(&self, set: &ManifestSet) -> ReconcileReport {
        self.reconcile_scoped(set, &Scope::default()).await
    }

    /// Reconciles the part of `set` that `scope` covers.
    pub async fn reconcile_scoped(&self, full_set: &ManifestSet, scope: &Scope) -> ReconcileReport {
        let scoped;
        let set = if scope.syncs.is_some() || self.options.shard.is_some() {
            scoped = ManifestSet {
                syncs: full_set
                    .syncs
                    .iter()
                    .filter(|sync| scope.covers(&sync.key) && self.options.serves(sync))
                    .cloned()
                    .collect(),
                ..full_set.clone()
            };
            &scoped
        } else {
            full_set
        };
        // The empty-revision guard is about the revision, not about this agent's part of it.
        let revision_empty = full_set.syncs.is_empty()
            && full_set.invalid.is_empty()
            && full_set.broken_files.is_empty();
        let mut report = ReconcileReport::default();
        let listed = self.list_clusters().await;
        report
            .problems
            .extend(listed.problems.iter().map(ToString::to_string));
        let (targets, leaves) = self.connect(&listed.clusters, &scope.held_back).await;
        let sources = self.source_secrets(&set.syncs).await;
        // What no SecretSync this agent serves names any more is forgotten, whatever this
        // reconcile's scope: the cache holds secret data and follows the revision.
        let served = full_set
            .syncs
            .iter()
            .filter(|sync| self.options.serves(sync));
        self.sources.retain(&wanted_sources(served));
        let items = plan(&set.syncs, &targets, &sources, &set.revision);
        let apply = ApplyOptions {
            dry_run: self.options.dry_run,
            few_by_name: scope.syncs.is_some(),
        };
        let outcomes = apply_planned(&items, &leaves, &set.syncs, apply).await;
        report.applied = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Applied { .. }))
            .count();
        let mut audit = applied_records(&items, &outcomes);
        let allow_empty = self.options.allow_empty_source || !revision_empty;
        // A SecretSync of another shard still in the revision: its copies are that shard's
        // to judge, even while they carry this shard's label (a SecretSync just moved here
        // from there is re-labelled by its new shard, never pruned by its old one).
        let foreign: BTreeSet<&SecretSyncKey> = full_set
            .syncs
            .iter()
            .filter(|sync| !self.options.serves(sync))
            .map(|sync| &sync.key)
            .collect();
        let judged = |copy: &prune::OwnedCopy| {
            copy.owner
                .as_ref()
                .is_some_and(|owner| scope.covers(owner) && !foreign.contains(owner))
                && self.options.prunes(copy)
        };
        let owners = (scope.syncs.is_some() && set.syncs.len() <= OWNERS_SELECTED_UP_TO)
            .then(|| set.syncs.iter().map(owner_label).collect());
        let rules = PruneRules {
            judged: &judged,
            allow_empty,
            owners,
        };
        self.prune(&leaves, &items, set, &rules, &mut report, &mut audit)
            .await;
        if let Some(log) = &self.options.audit
            && !self.options.dry_run
            && let Err(error) = log.append(&audit)
        {
            report.problems.push(error.to_string());
        }

        let mut results: BTreeMap<SecretSyncKey, Vec<ClusterResult>> = set
            .syncs
            .iter()
            .map(|sync| (sync.key.clone(), Vec::new()))
            .collect();
        // The plan and the outcomes become the results: nothing per pair is held twice
        // while the statuses are written.
        for (item, (_, outcome)) in items.into_iter().zip(outcomes) {
            let source_version = source_version(&item);
            results.entry(item.sync).or_default().push(ClusterResult {
                cluster: item.cluster,
                outcome,
                source_version,
            });
        }
        let targets = self.write_statuses(set, &results, &mut report).await;
        report.results = results;
        self.publish_events(&audit, &targets, &mut report).await;
        self.clients.sweep();
        report
    }

    /// The GitopsClusters of the served namespaces.
    async fn list_clusters(&self) -> crate::cluster::ClusterList {
        match &self.options.namespaces {
            Some(namespaces) => list_clusters_in(&self.mgmt, namespaces).await,
            None => list_all_clusters(&self.mgmt)
                .await
                .unwrap_or_else(|problem| crate::cluster::ClusterList {
                    clusters: Vec::new(),
                    problems: vec![problem],
                }),
        }
    }

    /// Deletes the owned copies nobody wants any more, on every reachable leaf.
    async fn prune(
        &self,
        leaves: &BTreeMap<ClusterKey, Arc<LeafClient>>,
        items: &[PlanItem],
        set: &ManifestSet,
        rules: &PruneRules<'_>,
        report: &mut ReconcileReport,
        audit: &mut Vec<AuditRecord>,
    ) {
        let judge = prune::PruneJudge::new(items, set, rules.allow_empty);
        let mut doomed = Vec::new();
        for (key, leaf) in leaves {
            let owners = rules.owners.as_deref();
            match prune::list_owned(leaf.client(), &key.namespace, key.name.as_str(), owners).await
            {
                Ok(copies) => {
                    // Outside the scope or the shard, a copy is not this reconcile's to judge.
                    let judged = copies.into_iter().filter(|copy| (rules.judged)(copy));
                    match judge.to_prune(judged.collect()) {
                        Ok(found) => doomed.extend(found),
                        Err(refused) => {
                            tracing::warn!(%refused, "prune refused");
                            report.problems.push(refused.to_string());
                            return;
                        }
                    }
                }
                // Without the full inventory of a leaf, nothing is pruned there this time.
                Err(error) => report
                    .problems
                    .push(format!("listing secretsync's Secrets on {key}: {error}")),
            }
        }
        for copy in &doomed {
            let key = ClusterKey {
                namespace: copy.cluster_namespace.clone(),
                name: ClusterName::new(copy.cluster.clone()),
            };
            let Some(leaf) = leaves.get(&key) else {
                continue;
            };
            report
                .prunes
                .push(format!("{key}: {}/{}", copy.namespace, copy.name));
            if self.options.dry_run {
                continue;
            }
            match prune::delete(leaf.client(), copy).await {
                Ok(()) => {
                    tracing::info!(cluster = %key, namespace = %copy.namespace, secret = %copy.name, "pruned");
                    report.pruned += 1;
                    audit.push(AuditRecord {
                        time: now(),
                        action: AuditAction::Prune,
                        cluster: key.to_string(),
                        target: format!("{}/{}", copy.namespace, copy.name),
                        secret_sync: copy.owner.as_ref().map(ToString::to_string),
                        revision: Some(set.revision.to_string()),
                        manifest: copy.manifest.clone(),
                        source_version: None,
                        leaf_version: None,
                    });
                }
                Err(error) => report.problems.push(format!(
                    "pruning {}/{} on {key}: {error}",
                    copy.namespace, copy.name
                )),
            }
        }
    }

    /// Plan targets for every listed cluster, and a client for each ready one. A cluster
    /// whose kubeconfig cannot be used is planned as not ready, with the reason.
    /// A cluster in `held_back` is planned as not ready, with the reason, and not contacted.
    async fn connect(
        &self,
        clusters: &[crate::cluster::GitopsCluster],
        held_back: &BTreeMap<ClusterKey, String>,
    ) -> (Vec<ClusterTarget>, BTreeMap<ClusterKey, Arc<LeafClient>>) {
        let mut targets = Vec::with_capacity(clusters.len());
        let mut leaves = BTreeMap::new();
        for cluster in clusters {
            let key = cluster.key();
            let readiness = if let Some(reason) = held_back.get(&key) {
                Err(reason.clone())
            } else {
                match self.leaf_client(cluster, &key).await {
                    Ok(client) => {
                        leaves.insert(key.clone(), client);
                        Ok(())
                    }
                    Err(error) => Err(error.to_string()),
                }
            };
            targets.push(ClusterTarget {
                namespace: key.namespace.clone(),
                name: key.name.as_str().to_owned(),
                labels: cluster.labels.clone(),
                readiness,
            });
        }
        (targets, leaves)
    }

    async fn leaf_client(
        &self,
        cluster: &crate::cluster::GitopsCluster,
        key: &ClusterKey,
    ) -> Result<Arc<LeafClient>, crate::cluster::ClusterError> {
        readiness(cluster).into_result(key)?;
        let kubeconfig = read_kubeconfig(&self.mgmt, cluster).await?;
        self.clients.client(&kubeconfig).await
    }

    /// The Secrets the SecretSyncs name, each read once (or found unchanged in the cache).
    /// A Secret that cannot be read is planned as missing; the error is logged.
    async fn source_secrets(&self, syncs: &[SecretSync]) -> BTreeMap<SecretKey, Arc<Secret>> {
        self.sources.read(&self.mgmt, &wanted_sources(syncs)).await
    }

    /// Writes the next status of every SecretSync of `set` that changed, a few at a time;
    /// returns where each status lives (Events go there too). The statuses are read with
    /// one snapshot per namespace, not one GET per SecretSync.
    async fn write_statuses(
        &self,
        set: &ManifestSet,
        results: &BTreeMap<SecretSyncKey, Vec<ClusterResult>>,
        report: &mut ReconcileReport,
    ) -> BTreeMap<String, (StatusTarget, String)> {
        let namespaces: BTreeSet<&str> = set
            .syncs
            .iter()
            .map(|sync| sync.key.namespace.as_str())
            .collect();
        let mut snapshots = BTreeMap::new();
        for namespace in namespaces {
            snapshots.insert(namespace, self.status.snapshot(namespace).await);
        }
        let revision = set.revision.to_string();
        let writes = set.syncs.iter().map(|sync| {
            let results = results.get(&sync.key).map_or(&[][..], Vec::as_slice);
            let snapshot = &snapshots[sync.key.namespace.as_str()];
            let revision = &revision;
            async move {
                let written = match snapshot {
                    Ok(snapshot) => {
                        self.write_status(snapshot, &sync.key, revision, results)
                            .await
                    }
                    Err(error) => Err(error.to_string()),
                };
                (sync, written)
            }
        });
        let written: Vec<_> = futures::stream::iter(writes)
            .buffer_unordered(MANAGEMENT_CONCURRENCY)
            .collect()
            .await;
        let mut targets = BTreeMap::new();
        for (sync, written) in written {
            match written {
                Ok((target, wrote)) => {
                    report.status_writes += usize::from(wrote);
                    targets.insert(
                        sync.key.to_string(),
                        (target, sync.spec.secret_ref.name.clone()),
                    );
                }
                Err(problem) => report.problems.push(problem),
            }
        }
        targets
    }

    /// Writes the next status of `key` when it differs from what is there; says whether it wrote.
    async fn write_status(
        &self,
        snapshot: &StatusSnapshot,
        key: &SecretSyncKey,
        revision: &str,
        results: &[ClusterResult],
    ) -> Result<(StatusTarget, bool), String> {
        let (target, previous) = snapshot.lookup(key).map_err(|e| e.to_string())?;
        let generation = match &target {
            StatusTarget::Object { generation } => *generation,
            StatusTarget::ConfigMap(_) => None,
        };
        let now = now();
        let next = SyncStatus::next(&previous, revision, results, &now)
            .with_source(&previous, self.source_problem().as_ref(), &now)
            .observing(generation);
        if next == previous || self.options.dry_run {
            return Ok((target, false));
        }
        self.status
            .write(key, &target, &next)
            .await
            .map_err(|e| e.to_string())?;
        Ok((target, true))
    }

    /// One Event per SecretSync, action and revision (naming the clusters), on the SecretSync
    /// object when it exists, else on the source Secret (a pruned copy whose SecretSync is
    /// gone: the Secret it was copied from).
    async fn publish_events(
        &self,
        records: &[AuditRecord],
        targets: &BTreeMap<String, (StatusTarget, String)>,
        report: &mut ReconcileReport,
    ) {
        if self.options.dry_run {
            return;
        }
        let summaries = EventSummary::group(records);
        let publishes = summaries.iter().map(|(sync, summary)| async move {
            let (namespace, name) = sync.split_once('/').unwrap_or(("", ""));
            let regarding = match targets.get(*sync) {
                Some((StatusTarget::Object { .. }, _)) => {
                    secret_sync_reference(namespace, name, None)
                }
                Some((StatusTarget::ConfigMap(_), secret)) => secret_reference(namespace, secret),
                None => secret_reference(
                    namespace,
                    summary.target.rsplit('/').next().unwrap_or_default(),
                ),
            };
            self.events
                .publish(&regarding, summary)
                .await
                .err()
                .map(|error| format!("publishing an Event for {sync}: {error}"))
        });
        let problems: Vec<String> = futures::stream::iter(publishes)
            .buffer_unordered(MANAGEMENT_CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await;
        report.problems.extend(problems);
    }
}

/// Applies every planned item, each leaf cluster concurrently with the others; returns one
/// outcome per item, in the items' order.
async fn apply_planned(
    items: &[PlanItem],
    leaves: &BTreeMap<ClusterKey, Arc<LeafClient>>,
    syncs: &[SecretSync],
    apply: ApplyOptions,
) -> Vec<(usize, Outcome)> {
    let adopt: BTreeMap<&SecretSyncKey, bool> =
        syncs.iter().map(|s| (&s.key, s.options.adopt)).collect();
    let mut per_cluster: BTreeMap<ClusterKey, Vec<(usize, ApplyRequest<'_>)>> = BTreeMap::new();
    let mut outcomes: Vec<(usize, Outcome)> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match &item.action {
            Action::Skip(reason) => outcomes.push((index, Outcome::Skipped(reason.clone()))),
            Action::Apply(secret) => {
                let key = ClusterKey {
                    namespace: item.sync.namespace.clone(),
                    name: ClusterName::new(item.cluster.clone()),
                };
                let request = ApplyRequest {
                    sync: &item.sync,
                    desired: secret,
                    adopt: adopt.get(&item.sync).copied().unwrap_or(false),
                };
                per_cluster.entry(key).or_default().push((index, request));
            }
        }
    }
    let cluster_batches = per_cluster.into_iter().map(|(cluster, batch)| async move {
        let requests: Vec<ApplyRequest<'_>> = batch.iter().map(|(_, r)| *r).collect();
        let results = match leaves.get(&cluster) {
            Some(leaf) => apply_all(leaf.client(), &requests, apply).await,
            None => vec![
                Outcome::Failed {
                    message: format!("no client for {cluster}")
                };
                requests.len()
            ],
        };
        batch
            .into_iter()
            .map(|(index, _)| index)
            .zip(results)
            .collect::<Vec<_>>()
    });
    // Bounded: a fleet of hundreds of leaves must not open hundreds of connections at once;
    // a slow leaf holds one slot, never the others.
    let per_cluster_outcomes: Vec<Vec<(usize, Outcome)>> = futures::stream::iter(cluster_batches)
        .buffer_unordered(CLUSTER_CONCURRENCY)
        .collect()
        .await;
    outcomes.extend(per_cluster_outcomes.into_iter().flatten());
    outcomes.sort_by_key(|(index, _)| *index);
    outcomes
}

/// One audit record per leaf Secret written in this reconcile.
fn applied_records(items: &[PlanItem], outcomes: &[(usize, Outcome)]) -> Vec<AuditRecord> {
    items
        .iter()
        .zip(outcomes)
        .filter_map(|(item, (_, outcome))| {
            let (
                Action::Apply(secret),
                Outcome::Applied {
                    resource_version,
                    revision,
                },
            ) = (&item.action, outcome)
            else {
                return None;
            };
            Some(AuditRecord {
                time: now(),
                action: AuditAction::Apply,
                cluster: format!("{}/{}", item.sync.namespace, item.cluster),
                target: format!(
                    "{}/{}",
                    secret.metadata.namespace.as_deref().unwrap_or_default(),
                    secret.metadata.name.as_deref().unwrap_or_default()
                ),
                secret_sync: Some(item.sync.to_string()),
                revision: Some(revision.clone()),
                manifest: annotation(secret, MANIFEST_ANNOTATION),
                source_version: annotation(secret, SOURCE_VERSION_ANNOTATION),
                leaf_version: Some(resource_version.clone()),
            })
        })
        .collect()
}

/// RFC 3339 "now" in UTC, as Kubernetes writes times.
fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The source Secrets `syncs` name, as (namespace, name).
fn wanted_sources<'s>(syncs: impl IntoIterator<Item = &'s SecretSync>) -> BTreeSet<SecretKey> {
    syncs
        .into_iter()
        .map(|s| (s.key.namespace.clone(), s.spec.secret_ref.name.clone()))
        .collect()
}

fn source_version(item: &PlanItem) -> Option<String> {
    match &item.action {
        Action::Apply(secret) => annotation(secret, SOURCE_VERSION_ANNOTATION),
        Action::Skip(_) => None,
    }
}
