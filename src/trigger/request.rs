//! Requests made on the management cluster, Flux style: the annotation
//! `secretsync.dev/requestedAt` on a SecretSync object (or, when there is no object, on its
//! status ConfigMap `secretsync.<name>`) asks for a reconcile now; `secretsync.dev/suspend:
//! "true"` on the object pauses the SecretSync as the same annotation in git does.
//! `secretsync reconcile` sets the first one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt as _};
use tokio_util::sync::CancellationToken;

use super::watch::{each_namespace, until_cancelled};
use super::{Trigger, Triggers};
use crate::manifest::{SUSPEND_ANNOTATION, SecretSyncKey};
use crate::status::writer::{CONFIGMAP_PREFIX, secret_sync_resource};
use crate::sync::desired::{MANAGED_BY, MANAGED_BY_LABEL};

/// Annotation: a new value asks for a reconcile of everything now (Flux's `requestedAt`).
pub const REQUESTED_AT_ANNOTATION: &str = "secretsync.dev/requestedAt";

/// SecretSyncs suspended on their management-cluster object.
#[derive(Debug, Clone, Default)]
pub struct SuspendedObjects(Arc<RwLock<BTreeSet<SecretSyncKey>>>);

impl SuspendedObjects {
    #[must_use]
    pub fn contains(&self, key: &SecretSyncKey) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(key)
    }

    /// Marks `key` suspended or not; says whether that changed anything.
    fn set(&self, key: &SecretSyncKey, suspended: bool) -> bool {
        let mut keys = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if suspended {
            keys.insert(key.clone())
        } else {
            keys.remove(key)
        }
    }
}

/// Watches SecretSync objects (when the CRD is served) and status ConfigMaps in the served
/// namespaces (`None`: all) for requests, until cancelled.
pub async fn spawn_request_watches(
    client: &kube::Client,
    namespaces: Option<&[String]>,
    suspended: SuspendedObjects,
    triggers: &Triggers,
    cancel: &CancellationToken,
) {
    let resource = secret_sync_resource();
    let objects = |namespace: Option<&str>| -> Api<PartialObjectMeta<DynamicObject>> {
        match namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        }
    };
    let probe = objects(namespaces.and_then(|n| n.first()).map(String::as_str));
    match probe.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => {
            let streams = each_namespace(namespaces, |ns| {
                watcher::watcher(objects(ns), watcher::Config::default())
                    .default_backoff()
                    .boxed()
            });
            tokio::spawn(until_cancelled(
                cancel.clone(),
                follow(
                    streams,
                    |object| Some(key_of(object)),
                    Some(suspended),
                    triggers.clone(),
                ),
            ));
        }
        Err(error) => tracing::info!(
            %error,
            "SecretSync objects cannot be watched (CRD not installed, or not allowed): requests and suspension only through status ConfigMaps and git"
        ),
    }
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let configmaps = each_namespace(namespaces, |ns| {
        let api: Api<PartialObjectMeta<ConfigMap>> = match ns {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        };
        watcher::watcher(api, config.clone())
            .default_backoff()
            .boxed()
    });
    tokio::spawn(until_cancelled(
        cancel.clone(),
        follow(
            configmaps,
            |configmap| {
                let name = configmap.name_any();
                Some(SecretSyncKey {
                    namespace: configmap.namespace()?,
                    name: name.strip_prefix(CONFIGMAP_PREFIX)?.to_owned(),
                })
            },
            None,
            triggers.clone(),
        ),
    ));
}

fn key_of<K: Resource>(object: &K) -> SecretSyncKey {
    SecretSyncKey {
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    }
}

/// Follows one kind of object: a changed `requestedAt` asks for a reconcile; with
/// `suspended`, the suspend annotation is tracked too (a change asks for a reconcile, so
/// that status says so at once).
async fn follow<K: Resource>(
    mut events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
    key_of: impl Fn(&K) -> Option<SecretSyncKey>,
    suspended: Option<SuspendedObjects>,
    triggers: Triggers,
) {
    let mut requested: BTreeMap<SecretSyncKey, String> = BTreeMap::new();
    let mut listed = false;
    while let Some(event) = events.next().await {
        let (object, deleted) = match event {
            Ok(Event::InitDone) => {
                listed = true;
                continue;
            }
            Ok(Event::Init) => continue,
            Ok(Event::Apply(object) | Event::InitApply(object)) => (object, false),
            Ok(Event::Delete(object)) => (object, true),
            Err(error) => {
                tracing::debug!(%error, "watching for reconcile requests");
                continue;
            }
        };
        let Some(key) = key_of(&object) else {
            continue;
        };
        let annotations = object.meta().annotations.as_ref();
        let value = |name: &str| annotations.and_then(|a| a.get(name)).cloned();
        let mut changed = false;
        if let Some(suspended) = &suspended {
            let now = !deleted && value(SUSPEND_ANNOTATION).as_deref() == Some("true");
            changed |= suspended.set(&key, now);
        }
        match value(REQUESTED_AT_ANNOTATION) {
            Some(at) if !deleted => {
                changed |= requested.insert(key.clone(), at.clone()).as_ref() != Some(&at);
            }
            _ => {
                requested.remove(&key);
            }
        }
        // What the first listing finds was asked before the agent started: its first
        // reconcile covers it.
        if changed && listed {
            tracing::info!(secret_sync = %key, "reconcile requested on the management cluster");
            triggers.request(Trigger::Requested);
        }
    }
}
