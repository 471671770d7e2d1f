//! Where status goes: the SecretSync object's status subresource when the CRD is installed
//! and the object exists; otherwise a ConfigMap `secretsync.<name>` (key `status`) in the
//! SecretSync's namespace, since secretsync works before any CRD is applied.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind, ObjectMeta};
use serde_json::json;

use super::model::SyncStatus;
use crate::cluster::lean;
use crate::manifest::{API_VERSION, KIND, SecretSyncKey};
use crate::sync::desired::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL, SOURCE_ANNOTATION};

/// Key of the status document in the fallback ConfigMap.
pub const CONFIGMAP_KEY: &str = "status";

/// Kubernetes errors are boxed: they are large, and a `Result` should stay small.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("reading the status of SecretSync {key}: {source}")]
    Read {
        key: SecretSyncKey,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("writing the status of SecretSync {key} to {target}: {source}")]
    Write {
        key: SecretSyncKey,
        target: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("listing {kind} in {scope}: {source}")]
    List {
        kind: &'static str,
        scope: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the status of SecretSync {key} in ConfigMap {configmap} is not valid YAML: {source}")]
    Corrupt {
        key: SecretSyncKey,
        configmap: String,
        #[source]
        source: serde_yaml::Error,
    },
}

/// Where a status lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusTarget {
    /// The SecretSync object's status subresource; `generation` is its `metadata.generation`.
    Object { generation: Option<i64> },
    /// A ConfigMap of this name in the SecretSync's namespace.
    ConfigMap(String),
}

/// A SecretSync's status as found in the management cluster, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStatus {
    pub key: SecretSyncKey,
    pub target: StatusTarget,
    pub status: SyncStatus,
}

/// The statuses found by `StatusStore::list`, sorted by SecretSync, and the ConfigMaps that
/// could not be read: one corrupt ConfigMap does not hide the others.
#[derive(Debug, Default)]
pub struct StatusListing {
    pub statuses: Vec<StoredStatus>,
    pub problems: Vec<StatusError>,
}

/// The `SecretSync` resource (`capi.weave.works/v1alpha1`).
#[must_use]
pub fn secret_sync_resource() -> ApiResource {
    let (group, version) = API_VERSION.split_once('/').unwrap_or((API_VERSION, ""));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, KIND), "secretsyncs")
}

/// What the fallback ConfigMap's name starts with; the SecretSync's name follows.
pub const CONFIGMAP_PREFIX: &str = "secretsync.";

/// The fallback ConfigMap's name for a SecretSync.
#[must_use]
pub fn configmap_name(key: &SecretSyncKey) -> String {
    format!("{CONFIGMAP_PREFIX}{}", key.name)
}

/// Reads and writes SecretSync statuses in the management cluster.
#[derive(Clone)]
pub struct StatusStore {
    client: kube::Client,
}

