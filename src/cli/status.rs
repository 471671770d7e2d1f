//! `secretsync status`: every SecretSync's status, read from the SecretSync objects (when
//! the CRD is installed) and the fallback ConfigMaps, as a table per SecretSync or as JSON or
//! YAML. Exit 0 when every SecretSync found is Ready, 1 when one is not or none was found.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::format::{age, short_revision, table};
use super::{EXIT_NOT_FOUND, block_on, management_client};
use crate::status::model::SOURCE_READY;
use crate::status::{StatusStore, StatusTarget, StoredStatus, SyncStatus};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only the SecretSyncs of this namespace [default: all namespaces].
    #[arg(short, long)]
    pub namespace: Option<String>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = StatusFormat::Text)]
    pub output: StatusFormat,
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// A table per SecretSync, for people.
    Text,
    /// The statuses as JSON, for programs.
    Json,
    /// The statuses as YAML, as `kubectl get -o yaml` shows objects.
    Yaml,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let listing = block_on(async {
        let mgmt = management_client().await?;
        Ok(StatusStore::new(mgmt)
            .list(args.namespace.as_deref())
            .await?)
    })?;
    for problem in &listing.problems {
        eprintln!("secretsync: {problem}");
    }
    let statuses = &listing.statuses;
    let mut out = std::io::stdout().lock();
    match args.output {
        StatusFormat::Text => out.write_all(text(statuses, Timestamp::now()).as_bytes())?,
        StatusFormat::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&Listing::new(statuses))?
        )?,
        StatusFormat::Yaml => write!(out, "{}", serde_yaml::to_string(&Listing::new(statuses))?)?,
    }
    if statuses.is_empty() {
        let scope = args
            .namespace
            .as_deref()
            .map_or_else(|| "any namespace".to_owned(), |n| format!("namespace {n}"));
        eprintln!("secretsync: no SecretSync status found in {scope}");
    }
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| is_ready(&s.status));
    Ok(if all_ready && listing.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_FOUND)
    })
}

fn is_ready(status: &SyncStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// What `-o json` and `-o yaml` print.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listing<'a> {
    items: Vec<Item<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Item<'a> {
    namespace: &'a str,
    name: &'a str,
    /// Where the status was read: the SecretSync object or a ConfigMap.
    stored_in: StoredIn<'a>,
    status: &'a SyncStatus,
}

#[derive(Debug, Serialize)]
struct StoredIn<'a> {
    kind: &'static str,
    name: &'a str,
}

impl<'a> Listing<'a> {
    fn new(statuses: &'a [StoredStatus]) -> Self {
        let items = statuses
            .iter()
            .map(|stored| Item {
                namespace: &stored.key.namespace,
                name: &stored.key.name,
                stored_in: stored_in(stored),
                status: &stored.status,
            })
            .collect();
        Listing { items }
    }
}

fn stored_in(stored: &StoredStatus) -> StoredIn<'_> {
    match &stored.target {
        StatusTarget::Object { .. } => StoredIn {
            kind: crate::manifest::KIND,
            name: &stored.key.name,
        },
        StatusTarget::ConfigMap(name) => StoredIn {
            kind: "ConfigMap",
            name,
        },
    }
}

/// The text output: per SecretSync a heading (where its status lives, Ready, the last
/// applied revision in full so it can be passed to `audit --revision`) and a table of its
/// clusters; the message of every cluster that is not synced below it.
fn text(statuses: &[StoredStatus], now: Timestamp) -> String {
    let sections: Vec<String> = statuses.iter().map(|s| section(s, now)).collect();
    sections.join("\n")
}

fn section(stored: &StoredStatus, now: Timestamp) -> String {
    let status = &stored.status;
    let place = stored_in(stored);
    let mut lines = vec![format!(
        "SecretSync {} (status in {} {})",
        stored.key, place.kind, place.name
    )];
    lines.push(
        match status.conditions.iter().find(|c| c.type_ == "Ready") {
            Some(ready) if ready.message.is_empty() => {
                format!("Ready: {} ({})", ready.status, ready.reason)
            }
            Some(ready) => format!(
                "Ready: {} ({}: {})",
                ready.status, ready.reason, ready.message
            ),
            None => "Ready: Unknown (not reconciled yet)".to_owned(),
        },
    );
    if let Some(source) = status
        .conditions
        .iter()
        .find(|c| c.type_ == SOURCE_READY && c.status == "False")
    {
        lines.push(format!("Source: {} ({})", source.reason, source.message));
    }
    if let Some(applied) = &status.last_applied_revision {
        lines.push(format!("Last applied revision: {applied}"));
    }
    if let Some(attempted) = status
        .last_attempted_revision
        .as_ref()
        .filter(|a| status.last_applied_revision.as_ref() != Some(*a))
    {
        lines.push(format!("Last attempted revision: {attempted}"));
    }
    lines.push(
        table(
            &["CLUSTER", "VERSION", "REVISION", "RESULT", "AGE"],
            &rows(status, now),
        )
        .trim_end()
        .to_owned(),
    );
    for (cluster, state) in &status.clusters {
        if !state.message.is_empty() {
            lines.push(format!("  {cluster}: {}", state.message));
        }
    }
    lines.join("\n") + "\n"
}

