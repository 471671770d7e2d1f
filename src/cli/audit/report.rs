//! What `audit` prints (pure, but for the final write): a leaf Secret's provenance and the
//! commit behind it, as text or JSON. Only metadata: names, versions, and the annotations
//! secretsync wrote; never a Secret's data.

use std::io::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use super::annotation;
use crate::cli::OutputFormat;
use crate::cli::format::{commit_date, fields, short_revision, table};
use crate::cluster::ClusterKey;
use crate::source::CommitInfo;
use crate::sync::desired::{
    MANIFEST_ANNOTATION, REVISION_ANNOTATION, SOURCE_ANNOTATION, SOURCE_VERSION_ANNOTATION,
};

/// One leaf Secret written by secretsync, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeafCopy {
    /// The GitopsCluster (`namespace/name`) the leaf was reached through.
    pub cluster: String,
    /// `namespace/name` on the leaf.
    pub secret: String,
    pub resource_version: Option<String>,
    /// The SecretSync that wrote it (`namespace/name`).
    pub secret_sync: Option<String>,
    /// The manifest's path in the repository.
    pub manifest: Option<String>,
    /// The revision (commit) that produced the current content.
    pub revision: Option<String>,
    /// resourceVersion of the management-cluster Secret that was copied.
    pub source_version: Option<String>,
}

impl LeafCopy {
    #[must_use]
    pub fn new(cluster: &ClusterKey, meta: &ObjectMeta) -> Self {
        let get = |key| annotation(meta, key).map(str::to_owned);
        LeafCopy {
            cluster: cluster.to_string(),
            secret: format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            ),
            resource_version: meta.resource_version.clone(),
            secret_sync: get(SOURCE_ANNOTATION),
            manifest: get(MANIFEST_ANNOTATION),
            revision: get(REVISION_ANNOTATION),
            source_version: get(SOURCE_VERSION_ANNOTATION),
        }
    }
}

/// A commit as `audit` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitView {
    pub id: String,
    pub author: String,
    /// RFC 3339, UTC.
    pub date: String,
    pub subject: String,
}

impl From<CommitInfo> for CommitView {
    fn from(info: CommitInfo) -> Self {
        CommitView {
            id: info.id,
            author: info.author,
            date: commit_date(info.time),
            subject: info.subject,
        }
    }
}

/// `audit --cluster --secret`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretReport {
    #[serde(flatten)]
    pub copy: LeafCopy,
    /// With `--source`: the commit of `copy.revision`.
    pub commit: Option<CommitView>,
}

/// `audit --revision`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionReport {
    /// As given on the command line.
    pub revision: String,
    /// With `--source`: the commit the revision names.
    pub commit: Option<CommitView>,
    pub copies: Vec<LeafCopy>,
    /// Clusters that could not be searched, and why.
    pub problems: Vec<String>,
}

impl SecretReport {
    pub fn print(&self, format: OutputFormat) -> anyhow::Result<()> {
        print(self, format, &self.text())
    }

    #[must_use]
    pub fn text(&self) -> String {
        let copy = &self.copy;
        let none = "-";
        let mut pairs = vec![
            (
                "resourceVersion",
                copy.resource_version.as_deref().unwrap_or(none),
            ),
            ("SecretSync", copy.secret_sync.as_deref().unwrap_or(none)),
            ("manifest", copy.manifest.as_deref().unwrap_or(none)),
            ("revision", copy.revision.as_deref().unwrap_or(none)),
            (
                "source version",
                copy.source_version.as_deref().unwrap_or(none),
            ),
        ];
        if let Some(commit) = &self.commit {
            pairs.extend(commit_fields(commit));
        }
        format!(
            "Secret {} on GitopsCluster {}\n{}",
            copy.secret,
            copy.cluster,
            fields(&pairs)
        )
    }
}

impl RevisionReport {
    pub fn print(&self, format: OutputFormat) -> anyhow::Result<()> {
        print(self, format, &self.text())
    }

