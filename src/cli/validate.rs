//! `secretsync validate`: lint the SecretSync manifests of a directory or a repository, for
//! pull-request CI. No cluster needed. Exit 0 when valid, 1 on any error, 2 when it could
//! not check at all.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::OutputFormat;
use super::git_args::{AuthArgs, ReferenceArgs};
use crate::manifest::{Diagnostic, ManifestSet, Parser, SecretSync, Severity};
use crate::source::git::{GitSource, RemoteUrl};
use crate::source::local::LocalSource;
use crate::source::{Selection, Snapshot};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A directory (files as they are on disk, committed or not) or a repository URL
    /// (https://, ssh://, user@host:path, git://, file://).
    pub source: String,

    /// Only read manifests under these paths of the repository (repeatable) [default: all].
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,

    /// Namespace of SecretSyncs that do not set metadata.namespace.
    #[arg(long, default_value = "default", env = "SECRETSYNC_DEFAULT_NAMESPACE")]
    pub default_namespace: String,

    /// Largest manifest file read, in bytes.
    #[arg(long, default_value_t = crate::source::select::DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub reference: ReferenceArgs,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// Any error in the manifests.
const EXIT_INVALID: u8 = 1;

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let selection = Selection::new(&args.paths)?.with_max_file_size(args.max_file_size);
    let snapshot = read_snapshot(args, &selection)?;
    let set = Parser::new(&args.default_namespace).parse(&snapshot);
    let report = Report::new(&snapshot, &set);
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        OutputFormat::Text => report.write_text(&mut out)?,
    }
    Ok(if set.has_errors() {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}

fn read_snapshot(args: &ValidateArgs, selection: &Selection) -> anyhow::Result<Snapshot> {
    let directory = PathBuf::from(&args.source);
    if directory.is_dir() {
        return LocalSource::new(directory, selection.clone())
            .read()
            .context("reading the directory");
    }
    let url = RemoteUrl::parse(&args.source)?;
    let cache = tempfile::tempdir().context("creating a temporary repository cache")?;
    let source = GitSource::new(
        url,
        args.reference.reference()?,
        args.auth.auth()?,
        cache.path(),
    );
    let fetched = source.fetch()?;
    Ok(source.snapshot(&fetched, selection)?)
}

/// What `validate` reports, in either format.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    revision: String,
    files: usize,
    valid: bool,
    errors: usize,
    warnings: usize,
    secret_syncs: Vec<SyncSummary<'a>>,
    diagnostics: &'a [Diagnostic],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncSummary<'a> {
    name: String,
    path: &'a str,
    line: usize,
    secret: &'a str,
    target_namespace: &'a str,
    selector: String,
}

impl<'a> Report<'a> {
    fn new(snapshot: &Snapshot, set: &'a ManifestSet) -> Self {
        let count = |severity| {
            set.diagnostics
                .iter()
                .filter(|d| d.severity == severity)
                .count()
        };
        Report {
            revision: set.revision.to_string(),
            files: snapshot.files.len(),
            valid: !set.has_errors(),
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            secret_syncs: set.syncs.iter().map(SyncSummary::new).collect(),
            diagnostics: &set.diagnostics,
        }
    }

    fn write_text(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        for sync in &self.secret_syncs {
            writeln!(
                out,
                "{}:{}: ok: SecretSync {} copies Secret {} to namespace {} of clusters matching {}",
                sync.path, sync.line, sync.name, sync.secret, sync.target_namespace, sync.selector
            )?;
        }
        for diagnostic in self.diagnostics {
            writeln!(out, "{diagnostic}")?;
        }
        writeln!(
            out,
            "{}: {} file(s) at {}: {} SecretSync(s) valid, {} error(s), {} warning(s)",
            if self.valid { "valid" } else { "invalid" },
            self.files,
            self.revision,
            self.secret_syncs.len(),
            self.errors,
            self.warnings
        )
    }
}

impl<'a> SyncSummary<'a> {
    fn new(sync: &'a SecretSync) -> Self {
        SyncSummary {
            name: sync.key.to_string(),
            path: &sync.provenance.path,
            line: sync.provenance.line,
            secret: &sync.spec.secret_ref.name,
            target_namespace: sync.target_namespace(),
            selector: sync.spec.cluster_selector.to_string(),
        }
    }
}
