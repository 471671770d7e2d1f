//! The source a command was pointed at (`--source`): a repository URL or a local directory,
//! read into a parsed `ManifestSet` off the async runtime (git2 and the file system block)
//! and within a deadline, so a hanging git server delays a fetch, never the agent.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::git::{GitError, GitSource};
use super::local::{LocalError, LocalSource};
use super::{CommitInfo, Selection, Snapshot};
use crate::manifest::{ManifestSet, Parser};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("reading {source_name} took longer than {}s; the last good revision is kept", .timeout.as_secs())]
    Timeout {
        source_name: String,
        timeout: Duration,
    },
    #[error("the previous read of {source_name} has not finished yet")]
    StillReading { source_name: String },
    #[error("the reading thread failed: {0}")]
    Thread(#[from] tokio::task::JoinError),
}

impl SourceError {
    /// The reason of the `SourceReady` condition this error sets.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Git(GitError::Signature(_) | GitError::TrustedKeys(_)) => {
                "VerificationFailed"
            }
            _ => "FetchFailed",
        }
    }
}

/// Where manifests come from.
#[derive(Debug, Clone)]
pub enum ConfiguredSource {
    Git {
        git: Arc<GitSource>,
        selection: Selection,
    },
    Local(LocalSource),
}

/// What one read produced.
#[derive(Debug)]
pub struct Read {
    pub set: ManifestSet,
    /// The commit, for git sources.
    pub commit: Option<CommitInfo>,
}

/// A source with its parse cache: a read that finds one changed file parses one file.
#[derive(Debug, Clone)]
pub struct SourceReader {
    source: ConfiguredSource,
    parser: Arc<Mutex<Parser>>,
    /// Held by the blocking thread of a read: a read that outlived its deadline keeps the
    /// next one from touching the same cache repository until it ends.
    busy: Arc<tokio::sync::Mutex<()>>,
    timeout: Duration,
}

impl SourceReader {
    #[must_use]
    pub fn new(source: ConfiguredSource, default_namespace: &str, timeout: Duration) -> Self {
        SourceReader {
            source,
            parser: Arc::new(Mutex::new(Parser::new(default_namespace))),
            busy: Arc::new(tokio::sync::Mutex::new(())),
            timeout,
        }
    }

    #[must_use]
    pub fn source(&self) -> &ConfiguredSource {
        &self.source
    }

    /// A name for logs and errors, without credentials.
    #[must_use]
    pub fn name(&self) -> String {
        match &self.source {
            ConfiguredSource::Git { git, .. } => git.url().to_string(),
            ConfiguredSource::Local(local) => local.root().display().to_string(),
        }
    }

    /// Fetches (git) or reads (directory) the source and parses it.
    pub async fn read(&self) -> Result<Read, SourceError> {
        let busy = self
            .busy
            .clone()
            .try_lock_owned()
            .map_err(|_| SourceError::StillReading {
                source_name: self.name(),
            })?;
        let source = self.source.clone();
        let parser = self.parser.clone();
        let reading = tokio::task::spawn_blocking(move || {
            let _busy = busy;
            read_blocking(&source, &parser)
        });
        match tokio::time::timeout(self.timeout, reading).await {
            Ok(joined) => joined?,
            Err(_) => Err(SourceError::Timeout {
                source_name: self.name(),
                timeout: self.timeout,
            }),
        }
    }
}

fn read_blocking(source: &ConfiguredSource, parser: &Mutex<Parser>) -> Result<Read, SourceError> {
    let lock = || parser.lock().unwrap_or_else(PoisonError::into_inner);
    let (snapshot, commit): (Snapshot, _) = match source {
        ConfiguredSource::Git { git, selection } => {
            let fetched = git.fetch()?;
            let snapshot =
                git.snapshot_skipping(&fetched, selection, &|path, id| lock().knows(path, id))?;
            (snapshot, Some(fetched.commit))
        }
        ConfiguredSource::Local(local) => (local.read()?, None),
    };
    let set = lock().parse(&snapshot);
    Ok(Read { set, commit })
}
