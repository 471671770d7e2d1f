//! `secretsync audit`: which commit put a Secret on a leaf cluster. Given a GitopsCluster
//! and a leaf Secret, it reads the Secret's provenance annotations and, with `--source`, the
//! commit's author, date and subject from the repository; given `--revision`, it lists every
//! leaf Secret secretsync wrote from that commit. Only metadata is ever requested from a
//! leaf: Secret data is neither read nor printed. Exit 0 when found, 1 when the cluster, the
//! Secret, the revision or the commit is not there (or the Secret is not ours), 2 when the
//! question could not be answered.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta};

use super::OutputFormat;
use super::git_args::{AuthArgs, ReferenceArgs};
use super::{EXIT_NOT_FOUND, block_on, management_client};
use crate::cluster::{
    ApiFailure, ClientCache, ClusterKey, ClusterName, GitopsCluster, list_all_clusters,
    list_clusters_in, read_kubeconfig,
};
use crate::source::git::{GitError, GitSource, RemoteUrl};
use crate::source::{Algorithm, CommitInfo, Revision};
use crate::sync::desired::{MANAGED_BY, MANAGED_BY_LABEL, REVISION_ANNOTATION, SOURCE_ANNOTATION};

mod report;
mod revision;

use self::report::{CommitView, LeafCopy, RevisionReport, SecretReport};
use self::revision::RevisionQuery;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("question").required(true).args(["secret", "revision"])))]
pub struct AuditArgs {
    /// The GitopsCluster whose leaf holds the Secret named by --secret.
    #[arg(long, value_name = "NAMESPACE/NAME", requires = "secret")]
    pub cluster: Option<String>,

    /// The leaf Secret to explain: which SecretSync, manifest and commit produced it.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        requires = "cluster",
        conflicts_with = "revision"
    )]
    pub secret: Option<String>,

    /// List every leaf Secret this commit produced: `main@sha1:<sha>`, `sha1:<sha>`, or a
    /// commit id or a prefix of it (at least 7 hex digits).
    #[arg(long)]
    pub revision: Option<String>,

    /// With --revision: the namespaces whose GitopsClusters are searched (comma-separated)
    /// [default: all].
    #[arg(
        short = 'n',
        long = "namespace",
        alias = "namespaces",
        value_delimiter = ',',
        env = "SECRETSYNC_NAMESPACES"
    )]
    pub namespaces: Vec<String>,

    /// The config repository (URL, or a local clone), to show the commit's author, date and
    /// subject.
    #[arg(long, env = "SECRETSYNC_SOURCE")]
    pub source: Option<String>,

    /// Directory for the repository cache (the agent's, when it runs on this machine).
    #[arg(long, default_value = "/tmp/secretsync", env = "SECRETSYNC_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub reference: ReferenceArgs,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// An answer of "not there": exit 1.
#[derive(Debug, thiserror::Error)]
pub enum NotFound {
    #[error("GitopsCluster {cluster} not found")]
    Cluster { cluster: String },
    #[error("Secret {secret} not found on the leaf cluster of GitopsCluster {cluster}")]
    Secret { secret: String, cluster: String },
    #[error(
        "Secret {secret} on the leaf cluster of GitopsCluster {cluster} was not written by secretsync (no label {}={})",
        MANAGED_BY_LABEL,
        MANAGED_BY
    )]
    NotOurs { secret: String, cluster: String },
    #[error(
        "no leaf Secret written by secretsync carries revision {revision} on the GitopsClusters of {scope}"
    )]
    Revision { revision: String, scope: String },
    #[error(transparent)]
    Commit(GitError),
}

pub fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    match (&args.cluster, &args.secret, &args.revision) {
        (Some(cluster), Some(secret), None) => explain_secret(args, cluster, secret),
        (None, None, Some(revision)) => list_revision(args, revision),
        // clap's groups and requirements leave no other combination.
        _ => anyhow::bail!("give --cluster and --secret, or --revision"),
    }
}

