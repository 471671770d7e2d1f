//! The selected files of a directory tree on disk, as a `Snapshot` holds them, and the content
//! revision of such a file list; shared by the local and the artifact sources.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{FileContent, IGNORE_FILE, IgnoreRules, Revision, Selection, SourceFile};

/// The ignore file is read whole; a larger one is refused rather than half applied.
const MAX_IGNORE_FILE_SIZE: u64 = 1 << 20;

/// The id given to a file that was not read (over the size limit): git's null object id,
/// which no content hashes to.
pub const UNREAD_ID: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{root} is not a directory")]
    NotADirectory { root: PathBuf },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is larger than {limit} bytes")]
    IgnoreFileTooLarge { path: PathBuf, limit: u64 },
    #[error("{path} changed while it was read")]
    Replaced { path: PathBuf },
}

impl FilesError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> FilesError + '_ {
        move |source| FilesError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Reads the files under `root` that `selection` includes and the root's `.secretsyncignore`
/// does not exclude, sorted by path. `.git/`, symlinks and special files are skipped: a
/// symlink could lead the walk out of the tree, and a FIFO would block the read.
pub fn read_tree(root: &Path, selection: &Selection) -> Result<Vec<SourceFile>, FilesError> {
    let metadata = fs::symlink_metadata(root).map_err(FilesError::io(root))?;
    if !metadata.is_dir() {
        return Err(FilesError::NotADirectory {
            root: root.to_owned(),
        });
    }
    let walk = Walk {
        selection,
        ignore: read_ignore_rules(root)?,
    };
    let mut files = Vec::new();
    walk.dir(root, "", &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The revision of a list of files that did not come from a commit: a sha256 over the sorted
/// (path, blob id) pairs, so it changes exactly when a selected file is added, removed,
/// renamed or edited. A file too large to read counts with its size instead of an id.
#[must_use]
pub fn content_revision(files: &[SourceFile]) -> Revision {
    let mut entries: Vec<(&str, String)> = files
        .iter()
        .map(|file| {
            let id = match &file.content {
                FileContent::Bytes(_) | FileContent::Known => file.id.clone(),
                FileContent::TooLarge { size, .. } => format!("too-large:{size}"),
            };
            (file.path.as_str(), id)
        })
        .collect();
    entries.sort();
    let mut hasher = Sha256::new();
    for (path, id) in entries {
        // Paths hold no NUL and ids no newline: the encoding cannot be ambiguous.
        hasher.update(path.as_bytes());
        hasher.update(b"\0");
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    let hex = hex(&hasher.finalize());
    Revision::content(&hex).unwrap_or_else(|_| unreachable!("sha256 gives 64 hex digits"))
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The git blob id of `bytes`, as a git tree would name the same content.
#[must_use]
pub fn blob_id(bytes: &[u8]) -> String {
    // Hashing in memory cannot fail; the fallback exists only because the API returns Result.
    git2::Oid::hash_object(git2::ObjectType::Blob, bytes)
        .map_or_else(|_| UNREAD_ID.to_owned(), |oid| oid.to_string())
}

fn read_ignore_rules(root: &Path) -> Result<IgnoreRules, FilesError> {
    let path = root.join(IGNORE_FILE);
    let metadata = match fs::symlink_metadata(&path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(IgnoreRules::default()),
        Err(e) => return Err(FilesError::io(&path)(e)),
    };
    if !metadata.is_file() {
        tracing::warn!(path = %path.display(), "ignore file is not a regular file; not used");
        return Ok(IgnoreRules::default());
    }
    if metadata.len() > MAX_IGNORE_FILE_SIZE {
        return Err(FilesError::IgnoreFileTooLarge {
            path,
            limit: MAX_IGNORE_FILE_SIZE,
        });
    }
    let bytes = read_checked(&path, &metadata, MAX_IGNORE_FILE_SIZE)?;
    let (rules, invalid) = IgnoreRules::parse(&String::from_utf8_lossy(&bytes));
    for line in invalid {
        tracing::warn!(path = %path.display(), line, "invalid pattern in ignore file; skipped");
    }
    Ok(rules)
}

struct Walk<'a> {
    selection: &'a Selection,
    ignore: IgnoreRules,
}

impl Walk<'_> {
    /// Collects the selected files of `dir`, whose path relative to the root is `relative`.
    fn dir(
        &self,
        dir: &Path,
        relative: &str,
        files: &mut Vec<SourceFile>,
    ) -> Result<(), FilesError> {
        for entry in fs::read_dir(dir).map_err(FilesError::io(dir))? {
            let entry = entry.map_err(FilesError::io(dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "file name is not UTF-8; skipped");
                continue;
            };
            let child = if relative.is_empty() {
                name.clone()
            } else {
                format!("{relative}/{name}")
            };
            // `symlink_metadata` does not follow a symlink, so one is seen as what it is.
            let metadata = fs::symlink_metadata(&path).map_err(FilesError::io(&path))?;
            if metadata.is_dir() {
                // A nested repository's metadata is skipped as well as the root's.
                if name != ".git"
                    && self.selection.may_contain(&child)
                    && !self.ignore.is_ignored(&child, true)
                {
                    self.dir(&path, &child, files)?;
                }
            } else if metadata.is_file()
                && self.selection.includes(&child)
                && !self.ignore.is_ignored(&child, false)
            {
                files.push(self.file(&path, child, &metadata)?);
            }
        }
        Ok(())
    }

    fn file(
        &self,
        path: &Path,
        relative: String,
        metadata: &Metadata,
    ) -> Result<SourceFile, FilesError> {
        let limit = self.selection.max_file_size;
        if metadata.len() > limit {
            return Ok(SourceFile {
                path: relative,
                id: UNREAD_ID.to_owned(),
                content: FileContent::TooLarge {
                    size: metadata.len(),
                    limit,
                },
            });
        }
        let bytes = read_checked(path, metadata, limit)?;
        Ok(SourceFile {
            path: relative,
            id: blob_id(&bytes),
            content: FileContent::Bytes(Arc::from(bytes)),
        })
    }
}

/// Reads the regular file the walk saw as `seen`, at most `limit` bytes. If the path was
/// swapped for something else (a symlink out of the tree) between the listing and the open,
/// the opened file is not the one that was seen, and it is refused.
fn read_checked(path: &Path, seen: &Metadata, limit: u64) -> Result<Vec<u8>, FilesError> {
    let file = File::open(path).map_err(FilesError::io(path))?;
    let opened = file.metadata().map_err(FilesError::io(path))?;
    if !opened.is_file() || !same_file(seen, &opened) {
        return Err(FilesError::Replaced {
            path: path.to_owned(),
        });
    }
    let mut bytes = Vec::new();
    // One byte over the limit tells a file that grew since it was listed.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(FilesError::io(path))?;
    if bytes.len() as u64 > limit {
        return Err(FilesError::Replaced {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &Metadata, _: &Metadata) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, content: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn paths(files: &[SourceFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn reads_selected_yaml_files_sorted_with_git_blob_ids() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.yaml", "kind: B\n");
        write(dir.path(), "clusters/prod/a.yml", "kind: A\n");
        write(dir.path(), "clusters/README.md", "# no\n");
        write(dir.path(), "apps/x.yaml", "kind: X\n");
        let selection = Selection::new(&["clusters", "b.yaml"]).unwrap();
        let files = read_tree(dir.path(), &selection).unwrap();
        assert_eq!(paths(&files), ["b.yaml", "clusters/prod/a.yml"]);
        // `git hash-object` of "kind: B\n".
        let expected = git2::Oid::hash_object(git2::ObjectType::Blob, b"kind: B\n").unwrap();
        assert_eq!(files[0].id, expected.to_string());
        assert!(matches!(&files[0].content, FileContent::Bytes(b) if &b[..] == b"kind: B\n"));
    }

    #[test]
    fn applies_the_ignore_file_and_skips_git_metadata() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), IGNORE_FILE, "examples/\n*.tmpl.yaml\n");
        write(dir.path(), "examples/e.yaml", "");
        write(dir.path(), "a.tmpl.yaml", "");
        write(dir.path(), "a.yaml", "");
        write(dir.path(), ".git/config.yaml", "");
        let files = read_tree(dir.path(), &Selection::default()).unwrap();
        assert_eq!(paths(&files), ["a.yaml"]);
    }

    #[test]
    fn a_file_over_the_limit_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "big.yaml", &"x".repeat(100));
        write(dir.path(), "small.yaml", "x");
        let selection = Selection::default().with_max_file_size(10);
        let files = read_tree(dir.path(), &selection).unwrap();
        assert!(matches!(
            files[0].content,
            FileContent::TooLarge {
                size: 100,
                limit: 10
            }
        ));
        assert_eq!(files[0].id, UNREAD_ID);
        assert!(matches!(files[1].content, FileContent::Bytes(_)));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_skipped() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.yaml", "outside");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "inside");
        std::os::unix::fs::symlink(
            outside.path().join("secret.yaml"),
            dir.path().join("link.yaml"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked-dir")).unwrap();
        let files = read_tree(dir.path(), &Selection::default()).unwrap();
        assert_eq!(paths(&files), ["a.yaml"]);
    }

    #[test]
    fn a_root_that_is_not_a_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "");
        assert!(matches!(
            read_tree(&dir.path().join("a.yaml"), &Selection::default()),
            Err(FilesError::NotADirectory { .. })
        ));
        assert!(matches!(
            read_tree(&dir.path().join("missing"), &Selection::default()),
            Err(FilesError::Io { .. })
        ));
    }

    fn file(path: &str, content: &[u8]) -> SourceFile {
        SourceFile {
            path: path.to_owned(),
            id: blob_id(content),
            content: FileContent::Bytes(Arc::from(content)),
        }
    }

    #[test]
    fn content_revision_follows_paths_and_contents_not_order() {
        let a = file("a.yaml", b"a");
        let b = file("b.yaml", b"b");
        let base = content_revision(&[a.clone(), b.clone()]);
        assert_eq!(base.algorithm(), crate::source::Algorithm::Sha256);
        assert_eq!(content_revision(&[b.clone(), a.clone()]), base);
        assert_ne!(content_revision(std::slice::from_ref(&a)), base);
        assert_ne!(content_revision(&[a.clone(), file("b.yaml", b"B")]), base);
        assert_ne!(content_revision(&[a, file("c.yaml", b"b")]), base);
        // Digest of nothing: sha256 of the empty string.
        assert_eq!(
            content_revision(&[]).digest(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn content_revision_sees_an_oversized_file_change_size() {
        let big = |size| SourceFile {
            path: "big.yaml".to_owned(),
            id: UNREAD_ID.to_owned(),
            content: FileContent::TooLarge { size, limit: 1 },
        };
        assert_ne!(content_revision(&[big(5)]), content_revision(&[big(6)]));
    }
}
