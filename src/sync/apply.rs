//! Applying planned leaf Secrets to one leaf cluster: ownership check, no-op detection
//! against the listed inventory, target namespace creation, server-side apply with field
//! manager `secretsync`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PatchParams, PostParams, Preconditions};
use kube::core::ObjectMeta;
use serde::Serialize;

use super::desired::{
    FIELD_MANAGER, OWNER_LABEL, REVISION_ANNOTATION, annotation, is_managed, matches,
};
use super::inventory::{Existing, LeafNamespace};
use super::plan::{SkipReason, secret_name};
use crate::cluster::lean;
use crate::manifest::SecretSyncKey;

/// One leaf Secret to make right, borrowed from the plan (a fleet's plan holds thousands).
/// `Debug` names the Secret, never its data.
#[derive(Clone, Copy)]
pub struct ApplyRequest<'a> {
    pub sync: &'a SecretSyncKey,
    pub desired: &'a Secret,
    /// The SecretSync may take over a leaf Secret that secretsync did not create.
    pub adopt: bool,
}

impl std::fmt::Debug for ApplyRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyRequest")
            .field("sync", self.sync)
            .field("desired", &secret_name(self.desired))
            .field("adopt", &self.adopt)
            .finish()
    }
}

/// What happened to one (SecretSync, cluster) pair. Never holds secret data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "PascalCase")]
pub enum Outcome {
    /// Written in this reconcile.
    Applied {
        resource_version: String,
        revision: String,
    },
    /// Already right; nothing was written.
    Unchanged {
        resource_version: String,
        revision: String,
    },
    Skipped(SkipReason),
    /// A Secret of that name exists and is not secretsync's; left alone.
    NotOwned {
        target: String,
    },
    /// Dry run: would be written (created when `create`, else updated).
    WouldApply {
        create: bool,
    },
    Failed {
        message: String,
    },
}

impl Outcome {
    /// The leaf Secret's resourceVersion, when the leaf holds the right copy.
    #[must_use]
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            Outcome::Applied {
                resource_version, ..
            }
            | Outcome::Unchanged {
                resource_version, ..
            } => Some(resource_version),
            _ => None,
        }
    }
}

/// How `apply_all` goes about it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Write nothing: outcomes say what would be written.
    pub dry_run: bool,
    /// A scoped reconcile: a few copies in a namespace are read by name, not listed with
    /// the namespace.
    pub few_by_name: bool,
}

/// Makes one leaf cluster hold the requested Secrets. Requests are independent: one failing
/// does not stop the others. What is there is listed once per target namespace
/// (`inventory`), so copies that are already right cost no request of their own.
/// With `dry_run`, nothing is written: the outcome says what would be.
pub async fn apply_all(
    client: &kube::Client,
    requests: &[ApplyRequest<'_>],
    options: ApplyOptions,
) -> Vec<Outcome> {
    let ApplyOptions {
        dry_run,
        few_by_name,
    } = options;
    let mut namespaces: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for request in requests {
        let (namespace, name) = target(request.desired);
        namespaces.entry(namespace).or_default().push(name);
    }
    let mut inventories = BTreeMap::new();
    for (namespace, names) in namespaces {
        let listed = LeafNamespace::read(client, namespace, names, few_by_name)
            .await
            .map_err(|error| describe(&error));
        inventories.insert(namespace, listed);
    }
    let mut namespaces_ready = BTreeSet::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        let outcome = match &inventories[target(request.desired).0] {
            Ok(inventory) => {
                apply_one(client, request, inventory, &mut namespaces_ready, dry_run).await
            }
            Err(message) => Err(message.clone()),
        };
        outcomes.push(outcome.unwrap_or_else(|message| Outcome::Failed { message }));
    }
    outcomes
}

