//! Audit: an append-only JSON-lines record of every write secretsync makes to a leaf
//! (apply and prune), so that "which commit put this secret on that cluster?" has an answer
//! even after the copy is gone. Never holds secret data.

pub mod events;

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("opening audit log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("appending to audit log {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    Apply,
    Prune,
}

/// One write to a leaf cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339, UTC.
    pub time: String,
    pub action: AuditAction,
    /// The GitopsCluster, `namespace/name`.
    pub cluster: String,
    /// The leaf Secret, `namespace/name`.
    pub target: String,
    /// The SecretSync, `namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_sync: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// The leaf Secret's resourceVersion after the write (none for a prune).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_version: Option<String>,
}

/// An append-only audit log file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating) the log for appending; existing lines are never rewritten.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(AuditLog {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line per record and flushes them to disk before returning, so that a
    /// crash right after a write cannot lose its record.
    pub fn append(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for record in records {
            // Plain strings: serialization cannot fail.
            serde_json::to_writer(&mut lines, record).unwrap_or_default();
            lines.push(b'\n');
        }
        let write_error = |source| AuditError::Write {
            path: self.path.clone(),
            source,
        };
        // A poisoned lock only means another writer panicked mid-append; the file is still
        // an append-only log, so carry on with it.
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let length_before = file.metadata().map(|m| m.len()).ok();
        let written = file.write_all(&lines).and_then(|()| file.sync_data());
        if let (Err(_), Some(length)) = (&written, length_before) {
            // A disk that filled up mid-write leaves half a line: cut it off, so that the
            // log stays whole JSON lines once there is space again.
            let _ = file.set_len(length);
        }
        written.map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_a_clear_error() {
        // /dev/full accepts the open and fails every write with ENOSPC, as a full disk does.
        let log = AuditLog::open(Path::new("/dev/full")).expect("open /dev/full");
        let record = AuditRecord {
            time: "2026-12-04T00:00:00Z".to_owned(),
            action: AuditAction::Apply,
            cluster: "flux-system/leaf-1".to_owned(),
            target: "apps/registry".to_owned(),
            secret_sync: None,
            revision: None,
            manifest: None,
            source_version: None,
            leaf_version: None,
        };
        let error = log.append(&[record]).expect_err("a full disk");
        assert_eq!(
            error.to_string(),
            "appending to audit log /dev/full: No space left on device (os error 28)"
        );
    }

    #[test]
    fn appends_one_json_line_per_record_and_keeps_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let record = AuditRecord {
            time: "2026-12-04T00:00:00Z".to_owned(),
            action: AuditAction::Apply,
            cluster: "flux-system/leaf-1".to_owned(),
            target: "apps/registry".to_owned(),
            secret_sync: Some("flux-system/registry".to_owned()),
            revision: Some("main@sha1:abc".to_owned()),
            manifest: Some("clusters/registry.yaml".to_owned()),
            source_version: Some("7".to_owned()),
            leaf_version: Some("42".to_owned()),
        };
        AuditLog::open(&path)
            .unwrap()
            .append(std::slice::from_ref(&record))
            .unwrap();
        let prune = AuditRecord {
            action: AuditAction::Prune,
            leaf_version: None,
            ..record
        };
        AuditLog::open(&path).unwrap().append(&[prune]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["action"], "apply");
        assert_eq!(lines[0]["secretSync"], "flux-system/registry");
        assert_eq!(lines[1]["action"], "prune");
        assert!(lines[1].get("leafVersion").is_none());
    }
}
