//! Prometheus metrics of the agent: what the last reconcile found, how long reconciles and
//! fetches take, which clusters answer, which revision is applied, what webhooks brought.
//!
//! Label values are names, result words, revisions and fixed words only: never secret data,
//! and never anything a webhook sender chose (which would also let it grow the series count).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

mod labels;

use self::labels::{ClusterLabels, ResultLabels, WebhookLabels};
pub use self::labels::{WebhookOutcome, WebhookProvider};
use crate::status::model::result_name;
use crate::sync::ReconcileReport;
use crate::sync::SkipReason;
use crate::sync::apply::Outcome;

/// The two text formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpositionFormat {
    /// OpenMetrics 1.0 text: what Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4: for everything else (`curl`, older scrapers).
    PrometheusText,
}

impl ExpositionFormat {
    /// The format a request's `Accept` header asks for.
    #[must_use]
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::PrometheusText,
        }
    }

    /// The `Content-Type` of a response in this format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The agent's metrics; cheap to clone, every clone records into the same registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    reconcile_duration: Histogram,
    pairs: Family<ResultLabels, Gauge>,
    /// Every result word `pairs` has a series for: a result that disappears drops to 0
    /// rather than vanishing, so `secretsync_pairs{result="Error"} > 0` stops firing.
    pair_results: Mutex<BTreeSet<String>>,
    applies: Counter,
    prunes: Counter,
    fetch_duration: Histogram,
    fetch_errors: Counter,
    cluster_up: Family<ClusterLabels, Gauge>,
    revision: Arc<RevisionInfo>,
    webhook_requests: Family<WebhookLabels, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[must_use]
    pub fn new() -> Self {
        let mut inner = Inner {
            reconcile_duration: duration_histogram(),
            pairs: Family::default(),
            pair_results: Mutex::new(agent_results()),
            applies: Counter::default(),
            prunes: Counter::default(),
            fetch_duration: duration_histogram(),
            fetch_errors: Counter::default(),
            cluster_up: Family::default(),
            revision: Arc::default(),
            webhook_requests: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        let mut registry = Registry::default();
        register(&mut registry, &inner);
        inner.registry = registry;
        for result in lock(&inner.pair_results).iter() {
            inner
                .pairs
                .get_or_create(&ResultLabels {
                    result: result.clone(),
                })
                .set(0);
        }
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// Records one finished reconcile: its duration, what it wrote and pruned, and how many
    /// (SecretSync, cluster) pairs ended in each result.
    pub fn record_reconcile(&self, elapsed: Duration, report: &ReconcileReport) {
        let inner = &self.inner;
        inner.reconcile_duration.observe(elapsed.as_secs_f64());
        inner.applies.inc_by(as_u64(report.applied));
        inner.prunes.inc_by(as_u64(report.pruned));

        let counts = pair_counts(report);
        let mut known = lock(&inner.pair_results);
        known.extend(counts.keys().cloned());
        for result in known.iter() {
            let count = counts.get(result).copied().unwrap_or(0);
            inner
                .pairs
                .get_or_create(&ResultLabels {
                    result: result.clone(),
                })
                .set(count);
        }
    }

    /// Records one fetch of the source (successful or not) and how long it took.
    pub fn record_fetch(&self, elapsed: Duration, ok: bool) {
        self.inner.fetch_duration.observe(elapsed.as_secs_f64());
        if !ok {
            self.inner.fetch_errors.inc();
        }
    }

    /// Whether the leaf cluster `namespace/cluster` (a GitopsCluster) answered.
    pub fn set_cluster_up(&self, namespace: &str, cluster: &str, up: bool) {
        self.inner
            .cluster_up
            .get_or_create(&cluster_labels(namespace, cluster))
            .set(i64::from(up));
    }

    /// Drops the series of a GitopsCluster that no longer exists.
    pub fn remove_cluster(&self, namespace: &str, cluster: &str) {
        self.inner
            .cluster_up
            .remove(&cluster_labels(namespace, cluster));
    }

    /// The revision last applied (`main@sha1:…`); replaces the previous one, so the info
    /// metric only ever has one series.
    pub fn set_revision(&self, revision: &str) {
        *self
            .inner
            .revision
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(revision.to_owned());
    }

    /// Whether this replica holds the leader Lease.
    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    /// Counts one webhook delivery.
    pub fn record_webhook(&self, provider: WebhookProvider, outcome: WebhookOutcome) {
        self.inner
            .webhook_requests
            .get_or_create(&WebhookLabels { provider, outcome })
            .inc();
    }

    /// Everything, in the OpenMetrics text format.
    #[must_use]
    pub fn encode(&self) -> String {
        self.encode_as(ExpositionFormat::OpenMetrics)
    }

    /// Everything, in the given text format.
    #[must_use]
    pub fn encode_as(&self, format: ExpositionFormat) -> String {
        let mut out = String::new();
        let written = match format {
            ExpositionFormat::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            }
            ExpositionFormat::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry)
            }
        };
        // Writing into a String cannot fail, and every metric here encodes.
        written.expect("encoding metrics into a String");
        out
    }
}