    #[must_use]
    pub fn text(&self) -> String {
        let text = self
            .commit
            .as_ref()
            .map(|commit| fields(&commit_fields(commit)) + "\n")
            .unwrap_or_default();
        if self.copies.is_empty() {
            return text;
        }
        let rows: Vec<Vec<String>> = self
            .copies
            .iter()
            .map(|copy| {
                let cell = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
                vec![
                    copy.cluster.clone(),
                    copy.secret.clone(),
                    cell(&copy.secret_sync),
                    cell(&copy.manifest),
                    copy.revision
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), short_revision),
                    cell(&copy.resource_version),
                ]
            })
            .collect();
        let table = table(
            &[
                "CLUSTER",
                "SECRET",
                "SECRETSYNC",
                "MANIFEST",
                "REVISION",
                "VERSION",
            ],
            &rows,
        );
        format!(
            "{text}{table}{} leaf Secret(s) from revision {}\n",
            self.copies.len(),
            self.revision
        )
    }
}

fn commit_fields(commit: &CommitView) -> [(&'static str, &str); 4] {
    [
        ("commit", &commit.id),
        ("author", &commit.author),
        ("date", &commit.date),
        ("subject", &commit.subject),
    ]
}

fn print(report: &impl Serialize, format: OutputFormat, text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Text => out.write_all(text.as_bytes())?,
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(report)?)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::ClusterName;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn copy(cluster: &str) -> LeafCopy {
        let meta = ObjectMeta {
            name: Some("my-dev-secret".to_owned()),
            namespace: Some("my-namespace".to_owned()),
            resource_version: Some("211496".to_owned()),
            annotations: Some(BTreeMap::from(
                [
                    (SOURCE_ANNOTATION, "default/my-dev-secret-syncer".to_owned()),
                    (REVISION_ANNOTATION, format!("main@sha1:{COMMIT}")),
                    (
                        MANIFEST_ANNOTATION,
                        "clusters/my-dev-secret-syncer.yaml".to_owned(),
                    ),
                    (SOURCE_VERSION_ANNOTATION, "4711".to_owned()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            )),
            ..ObjectMeta::default()
        };
        let key = ClusterKey {
            namespace: "default".to_owned(),
            name: ClusterName::new(cluster),
        };
        LeafCopy::new(&key, &meta)
    }

    fn commit() -> CommitView {
        CommitView::from(CommitInfo {
            id: COMMIT.to_owned(),
            author: "Ada <ada@example.com>".to_owned(),
            time: 1_714_564_800,
            subject: "sync my-dev-secret to dev clusters".to_owned(),
        })
    }

    #[test]
    fn a_secret_report_names_provenance_and_commit() {
        let report = SecretReport {
            copy: copy("leaf-cluster-1"),
            commit: Some(commit()),
        };
        assert_eq!(
            report.text(),
            format!(
                "Secret my-namespace/my-dev-secret on GitopsCluster default/leaf-cluster-1\n\
                 resourceVersion:  211496\n\
                 SecretSync:       default/my-dev-secret-syncer\n\
                 manifest:         clusters/my-dev-secret-syncer.yaml\n\
                 revision:         main@sha1:{COMMIT}\n\
                 source version:   4711\n\
                 commit:           {COMMIT}\n\
                 author:           Ada <ada@example.com>\n\
                 date:             2024-05-01T12:00:00Z\n\
                 subject:          sync my-dev-secret to dev clusters\n"
            )
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["cluster"], "default/leaf-cluster-1");
        assert_eq!(json["manifest"], "clusters/my-dev-secret-syncer.yaml");
        assert_eq!(
            json["commit"]["subject"],
            "sync my-dev-secret to dev clusters"
        );
    }

    #[test]
    fn a_revision_report_has_a_row_per_copy() {
        let report = RevisionReport {
            revision: "0123456".to_owned(),
            commit: None,
            copies: vec![copy("leaf-cluster-1"), copy("leaf-cluster-2")],
            problems: Vec::new(),
        };
        let text = report.text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("CLUSTER "), "{text}");
        assert!(
            lines[1].starts_with("default/leaf-cluster-1   my-namespace/my-dev-secret   default/my-dev-secret-syncer   clusters/my-dev-secret-syncer.yaml   main@sha1:0123456789ab   211496"),
            "{text}"
        );
        assert!(lines[2].starts_with("default/leaf-cluster-2 "), "{text}");
        assert_eq!(lines[3], "2 leaf Secret(s) from revision 0123456");
    }
}
