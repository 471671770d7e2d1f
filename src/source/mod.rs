//! Sources of manifests: a git repository (fetched with `git2`), a local directory, or a
//! Flux `GitRepository` artifact. Each one yields a `Snapshot`: the revision and the
//! selected files of one commit, read without a working-tree checkout.

pub mod artifact;
pub mod configured;
pub mod files;
pub mod git;
pub mod local;
pub mod revision;
pub mod select;

use std::sync::Arc;

pub use self::artifact::{ArtifactError, ArtifactSource};
pub use self::local::{Changed, LocalError, LocalSource, LocalWatch};
pub use self::revision::{Algorithm, InvalidRevision, Revision};
pub use self::select::{IGNORE_FILE, IgnoreRules, Selection, SelectionError};

/// The commit a snapshot was read from, kept for audit ("who changed this, when, why").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    pub id: String,
    pub author: String,
    /// Commit time, seconds since the Unix epoch.
    pub time: i64,
    /// First line of the commit message.
    pub subject: String,
}

impl std::fmt::Debug for FileContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileContent::Bytes(bytes) => write!(f, "Bytes(<{} bytes>)", bytes.len()),
            FileContent::TooLarge { size, limit } => {
                write!(f, "TooLarge {{ size: {size}, limit: {limit} }}")
            }
            FileContent::Known => f.write_str("Known"),
        }
    }
}

/// The selected files of one revision.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub revision: Revision,
    /// `None` for sources that carry no commit metadata (a plain directory, an artifact).
    pub commit: Option<CommitInfo>,
    pub files: Vec<SourceFile>,
}

/// One file of a snapshot.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// The git blob id of the content (computed the same way for non-git sources), so that
    /// parsed results can be cached by content across revisions and sources.
    pub id: String,
    pub content: FileContent,
}

/// What a source could read of a file. `Debug` shows sizes, never content: a repository may
/// hold Secret manifests next to the SecretSyncs.
#[derive(Clone)]
pub enum FileContent {
    Bytes(Arc<[u8]>),
    /// Over the size limit: not read, reported by the manifest parser.
    TooLarge {
        size: u64,
        limit: u64,
    },
    /// Not read because the caller already knows this exact content (same path and id),
    /// e.g. from the parser's cache: a commit that changes one file reads one blob.
    Known,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_content_debug_shows_the_size_not_the_bytes() {
        let content = FileContent::Bytes(Arc::from(
            &b"kind: Secret\ndata: {token: aHVudGVyMg==}\n"[..],
        ));
        let shown = format!("{content:?}");
        assert_eq!(shown, "Bytes(<41 bytes>)");
    }
}