fn register(registry: &mut Registry, inner: &Inner) {
    registry.register_with_unit(
        "secretsync_reconcile_duration",
        "Duration of a reconcile",
        Unit::Seconds,
        inner.reconcile_duration.clone(),
    );
    registry.register(
        "secretsync_pairs",
        "(SecretSync, cluster) pairs by result in the last reconcile",
        inner.pairs.clone(),
    );
    registry.register(
        "secretsync_applies",
        "Leaf Secrets written",
        inner.applies.clone(),
    );
    registry.register(
        "secretsync_prunes",
        "Leaf Secrets deleted because no SecretSync wants them any more",
        inner.prunes.clone(),
    );
    registry.register_with_unit(
        "secretsync_source_fetch_duration",
        "Duration of a fetch of the source",
        Unit::Seconds,
        inner.fetch_duration.clone(),
    );
    registry.register(
        "secretsync_source_fetch_errors",
        "Fetches of the source that failed",
        inner.fetch_errors.clone(),
    );
    registry.register(
        "secretsync_cluster_up",
        "Whether a leaf cluster answered (1) or not (0)",
        inner.cluster_up.clone(),
    );
    registry.register_collector(Box::new(inner.revision.clone()));
    registry.register(
        "secretsync_webhook_requests",
        "Webhook deliveries by provider and outcome",
        inner.webhook_requests.clone(),
    );
    registry.register(
        "secretsync_leader",
        "Whether this replica is the leader (1) or not (0)",
        inner.leader.clone(),
    );
}

/// Buckets from 50 ms to about 100 s: a fetch with nothing new, up to a slow large fleet.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// The results a running agent (not a dry run) can report, so that their series exist
/// from the start. Taken from `result_name` so that the words cannot drift apart.
fn agent_results() -> BTreeSet<String> {
    let message = String::new;
    [
        Outcome::Unchanged {
            resource_version: String::new(),
            revision: String::new(),
        },
        Outcome::Skipped(SkipReason::ClusterNotReady { message: message() }),
        Outcome::Skipped(SkipReason::SourceSecretMissing { secret: message() }),
        Outcome::Skipped(SkipReason::Suspended),
        Outcome::Skipped(SkipReason::Conflict {
            target: message(),
            others: Vec::new(),
        }),
        Outcome::NotOwned { target: message() },
        Outcome::Failed { message: message() },
    ]
    .iter()
    .map(result_name)
    .collect()
}

fn pair_counts(report: &ReconcileReport) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for result in report.results.values().flatten() {
        *counts.entry(result_name(&result.outcome)).or_insert(0) += 1;
    }
    counts
}

