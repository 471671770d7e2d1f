//! Reads the selected manifest files of a commit straight from its tree: no work-tree
//! checkout, pruned by the configured paths and the root `.secretsyncignore`; symlinks and
//! submodules are never followed.

use std::sync::Arc;

use git2::{ObjectType, Repository, Tree};

use crate::source::{FileContent, IGNORE_FILE, IgnoreRules, Selection, SourceFile};

/// Every selected file of `tree`, sorted by path.
pub(super) fn read_files(
    repo: &Repository,
    tree: &Tree<'_>,
    selection: &Selection,
) -> Result<Vec<SourceFile>, git2::Error> {
    let ignore = match tree.get_name(IGNORE_FILE) {
        Some(entry) if entry.kind() == Some(ObjectType::Blob) => {
            let blob = repo.find_blob(entry.id())?;
            // Invalid patterns are skipped, as git skips them in a .gitignore.
            IgnoreRules::parse(&String::from_utf8_lossy(blob.content())).0
        }
        _ => IgnoreRules::default(),
    };
    let mut files = Vec::new();
    walk(repo, tree, "", selection, &ignore, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
    selection: &Selection,
    ignore: &IgnoreRules,
    files: &mut Vec<SourceFile>,
) -> Result<(), git2::Error> {
    for entry in tree {
        // A name that is not UTF-8 cannot be a configured path; skip it.
        let Ok(name) = entry.name() else { continue };
        let path = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        match entry.kind() {
            Some(ObjectType::Tree)
                if selection.may_contain(&path) && !ignore.is_ignored(&path, true) =>
            {
                let subtree = repo.find_tree(entry.id())?;
                walk(repo, &subtree, &path, selection, ignore, files)?;
            }
            // Mode 120000 is a symlink, stored as a blob holding the target: never followed.
            Some(ObjectType::Blob)
                if entry.filemode() != 0o120_000
                    && selection.includes(&path)
                    && !ignore.is_ignored(&path, false) =>
            {
                files.push(read_blob(repo, entry.id(), path, selection.max_file_size)?);
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_blob(
    repo: &Repository,
    id: git2::Oid,
    path: String,
    limit: u64,
) -> Result<SourceFile, git2::Error> {
    // The object header gives the size without inflating a possibly huge blob.
    let (size, _) = repo.odb()?.read_header(id)?;
    let size = size as u64;
    let content = if size > limit {
        FileContent::TooLarge { size, limit }
    } else {
        FileContent::Bytes(Arc::from(repo.find_blob(id)?.content()))
    };
    Ok(SourceFile {
        path,
        id: id.to_string(),
        content,
    })
}
