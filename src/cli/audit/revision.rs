//! What `audit --revision` matches (pure): a commit given as a Flux revision
//! (`main@sha1:<id>`, `sha1:<id>`) or as a bare id or prefix, compared with the revision
//! annotation of leaf Secrets by its digest, so that the same commit reached through
//! another branch or tag matches too.

use crate::source::{Algorithm, Revision};

/// The shortest prefix accepted, as `git` abbreviates commits.
const MIN_PREFIX: usize = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionQuery {
    /// Set when the query was a whole revision: `sha1:` or `sha256:`.
    algorithm: Option<Algorithm>,
    /// Lowercase hex: a whole digest, or a prefix of one.
    prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--revision {given:?}: expected `<ref>@sha1:<commit>`, `sha1:<commit>` or a commit id of at least {MIN_PREFIX} hex digits"
)]
pub struct InvalidQuery {
    given: String,
}

impl RevisionQuery {
    pub fn parse(text: &str) -> Result<Self, InvalidQuery> {
        let text = text.trim();
        if text.contains(':') {
            let revision: Revision = text.parse().map_err(|_| InvalidQuery {
                given: text.to_owned(),
            })?;
            return Ok(RevisionQuery {
                algorithm: Some(revision.algorithm()),
                prefix: revision.digest().to_owned(),
            });
        }
        let hex = text.len() >= MIN_PREFIX
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex {
            return Err(InvalidQuery {
                given: text.to_owned(),
            });
        }
        Ok(RevisionQuery {
            algorithm: None,
            prefix: text.to_ascii_lowercase(),
        })
    }

    /// The digest, or the prefix of it, that was asked for.
    #[must_use]
    pub fn digest_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the query can name a git commit (a content digest of a directory cannot).
    #[must_use]
    pub fn may_be_commit(&self) -> bool {
        self.algorithm != Some(Algorithm::Sha256) && self.prefix.len() <= 40
    }

    /// The query for one whole commit id (what a prefix was found to stand for).
    #[must_use]
    pub fn of_commit(commit: &str) -> Self {
        RevisionQuery {
            algorithm: Some(Algorithm::Sha1),
            prefix: commit.to_ascii_lowercase(),
        }
    }

    /// Whether a leaf Secret's revision annotation names the asked-for commit.
    #[must_use]
    pub fn matches(&self, annotation: &str) -> bool {
        let Ok(revision) = annotation.parse::<Revision>() else {
            return false;
        };
        self.algorithm.is_none_or(|a| a == revision.algorithm())
            && revision.digest().starts_with(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    const OTHER: &str = "fedcba9876543210fedcba9876543210fedcba98";

    #[test]
    fn flux_revisions_ids_and_prefixes_match_the_same_commit() {
        let on_main = format!("main@sha1:{COMMIT}");
        let on_tag = format!("v1.0.0@sha1:{COMMIT}");
        for given in [
            on_main.as_str(),
            &format!("sha1:{COMMIT}"),
            COMMIT,
            "0123456",
            "0123456789AB",
        ] {
            let query = RevisionQuery::parse(given).unwrap();
            assert!(query.matches(&on_main), "{given} vs {on_main}");
            assert!(query.matches(&on_tag), "{given} vs {on_tag}");
            assert!(!query.matches(&format!("main@sha1:{OTHER}")), "{given}");
            assert!(!query.matches("not a revision"), "{given}");
            assert!(query.may_be_commit());
        }
    }

    #[test]
    fn content_digests_are_matched_by_their_algorithm() {
        let digest = "ab".repeat(32);
        let query = RevisionQuery::parse(&format!("sha256:{digest}")).unwrap();
        assert!(query.matches(&format!("sha256:{digest}")));
        assert!(!query.may_be_commit());
        let commit_query = RevisionQuery::parse(&format!("sha1:{}", &digest[..40])).unwrap();
        assert!(!commit_query.matches(&format!("sha256:{digest}")));
    }

    #[test]
    fn short_or_malformed_queries_are_refused() {
        for given in ["012345", "main", "main@sha1:0123", "xyz1234567", ""] {
            let error = RevisionQuery::parse(given).unwrap_err().to_string();
            assert!(error.contains("at least 7 hex digits"), "{error}");
        }
    }

    #[test]
    fn a_resolved_prefix_matches_only_its_commit() {
        let query = RevisionQuery::of_commit(COMMIT);
        assert_eq!(query.digest_prefix(), COMMIT);
        assert!(query.matches(&format!("main@sha1:{COMMIT}")));
        assert!(!query.matches(&format!("main@sha1:0123456{}", &OTHER[7..])));
    }
}
