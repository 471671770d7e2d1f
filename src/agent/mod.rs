//! The long-running agent (`secretsync run`): triggers in, reconciles out. One loop takes
//! the coalesced triggers, reads the source when asked, and reconciles what changed: a new
//! revision or a resync covers everything, a management-cluster change only the SecretSyncs
//! it concerns, a retry only after the failing cluster's backoff. Nothing changed, nothing
//! done. Only the leader writes; a shutdown lets the reconcile in flight finish (bounded).

pub mod backoff;
pub mod leader;
mod scope;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::backoff::{BackoffPolicy, ClusterBackoff};
use self::leader::Leadership;
use crate::manifest::{ManifestSet, SecretSyncKey};
use crate::source::LocalSource;
use crate::source::configured::{ConfiguredSource, SourceReader};
use crate::status::{ClusterResult, SourceProblem};
use crate::sync::apply::Outcome;
use crate::sync::{ReconcileOptions, ReconcileReport, Reconciler, Scope};
use crate::trigger::request::{SuspendedObjects, spawn_request_watches};
use crate::trigger::timer::{ResyncSchedule, spawn_poll, spawn_resync};
use crate::trigger::watch::{WatchedSecrets, spawn_watches};
use crate::trigger::{Pending, Trigger, Triggers};

/// How long the agent lets a burst of triggers (webhooks for one push, watch events of
/// one `kubectl apply`) gather before acting on them.
const SETTLE: Duration = Duration::from_millis(250);

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Time between polls of the source (jittered ±10%).
    pub interval: Duration,
    /// When to reconcile everything regardless of changes.
    pub resync: ResyncSchedule,
    pub backoff: BackoffPolicy,
    /// How long a reconcile in flight may go on after a shutdown signal.
    pub shutdown_grace: Duration,
}

/// The agent's parts.
pub struct Agent {
    mgmt: kube::Client,
    reader: SourceReader,
    reconciler: Reconciler,
    options: ReconcileOptions,
    settings: AgentSettings,
    triggers: Triggers,
    leadership: Leadership,
    observer: Box<dyn Observer>,
    suspended: SuspendedObjects,
}

/// What the agent tells the outside (metrics, health) as it works. Every method has a
/// do-nothing default.
pub trait Observer: Send + Sync {
    /// A read of the source ended; `error` is `None` on success.
    fn source_read(&self, _elapsed: Duration, _error: Option<&str>) {}
    /// A reconcile ended.
    fn reconciled(&self, _elapsed: Duration, _set: &ManifestSet, _report: &ReconcileReport) {}
    /// Leadership was gained or lost.
    fn leading(&self, _leader: bool) {}
    /// The agent has read its source and, when leading, looked at the clusters: it works.
    fn ready(&self) {}
}

struct Silent;
impl Observer for Silent {}

/// The loop's memory between passes.
#[derive(Default)]
struct State {
    /// The last good manifest set: a failed read keeps it.
    set: Option<ManifestSet>,
    /// The revision last reconciled as a whole.
    reconciled: Option<String>,
    backoff: ClusterBackoff,
    /// The latest result of every pair, across scoped reconciles: what metrics show.
    results: BTreeMap<SecretSyncKey, Vec<ClusterResult>>,
    ready: bool,
}

impl Agent {
    #[must_use]
    pub fn new(
        mgmt: kube::Client,
        reader: SourceReader,
        reconciler: Reconciler,
        options: ReconcileOptions,
        settings: AgentSettings,
    ) -> Self {
        Agent {
            mgmt,
            reader,
            reconciler,
            options,
            settings,
            triggers: Triggers::new(),
            leadership: Leadership::always(),
            observer: Box::new(Silent),
            suspended: SuspendedObjects::default(),
        }
    }