fn not_found(error: &NotFound) -> ExitCode {
    eprintln!("secretsync: {error}");
    ExitCode::from(EXIT_NOT_FOUND)
}

/// `audit --cluster --secret`: the leaf Secret's provenance and, with `--source`, its commit.
fn explain_secret(args: &AuditArgs, cluster: &str, secret: &str) -> anyhow::Result<ExitCode> {
    let (namespace, name) = parse_key("--cluster", cluster)?;
    let cluster = ClusterKey {
        namespace,
        name: ClusterName::new(name),
    };
    let secret = parse_key("--secret", secret)?;
    let copy = match block_on(read_leaf_copy(&cluster, &secret))? {
        Ok(copy) => copy,
        Err(missing) => return Ok(not_found(&missing)),
    };
    let commit_id = copy.revision.as_deref().and_then(commit_of);
    let commit = match (&args.source, commit_id) {
        (Some(source), Some(id)) => Some(lookup_commit(args, source, &id)?),
        (Some(_), None) => {
            eprintln!(
                "secretsync: the copy's revision {} names no commit (its source was a directory): no commit to show",
                copy.revision.as_deref().unwrap_or("(none)")
            );
            None
        }
        (None, _) => None,
    };
    let (commit, missing) = match commit {
        Some(Ok(info)) => (Some(CommitView::from(info)), None),
        Some(Err(missing)) => (None, Some(missing)),
        None => (None, None),
    };
    let report = SecretReport { copy, commit };
    report.print(args.output)?;
    if args.source.is_none() && args.output == OutputFormat::Text {
        eprintln!("(pass --source <repository> for the commit's author, date and subject)");
    }
    Ok(missing.map_or(ExitCode::SUCCESS, |m| not_found(&m)))
}

/// The leaf Secret's metadata, read through the GitopsCluster's kubeconfig.
async fn read_leaf_copy(
    cluster: &ClusterKey,
    secret: &(String, String),
) -> anyhow::Result<Result<LeafCopy, NotFound>> {
    let mgmt = management_client().await?;
    let Some(gitops_cluster) = find_cluster(&mgmt, cluster).await? else {
        return Ok(Err(NotFound::Cluster {
            cluster: cluster.to_string(),
        }));
    };
    let kubeconfig = read_kubeconfig(&mgmt, &gitops_cluster).await?;
    let leaf = ClientCache::default().client(&kubeconfig).await?;
    let (namespace, name) = secret;
    let secrets: Api<Secret> = Api::namespaced(leaf.client().clone(), namespace);
    let shown = format!("{namespace}/{name}");
    let meta = match secrets.get_metadata_opt(name).await {
        Ok(Some(meta)) => meta.metadata,
        Ok(None) => {
            return Ok(Err(NotFound::Secret {
                secret: shown,
                cluster: cluster.to_string(),
            }));
        }
        Err(error) => anyhow::bail!(
            "reading Secret {shown} on {} (GitopsCluster {cluster}): {}",
            leaf.server(),
            ApiFailure::from_kube(&error)
        ),
    };
    if !is_ours(&meta) {
        return Ok(Err(NotFound::NotOurs {
            secret: shown,
            cluster: cluster.to_string(),
        }));
    }
    Ok(Ok(LeafCopy::new(cluster, &meta)))
}

async fn find_cluster(
    mgmt: &kube::Client,
    cluster: &ClusterKey,
) -> anyhow::Result<Option<GitopsCluster>> {
    let clusters: Api<DynamicObject> = Api::namespaced_with(
        mgmt.clone(),
        &cluster.namespace,
        &crate::cluster::api_resource(),
    );
    let object = match clusters.get_opt(cluster.name.as_str()).await {
        Ok(object) => object,
        // Without the GitopsCluster CRD the answer is 404 too: no such cluster either way.
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(error) => anyhow::bail!(
            "reading GitopsCluster {cluster}: {}",
            ApiFailure::from_kube(&error)
        ),
    };
    Ok(object
        .map(|object| GitopsCluster::from_dynamic(&object))
        .transpose()?)
}