impl StatusStore {
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        StatusStore { client }
    }

    /// Where the status of `key` belongs, and what it says now.
    pub async fn read(
        &self,
        key: &SecretSyncKey,
    ) -> Result<(StatusTarget, SyncStatus), StatusError> {
        let read_error = |source| StatusError::Read {
            key: key.clone(),
            source: Box::new(source),
        };
        let objects: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &secret_sync_resource());
        let object = match objects.get_opt(&key.name).await {
            Ok(object) => object,
            // Without the CRD the apiserver answers a plain "404 page not found" rather than
            // a NotFound Status, which `get_opt` passes on as an error: no object either way.
            Err(kube::Error::Api(status)) if status.code == 404 => None,
            Err(error) => return Err(read_error(error)),
        };
        if let Some(object) = object {
            return Ok(object_status(&object));
        }
        let name = configmap_name(key);
        let configmaps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &key.namespace);
        let configmap = configmaps.get_opt(&name).await.map_err(read_error)?;
        let status = configmap_status(key, configmap.as_ref())?;
        Ok((StatusTarget::ConfigMap(name), status))
    }

    /// Every status of `namespace` as `read` would find it, with two LISTs (SecretSync
    /// objects, status ConfigMaps) instead of up to two GETs per SecretSync: a reconcile of
    /// thousands of SecretSyncs reads its statuses in a few requests.
    pub async fn snapshot(&self, namespace: &str) -> Result<StatusSnapshot, StatusError> {
        let scope = format!("namespace {namespace}");
        let list_error = |kind, source| StatusError::List {
            kind,
            scope: scope.clone(),
            source: Box::new(source),
        };
        let objects: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &secret_sync_resource());
        let objects = match objects.list(&ListParams::default()).await {
            Ok(list) => list.items,
            // No CRD ("404 page not found"): statuses live in ConfigMaps only.
            Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
            Err(source) => return Err(list_error("SecretSyncs", source)),
        };
        let params = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let configmaps = lean::config_maps(&self.client, Some(namespace), &params)
            .await
            .map_err(|source| list_error("status ConfigMaps", source))?;
        let by_name = |meta: &ObjectMeta| meta.name.clone().unwrap_or_default();
        Ok(StatusSnapshot {
            objects: objects
                .into_iter()
                .map(|mut object| {
                    // Held for the whole reconcile: without managedFields, which nothing
                    // here reads.
                    object.metadata.managed_fields = None;
                    (by_name(&object.metadata), object)
                })
                .collect(),
            configmaps: configmaps
                .into_iter()
                .map(|configmap| (by_name(&configmap.metadata), configmap))
                .collect(),
        })
    }

    /// Every SecretSync status in `namespace` (all namespaces when `None`): those on
    /// SecretSync objects (when the CRD is installed) and those in fallback ConfigMaps. When
    /// a SecretSync has both, the object's wins as in `read`, unless the object has no status
    /// yet: then the ConfigMap still holds the last one written.
    pub async fn list(&self, namespace: Option<&str>) -> Result<StatusListing, StatusError> {
        let scope =
            namespace.map_or_else(|| "all namespaces".to_owned(), |n| format!("namespace {n}"));
        let mut found: BTreeMap<SecretSyncKey, StoredStatus> = BTreeMap::new();
        let mut listing = StatusListing::default();
        for stored in self
            .list_configmaps(namespace, &scope, &mut listing.problems)
            .await?
        {
            found.insert(stored.key.clone(), stored);
        }
        for stored in self.list_objects(namespace, &scope).await? {
            let keep_configmap =
                stored.status == SyncStatus::default() && found.contains_key(&stored.key);
            if !keep_configmap {
                found.insert(stored.key.clone(), stored);
            }
        }
        listing.statuses = found.into_values().collect();
        Ok(listing)
    }

    async fn list_objects(
        &self,
        namespace: Option<&str>,
        scope: &str,
    ) -> Result<Vec<StoredStatus>, StatusError> {
        let resource = secret_sync_resource();
        let objects: Api<DynamicObject> = match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let list = match objects.list(&ListParams::default()).await {
            Ok(list) => list,
            // No CRD ("404 page not found"): statuses live in ConfigMaps only.
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Vec::new()),
            Err(source) => {
                return Err(StatusError::List {
                    kind: "SecretSyncs",
                    scope: scope.to_owned(),
                    source: Box::new(source),
                });
            }
        };
        Ok(list
            .items
            .into_iter()
            .filter_map(|object| {
                let key = SecretSyncKey {
                    namespace: object.metadata.namespace.clone()?,
                    name: object.metadata.name.clone()?,
                };
                let (target, status) = object_status(&object);
                Some(StoredStatus {
                    key,
                    target,
                    status,
                })
            })
            .collect())
    }

    async fn list_configmaps(
        &self,
        namespace: Option<&str>,
        scope: &str,
        problems: &mut Vec<StatusError>,
    ) -> Result<Vec<StoredStatus>, StatusError> {
        let params = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let configmaps = lean::config_maps(&self.client, namespace, &params)
            .await
            .map_err(|source| StatusError::List {
                kind: "status ConfigMaps",
                scope: scope.to_owned(),
                source: Box::new(source),
            })?;
        let mut statuses = Vec::new();
        for configmap in configmaps {
            let (Some(namespace), Some(name)) =
                (&configmap.metadata.namespace, &configmap.metadata.name)
            else {
                continue;
            };
            let Some(sync_name) = name.strip_prefix(CONFIGMAP_PREFIX) else {
                continue;
            };
            let Some(text) = configmap.data.as_ref().and_then(|d| d.get(CONFIGMAP_KEY)) else {
                continue;
            };
            let key = SecretSyncKey {
                namespace: namespace.clone(),
                name: sync_name.to_owned(),
            };
            match serde_yaml::from_str(text) {
                Ok(status) => statuses.push(StoredStatus {
                    key,
                    target: StatusTarget::ConfigMap(name.clone()),
                    status,
                }),
                Err(source) => problems.push(StatusError::Corrupt {
                    key,
                    configmap: name.clone(),
                    source,
                }),
            }
        }
        Ok(statuses)
    }

    /// Writes `status` (server-side apply, so clusters that left the map leave it).
    pub async fn write(
        &self,
        key: &SecretSyncKey,
        target: &StatusTarget,
        status: &SyncStatus,
    ) -> Result<(), StatusError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let result = match target {
            StatusTarget::Object { .. } => {
                let objects: Api<DynamicObject> = Api::namespaced_with(
                    self.client.clone(),
                    &key.namespace,
                    &secret_sync_resource(),
                );
                let patch = json!({"apiVersion": API_VERSION, "kind": KIND, "status": status});
                objects
                    .patch_status(&key.name, &params, &Patch::Apply(patch))
                    .await
                    .map(drop)
            }
            StatusTarget::ConfigMap(name) => {
                let configmaps: Api<ConfigMap> =
                    Api::namespaced(self.client.clone(), &key.namespace);
                configmaps
                    .patch(
                        name,
                        &params,
                        &Patch::Apply(status_configmap(key, name, status)),
                    )
                    .await
                    .map(drop)
            }
        };
        result.map_err(|source| StatusError::Write {
            key: key.clone(),
            target: describe(target),
            source: Box::new(source),
        })
    }
}

