//! Which files of a revision are manifests: YAML files under the configured paths, minus
//! what the repository's `.secretsyncignore` (gitignore syntax) excludes.

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// Name of the ignore file, read from the repository root.
pub const IGNORE_FILE: &str = ".secretsyncignore";

/// The default size limit of one manifest file.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("path {path:?} leaves the repository (contains `..`)")]
    PathEscapes { path: String },
    #[error("path {path:?} contains a NUL byte")]
    PathHasNul { path: String },
}

/// The configured paths (directories or files, relative to the repository root) and the
/// size limit per file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Normalized, `/`-separated, no leading or trailing `/`; empty means the whole tree.
    paths: Vec<String>,
    pub max_file_size: u64,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            paths: Vec::new(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

impl Selection {
    /// Selects YAML files under `paths` (all of the repository when empty).
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Result<Self, SelectionError> {
        let paths = paths
            .iter()
            .map(|path| normalize(path.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        // A path of "" or "." means everything; selecting everything is the empty list.
        let paths = if paths.iter().any(String::is_empty) {
            Vec::new()
        } else {
            paths
        };
        Ok(Selection {
            paths,
            ..Selection::default()
        })
    }

    #[must_use]
    pub fn with_max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// The configured roots; empty for the whole repository.
    #[must_use]
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// Whether a directory may hold selected files (used to prune a tree walk early).
    #[must_use]
    pub fn may_contain(&self, dir: &str) -> bool {
        self.paths.is_empty()
            || self
                .paths
                .iter()
                .any(|root| is_under(dir, root) || is_under(root, dir))
    }

    /// Whether a file is a manifest to read: a `.yaml`/`.yml` file under a configured path.
    #[must_use]
    pub fn includes(&self, path: &str) -> bool {
        let yaml = std::path::Path::new(path)
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"));
        yaml && (self.paths.is_empty() || self.paths.iter().any(|root| is_under(path, root)))
    }
}

/// `path` equals `root` or lies below it.
fn is_under(path: &str, root: &str) -> bool {
    root.is_empty()
        || path == root
        || (path.len() > root.len()
            && path.starts_with(root)
            && path.as_bytes()[root.len()] == b'/')
}

fn normalize(path: &str) -> Result<String, SelectionError> {
    if path.contains('\0') {
        return Err(SelectionError::PathHasNul {
            path: path.to_owned(),
        });
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(SelectionError::PathEscapes {
                    path: path.to_owned(),
                });
            }
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// The rules of a `.secretsyncignore` file.
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    gitignore: Gitignore,
}

impl Default for IgnoreRules {
    fn default() -> Self {
        IgnoreRules {
            gitignore: Gitignore::empty(),
        }
    }
}

impl IgnoreRules {
    /// Parses gitignore syntax. A line that is not a valid pattern is skipped (as git does)
    /// and returned, so that it can be reported.
    #[must_use]
    pub fn parse(content: &str) -> (Self, Vec<String>) {
        let mut builder = GitignoreBuilder::new("");
        let mut invalid = Vec::new();
        for line in content.lines() {
            if builder.add_line(None, line).is_err() {
                invalid.push(line.to_owned());
            }
        }
        let gitignore = builder.build().unwrap_or_else(|_| Gitignore::empty());
        (IgnoreRules { gitignore }, invalid)
    }

    /// Whether `path` (relative, `/`-separated) or one of its parent directories is ignored.
    #[must_use]
    pub fn is_ignored(&self, path: &str, is_dir: bool) -> bool {
        self.gitignore
            .matched_path_or_any_parents(path, is_dir)
            .is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_yaml_files_under_the_configured_paths() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], "a.yaml", true),
            (&[], "deep/dir/b.yml", true),
            (&[], "README.md", false),
            (&[], "a.yaml.bak", false),
            (&[], "UPPER.YML", true),
            (&["clusters"], "clusters/a.yaml", true),
            (&["clusters/"], "clusters/prod/a.yaml", true),
            (&["./clusters"], "clusters/a.yaml", true),
            (&["clusters"], "clusters-old/a.yaml", false),
            (&["clusters"], "apps/a.yaml", false),
            (&["clusters", "apps"], "apps/a.yaml", true),
            (&["clusters/a.yaml"], "clusters/a.yaml", true),
            (&["."], "anything/a.yaml", true),
        ];
        for (paths, file, expected) in cases {
            let selection = Selection::new(paths).unwrap();
            assert_eq!(
                selection.includes(file),
                *expected,
                "paths {paths:?}, file {file}"
            );
        }
    }

    #[test]
    fn prunes_directories_outside_the_paths() {
        let selection = Selection::new(&["clusters/prod"]).unwrap();
        assert!(selection.may_contain("clusters"));
        assert!(selection.may_contain("clusters/prod"));
        assert!(selection.may_contain("clusters/prod/eu"));
        assert!(!selection.may_contain("clusters/staging"));
        assert!(!selection.may_contain("apps"));
    }

    #[test]
    fn refuses_paths_that_leave_the_repository() {
        assert!(matches!(
            Selection::new(&["clusters/../../etc"]),
            Err(SelectionError::PathEscapes { .. })
        ));
        assert!(matches!(
            Selection::new(&["a\0b"]),
            Err(SelectionError::PathHasNul { .. })
        ));
    }

    #[test]
    fn ignore_file_uses_gitignore_syntax() {
        let (rules, invalid) = IgnoreRules::parse(
            "# comment\n*.tmpl.yaml\nexamples/\n!examples/keep.yaml\n/top.yaml\n",
        );
        assert!(invalid.is_empty());
        assert!(rules.is_ignored("a.tmpl.yaml", false));
        assert!(rules.is_ignored("deep/b.tmpl.yaml", false));
        assert!(rules.is_ignored("examples", true));
        assert!(rules.is_ignored("examples/x.yaml", false));
        assert!(rules.is_ignored("top.yaml", false));
        assert!(!rules.is_ignored("sub/top.yaml", false));
        assert!(!rules.is_ignored("clusters/a.yaml", false));
    }
}