    /// Competes for leadership instead of always writing.
    #[must_use]
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    #[must_use]
    pub fn with_observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observer = Box::new(observer);
        self
    }

    /// The queue webhooks and other outside triggers feed.
    #[must_use]
    pub fn triggers(&self) -> Triggers {
        self.triggers.clone()
    }

    /// Runs until `cancel` fires; then finishes (within the grace time) the reconcile in
    /// flight and releases the Lease.
    pub async fn run(mut self, cancel: CancellationToken) {
        let watched = WatchedSecrets::default();
        self.start_triggers(&watched, &cancel);
        spawn_request_watches(
            &self.mgmt,
            self.options.namespaces.as_deref(),
            self.suspended.clone(),
            &self.triggers,
            &cancel,
        )
        .await;
        let mut state = State {
            backoff: ClusterBackoff::new(self.settings.backoff),
            ..State::default()
        };
        self.observer.leading(self.leadership.is_leader());
        self.triggers.request(Trigger::Resync);
        loop {
            let retry_at = state.backoff.next_retry();
            let pending = tokio::select! {
                () = cancel.cancelled() => break,
                pending = self.triggers.next_settled(SETTLE) => pending,
                () = sleep_until(retry_at) => Pending {
                    clusters: state.backoff.due(Instant::now()).iter().map(ToString::to_string).collect(),
                    ..Pending::default()
                },
                leader = self.leadership.changed() => {
                    tracing::info!(leader, "leadership changed");
                    self.observer.leading(leader);
                    // A new leader cannot know what its predecessor finished: all of it.
                    if leader {
                        state.reconciled = None;
                        self.triggers.request(Trigger::Resync);
                    }
                    continue;
                }
            };
            let pass = self.pass(&mut state, &watched, pending);
            tokio::pin!(pass);
            tokio::select! {
                () = &mut pass => {}
                () = cancel.cancelled() => {
                    tracing::info!(grace = ?self.settings.shutdown_grace, "shutting down: finishing the reconcile in flight");
                    if tokio::time::timeout(self.settings.shutdown_grace, &mut pass).await.is_err() {
                        tracing::warn!("the reconcile in flight did not finish within the grace time; the next start converges");
                    }
                    break;
                }
            }
        }
        self.leadership.release().await;
        tracing::info!("agent stopped");
    }

    fn start_triggers(&self, watched: &WatchedSecrets, cancel: &CancellationToken) {
        if let ConfiguredSource::Local(local) = self.reader.source() {
            spawn_directory_watch(local, self.triggers.clone(), cancel.clone());
        }
        spawn_poll(
            self.triggers.clone(),
            self.settings.interval,
            cancel.clone(),
        );
        spawn_resync(
            self.triggers.clone(),
            self.settings.resync.clone(),
            cancel.clone(),
        );
        spawn_watches(
            &self.mgmt,
            self.options.namespaces.as_deref(),
            watched.clone(),
            &self.triggers,
            cancel,
        );
    }

    /// One pass of the loop: read the source if asked, then reconcile what needs it.
    async fn pass(&self, state: &mut State, watched: &WatchedSecrets, pending: Pending) {
        tracing::debug!(?pending, "pass");
        // A source that starts or stops failing changes every status (`SourceReady`).
        let source_changed = if pending.fetch || state.set.is_none() {
            self.read_source(state, watched).await
        } else {
            false
        };
        let Some(set) = &state.set else {
            return;
        };
        if !self.leadership.is_leader() {
            tracing::debug!("not the leader: nothing is written");
            self.mark_ready(state);
            return;
        }
        let revision = set.revision.to_string();
        let everything =
            pending.full || source_changed || state.reconciled.as_deref() != Some(&revision);
        let syncs = if everything {
            None
        } else {
            let affected: BTreeSet<SecretSyncKey> = scope::affected(set, &pending)
                .into_iter()
                .filter(|key| {
                    set.syncs
                        .iter()
                        .any(|sync| &sync.key == key && self.options.serves(sync))
                })
                .collect();
            if affected.is_empty() {
                tracing::debug!(%revision, "nothing changed: no reconcile");
                return;
            }
            Some(affected)
        };
        let now = Instant::now();
        let scope = Scope {
            held_back: state.backoff.held_back(now),
            syncs,
        };
        let suspended = self.with_object_suspensions(set);
        let set = suspended.as_ref().unwrap_or(set);
        let started = std::time::Instant::now();
        let report = self.reconciler.reconcile_scoped(set, &scope).await;
        let elapsed = started.elapsed();
        record_cluster_outcomes(&mut state.backoff, &report, &scope, now);
        log_report(&revision, everything, elapsed, &report);
        let latest = merge_results(&mut state.results, set, &report);
        self.observer.reconciled(elapsed, set, &latest);
        // A pass that could not see everything (clusters not listed, statuses not written:
        // the management cluster failing) is not done: the next poll tries it again.
        if everything && report.problems.is_empty() {
            state.reconciled = Some(revision);
        }
        self.mark_ready(state);
    }

    /// `set` with the SecretSyncs suspended on their object marked suspended, when any is.
    fn with_object_suspensions(&self, set: &ManifestSet) -> Option<ManifestSet> {
        let suspended = |sync: &crate::manifest::SecretSync| {
            !sync.options.suspend && self.suspended.contains(&sync.key)
        };
        if !set.syncs.iter().any(suspended) {
            return None;
        }
        let mut set = set.clone();
        for sync in &mut set.syncs {
            if suspended(sync) {
                sync.options.suspend = true;
            }
        }
        Some(set)
    }

    fn mark_ready(&self, state: &mut State) {
        if !state.ready {
            state.ready = true;
            self.observer.ready();
        }
    }

    /// Reads the source into `state`, keeping the last good set when that fails; says
    /// whether the source went from readable to failing, or back, or failed differently.
    async fn read_source(&self, state: &mut State, watched: &WatchedSecrets) -> bool {
        let started = std::time::Instant::now();
        match self.reader.read().await {
            Ok(read) => {
                let elapsed = started.elapsed();
                self.observer.source_read(elapsed, None);
                let revision = read.set.revision.to_string();
                let files_parsed = read.set.files_parsed;
                let syncs = read.set.syncs.len();
                let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                if state.set.as_ref().map(|s| s.revision.to_string()) == Some(revision.clone()) {
                    tracing::debug!(%revision, elapsed_ms, "source read");
                } else {
                    tracing::info!(%revision, syncs, files_parsed, elapsed_ms, "source read");
                }
                for diagnostic in &read.set.diagnostics {
                    tracing::warn!(%diagnostic, "manifest problem");
                }
                watched.replace(
                    read.set
                        .syncs
                        .iter()
                        .filter(|sync| self.options.serves(sync))
                        .map(|s| (s.key.namespace.clone(), s.spec.secret_ref.name.clone()))
                        .collect(),
                );
                state.set = Some(read.set);
                self.reconciler.set_source_problem(None)
            }
            Err(error) => {
                let message = error.to_string();
                self.observer
                    .source_read(started.elapsed(), Some(message.as_str()));
                tracing::warn!(source = %self.reader.name(), error = %message, "reading the source failed; the last good revision is kept");
                self.reconciler.set_source_problem(Some(SourceProblem {
                    reason: error.reason(),
                    message,
                }))
            }
        }
    }
}