/// `audit --revision`: every leaf Secret of ours whose revision is that commit.
fn list_revision(args: &AuditArgs, revision: &str) -> anyhow::Result<ExitCode> {
    let mut query = RevisionQuery::parse(revision)?;
    let commit = match &args.source {
        Some(source) if query.may_be_commit() => {
            match lookup_commit(args, source, query.digest_prefix())? {
                Ok(info) => {
                    // The repository knows the whole id: match on it, not on the prefix.
                    query = RevisionQuery::of_commit(&info.id);
                    Some(CommitView::from(info))
                }
                Err(missing) => return Ok(not_found(&missing)),
            }
        }
        _ => None,
    };
    let (copies, problems) = block_on(search(&args.namespaces, &query))?;
    for problem in &problems {
        eprintln!("secretsync: {problem}");
    }
    let found = !copies.is_empty();
    let report = RevisionReport {
        revision: revision.to_owned(),
        commit,
        copies,
        problems,
    };
    report.print(args.output)?;
    if found {
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        report.problems.is_empty(),
        "revision {revision} not found on the clusters that could be searched; {} could not be",
        report.problems.len()
    );
    let scope = if args.namespaces.is_empty() {
        "every namespace".to_owned()
    } else {
        format!("namespace(s) {}", args.namespaces.join(", "))
    };
    Ok(not_found(&NotFound::Revision {
        revision: revision.to_owned(),
        scope,
    }))
}

/// How many leaf clusters are searched at once.
const CONCURRENT_CLUSTERS: usize = 8;
/// Items per list request on a leaf.
const PAGE_SIZE: u32 = 500;

/// The matching copies on every GitopsCluster of `namespaces` (all when empty), sorted, and
/// what could not be searched.
async fn search(
    namespaces: &[String],
    query: &RevisionQuery,
) -> anyhow::Result<(Vec<LeafCopy>, Vec<String>)> {
    let mgmt = management_client().await?;
    let listing = if namespaces.is_empty() {
        list_all_clusters(&mgmt).await?
    } else {
        list_clusters_in(&mgmt, namespaces).await
    };
    let mut problems: Vec<String> = listing.problems.iter().map(ToString::to_string).collect();
    let cache = ClientCache::default();
    let results: Vec<_> = futures::stream::iter(&listing.clusters)
        .map(|cluster| search_cluster(&mgmt, &cache, cluster, query))
        .buffer_unordered(CONCURRENT_CLUSTERS)
        .collect()
        .await;
    let mut copies = Vec::new();
    for result in results {
        match result {
            Ok(found) => copies.extend(found),
            Err(problem) => problems.push(problem),
        }
    }
    copies.sort_by(|a, b| (&a.cluster, &a.secret).cmp(&(&b.cluster, &b.secret)));
    problems.sort();
    Ok((copies, problems))
}

