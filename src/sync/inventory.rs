//! What one leaf namespace holds, read with a LIST or two instead of a GET per Secret: the
//! Secrets secretsync manages there (whole, to compare with the desired copies) and, only
//! when some wanted name is not among them, the names of all the others (metadata only: a
//! foreign Secret's data is not listed). A no-op reconcile of a thousand copies in a
//! namespace costs one request, not a thousand. A handful of copies (a scoped reconcile) are
//! read one by one instead (a GET returns a foreign Secret whole; it is kept only as a
//! name): listing thousands to compare one would cost more.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

use super::LIST_FROM;
use super::desired::{MANAGED_BY, MANAGED_BY_LABEL, is_managed};
use crate::cluster::lean;

/// What a leaf namespace holds under one name.
#[derive(Debug, Clone, Copy)]
pub enum Existing<'a> {
    /// No Secret of that name.
    Absent,
    /// A Secret labelled as secretsync's (by this SecretSync or another one).
    Managed(&'a Secret),
    /// A Secret secretsync did not write; its data was not read.
    Foreign,
}

/// The Secrets of one leaf namespace, as listed at the start of an apply.
#[derive(Default)]
pub struct LeafNamespace {
    managed: BTreeMap<String, Secret>,
    foreign: BTreeSet<String>,
}

impl std::fmt::Debug for LeafNamespace {
    /// Names only: the managed copies hold secret data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafNamespace")
            .field("managed", &self.managed.keys().collect::<Vec<_>>())
            .field("foreign", &self.foreign)
            .finish()
    }
}

impl LeafNamespace {
    /// Lists `namespace` on a leaf, enough to answer `get` for every name in `wanted`.
    /// A namespace that does not exist yet lists as empty.
    /// With `few_by_name` (a scoped reconcile: one SecretSync or one cluster changed), fewer
    /// than `LIST_FROM` wanted names are read one by one instead of listing the namespace.
    pub async fn read<'n>(
        client: &kube::Client,
        namespace: &str,
        wanted: impl IntoIterator<Item = &'n str>,
        few_by_name: bool,
    ) -> Result<Self, kube::Error> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let wanted: Vec<&str> = wanted.into_iter().collect();
        if few_by_name && wanted.len() < LIST_FROM {
            return LeafNamespace::get_each(&secrets, &wanted).await;
        }
        let ours = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let managed: BTreeMap<String, Secret> = lean::secrets(client, Some(namespace), &ours)
            .await?
            .into_iter()
            .map(|secret| (secret.metadata.name.clone().unwrap_or_default(), secret))
            .collect();
        // After the first reconcile every wanted copy is managed: no second LIST.
        let mut foreign = BTreeSet::new();
        if wanted.iter().any(|name| !managed.contains_key(*name)) {
            foreign = lean::secret_metadata(client, Some(namespace), &ListParams::default())
                .await?
                .into_iter()
                .filter_map(|meta| meta.metadata.name)
                .filter(|name| !managed.contains_key(name))
                .collect();
        }
        Ok(LeafNamespace { managed, foreign })
    }

    /// A few names (a change to one SecretSync or one cluster): read one by one, which is
    /// cheaper than listing a namespace that may hold thousands of copies.
    async fn get_each(secrets: &Api<Secret>, wanted: &[&str]) -> Result<Self, kube::Error> {
        let mut found = LeafNamespace::default();
        for &name in wanted {
            match secrets.get_opt(name).await? {
                Some(secret) if is_managed(&secret) => {
                    found.managed.insert(name.to_owned(), secret);
                }
                Some(_) => {
                    found.foreign.insert(name.to_owned());
                }
                None => {}
            }
        }
        Ok(found)
    }

    /// What the namespace held under `name` when it was listed.
    #[must_use]
    pub fn get(&self, name: &str) -> Existing<'_> {
        if let Some(secret) = self.managed.get(name) {
            Existing::Managed(secret)
        } else if self.foreign.contains(name) {
            Existing::Foreign
        } else {
            Existing::Absent
        }
    }
}
