//! Management-cluster watches: a GitopsCluster that appears, changes labels, turns Ready or
//! goes away, and a change to a Secret that a SecretSync names, each become a trigger for
//! just the pairs concerned, without fetching git.
//!
//! Secrets are watched as metadata only: their data never enters this process through a
//! watch. Status-only churn on GitopsClusters (a heartbeat, a new condition message) is not a
//! change: only labels, readiness and the kubeconfig reference count.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::{Trigger, Triggers};
use crate::cluster::{self, GitopsCluster, readiness};

/// The source Secrets (`namespace`, `name`) current SecretSyncs name; the agent updates it
/// after each read of the repository, the Secret watch consults it.
#[derive(Debug, Clone, Default)]
pub struct WatchedSecrets(Arc<RwLock<BTreeSet<(String, String)>>>);

impl WatchedSecrets {
    pub fn replace(&self, secrets: BTreeSet<(String, String)>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = secrets;
    }

    #[must_use]
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&(namespace.to_owned(), name.to_owned()))
    }
}

/// Starts both watches over the served namespaces (`None`: all), until cancelled.
pub fn spawn_watches(
    client: &kube::Client,
    namespaces: Option<&[String]>,
    secrets: WatchedSecrets,
    triggers: &Triggers,
    cancel: &CancellationToken,
) {
    let resource = cluster::api_resource();
    let clusters = each_namespace(namespaces, |namespace| {
        let api: Api<DynamicObject> = match namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed()
    });
    let source_secrets = each_namespace(namespaces, |namespace| {
        // `PartialObjectMeta` makes the watch ask for metadata only.
        let api: Api<PartialObjectMeta<Secret>> = match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        };
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed()
    });
    tokio::spawn(until_cancelled(
        cancel.clone(),
        follow_clusters(clusters, triggers.clone()),
    ));
    tokio::spawn(until_cancelled(
        cancel.clone(),
        follow_secrets(source_secrets, secrets, triggers.clone()),
    ));
}

pub(super) async fn until_cancelled(cancel: CancellationToken, work: impl Future<Output = ()>) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = work => {}
    }
}

pub(super) type WatchStream<K> =
    futures::stream::BoxStream<'static, Result<Event<K>, watcher::Error>>;

pub(super) fn each_namespace<K>(
    namespaces: Option<&[String]>,
    watch: impl Fn(Option<&str>) -> WatchStream<K>,
) -> futures::stream::SelectAll<WatchStream<K>> {
    match namespaces {
        Some(namespaces) => {
            futures::stream::select_all(namespaces.iter().map(|ns| watch(Some(ns.as_str()))))
        }
        None => futures::stream::select_all([watch(None)]),
    }
}

/// What about a GitopsCluster matters to the sync: a change to any of it is a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClusterFingerprint {
    labels: BTreeMap<String, String>,
    ready: bool,
    kubeconfig: String,
}

impl ClusterFingerprint {
    fn of(cluster: &GitopsCluster) -> Self {
        ClusterFingerprint {
            labels: cluster.labels.clone(),
            ready: readiness(cluster).is_ready(),
            kubeconfig: format!("{:?}", cluster.kubeconfig),
        }
    }
}

/// Name of an object as `(namespace, name)`.
fn object_key<K: Resource>(object: &K) -> (String, String) {
    (object.namespace().unwrap_or_default(), object.name_any())
}

async fn follow_clusters(
    mut events: impl Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Unpin,
    triggers: Triggers,
) {
    let mut known: BTreeMap<(String, String), Option<ClusterFingerprint>> = BTreeMap::new();
    let mut listing: Option<BTreeSet<(String, String)>> = None;
    let mut first_listing = true;
    let changed = |(namespace, name): (String, String)| {
        triggers.request(Trigger::ClusterChanged { namespace, name });
    };
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "watching GitopsClusters");
                continue;
            }
        };
        match event {
            Event::Init => listing = Some(BTreeSet::new()),
            Event::InitApply(object) | Event::Apply(object) => {
                let key = object_key(&object);
                // An invalid GitopsCluster is remembered as such: fixing it is a change.
                let fingerprint = GitopsCluster::from_dynamic(&object)
                    .ok()
                    .map(|c| ClusterFingerprint::of(&c));
                if let Some(seen) = listing.as_mut() {
                    seen.insert(key.clone());
                }
                let before = known.insert(key.clone(), fingerprint.clone());
                if before.as_ref() != Some(&fingerprint) && !(listing.is_some() && first_listing) {
                    changed(key);
                }
            }
            Event::Delete(object) => {
                let key = object_key(&object);
                known.remove(&key);
                changed(key);
            }
            Event::InitDone => {
                // After a re-list (the watch was lost), clusters that vanished meanwhile.
                let seen = listing.take().unwrap_or_default();
                let gone: Vec<_> = known
                    .keys()
                    .filter(|key| !seen.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    known.remove(&key);
                    changed(key);
                }
                first_listing = false;
            }
        }
    }
}

async fn follow_secrets<K>(
    mut events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
    secrets: WatchedSecrets,
    triggers: Triggers,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut first_listing = true;
    let mut listing = false;
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(Event::Init) => {
                listing = true;
                continue;
            }
            Ok(Event::InitDone) => {
                listing = false;
                first_listing = false;
                continue;
            }
            // The first listing is what the startup reconcile reads anyway; after a lost
            // watch, every named Secret is looked at again (no-op detection keeps it cheap).
            Ok(Event::InitApply(_)) if listing && first_listing => continue,
            Ok(Event::InitApply(object) | Event::Apply(object) | Event::Delete(object)) => object,
            Err(error) => {
                tracing::warn!(%error, "watching source Secrets");
                continue;
            }
        };
        let (namespace, name) = object_key(&object);
        if secrets.contains(&namespace, &name) {
            triggers.request(Trigger::SecretChanged { namespace, name });
        }
    }
}