/// The copies on one cluster that its own namespace's SecretSyncs wrote from the revision.
/// A SecretSync only reaches the GitopsClusters of its namespace, so a copy from another
/// namespace's SecretSync came through another registration of the same leaf, where it
/// is listed.
async fn search_cluster(
    mgmt: &kube::Client,
    cache: &ClientCache,
    cluster: &GitopsCluster,
    query: &RevisionQuery,
) -> Result<Vec<LeafCopy>, String> {
    let key = cluster.key();
    let kubeconfig = read_kubeconfig(mgmt, cluster)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = cache.client(&kubeconfig).await.map_err(|e| e.to_string())?;
    let secrets: Api<Secret> = Api::all(leaf.client().clone());
    let mut params = ListParams::default()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
        .limit(PAGE_SIZE);
    let mut copies = Vec::new();
    loop {
        let page = secrets.list_metadata(&params).await.map_err(|error| {
            format!(
                "GitopsCluster {key}: listing Secrets on {}: {}",
                leaf.server(),
                ApiFailure::from_kube(&error)
            )
        })?;
        for item in &page.items {
            let meta = &item.metadata;
            let from_this_namespace = annotation(meta, SOURCE_ANNOTATION)
                .and_then(|source| source.split_once('/'))
                .is_some_and(|(namespace, _)| namespace == key.namespace);
            let revision_matches =
                annotation(meta, REVISION_ANNOTATION).is_some_and(|r| query.matches(r));
            if from_this_namespace && revision_matches {
                copies.push(LeafCopy::new(&key, meta));
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(copies)
}

/// Fetches the repository and reads one commit. A commit the repository does not hold is
/// an answer (`NotFound`); a repository that cannot be fetched is a failure.
fn lookup_commit(
    args: &AuditArgs,
    source: &str,
    commit: &str,
) -> anyhow::Result<Result<CommitInfo, NotFound>> {
    let url = repository_url(source)?;
    let repo = GitSource::new(
        url,
        args.reference.reference()?,
        args.auth.auth()?,
        &args.data_dir,
    );
    repo.fetch()?;
    match repo.commit(commit) {
        Ok(info) => Ok(Ok(info)),
        Err(error @ (GitError::CommitNotFound { .. } | GitError::CommitAmbiguous { .. })) => {
            Ok(Err(NotFound::Commit(error)))
        }
        Err(error) => Err(error.into()),
    }
}

/// A URL as given, or a local clone's directory as a `file` address.
fn repository_url(source: &str) -> anyhow::Result<RemoteUrl> {
    let path = Path::new(source);
    if path.is_dir() {
        let absolute = path
            .canonicalize()
            .with_context(|| format!("resolving {source}"))?;
        let absolute = absolute
            .to_str()
            .with_context(|| format!("{source}: the path is not UTF-8"))?;
        return Ok(RemoteUrl::parse(absolute)?);
    }
    Ok(RemoteUrl::parse(source)?)
}

/// The commit id of a revision annotation, when it names a commit.
fn commit_of(revision: &str) -> Option<String> {
    let revision: Revision = revision.parse().ok()?;
    (revision.algorithm() == Algorithm::Sha1).then(|| revision.digest().to_owned())
}

fn is_ours(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|labels| labels.get(MANAGED_BY_LABEL))
        .is_some_and(|value| value == MANAGED_BY)
}

fn annotation<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// `namespace/name`, as `--cluster` and `--secret` take them.
fn parse_key(option: &str, text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok((namespace.to_owned(), name.to_owned()))
        }
        _ => anyhow::bail!("{option} {text:?}: expected NAMESPACE/NAME"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn keys_are_namespace_slash_name() {
        assert_eq!(
            parse_key("--secret", "my-namespace/my-dev-secret").unwrap(),
            ("my-namespace".to_owned(), "my-dev-secret".to_owned())
        );
        for bad in ["my-dev-secret", "/x", "ns/", "a/b/c", ""] {
            let error = parse_key("--secret", bad).unwrap_err().to_string();
            assert!(error.contains("expected NAMESPACE/NAME"), "{error}");
        }
    }

    #[test]
    fn only_commit_revisions_have_a_commit() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            commit_of(&format!("main@sha1:{commit}")).as_deref(),
            Some(commit)
        );
        assert_eq!(commit_of(&format!("sha256:{}", "ab".repeat(32))), None);
        assert_eq!(commit_of("garbage"), None);
    }

    #[test]
    fn ours_means_the_managed_by_label() {
        let meta = |labels: &[(&str, &str)]| ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..ObjectMeta::default()
        };
        assert!(is_ours(&meta(&[(MANAGED_BY_LABEL, MANAGED_BY)])));
        assert!(!is_ours(&meta(&[(MANAGED_BY_LABEL, "Helm")])));
        assert!(!is_ours(&ObjectMeta::default()));
    }
}