/// The statuses of one namespace, read by `StatusStore::snapshot`.
#[derive(Debug, Default)]
pub struct StatusSnapshot {
    objects: BTreeMap<String, DynamicObject>,
    configmaps: BTreeMap<String, ConfigMap>,
}

impl StatusSnapshot {
    /// Where the status of `key` (a SecretSync of the snapshot's namespace) belongs, and
    /// what it says: the same answer as `StatusStore::read`.
    pub fn lookup(&self, key: &SecretSyncKey) -> Result<(StatusTarget, SyncStatus), StatusError> {
        if let Some(object) = self.objects.get(&key.name) {
            return Ok(object_status(object));
        }
        let name = configmap_name(key);
        let status = configmap_status(key, self.configmaps.get(&name))?;
        Ok((StatusTarget::ConfigMap(name), status))
    }
}

/// The status a SecretSync object carries (empty when it has none yet).
fn object_status(object: &DynamicObject) -> (StatusTarget, SyncStatus) {
    let status = serde_json::from_value(object.data["status"].clone()).unwrap_or_default();
    let target = StatusTarget::Object {
        generation: object.metadata.generation,
    };
    (target, status)
}

/// The status a fallback ConfigMap holds (empty when there is none, or it has no status key).
fn configmap_status(
    key: &SecretSyncKey,
    configmap: Option<&ConfigMap>,
) -> Result<SyncStatus, StatusError> {
    let Some(text) = configmap
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get(CONFIGMAP_KEY))
    else {
        return Ok(SyncStatus::default());
    };
    serde_yaml::from_str(text).map_err(|source| StatusError::Corrupt {
        key: key.clone(),
        configmap: configmap_name(key),
        source,
    })
}

fn status_configmap(key: &SecretSyncKey, name: &str, status: &SyncStatus) -> ConfigMap {
    // Serializing plain strings and maps cannot fail.
    let text = serde_yaml::to_string(status).unwrap_or_default();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(key.namespace.clone()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(
                SOURCE_ANNOTATION.to_owned(),
                key.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(CONFIGMAP_KEY.to_owned(), text)])),
        ..ConfigMap::default()
    }
}

fn describe(target: &StatusTarget) -> String {
    match target {
        StatusTarget::Object { .. } => "its status subresource".to_owned(),
        StatusTarget::ConfigMap(name) => format!("ConfigMap {name}"),
    }
}