/// One row per cluster the status names, in `versions` or in `clusters`.
fn rows(status: &SyncStatus, now: Timestamp) -> Vec<Vec<String>> {
    let mut names: Vec<&String> = status
        .versions
        .keys()
        .chain(status.clusters.keys())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|cluster| {
            let state = status.clusters.get(cluster);
            let dash = || "-".to_owned();
            vec![
                cluster.clone(),
                status.versions.get(cluster).cloned().unwrap_or_else(dash),
                state
                    .and_then(|s| s.revision.as_deref())
                    .map_or_else(dash, short_revision),
                state.map_or_else(|| "Unknown".to_owned(), |s| s.result.clone()),
                age(state.and_then(|s| s.last_sync_time.as_deref()), now),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::SecretSyncKey;
    use crate::status::{ClusterStatus, Condition};

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn stored() -> StoredStatus {
        let revision = format!("main@sha1:{COMMIT}");
        let synced = ClusterStatus {
            revision: Some(revision.clone()),
            source_version: Some("77".to_owned()),
            resource_version: Some("211496".to_owned()),
            result: "Synced".to_owned(),
            message: String::new(),
            last_sync_time: Some("2024-05-01T11:55:00Z".to_owned()),
        };
        let down = ClusterStatus {
            result: "NotReady".to_owned(),
            message: "Ready is False".to_owned(),
            ..ClusterStatus::default()
        };
        StoredStatus {
            key: SecretSyncKey {
                namespace: "default".to_owned(),
                name: "my-dev-secret-syncer".to_owned(),
            },
            target: StatusTarget::ConfigMap("secretsync.my-dev-secret-syncer".to_owned()),
            status: SyncStatus {
                versions: BTreeMap::from([("leaf-cluster-1".to_owned(), "211496".to_owned())]),
                clusters: BTreeMap::from([
                    ("leaf-cluster-1".to_owned(), synced),
                    ("leaf-cluster-2".to_owned(), down),
                ]),
                last_applied_revision: Some(revision.clone()),
                last_attempted_revision: Some(revision),
                conditions: vec![Condition {
                    type_: "Ready".to_owned(),
                    status: "False".to_owned(),
                    reason: "NotReady".to_owned(),
                    message: "1 of 2 cluster(s) not synced".to_owned(),
                    last_transition_time: "2024-05-01T11:55:00Z".to_owned(),
                    observed_generation: None,
                }],
                observed_generation: None,
            },
        }
    }

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_row_per_cluster_with_version_revision_result_and_age() {
        assert_eq!(
            rows(&stored().status, now()),
            [
                [
                    "leaf-cluster-1",
                    "211496",
                    "main@sha1:0123456789ab",
                    "Synced",
                    "5m"
                ],
                ["leaf-cluster-2", "-", "-", "NotReady", "-"],
            ]
        );
    }

    #[test]
    fn a_section_says_where_the_status_lives_and_why_it_is_not_ready() {
        let shown = section(&stored(), now());
        assert_eq!(
            shown,
            format!(
                "SecretSync default/my-dev-secret-syncer (status in ConfigMap secretsync.my-dev-secret-syncer)\n\
                 Ready: False (NotReady: 1 of 2 cluster(s) not synced)\n\
                 Last applied revision: main@sha1:{COMMIT}\n\
                 CLUSTER          VERSION   REVISION                 RESULT     AGE\n\
                 leaf-cluster-1   211496    main@sha1:0123456789ab   Synced     5m\n\
                 leaf-cluster-2   -         -                        NotReady   -\n  \
                 leaf-cluster-2: Ready is False\n"
            )
        );
        assert!(!is_ready(&stored().status));
    }

    #[test]
    fn json_names_where_each_status_was_read() {
        let mut object = stored();
        object.target = StatusTarget::Object {
            generation: Some(2),
        };
        let statuses = [stored(), object];
        let json = serde_json::to_value(Listing::new(&statuses)).unwrap();
        assert_eq!(
            json["items"][0]["storedIn"],
            serde_json::json!({"kind": "ConfigMap", "name": "secretsync.my-dev-secret-syncer"})
        );
        assert_eq!(
            json["items"][1]["storedIn"],
            serde_json::json!({"kind": "SecretSync", "name": "my-dev-secret-syncer"})
        );
        assert_eq!(
            json["items"][0]["status"]["versions"]["leaf-cluster-1"],
            "211496"
        );
    }
}
