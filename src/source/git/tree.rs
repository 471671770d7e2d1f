//! Reads the selected manifest files of a commit straight from its tree: no work-tree
//! checkout, pruned by the configured paths and the root `.secretsyncignore`; symlinks and
//! submodules are never followed; blobs the caller already knows are not read.

use std::sync::Arc;

use git2::{ObjectType, Odb, Oid, Repository, Tree};

use crate::source::{FileContent, IGNORE_FILE, IgnoreRules, Selection, SourceFile};

/// Says whether the caller already has the content of (path, blob id).
pub type Known<'a> = &'a dyn Fn(&str, &str) -> bool;

/// What a walk needs at every level.
struct Walk<'r> {
    repo: &'r Repository,
    odb: Odb<'r>,
    selection: &'r Selection,
    ignore: IgnoreRules,
    known: Known<'r>,
    files: Vec<SourceFile>,
}

/// Every selected file of `tree`, sorted by path.
pub(super) fn read_files(
    repo: &Repository,
    tree: &Tree<'_>,
    selection: &Selection,
    known: Known<'_>,
) -> Result<Vec<SourceFile>, git2::Error> {
    let ignore = match tree.get_name(IGNORE_FILE) {
        Some(entry) if entry.kind() == Some(ObjectType::Blob) => {
            let blob = repo.find_blob(entry.id())?;
            // Invalid patterns are skipped, as git skips them in a .gitignore.
            IgnoreRules::parse(&String::from_utf8_lossy(blob.content())).0
        }
        _ => IgnoreRules::default(),
    };
    let mut walk = Walk {
        repo,
        odb: repo.odb()?,
        selection,
        ignore,
        known,
        files: Vec::new(),
    };
    walk.tree(tree, "")?;
    let mut files = walk.files;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// A name a tree entry may have: not empty, `.` or `..`, and no `/` or NUL in it.
fn is_plain_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains(['/', '\0'])
}

impl Walk<'_> {
    fn tree(&mut self, tree: &Tree<'_>, prefix: &str) -> Result<(), git2::Error> {
        for entry in tree {
            // A name that is not UTF-8 cannot be a configured path; skip it.
            let Ok(name) = entry.name() else { continue };
            // git itself never writes these (and `git fsck` refuses them), but a crafted tree
            // can hold them: a path must not climb out of, or hide in, the repository.
            if !is_plain_name(name) {
                tracing::warn!(
                    prefix,
                    name = name.escape_debug().to_string(),
                    "tree entry with a name git would refuse: skipped"
                );
                continue;
            }
            let path = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            match entry.kind() {
                Some(ObjectType::Tree)
                    if self.selection.may_contain(&path)
                        && !self.ignore.is_ignored(&path, true) =>
                {
                    let subtree = self.repo.find_tree(entry.id())?;
                    self.tree(&subtree, &path)?;
                }
                // Mode 120000 is a symlink, stored as a blob holding the target: never followed.
                Some(ObjectType::Blob)
                    if entry.filemode() != 0o120_000
                        && self.selection.includes(&path)
                        && !self.ignore.is_ignored(&path, false) =>
                {
                    let file = self.blob(entry.id(), path)?;
                    self.files.push(file);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn blob(&self, id: Oid, path: String) -> Result<SourceFile, git2::Error> {
        let id_hex = id.to_string();
        if (self.known)(&path, &id_hex) {
            return Ok(SourceFile {
                path,
                id: id_hex,
                content: FileContent::Known,
            });
        }
        // The object header gives the size without inflating a possibly huge blob.
        let (size, _) = self.odb.read_header(id)?;
        let (size, limit) = (size as u64, self.selection.max_file_size);
        let content = if size > limit {
            FileContent::TooLarge { size, limit }
        } else {
            FileContent::Bytes(Arc::from(self.repo.find_blob(id)?.content()))
        };
        Ok(SourceFile {
            path,
            id: id_hex,
            content,
        })
    }
}
