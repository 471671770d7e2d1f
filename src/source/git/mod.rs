//! Git repositories as a source: fetch one reference into a bare cache repository with
//! `git2`, resolve it to a revision, and read the selected files of that commit.

mod auth;
mod known_hosts;
mod reference;
pub mod signature;
mod tree;
mod url;

use std::path::{Path, PathBuf};

use git2::{AutotagOption, FetchOptions, FetchPrune, Oid, Repository};
use sha2::{Digest, Sha256};

use self::auth::Transfer;
pub use self::auth::{AuthError, GitAuth, SshAuth};
pub use self::known_hosts::{HostKeyCheck, KnownHosts, KnownHostsError};
pub use self::reference::{GitReference, ReferenceError};
pub use self::url::{RemoteUrl, Transport, UrlError};
use super::{CommitInfo, InvalidRevision, Revision, Selection, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("repository cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// The cache's objects cannot be read (a corrupt pack, a truncated file): the cache is
    /// removed, and the next fetch clones the repository again.
    #[error("repository cache {path} is damaged ({message}): removed, to be cloned again")]
    CacheDamaged { path: PathBuf, message: String },
    /// `url` is printed without credentials; `message` is scrubbed of every secret.
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("{reference} not found in {url}{hint}")]
    ReferenceNotFound {
        url: String,
        reference: String,
        hint: &'static str,
    },
    #[error("reading {revision}: {source}")]
    Read {
        revision: Revision,
        #[source]
        source: git2::Error,
    },
    #[error(
        "commit {commit} not found in {url} (fetched {reference}; is it on another branch or tag?)"
    )]
    CommitNotFound {
        url: String,
        commit: String,
        reference: String,
    },
    #[error("{prefix} names more than one commit in {url}: give more digits")]
    CommitAmbiguous { url: String, prefix: String },
    #[error(transparent)]
    Revision(#[from] InvalidRevision),
    #[error(transparent)]
    Signature(#[from] signature::SignatureError),
    #[error(transparent)]
    TrustedKeys(#[from] signature::TrustedKeysFileError),
}

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub revision: Revision,
    pub commit: CommitInfo,
    /// The commit the reference pointed at before, when the new one does not descend from
    /// it: the history was rewritten (force-push).
    pub rewritten_from: Option<String>,
    /// Objects transferred by this fetch (0 when nothing was new).
    pub received_objects: usize,
}

/// One remote repository, followed at one reference.
#[derive(Debug)]
pub struct GitSource {
    url: RemoteUrl,
    reference: GitReference,
    auth: GitAuth,
    cache: PathBuf,
    /// When set, only commits signed by one of the keys of this file are accepted.
    trusted: Option<signature::TrustedKeysFile>,
}

impl GitSource {
    /// A source whose bare cache repository lives under `data_dir/git/`.
    #[must_use]
    pub fn new(url: RemoteUrl, reference: GitReference, auth: GitAuth, data_dir: &Path) -> Self {
        // Keyed by the address without credentials: rotating a password keeps the cache.
        let key = hex::encode(&Sha256::digest(url.to_string().as_bytes())[..12]);
        let cache = data_dir.join("git").join(format!("{key}.git"));
        GitSource {
            url,
            reference,
            auth,
            cache,
            trusted: None,
        }
    }

    /// Accepts only commits signed by one of the keys of `trusted` (`--verify-signatures`),
    /// as the file holds them at each fetch.
    #[must_use]
    pub fn verifying_signatures(mut self, trusted: signature::TrustedKeysFile) -> Self {
        self.trusted = Some(trusted);
        self
    }

    #[must_use]
    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    /// Fetches the reference (transferring only what is new) and resolves it to a commit.
    /// A damaged cache is removed and the repository cloned again, once.
    /// Blocking: call from a blocking thread.
    pub fn fetch(&self) -> Result<Fetched, GitError> {
        match self.fetch_into_cache().map_err(|e| self.damaged(e)) {
            Err(GitError::CacheDamaged { message, .. }) => {
                tracing::warn!(cache = %self.cache.display(), %message, "the repository cache was damaged and is cloned again");
                self.fetch_into_cache().map_err(|e| self.damaged(e))
            }
            result => result,
        }
    }

    /// An error that shows the cache's objects cannot be read becomes `CacheDamaged`, and
    /// the cache is removed so that the next fetch starts afresh; others pass unchanged.
    fn damaged(&self, error: GitError) -> GitError {
        let message = match &error {
            GitError::Read { source, .. } | GitError::Cache { source, .. } if is_damage(source) => {
                source.message().to_owned()
            }
            GitError::CacheDamaged { message, .. } => message.clone(),
            _ => return error,
        };
        if let Err(removing) = std::fs::remove_dir_all(&self.cache) {
            tracing::warn!(cache = %self.cache.display(), error = %removing, "cannot remove the damaged repository cache");
        }
        GitError::CacheDamaged {
            path: self.cache.clone(),
            message,
        }
    }

    fn fetch_into_cache(&self) -> Result<Fetched, GitError> {
        let repo = self.open_cache()?;
        let before = self.resolve(&repo).ok().map(|(_, oid)| oid);
        let received_objects = self.download(&repo)?;
        let (name, oid) = self.resolve(&repo)?;
        let revision = Revision::new(name.as_deref(), &oid.to_string())?;
        if let Some(trusted) = &self.trusted {
            let signer = trusted.current()?.verify_commit(&repo, oid)?;
            tracing::debug!(%revision, %signer, "commit signature verified");
        }
        let commit = repo.find_commit(oid).map_err(|source| GitError::Read {
            revision: revision.clone(),
            source,
        })?;
        let rewritten_from = before
            .filter(|old| *old != oid && !repo.graph_descendant_of(oid, *old).unwrap_or(false))
            .map(|old| old.to_string());
        if let Some(old) = &rewritten_from {
            tracing::warn!(url = %self.url, %old, new = %oid, "history rewritten: the new commit does not descend from the previous one");
        }
        Ok(Fetched {
            revision,
            commit: commit_info(&commit),
            rewritten_from,
            received_objects,
        })
    }

    /// Reads the selected files of a fetched revision from the cache.
    pub fn snapshot(&self, fetched: &Fetched, selection: &Selection) -> Result<Snapshot, GitError> {
        self.snapshot_skipping(fetched, selection, &|_, _| false)
    }

    /// Like `snapshot`, but files for which `known(path, blob id)` holds are not read
    /// (`FileContent::Known`): pass `Parser::knows` so that only changed files are read.
    pub fn snapshot_skipping(
        &self,
        fetched: &Fetched,
        selection: &Selection,
        known: tree::Known<'_>,
    ) -> Result<Snapshot, GitError> {
        let revision = &fetched.revision;
        let read_error = |source| GitError::Read {
            revision: revision.clone(),
            source,
        };
        let repo = self.open_cache()?;
        let oid = Oid::from_str(revision.digest()).map_err(read_error)?;
        let files = repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .and_then(|tree| tree::read_files(&repo, &tree, selection, known))
            .map_err(|e| self.damaged(read_error(e)))?;
        Ok(Snapshot {
            revision: revision.clone(),
            commit: Some(fetched.commit.clone()),
            files,
        })
    }

    /// Who made a commit, when and why: `commit` is its id or an unambiguous prefix of it.
    /// Reads the cache only, so `fetch` first; finds any commit fetched so far, which
    /// includes the whole history of the followed reference.
    pub fn commit(&self, commit: &str) -> Result<CommitInfo, GitError> {
        let repo = self.open_cache()?;
        repo.find_commit_by_prefix(commit)
            .map(|found| commit_info(&found))
            .map_err(|error| match error.code() {
                git2::ErrorCode::Ambiguous => GitError::CommitAmbiguous {
                    url: self.url.to_string(),
                    prefix: commit.to_owned(),
                },
                _ => GitError::CommitNotFound {
                    url: self.url.to_string(),
                    commit: commit.to_owned(),
                    reference: self.reference.to_string(),
                },
            })
    }

    fn open_cache(&self) -> Result<Repository, GitError> {
        let cache_error = |source| GitError::Cache {
            path: self.cache.clone(),
            source,
        };
        match Repository::open_bare(&self.cache) {
            Ok(repo) => Ok(repo),
            Err(_) => Repository::init_bare(&self.cache).map_err(cache_error),
        }
    }

    /// Fetches the reference's refspecs; returns how many objects were received.
    fn download(&self, repo: &Repository) -> Result<usize, GitError> {
        let transfer = Transfer::default();
        let fetch_error = |e: git2::Error| {
            if is_damage(&e) {
                return GitError::CacheDamaged {
                    path: self.cache.clone(),
                    message: self.scrub(e.message()),
                };
            }
            GitError::Fetch {
                url: self.url.to_string(),
                message: transfer
                    .take_refusal()
                    .unwrap_or_else(|| self.scrub(e.message())),
            }
        };
        let mut remote = repo
            .remote_anonymous(self.url.as_git_url())
            .map_err(fetch_error)?;
        let headers = self.auth.http_headers();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(self.auth.callbacks(&self.url, &transfer))
            .custom_headers(&headers)
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::None);
        remote
            .fetch(self.reference.refspecs(), Some(&mut options), None)
            .map_err(fetch_error)?;
        Ok(remote.stats().received_objects())
    }

    /// The local ref the reference was fetched to: its short name (for the revision) and commit.
    fn resolve(&self, repo: &Repository) -> Result<(Option<String>, Oid), GitError> {
        let not_found = |hint| GitError::ReferenceNotFound {
            url: self.url.to_string(),
            reference: self.reference.to_string(),
            hint,
        };
        let peel = |refname: &str| {
            repo.find_reference(refname)
                .and_then(|r| r.peel_to_commit())
                .map(|c| c.id())
        };
        match &self.reference {
            GitReference::Branch(branch) => peel(&format!("refs/remotes/origin/{branch}"))
                .map(|oid| (Some(branch.clone()), oid))
                .map_err(|_| not_found(empty_hint(repo))),
            GitReference::Tag(tag) => peel(&format!("refs/tags/{tag}"))
                .map(|oid| (Some(tag.clone()), oid))
                .map_err(|_| not_found("")),
            GitReference::Semver(range) => {
                let tags = repo.tag_names(None).map_err(|_| not_found(""))?;
                let tag = reference::highest_matching(
                    range,
                    tags.iter().filter_map(|tag| tag.ok().flatten()),
                )
                .ok_or_else(|| not_found(" (no tag in range)"))?;
                peel(&format!("refs/tags/{tag}"))
                    .map(|oid| (Some(tag.to_owned()), oid))
                    .map_err(|_| not_found(""))
            }
            GitReference::Commit(id) => Oid::from_str(id)
                .and_then(|oid| repo.find_commit(oid))
                .map(|commit| (None, commit.id()))
                .map_err(|_| not_found(" (not reachable from any branch or tag)")),
        }
    }

    /// libgit2 messages may quote what the server or the URL said; never let a secret through.
    fn scrub(&self, message: &str) -> String {
        let mut message = message.to_owned();
        for secret in self.auth.secrets().into_iter().chain(self.url.password()) {
            message = message.replace(secret, "***");
        }
        message
    }
}

/// Whether libgit2 failed on the local object database (a corrupt, truncated or missing
/// pack or object), not on the network or the remote. Only asked about objects that a
/// fetch has just resolved, so a missing one is damage too.
fn is_damage(error: &git2::Error) -> bool {
    use git2::ErrorClass;
    matches!(
        error.class(),
        ErrorClass::Odb | ErrorClass::Zlib | ErrorClass::Object | ErrorClass::Indexer
    )
}

fn empty_hint(repo: &Repository) -> &'static str {
    let has_branches = repo
        .references_glob("refs/remotes/origin/*")
        .is_ok_and(|mut refs| refs.next().is_some());
    if has_branches {
        ""
    } else {
        " (the repository has no branches: is it empty?)"
    }
}

fn commit_info(commit: &git2::Commit<'_>) -> CommitInfo {
    let author = commit.author();
    CommitInfo {
        id: commit.id().to_string(),
        author: format!(
            "{} <{}>",
            String::from_utf8_lossy(author.name_bytes()),
            String::from_utf8_lossy(author.email_bytes())
        ),
        time: commit.time().seconds(),
        subject: commit
            .summary_bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .into_owned(),
    }
}
