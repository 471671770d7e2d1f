//! `secretsync run`: the long-running agent, or with `--once` one reconcile from the
//! repository to the leaf clusters with a summary, whose exit code says whether every
//! selected cluster holds its copy. `secretsync plan`: the same reconcile, writing nothing.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::agent::AgentArgs;
use super::git_args::{AuthArgs, ReferenceArgs};
use super::{OutputFormat, block_on, management_client};
use crate::audit::AuditLog;
use crate::cluster::ClientCache;
use crate::manifest::{InvalidSelector, LabelSelector, ManifestSet};
use crate::source::Selection;
use crate::source::configured::{ConfiguredSource, SourceReader};
use crate::source::git::signature::TrustedKeysFile;
use crate::source::git::{GitSource, RemoteUrl};
use crate::source::local::LocalSource;
use crate::status::model::{result_message, result_name};
use crate::sync::apply::Outcome;
use crate::sync::desired::SHARD_LABEL_PREFIX;
use crate::sync::{ReconcileOptions, ReconcileReport, Reconciler};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Reconcile once and exit: 0 when every selected cluster holds its copy, 1 otherwise.
    #[arg(long)]
    pub once: bool,

    #[command(flatten)]
    pub agent: AgentArgs,

    /// Append a JSON line per apply and prune to this file.
    #[arg(long, env = "SECRETSYNC_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    #[command(flatten)]
    pub common: ReconcileArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: ReconcileArgs,
}

/// What `run` and `plan` share: where the manifests come from and what is served.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The config repository (URL) or a directory holding the SecretSync manifests.
    #[arg(long, env = "SECRETSYNC_SOURCE")]
    pub source: String,

    /// Only read manifests under these paths of the repository (repeatable) [default: all].
    #[arg(
        long = "path",
        value_name = "PATH",
        env = "SECRETSYNC_PATHS",
        value_delimiter = ','
    )]
    pub paths: Vec<String>,

    /// Namespace of SecretSyncs that do not set metadata.namespace.
    #[arg(long, default_value = "default", env = "SECRETSYNC_DEFAULT_NAMESPACE")]
    pub default_namespace: String,

    /// Management-cluster namespaces to serve (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',', env = "SECRETSYNC_NAMESPACES")]
    pub namespaces: Vec<String>,

    /// Serve only the SecretSyncs whose labels match (sharding over several agents), e.g.
    /// `sharding.secretsync.dev/key in (shard1)`; the agent that serves the rest runs with
    /// `!sharding.secretsync.dev/key`. Keys must start with `sharding.secretsync.dev/`.
    #[arg(long, env = "SECRETSYNC_WATCH_LABEL_SELECTOR", value_parser = parse_shard)]
    pub watch_label_selector: Option<LabelSelector>,

    /// Reconcile only commits signed (SSH or OpenPGP signatures) by a key of
    /// --trusted-keys; an unsigned or untrusted head commit is refused and the last good
    /// revision kept.
    #[arg(long, env = "SECRETSYNC_VERIFY_SIGNATURES", requires = "trusted_keys")]
    pub verify_signatures: bool,

    /// The keys whose commit signatures are trusted (e.g. a mounted Secret): SSH keys in
    /// authorized_keys format and OpenPGP keys as ASCII-armored public key blocks. Read
    /// again at each fetch when it changed.
    #[arg(long, env = "SECRETSYNC_TRUSTED_KEYS", value_name = "FILE")]
    pub trusted_keys: Option<PathBuf>,

    /// Prune even when a revision holds no SecretSync at all (normally refused as suspicious).
    #[arg(long, env = "SECRETSYNC_ALLOW_EMPTY_SOURCE")]
    pub allow_empty_source: bool,

    /// Directory for the repository cache.
    #[arg(long, default_value = "/tmp/secretsync", env = "SECRETSYNC_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Output format of the summary.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub reference: ReferenceArgs,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// Some pair is not synced, or a manifest has an error.
const EXIT_NOT_SYNCED: u8 = 1;

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let audit = match &args.audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path)?)),
        None => None,
    };
    if !args.once {
        return super::agent::run(args, audit);
    }
    let (set, report) = block_on(reconcile(&args.common, audit, false))?;
    print_summary(&args.common, &set, &report, false)?;
    let all_synced = report.synced() == report.pairs();
    let clean = all_synced && report.problems.is_empty() && !set.has_errors();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_SYNCED)
    })
}

/// `secretsync plan`: the same inputs as `run --once`, nothing written.
pub fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let (set, report) = block_on(reconcile(&args.common, None, true))?;
    print_summary(&args.common, &set, &report, true)?;
    Ok(if set.has_errors() {
        ExitCode::from(EXIT_NOT_SYNCED)
    } else {
        ExitCode::SUCCESS
    })
}

async fn reconcile(
    args: &ReconcileArgs,
    audit: Option<Arc<AuditLog>>,
    dry_run: bool,
) -> anyhow::Result<(ManifestSet, ReconcileReport)> {
    let set = args.reader(DEFAULT_FETCH_TIMEOUT)?.read().await?.set;
    for diagnostic in &set.diagnostics {
        tracing::warn!(%diagnostic, "manifest problem");
    }
    let mgmt = management_client().await?;
    let report = Reconciler::new(mgmt, ClientCache::default())
        .with_options(args.options(audit, dry_run))
        .reconcile(&set)
        .await;
    Ok((set, report))
}