fn cluster_labels(namespace: &str, cluster: &str) -> ClusterLabels {
    ClusterLabels {
        namespace: namespace.to_owned(),
        cluster: cluster.to_owned(),
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every value guarded here is complete after each statement; a panic elsewhere leaves
    // nothing half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `secretsync_last_applied_revision_info{revision}`: an info metric whose one series is
/// swapped when the revision changes (a registered `Info` could never change, and a gauge
/// family would show two revisions, or none, between removing one and adding the next).
#[derive(Debug, Default)]
struct RevisionInfo {
    current: RwLock<Option<String>>,
}

impl Collector for RevisionInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let Some(revision) = current.as_deref() else {
            return Ok(());
        };
        let info = Info::new([("revision", revision)]);
        let metric = encoder.encode_descriptor(
            "secretsync_last_applied_revision",
            "The revision last applied",
            None,
            MetricType::Info,
        )?;
        info.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SecretSyncKey;
    use crate::status::ClusterResult;

    fn result(cluster: &str, outcome: Outcome) -> ClusterResult {
        ClusterResult {
            cluster: cluster.to_owned(),
            outcome,
            source_version: None,
        }
    }

    fn report(results: Vec<ClusterResult>, applied: usize, pruned: usize) -> ReconcileReport {
        let key = SecretSyncKey {
            namespace: "flux-system".into(),
            name: "registry".into(),
        };
        ReconcileReport {
            results: [(key, results)].into(),
            applied,
            pruned,
            ..ReconcileReport::default()
        }
    }

    fn applied() -> Outcome {
        Outcome::Applied {
            resource_version: "12".into(),
            revision: "main@sha1:abc".into(),
        }
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            message: "connection refused".into(),
        }
    }

    /// The sample lines (not `#` comments) of an encoding.
    fn sample_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn every_metric_is_described_from_the_start() {
        let text = Metrics::new().encode();
        for name in [
            "# TYPE secretsync_reconcile_duration_seconds histogram",
            "# TYPE secretsync_pairs gauge",
            "# TYPE secretsync_applies counter",
            "# TYPE secretsync_prunes counter",
            "# TYPE secretsync_source_fetch_duration_seconds histogram",
            "# TYPE secretsync_source_fetch_errors counter",
            "# TYPE secretsync_leader gauge",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        // A family without series is not written at all: these appear with their first one.
        for name in ["secretsync_cluster_up", "secretsync_webhook_requests"] {
            assert!(!text.contains(name), "{name} has no series yet");
        }
        assert!(text.ends_with("# EOF\n"));
        let samples = sample_lines(&text);
        assert!(samples.contains(&"secretsync_applies_total 0"));
        assert!(samples.contains(&"secretsync_leader 0"));
        for result in [
            "Synced",
            "NotReady",
            "Conflict",
            "Error",
            "SourceSecretMissing",
        ] {
            let line = format!("secretsync_pairs{{result=\"{result}\"}} 0");
            assert!(samples.contains(&line.as_str()), "{line} missing");
        }
        assert!(
            !text.contains("secretsync_last_applied_revision"),
            "no revision before the first apply"
        );
    }

    #[test]
    fn a_reconcile_sets_pairs_by_result_and_counts_writes() {
        let metrics = Metrics::new();
        let first = report(
            vec![
                result("leaf-1", applied()),
                result("leaf-2", failed()),
                result("leaf-3", failed()),
            ],
            1,
            2,
        );
        metrics.record_reconcile(Duration::from_millis(300), &first);
        let text = metrics.encode();
        let samples = sample_lines(&text);
        assert!(samples.contains(&"secretsync_pairs{result=\"Synced\"} 1"));
        assert!(samples.contains(&"secretsync_pairs{result=\"Error\"} 2"));
        assert!(samples.contains(&"secretsync_applies_total 1"));
        assert!(samples.contains(&"secretsync_prunes_total 2"));
        assert!(samples.contains(&"secretsync_reconcile_duration_seconds_count 1"));
        assert!(samples.contains(&"secretsync_reconcile_duration_seconds_bucket{le=\"0.4\"} 1"));
        assert!(samples.contains(&"secretsync_reconcile_duration_seconds_bucket{le=\"0.2\"} 0"));

        let second = report(vec![result("leaf-1", applied())], 1, 0);
        metrics.record_reconcile(Duration::from_millis(100), &second);
        let text = metrics.encode();
        let samples = sample_lines(&text);
        assert!(samples.contains(&"secretsync_pairs{result=\"Error\"} 0"));
        assert!(samples.contains(&"secretsync_pairs{result=\"Synced\"} 1"));
        assert!(samples.contains(&"secretsync_applies_total 2"));
    }

    #[test]
    fn pair_results_are_words_never_messages() {
        let metrics = Metrics::new();
        let secretish = Outcome::Failed {
            message: "token hunter2 rejected".into(),
        };
        metrics.record_reconcile(
            Duration::ZERO,
            &report(vec![result("leaf-1", secretish)], 0, 0),
        );
        let text = metrics.encode();
        assert!(!text.contains("hunter2"));
        assert!(sample_lines(&text).contains(&"secretsync_pairs{result=\"Error\"} 1"));
    }

    #[test]
    fn fetches_count_errors_and_time() {
        let metrics = Metrics::new();
        metrics.record_fetch(Duration::from_secs(1), true);
        metrics.record_fetch(Duration::from_secs(2), false);
        let text = metrics.encode();
        let samples = sample_lines(&text);
        assert!(samples.contains(&"secretsync_source_fetch_errors_total 1"));
        assert!(samples.contains(&"secretsync_source_fetch_duration_seconds_count 2"));
        assert!(samples.contains(&"secretsync_source_fetch_duration_seconds_sum 3.0"));
    }

    #[test]
    fn the_revision_info_has_one_series_the_current_revision() {
        let metrics = Metrics::new();
        metrics.set_revision("main@sha1:1111");
        metrics.set_revision("main@sha1:2222");
        let text = metrics.encode();
        assert!(text.contains("# TYPE secretsync_last_applied_revision info"));
        let series: Vec<&str> = sample_lines(&text)
            .into_iter()
            .filter(|l| l.starts_with("secretsync_last_applied_revision"))
            .collect();
        assert_eq!(
            series,
            ["secretsync_last_applied_revision_info{revision=\"main@sha1:2222\"} 1"]
        );
    }

    #[test]
    fn clusters_leader_and_webhooks_have_their_labels() {
        let metrics = Metrics::new();
        metrics.set_cluster_up("flux-system", "leaf-1", true);
        metrics.set_cluster_up("flux-system", "leaf-2", false);
        metrics.set_cluster_up("flux-system", "gone", true);
        metrics.remove_cluster("flux-system", "gone");
        metrics.set_leader(true);
        metrics.record_webhook(WebhookProvider::Github, WebhookOutcome::Triggered);
        metrics.record_webhook(WebhookProvider::Github, WebhookOutcome::Triggered);
        metrics.record_webhook(WebhookProvider::Gitlab, WebhookOutcome::Unauthorized);
        let text = metrics.encode();
        assert!(text.contains("# TYPE secretsync_cluster_up gauge"));
        assert!(text.contains("# TYPE secretsync_webhook_requests counter"));
        let samples = sample_lines(&text);
        for line in [
            "secretsync_cluster_up{namespace=\"flux-system\",cluster=\"leaf-1\"} 1",
            "secretsync_cluster_up{namespace=\"flux-system\",cluster=\"leaf-2\"} 0",
            "secretsync_leader 1",
            "secretsync_webhook_requests_total{provider=\"github\",outcome=\"triggered\"} 2",
            "secretsync_webhook_requests_total{provider=\"gitlab\",outcome=\"unauthorized\"} 1",
        ] {
            assert!(samples.contains(&line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("gone"));
    }

    #[test]
    fn prometheus_text_is_offered_to_scrapers_that_do_not_ask_for_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.4";
        assert_eq!(
            ExpositionFormat::from_accept(Some(prometheus)),
            ExpositionFormat::OpenMetrics
        );
        assert_eq!(
            ExpositionFormat::from_accept(Some("*/*")),
            ExpositionFormat::PrometheusText
        );
        assert_eq!(
            ExpositionFormat::from_accept(None),
            ExpositionFormat::PrometheusText
        );
        let metrics = Metrics::new();
        metrics.set_revision("main@sha1:abc");
        let text = metrics.encode_as(ExpositionFormat::PrometheusText);
        assert!(text.contains("# TYPE secretsync_applies_total counter"));
        assert!(
            text.contains("secretsync_last_applied_revision_info{revision=\"main@sha1:abc\"} 1")
        );
        assert!(!text.contains("# EOF"));
    }
}
