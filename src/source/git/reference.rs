//! Which commit of the remote to follow: a branch (default `main`), a tag, the highest tag
//! matching a semver range, or an exact commit; what to fetch for it and how to resolve it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid semver range {range:?}: {reason}")]
    InvalidSemver { range: String, reason: String },
    #[error("invalid commit {commit:?}: expected 40 hex digits")]
    InvalidCommit { commit: String },
    #[error("branch or tag name {name:?} is not valid")]
    InvalidName { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitReference {
    Branch(String),
    Tag(String),
    Semver(semver::VersionReq),
    Commit(String),
}

impl Default for GitReference {
    fn default() -> Self {
        GitReference::Branch("main".to_owned())
    }
}

impl GitReference {
    pub fn branch(name: &str) -> Result<Self, ReferenceError> {
        valid_name(name).map(GitReference::Branch)
    }

    pub fn tag(name: &str) -> Result<Self, ReferenceError> {
        valid_name(name).map(GitReference::Tag)
    }

    pub fn semver(range: &str) -> Result<Self, ReferenceError> {
        semver::VersionReq::parse(range)
            .map(GitReference::Semver)
            .map_err(|e| ReferenceError::InvalidSemver {
                range: range.to_owned(),
                reason: e.to_string(),
            })
    }

    pub fn commit(id: &str) -> Result<Self, ReferenceError> {
        if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(GitReference::Commit(id.to_ascii_lowercase()))
        } else {
            Err(ReferenceError::InvalidCommit {
                commit: id.to_owned(),
            })
        }
    }

    /// Refspecs to fetch. Branches are fetched as a whole (with prune) so that a deleted
    /// branch is noticed instead of leaving a stale local ref behind.
    pub(super) fn refspecs(&self) -> &'static [&'static str] {
        match self {
            GitReference::Branch(_) => &[BRANCHES],
            GitReference::Tag(_) | GitReference::Semver(_) => &[TAGS],
            GitReference::Commit(_) => &[BRANCHES, TAGS],
        }
    }
}

pub(super) const BRANCHES: &str = "+refs/heads/*:refs/remotes/origin/*";
pub(super) const TAGS: &str = "+refs/tags/*:refs/tags/*";

impl fmt::Display for GitReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitReference::Branch(name) => write!(f, "branch {name}"),
            GitReference::Tag(name) => write!(f, "tag {name}"),
            GitReference::Semver(range) => write!(f, "semver {range}"),
            GitReference::Commit(id) => write!(f, "commit {id}"),
        }
    }
}

fn valid_name(name: &str) -> Result<String, ReferenceError> {
    let valid = !name.is_empty()
        && !name.starts_with(['-', '/'])
        && !name.ends_with(['/', '.'])
        && !name.contains("..")
        && !name.contains("@{")
        && !name
            .bytes()
            .any(|b| b.is_ascii_control() || b" ~^:?*[\\".contains(&b));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(ReferenceError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// The highest of `tags` that is a semver version (an optional leading `v`) inside `range`.
pub(super) fn highest_matching<'a>(
    range: &semver::VersionReq,
    tags: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    tags.into_iter()
        .filter_map(|tag| {
            let version = semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()?;
            range.matches(&version).then_some((version, tag))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, tag)| tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_tag_in_range() {
        let tags = [
            "v1.0.0",
            "v1.2.0",
            "1.10.1",
            "v2.0.0",
            "v1.11.0-rc.1",
            "latest",
            "v1.9.9",
        ];
        let cases = [
            ("^1.0", Some("1.10.1")),
            (">=2", Some("v2.0.0")),
            ("~1.2", Some("v1.2.0")),
            ("<1.0.0", None),
        ];
        for (range, expected) in cases {
            let range = semver::VersionReq::parse(range).unwrap();
            assert_eq!(highest_matching(&range, tags), expected, "{range}");
        }
    }

    #[test]
    fn validates_names_and_commits() {
        assert!(GitReference::branch("feature/x-1").is_ok());
        for bad in ["", "a..b", "-x", "x/", "a b", "a:b", "x.", "a@{1}"] {
            assert!(GitReference::branch(bad).is_err(), "{bad:?}");
        }
        assert!(GitReference::commit(&"a".repeat(40)).is_ok());
        assert!(GitReference::commit("abc").is_err());
        assert!(GitReference::semver("not a range").is_err());
    }
}
