//! Revisions as Flux writes them: `<reference>@sha1:<40 hex>` (`main@sha1:…`, `v1.2.0@sha1:…`),
//! `sha1:<40 hex>` for a commit fetched by id, and `sha256:<64 hex>` for content that is not
//! a commit (a plain directory). A revision flows from the source through the sync into
//! status and the leaf Secrets' annotations.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A fetched revision of the config repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Revision(Arc<Parts>);

/// Shared: a revision is cloned into every SecretSync and result of a reconcile.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Parts {
    reference: Option<String>,
    algorithm: Algorithm,
    /// Lowercase hex digest: a commit id for sha1, a content digest for sha256.
    digest: String,
}

/// How the digest of a revision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// A git commit id.
    Sha1,
    /// A digest of content that is not a commit.
    Sha256,
}

impl Algorithm {
    fn prefix(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 40,
            Algorithm::Sha256 => 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid revision {revision:?}: expected `<ref>@sha1:<40 hex>`, `sha1:<40 hex>` or `sha256:<64 hex>`"
)]
pub struct InvalidRevision {
    revision: String,
}

impl Revision {
    /// A revision of `commit` (40 hex digits) reached through `reference` (a branch or tag
    /// name), if any.
    pub fn new(reference: Option<&str>, commit: &str) -> Result<Self, InvalidRevision> {
        Revision::build(reference, Algorithm::Sha1, commit)
    }

    /// A revision of content that is not a commit, named by its sha256 digest (64 hex digits).
    pub fn content(sha256: &str) -> Result<Self, InvalidRevision> {
        Revision::build(None, Algorithm::Sha256, sha256)
    }

    fn build(
        reference: Option<&str>,
        algorithm: Algorithm,
        digest: &str,
    ) -> Result<Self, InvalidRevision> {
        let valid_digest =
            digest.len() == algorithm.hex_len() && digest.bytes().all(|b| b.is_ascii_hexdigit());
        let valid_reference = reference.is_none_or(|r| !r.is_empty() && !r.contains('@'));
        let revision = Revision(Arc::new(Parts {
            reference: reference.map(str::to_owned),
            algorithm,
            digest: digest.to_ascii_lowercase(),
        }));
        if valid_digest && valid_reference {
            Ok(revision)
        } else {
            Err(InvalidRevision {
                revision: revision.to_string(),
            })
        }
    }

    /// The commit id (40 hex digits), when the revision is a commit.
    #[must_use]
    pub fn commit(&self) -> Option<&str> {
        (self.0.algorithm == Algorithm::Sha1).then_some(self.0.digest.as_str())
    }

    /// The digest: a commit id or a content digest.
    #[must_use]
    pub fn digest(&self) -> &str {
        &self.0.digest
    }

    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.0.algorithm
    }

    /// The branch or tag the commit was reached through.
    #[must_use]
    pub fn reference(&self) -> Option<&str> {
        self.0.reference.as_deref()
    }

    /// The first 12 hex digits, for humans.
    #[must_use]
    pub fn short(&self) -> &str {
        &self.0.digest[..12]
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reference) = &self.0.reference {
            write!(f, "{reference}@")?;
        }
        write!(f, "{}:{}", self.0.algorithm.prefix(), self.0.digest)
    }
}

impl std::str::FromStr for Revision {
    type Err = InvalidRevision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidRevision {
            revision: s.to_owned(),
        };
        let (reference, digest) = match s.rsplit_once('@') {
            Some((reference, digest)) => (Some(reference), digest),
            None => (None, s),
        };
        let (algorithm, hex) = if let Some(hex) = digest.strip_prefix("sha1:") {
            (Algorithm::Sha1, hex)
        } else if let Some(hex) = digest.strip_prefix("sha256:") {
            (Algorithm::Sha256, hex)
        } else {
            return Err(invalid());
        };
        Revision::build(reference, algorithm, hex).map_err(|_| invalid())
    }
}

impl TryFrom<String> for Revision {
    type Error = InvalidRevision;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Revision> for String {
    fn from(revision: Revision) -> Self {
        revision.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn formats_like_flux() {
        let branch = Revision::new(Some("main"), COMMIT).unwrap();
        assert_eq!(branch.to_string(), format!("main@sha1:{COMMIT}"));
        let commit = Revision::new(None, COMMIT).unwrap();
        assert_eq!(commit.to_string(), format!("sha1:{COMMIT}"));
        assert_eq!(branch.short(), "0123456789ab");
        let content = Revision::content(&"ab".repeat(32)).unwrap();
        assert_eq!(content.to_string(), format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(content.commit(), None);
    }

    #[test]
    fn parses_what_it_formats() {
        for text in [
            format!("main@sha1:{COMMIT}"),
            format!("feature/x@sha1:{COMMIT}"),
            format!("v1.2.3@sha1:{COMMIT}"),
            format!("sha1:{COMMIT}"),
        ] {
            let revision: Revision = text.parse().unwrap();
            assert_eq!(revision.to_string(), text);
            assert_eq!(revision.commit(), Some(COMMIT));
        }
        let content: Revision = format!("sha256:{}", "0f".repeat(32)).parse().unwrap();
        assert_eq!(content.digest(), "0f".repeat(32));
    }

    #[test]
    fn refuses_malformed_revisions() {
        for text in [
            "",
            "main",
            "main@sha1:abc",
            "main@sha256:0123",
            &format!("@sha1:{COMMIT}"),
            &format!("main@sha1:{}", "g".repeat(40)),
            &format!("sha256:{COMMIT}"),
        ] {
            assert!(text.parse::<Revision>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn round_trips_through_serde_as_a_string() {
        let revision = Revision::new(Some("main"), COMMIT).unwrap();
        let json = serde_json::to_string(&revision).unwrap();
        assert_eq!(json, format!("\"main@sha1:{COMMIT}\""));
        assert_eq!(serde_json::from_str::<Revision>(&json).unwrap(), revision);
    }
}