/// The namespace and name a desired leaf Secret goes to.
fn target(desired: &Secret) -> (&str, &str) {
    (
        desired.metadata.namespace.as_deref().unwrap_or("default"),
        desired.metadata.name.as_deref().unwrap_or_default(),
    )
}

async fn apply_one(
    client: &kube::Client,
    request: &ApplyRequest<'_>,
    inventory: &LeafNamespace,
    namespaces_ready: &mut BTreeSet<String>,
    dry_run: bool,
) -> Result<Outcome, String> {
    let desired = request.desired;
    let (namespace, name) = target(desired);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let fetched;
    let existing = match inventory.get(name) {
        Existing::Absent => None,
        Existing::Managed(secret) => Some(secret),
        // Left alone without reading it, unless the SecretSync may adopt it.
        Existing::Foreign if !request.adopt => {
            return Ok(Outcome::NotOwned {
                target: format!("{namespace}/{name}"),
            });
        }
        Existing::Foreign => {
            fetched = secrets.get_opt(name).await.map_err(|e| describe(&e))?;
            fetched.as_ref()
        }
    };
    if let Some(existing) = existing {
        let ours =
            is_managed(existing) && label(existing, OWNER_LABEL) == label(desired, OWNER_LABEL);
        if !ours && !request.adopt {
            return Ok(Outcome::NotOwned {
                target: format!("{namespace}/{name}"),
            });
        }
        if ours && matches(existing, desired) {
            return Ok(Outcome::Unchanged {
                revision: annotation(existing, REVISION_ANNOTATION).unwrap_or_default(),
                resource_version: existing
                    .metadata
                    .resource_version
                    .clone()
                    .unwrap_or_default(),
            });
        }
    }
    if dry_run {
        return Ok(Outcome::WouldApply {
            create: existing.is_none(),
        });
    }
    write(client, &secrets, desired, existing, namespaces_ready)
        .await
        .map_err(|e| describe(&e))
}

/// Writes `desired` over `existing` (server-side apply; a delete first when Kubernetes
/// cannot update it in place), creating the namespace when the copy is new.
async fn write(
    client: &kube::Client,
    secrets: &Api<Secret>,
    desired: &Secret,
    existing: Option<&Secret>,
    namespaces_ready: &mut BTreeSet<String>,
) -> Result<Outcome, kube::Error> {
    let (namespace, _) = target(desired);
    if existing.is_none() && namespaces_ready.insert(namespace.to_owned()) {
        ensure_namespace(client, namespace).await?;
    }
    if let Some(existing) = existing.filter(|e| needs_replacing(e, desired)) {
        replace(secrets, existing).await?;
    }
    // Forced: fields another manager set on an adopted or drifted copy are taken back.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = lean::apply_secret(client, desired, &params).await?;
    Ok(Outcome::Applied {
        resource_version: applied.metadata.resource_version.unwrap_or_default(),
        revision: annotation(desired, REVISION_ANNOTATION).unwrap_or_default(),
    })
}

/// Kubernetes never changes a Secret's `type`, nor the data of an immutable one: such a
/// copy is deleted and created anew instead of updated.
fn needs_replacing(existing: &Secret, desired: &Secret) -> bool {
    let type_of = |s: &Secret| s.type_.clone().unwrap_or_else(|| "Opaque".to_owned());
    type_of(existing) != type_of(desired)
        || (existing.immutable == Some(true) && existing.data != desired.data)
}

/// Deletes `existing` (only that very object: uid precondition) so that it can be created anew.
async fn replace(secrets: &Api<Secret>, existing: &Secret) -> Result<(), kube::Error> {
    let name = existing.metadata.name.as_deref().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match secrets.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Creates the target namespace when it is missing (a leaf may not have it yet).
async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match namespaces
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            },
            &namespace,
        )
        .await
    {
        // Created meanwhile by someone else: as good.
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

fn label(secret: &Secret, key: &str) -> Option<String> {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .cloned()
}

/// An API error as status can show it: the server's message names objects, never data.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}
