//! Finding the `GitopsCluster`s of a namespace (or of an allow-list of namespaces) in the
//! management cluster, and selecting those a label selector matches.

use kube::api::{Api, DynamicObject, ListParams};

use super::model::{GitopsCluster, api_resource};
use super::{ApiFailure, ClusterError};
use crate::manifest::{LabelSelector, SecretSync};

/// Items per list request: large fleets are read in pages instead of one huge response.
const PAGE_SIZE: u32 = 500;

/// The clusters found, sorted by namespace and name, and what could not be read. One bad
/// object or one forbidden namespace does not hide the others.
#[derive(Debug, Default)]
pub struct ClusterList {
    pub clusters: Vec<GitopsCluster>,
    pub problems: Vec<ClusterError>,
}

/// Lists the `GitopsCluster`s of `namespace`. Fails only when the listing itself fails;
/// clusters that cannot be read are in `problems`.
pub async fn list_clusters(
    client: &kube::Client,
    namespace: &str,
) -> Result<ClusterList, ClusterError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource());
    list_pages(&api, namespace).await
}

/// Lists the `GitopsCluster`s of every namespace (needs a cluster-wide list permission).
pub async fn list_all_clusters(client: &kube::Client) -> Result<ClusterList, ClusterError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource());
    list_pages(&api, "<all namespaces>").await
}

async fn list_pages(api: &Api<DynamicObject>, scope: &str) -> Result<ClusterList, ClusterError> {
    let mut list = ClusterList::default();
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| list_failed(scope, &e))?;
        for object in &page.items {
            match GitopsCluster::from_dynamic(object) {
                Ok(cluster) => list.clusters.push(cluster),
                Err(problem) => list.problems.push(problem),
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    list.clusters
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(list)
}

/// Lists the `GitopsCluster`s of every namespace of `namespaces`; a namespace that cannot
/// be listed is reported in `problems` and does not stop the others.
pub async fn list_clusters_in(client: &kube::Client, namespaces: &[String]) -> ClusterList {
    let mut all = ClusterList::default();
    for namespace in namespaces {
        match list_clusters(client, namespace).await {
            Ok(list) => {
                all.clusters.extend(list.clusters);
                all.problems.extend(list.problems);
            }
            Err(problem) => all.problems.push(problem),
        }
    }
    all.clusters
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    all.clusters
        .dedup_by(|a, b| (&a.namespace, &a.name) == (&b.namespace, &b.name));
    all
}

fn list_failed(namespace: &str, error: &kube::Error) -> ClusterError {
    let mut source = ApiFailure::from_kube(error);
    if source.code == Some(404) {
        source
            .message
            .push_str(" (is the GitopsCluster CRD installed?)");
    }
    ClusterError::ListFailed {
        namespace: namespace.to_owned(),
        source,
    }
}

/// The clusters whose labels `selector` matches, in the order given. An empty selector
/// selects nothing. This does not look at namespaces: see `select_for`.
#[must_use]
pub fn select<'a>(
    clusters: &'a [GitopsCluster],
    selector: &LabelSelector,
) -> Vec<&'a GitopsCluster> {
    clusters
        .iter()
        .filter(|c| selector.matches(&c.labels))
        .collect()
}

/// The clusters a SecretSync selects: matched by its `clusterSelector` and in its own
/// namespace, the security boundary of the SecretSync API.
#[must_use]
pub fn select_for<'a>(clusters: &'a [GitopsCluster], sync: &SecretSync) -> Vec<&'a GitopsCluster> {
    clusters
        .iter()
        .filter(|c| c.namespace == sync.key.namespace)
        .filter(|c| sync.spec.cluster_selector.matches(&c.labels))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::{ClusterName, KubeconfigRef};

    fn cluster(namespace: &str, name: &str, labels: &[(&str, &str)]) -> GitopsCluster {
        GitopsCluster {
            name: ClusterName::new(name),
            namespace: namespace.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            kubeconfig: KubeconfigRef::Default,
            conditions: Vec::new(),
        }
    }

    fn fleet() -> Vec<GitopsCluster> {
        vec![
            cluster(
                "fleet",
                "leaf-cluster-1",
                &[("environment", "staging"), ("region", "eu-west")],
            ),
            cluster(
                "fleet",
                "leaf-cluster-2",
                &[("environment", "production"), ("region", "us-east")],
            ),
            cluster("fleet", "bare", &[]),
        ]
    }

    fn names(selected: &[&GitopsCluster]) -> Vec<String> {
        selected.iter().map(|c| c.name.to_string()).collect()
    }

    #[test]
    fn selects_by_labels_and_never_all_for_an_empty_selector() {
        let clusters = fleet();
        let cases: [(&str, &[&str]); 7] = [
            ("{}", &[]),
            (
                "matchLabels: {environment: production}",
                &["leaf-cluster-2"],
            ),
            ("matchLabels: {environment: testing}", &[]),
            (
                "matchExpressions: [{key: region, operator: In, values: [eu-west, us-east]}]",
                &["leaf-cluster-1", "leaf-cluster-2"],
            ),
            (
                "matchExpressions: [{key: environment, operator: NotIn, values: [production]}]",
                &["leaf-cluster-1", "bare"],
            ),
            (
                "matchExpressions: [{key: region, operator: DoesNotExist}]",
                &["bare"],
            ),
            (
                "{matchLabels: {environment: staging}, matchExpressions: [{key: region, operator: Exists}]}",
                &["leaf-cluster-1"],
            ),
        ];
        for (yaml, expected) in cases {
            let selector: LabelSelector = serde_yaml::from_str(yaml).unwrap();
            assert_eq!(names(&select(&clusters, &selector)), expected, "{yaml}");
        }
    }

    #[test]
    fn a_secretsync_sees_only_clusters_of_its_namespace() {
        let mut clusters = fleet();
        clusters.push(cluster(
            "other-team",
            "foreign",
            &[("environment", "production")],
        ));
        let yaml = "apiVersion: capi.weave.works/v1alpha1\nkind: SecretSync\n\
                    metadata: {name: registry, namespace: fleet}\n\
                    spec: {clusterSelector: {matchLabels: {environment: production}}, secretRef: {name: registry}}\n";
        let snapshot = crate::source::Snapshot {
            revision: crate::source::Revision::new(Some("main"), &"a".repeat(40)).unwrap(),
            commit: None,
            files: vec![crate::source::SourceFile {
                path: "sync.yaml".to_owned(),
                id: "1".to_owned(),
                content: crate::source::FileContent::Bytes(std::sync::Arc::from(yaml.as_bytes())),
            }],
        };
        let set = crate::manifest::Parser::new("fleet").parse(&snapshot);
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        assert_eq!(
            names(&select(&clusters, &set.syncs[0].spec.cluster_selector)),
            ["leaf-cluster-2", "foreign"]
        );
        assert_eq!(
            names(&select_for(&clusters, &set.syncs[0])),
            ["leaf-cluster-2"]
        );
    }
}