/// Folds a (possibly scoped) report into the latest results of every pair, dropping
/// SecretSyncs no longer in the set; returns the report as if everything had been reconciled.
fn merge_results(
    latest: &mut BTreeMap<SecretSyncKey, Vec<ClusterResult>>,
    set: &ManifestSet,
    report: &ReconcileReport,
) -> ReconcileReport {
    for (sync, results) in &report.results {
        latest.insert(sync.clone(), results.clone());
    }
    let current: BTreeSet<&SecretSyncKey> = set.syncs.iter().map(|s| &s.key).collect();
    latest.retain(|sync, _| current.contains(sync));
    ReconcileReport {
        results: latest.clone(),
        applied: report.applied,
        pruned: report.pruned,
        prunes: report.prunes.clone(),
        status_writes: report.status_writes,
        problems: report.problems.clone(),
    }
}

/// How long a local directory must rest after a change before it is read: an editor's
/// save or a `git checkout` is many writes.
const DIRECTORY_DEBOUNCE: Duration = Duration::from_millis(300);

/// Feeds changes under a local source directory (`notify`) to the trigger queue. A
/// directory that cannot be watched is still polled.
fn spawn_directory_watch(local: &LocalSource, triggers: Triggers, cancel: CancellationToken) {
    let (watch, mut changes) = match local.watch(DIRECTORY_DEBOUNCE) {
        Ok(watching) => watching,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the source directory; it is polled");
            return;
        }
    };
    tokio::spawn(async move {
        // Dropping the watch stops it: it lives as long as this task.
        let _watch = watch;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                change = changes.recv() => match change {
                    Some(_) => triggers.request(Trigger::SourceChanged),
                    None => return,
                },
            }
        }
    });
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Backoff bookkeeping: a cluster with a failed apply waits; one that took its copies (or
/// had nothing to fail) is tried normally again. Held-back clusters were not tried.
fn record_cluster_outcomes(
    backoff: &mut ClusterBackoff,
    report: &ReconcileReport,
    scope: &Scope,
    now: Instant,
) {
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut tried: BTreeSet<String> = BTreeSet::new();
    for (sync, results) in &report.results {
        for result in results {
            let cluster = format!("{}/{}", sync.namespace, result.cluster);
            if let Outcome::Failed { message } = &result.outcome {
                failed
                    .entry(cluster.clone())
                    .or_insert_with(|| message.clone());
            }
            tried.insert(cluster);
        }
    }
    for key in scope.held_back.keys() {
        tried.remove(&key.to_string());
    }
    for cluster in &tried {
        let Some(key) = scope::cluster_key(cluster) else {
            continue;
        };
        match failed.get(cluster) {
            Some(message) => {
                let wait = backoff.failed(&key, message, now);
                tracing::warn!(cluster = %key, ?wait, "cluster failed; backing off");
            }
            None => backoff.succeeded(&key),
        }
    }
}

fn log_report(revision: &str, everything: bool, elapsed: Duration, report: &ReconcileReport) {
    tracing::info!(
        %revision,
        scope = if everything { "all" } else { "changed" },
        pairs = report.pairs(),
        synced = report.synced(),
        applied = report.applied,
        pruned = report.pruned,
        status_writes = report.status_writes,
        problems = report.problems.len(),
        elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "reconciled"
    );
    for problem in &report.problems {
        tracing::warn!(%problem, "reconcile problem");
    }
}
