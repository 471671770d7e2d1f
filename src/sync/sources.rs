//! The source Secrets a reconcile copies, read from the management cluster. Where a
//! namespace holds many of them, one metadata-only LIST tells every Secret's resourceVersion
//! and only those not already held at that version are read whole: a no-op reconcile of a
//! thousand SecretSyncs reads one list per namespace, not a thousand Secrets. Where it holds
//! few, they are read one by one. Either way, what was read is kept for the next reconcile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

use crate::cluster::lean;

use super::LIST_FROM;
use super::reconcile::MANAGEMENT_CONCURRENCY;

/// `(namespace, name)` of a Secret.
pub type SecretKey = (String, String);

/// Source Secrets as last read, by key, shared with the reconciles that use them. Holds
/// secret data: `Debug` shows keys only.
#[derive(Default)]
pub struct SourceCache {
    held: Mutex<HashMap<SecretKey, Arc<Secret>>>,
}

impl std::fmt::Debug for SourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceCache")
            .field("held", &self.lock().len())
            .finish()
    }
}

impl SourceCache {
    /// The wanted Secrets that exist. A Secret that cannot be read is left out (planned as
    /// missing), the error logged.
    pub async fn read(
        &self,
        mgmt: &kube::Client,
        wanted: &BTreeSet<SecretKey>,
    ) -> BTreeMap<SecretKey, Arc<Secret>> {
        let mut by_namespace: BTreeMap<&str, Vec<&SecretKey>> = BTreeMap::new();
        for key in wanted {
            by_namespace.entry(key.0.as_str()).or_default().push(key);
        }
        let mut to_get: Vec<&SecretKey> = Vec::new();
        let mut found = BTreeMap::new();
        for (namespace, keys) in by_namespace {
            if keys.len() < LIST_FROM {
                to_get.extend(keys);
                continue;
            }
            match self.still_current(mgmt, namespace, &keys).await {
                Ok((current, stale)) => {
                    found.extend(current);
                    to_get.extend(stale);
                }
                Err(error) => {
                    tracing::warn!(%namespace, %error, "cannot list Secrets; reading them one by one");
                    to_get.extend(keys);
                }
            }
        }
        let reads = to_get.into_iter().map(|key| async move {
            let secrets: Api<Secret> = Api::namespaced(mgmt.clone(), &key.0);
            match secrets.get_opt(&key.1).await {
                // Held until the Secret changes: without its managedFields, which nothing
                // here reads and which can outweigh the rest of the Secret.
                Ok(secret) => (
                    key,
                    secret.map(|mut secret| {
                        secret.metadata.managed_fields = None;
                        Arc::new(secret)
                    }),
                ),
                Err(error) => {
                    tracing::warn!(namespace = %key.0, secret = %key.1, %error, "cannot read source Secret");
                    (key, None)
                }
            }
        });
        let read: Vec<(&SecretKey, Option<Arc<Secret>>)> = futures::stream::iter(reads)
            .buffer_unordered(MANAGEMENT_CONCURRENCY)
            .collect()
            .await;
        let mut held = self.lock();
        for (key, secret) in read {
            match secret {
                Some(secret) => {
                    held.insert(key.clone(), Arc::clone(&secret));
                    found.insert(key.clone(), secret);
                }
                None => {
                    held.remove(key);
                }
            }
        }
        found
    }

    /// Forgets every Secret but `wanted` (the sources of every SecretSync served: the others
    /// are no longer any SecretSync's source).
    pub fn retain(&self, wanted: &BTreeSet<SecretKey>) {
        self.lock().retain(|key, _| wanted.contains(key));
    }

    /// Lists `namespace` (metadata only): the wanted Secrets held at their current
    /// resourceVersion, and the wanted keys that exist but must be read again. Keys that do
    /// not exist are in neither (and forgotten).
    async fn still_current<'k>(
        &self,
        mgmt: &kube::Client,
        namespace: &str,
        keys: &[&'k SecretKey],
    ) -> Result<(Vec<(SecretKey, Arc<Secret>)>, Vec<&'k SecretKey>), kube::Error> {
        let listed = lean::secret_metadata(mgmt, Some(namespace), &ListParams::default()).await?;
        let versions: HashMap<String, Option<String>> = listed
            .into_iter()
            .filter_map(|meta| Some((meta.metadata.name?, meta.metadata.resource_version)))
            .collect();
        let mut held = self.lock();
        let mut current = Vec::new();
        let mut stale = Vec::new();
        for &key in keys {
            let Some(version) = versions.get(&key.1) else {
                held.remove(key);
                continue;
            };
            match held.get(key) {
                Some(secret)
                    if version.is_some() && secret.metadata.resource_version == *version =>
                {
                    current.push((key.clone(), Arc::clone(secret)));
                }
                _ => stale.push(key),
            }
        }
        Ok((current, stale))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SecretKey, Arc<Secret>>> {
        // Entries are inserted whole: a panic elsewhere leaves nothing half-written.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
