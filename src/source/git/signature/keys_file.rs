//! The trusted-keys file (`--trusted-keys`), typically a mounted Secret that the kubelet
//! updates in place. It is read again whenever its bytes change, so renewing an expired key,
//! adding one or removing a distrusted one takes effect at the next fetch, without a restart.
//! A file that no longer reads as trusted keys trusts nothing until it is mended: a commit is
//! refused rather than checked against keys the operator meant to replace.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::{TrustedKeys, TrustedKeysError};

/// The trusted keys of one file, as of its last read.
#[derive(Debug)]
pub struct TrustedKeysFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    digest: [u8; 32],
    keys: Arc<TrustedKeys>,
}

/// The trusted-keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustedKeysFileError {
    #[error("reading the trusted keys {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the trusted keys {path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: TrustedKeysError,
    },
}

impl TrustedKeysFile {
    /// Reads and checks the file now, so that a bad one stops the agent at start.
    pub fn open(path: &Path) -> Result<Self, TrustedKeysFileError> {
        let bytes = read(path)?;
        Ok(TrustedKeysFile {
            path: path.to_owned(),
            loaded: Mutex::new(Loaded {
                digest: Sha256::digest(&bytes).into(),
                keys: Arc::new(parse(path, &bytes)?),
            }),
        })
    }

    /// The keys as the file holds them now: read again, and parsed again only if it changed.
    pub fn current(&self) -> Result<Arc<TrustedKeys>, TrustedKeysFileError> {
        let bytes = read(&self.path)?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if loaded.digest != digest {
            let keys = parse(&self.path, &bytes)?;
            tracing::info!(path = %self.path.display(), "trusted keys changed; read again");
            *loaded = Loaded {
                digest,
                keys: Arc::new(keys),
            };
        }
        Ok(Arc::clone(&loaded.keys))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TrustedKeysFileError> {
    std::fs::read(path).map_err(|source| TrustedKeysFileError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<TrustedKeys, TrustedKeysFileError> {
    let invalid = |source| TrustedKeysFileError::Invalid {
        path: path.to_owned(),
        source,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| invalid(TrustedKeysError::NotText))?;
    TrustedKeys::parse(text).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti user@example.com";
    const OTHER: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKHNvoGR5Y0rkV8NJZiI7ZGe2QgH/cf9qE8qJ+fyvUZZ other@example.com";

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_trusts_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trusted");
        std::fs::write(&path, KEY).expect("write");
        let file = TrustedKeysFile::open(&path).expect("valid");
        let first = file.current().expect("unchanged");
        assert!(Arc::ptr_eq(&first, &file.current().expect("unchanged")));

        std::fs::write(&path, format!("{KEY}\n{OTHER}\n")).expect("write");
        assert_eq!(file.current().expect("changed").ssh.len(), 2);

        std::fs::write(&path, "ssh-ed25519 !!!\n").expect("write");
        let error = file.current().expect_err("broken");
        assert!(
            error.to_string().contains("trusted") && error.to_string().contains("line 1"),
            "{error}"
        );
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(
            file.current(),
            Err(TrustedKeysFileError::Read { .. })
        ));
    }

    #[test]
    fn a_bad_file_is_refused_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trusted");
        std::fs::write(&path, "# nothing\n").expect("write");
        let error = TrustedKeysFile::open(&path).expect_err("empty");
        assert!(
            error.to_string().contains(&*path.to_string_lossy()),
            "{error}"
        );
    }
}
