//! Unpacking an artifact tarball without trusting it: only plain relative paths, only regular
//! files, a bound on the total size; then the selected files are read from the unpacked tree.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path};

use flate2::read::GzDecoder;

use crate::source::SourceFile;
use crate::source::files::{self, FilesError};
use crate::source::select::{IGNORE_FILE, Selection};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("artifact is not a readable .tar.gz")]
    Archive(#[source] io::Error),
    #[error("artifact entry {entry:?} refused: {reason}")]
    BadEntry { entry: String, reason: &'static str },
    #[error("artifact unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("cannot unpack artifact entry {entry:?}")]
    Write {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot create a temporary directory for the artifact")]
    TempDir(#[source] io::Error),
    #[error("cannot read the unpacked artifact")]
    Files(#[source] FilesError),
}

/// Unpacks `tarball` into a fresh private directory and reads the selected files from it;
/// the directory is removed before this returns.
pub fn unpack_and_read(
    tarball: &[u8],
    selection: &Selection,
    max_unpacked: u64,
) -> Result<Vec<SourceFile>, UnpackError> {
    // Private (0700) and removed on drop, whatever happens below.
    let dir = tempfile::Builder::new()
        .prefix("secretsync-artifact-")
        .tempdir()
        .map_err(UnpackError::TempDir)?;
    unpack(tarball, dir.path(), selection, max_unpacked)?;
    files::read_tree(dir.path(), selection).map_err(UnpackError::Files)
}

/// Unpacks the regular files that may be read (selected files and the ignore file) into
/// `dest`. An entry whose path is absolute or climbs with `..` refuses the whole archive;
/// links and devices are skipped, so nothing in `dest` can point elsewhere.
fn unpack(
    tarball: &[u8],
    dest: &Path,
    selection: &Selection,
    max_unpacked: u64,
) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(GzDecoder::new(tarball));
    let mut total: u64 = 0;
    for entry in archive.entries().map_err(UnpackError::Archive)? {
        let mut entry = entry.map_err(UnpackError::Archive)?;
        let path = entry.path().map_err(UnpackError::Archive)?;
        let Some(name) = entry_name(&path)? else {
            continue;
        };
        // Every entry counts, read or not: the decompression work is what is bounded.
        total = total.saturating_add(entry.size());
        if total > max_unpacked {
            return Err(UnpackError::TooLarge {
                limit: max_unpacked,
            });
        }
        let regular = matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        );
        if regular && (selection.includes(&name) || name == IGNORE_FILE) {
            let size = entry.size();
            write_entry(&mut entry, dest, &name, size, selection.max_file_size)?;
        }
    }
    Ok(())
}

/// The entry's path, relative and `/`-separated; `None` for the archive's root (`./`).
fn entry_name(path: &Path) -> Result<Option<String>, UnpackError> {
    let refuse = |reason| UnpackError::BadEntry {
        entry: path.to_string_lossy().into_owned(),
        reason,
    };
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                parts.push(part.to_str().ok_or_else(|| refuse("name is not UTF-8"))?);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("path climbs out with `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("path is absolute")),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Writes one file below `dest`. `name` holds only plain components and `dest` only what
/// this function created, so the path stays inside `dest`. A file over the read limit gets
/// its size without its bytes: the file reader reports it as too large and never reads it.
fn write_entry(
    entry: &mut impl Read,
    dest: &Path,
    name: &str,
    size: u64,
    max_file_size: u64,
) -> Result<(), UnpackError> {
    let failed = |source| UnpackError::Write {
        entry: name.to_owned(),
        source,
    };
    let path = dest.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut file = File::create(&path).map_err(failed)?;
    if size > max_file_size {
        return file.set_len(size).map_err(failed);
    }
    io::copy(&mut entry.take(size), &mut file).map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileContent;

    #[test]
    fn entry_names_stay_inside_the_archive() {
        let ok = [
            ("a.yaml", Some("a.yaml")),
            ("./dir/a.yaml", Some("dir/a.yaml")),
            ("./", None),
            ("dir/./b.yml", Some("dir/b.yml")),
        ];
        for (path, expected) in ok {
            assert_eq!(entry_name(Path::new(path)).unwrap().as_deref(), expected);
        }
        for path in ["../evil.yaml", "dir/../../evil.yaml", "/etc/evil.yaml"] {
            assert!(
                matches!(
                    entry_name(Path::new(path)),
                    Err(UnpackError::BadEntry { .. })
                ),
                "{path}"
            );
        }
    }

    /// A `.tar.gz` of `(path, entry type, content)`; paths are written raw, as an attacker
    /// would.
    fn tarball(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, kind, content) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(*kind);
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("/etc/passwd").unwrap();
            }
            header.set_cksum();
            builder.append(&header, *content).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unpacks_selected_regular_files_only() {
        let archive = tarball(&[
            ("./", tar::EntryType::Directory, b""),
            ("./clusters/", tar::EntryType::Directory, b""),
            ("./clusters/a.yaml", tar::EntryType::Regular, b"kind: A\n"),
            ("./clusters/big.yaml", tar::EntryType::Regular, &[b'x'; 64]),
            ("./clusters/link.yaml", tar::EntryType::Symlink, b""),
            ("./clusters/fifo.yaml", tar::EntryType::Fifo, b""),
            ("./README.md", tar::EntryType::Regular, b"# readme\n"),
            (
                "./.secretsyncignore",
                tar::EntryType::Regular,
                b"ignored.yaml\n",
            ),
            ("./ignored.yaml", tar::EntryType::Regular, b"kind: I\n"),
        ]);
        let selection = Selection::default().with_max_file_size(32);
        let files = unpack_and_read(&archive, &selection, 1 << 20).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["clusters/a.yaml", "clusters/big.yaml"]);
        assert_eq!(files[0].id, files::blob_id(b"kind: A\n"));
        assert!(matches!(
            files[1].content,
            FileContent::TooLarge {
                size: 64,
                limit: 32
            }
        ));
    }

    #[test]
    fn refuses_entries_that_climb_out() {
        let archive = tarball(&[
            ("a.yaml", tar::EntryType::Regular, b"a"),
            ("../evil.yaml", tar::EntryType::Regular, b"evil"),
        ]);
        let dest = tempfile::tempdir().unwrap();
        let inner = dest.path().join("inner");
        fs::create_dir(&inner).unwrap();
        let error = unpack(&archive, &inner, &Selection::default(), 1 << 20).unwrap_err();
        assert!(matches!(error, UnpackError::BadEntry { .. }), "{error:?}");
        assert!(!dest.path().join("evil.yaml").exists());
    }

    #[test]
    fn bounds_the_unpacked_size() {
        let archive = tarball(&[
            ("a.yaml", tar::EntryType::Regular, &[b'a'; 600]),
            ("b.md", tar::EntryType::Regular, &[b'b'; 600]),
        ]);
        let error = unpack_and_read(&archive, &Selection::default(), 1000).unwrap_err();
        assert!(
            matches!(error, UnpackError::TooLarge { limit: 1000 }),
            "{error:?}"
        );
    }

    #[test]
    fn refuses_what_is_not_a_tarball() {
        let error = unpack_and_read(b"not gzip", &Selection::default(), 1000).unwrap_err();
        assert!(matches!(error, UnpackError::Archive(_)), "{error:?}");
    }
}