/// How long one fetch of the repository may take in `run --once` and `plan`.
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(120);

impl ReconcileArgs {
    /// The configured source, with its parse cache, read within `timeout`.
    pub(super) fn reader(&self, timeout: Duration) -> anyhow::Result<SourceReader> {
        let selection = Selection::new(&self.paths)?;
        let directory = PathBuf::from(&self.source);
        let source = if directory.is_dir() {
            anyhow::ensure!(
                !self.verify_signatures,
                "--verify-signatures needs a git repository as --source, not a directory"
            );
            ConfiguredSource::Local(LocalSource::new(directory, selection))
        } else {
            let mut git = GitSource::new(
                RemoteUrl::parse(&self.source)?,
                self.reference.reference()?,
                self.auth.auth()?,
                &self.data_dir,
            );
            if self.verify_signatures {
                git = git.verifying_signatures(self.trusted_keys()?);
            }
            ConfiguredSource::Git {
                git: Arc::new(git),
                selection,
            }
        };
        Ok(SourceReader::new(source, &self.default_namespace, timeout))
    }

    fn trusted_keys(&self) -> anyhow::Result<TrustedKeysFile> {
        let path = self
            .trusted_keys
            .as_ref()
            .context("--verify-signatures needs --trusted-keys")?;
        Ok(TrustedKeysFile::open(path)?)
    }

    pub(super) fn options(&self, audit: Option<Arc<AuditLog>>, dry_run: bool) -> ReconcileOptions {
        ReconcileOptions {
            namespaces: (!self.namespaces.is_empty()).then(|| self.namespaces.clone()),
            allow_empty_source: self.allow_empty_source,
            audit,
            dry_run,
            shard: self.watch_label_selector.clone(),
        }
    }
}

/// A shard selector: the kubectl syntax, on shard labels only (they are the ones carried to
/// the leaf copies, so that the shard that wrote a copy is the one that prunes it).
fn parse_shard(text: &str) -> Result<LabelSelector, String> {
    let selector: LabelSelector = text.parse().map_err(|e: InvalidSelector| e.to_string())?;
    let keys = selector
        .match_labels
        .keys()
        .chain(selector.match_expressions.iter().map(|r| &r.key));
    for key in keys {
        if !key.starts_with(SHARD_LABEL_PREFIX) {
            return Err(format!(
                "label key {key:?}: shard selectors use keys under {SHARD_LABEL_PREFIX}"
            ));
        }
    }
    Ok(selector)
}

fn print_summary(
    args: &ReconcileArgs,
    set: &ManifestSet,
    report: &ReconcileReport,
    dry_run: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&summary_json(set, report))?
        )?,
        OutputFormat::Text => write_text(&mut out, set, report, dry_run)?,
    }
    Ok(())
}

fn write_text(
    out: &mut impl std::io::Write,
    set: &ManifestSet,
    report: &ReconcileReport,
    dry_run: bool,
) -> std::io::Result<()> {
    writeln!(out, "revision {}", set.revision)?;
    for (sync, results) in &report.results {
        if results.is_empty() {
            writeln!(out, "{sync}: selects no ready GitopsCluster")?;
        }
        for result in results {
            let detail = match result.outcome.resource_version() {
                Some(version) => format!("leaf version {version}"),
                None => result_message(&result.outcome),
            };
            writeln!(
                out,
                "{sync} → {}: {} ({detail})",
                result.cluster,
                result_name(&result.outcome)
            )?;
        }
    }
    let prune_word = if dry_run { "would prune" } else { "pruned" };
    for prune in &report.prunes {
        writeln!(out, "{prune_word} {prune}")?;
    }
    for problem in &report.problems {
        writeln!(out, "problem: {problem}")?;
    }
    if dry_run {
        let changes = report
            .results
            .values()
            .flatten()
            .filter(|r| matches!(r.outcome, Outcome::WouldApply { .. }))
            .count();
        return writeln!(
            out,
            "plan: {changes} to write, {} to prune; nothing was written",
            report.prunes.len()
        );
    }
    writeln!(
        out,
        "{}/{} synced; {} written, {} pruned, {} status update(s); {} manifest error(s)",
        report.synced(),
        report.pairs(),
        report.applied,
        report.pruned,
        report.status_writes,
        set.diagnostics
            .iter()
            .filter(|d| d.severity == crate::manifest::Severity::Error)
            .count()
    )?;
    Ok(())
}

fn summary_json(set: &ManifestSet, report: &ReconcileReport) -> serde_json::Value {
    let results: serde_json::Map<String, serde_json::Value> = report
        .results
        .iter()
        .map(|(sync, results)| {
            let clusters: serde_json::Map<String, serde_json::Value> = results
                .iter()
                .map(|r| {
                    (
                        r.cluster.clone(),
                        serde_json::to_value(&r.outcome).unwrap_or_default(),
                    )
                })
                .collect();
            (sync.to_string(), serde_json::Value::Object(clusters))
        })
        .collect();
    serde_json::json!({
        "revision": set.revision.to_string(),
        "applied": report.applied,
        "pruned": report.pruned,
        "statusWrites": report.status_writes,
        "problems": report.problems,
        "diagnostics": set.diagnostics,
        "results": results,
    })
}
