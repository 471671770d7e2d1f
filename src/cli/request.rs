//! `secretsync reconcile`: asks the running agent to reconcile now, Flux style, by setting
//! the annotation `secretsync.dev/requestedAt` on the SecretSync object, or on its status
//! ConfigMap when there is no object (a SecretSync that lives only in git).

use std::process::ExitCode;

use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use super::{EXIT_NOT_FOUND, block_on, management_client};
use crate::manifest::SecretSyncKey;
use crate::status::writer::{configmap_name, secret_sync_resource};
use crate::trigger::request::REQUESTED_AT_ANNOTATION;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The SecretSync to reconcile (the agent then reconciles everything it serves).
    pub name: String,

    /// Namespace of the SecretSync.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

pub fn run(args: &ReconcileArgs) -> anyhow::Result<ExitCode> {
    let key = SecretSyncKey {
        namespace: args.namespace.clone(),
        name: args.name.clone(),
    };
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.fZ")
        .to_string();
    let patch = Patch::Merge(json!({
        "metadata": {"annotations": {REQUESTED_AT_ANNOTATION: now}}
    }));
    let annotated = block_on(async {
        let client = management_client().await?;
        let objects: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &key.namespace, &secret_sync_resource());
        // A 404 is a missing object or a missing CRD: either way, try the ConfigMap.
        if let Some(object) = not_found_as_none(
            objects
                .patch(&key.name, &PatchParams::default(), &patch)
                .await,
        )? {
            return Ok(Some(format!("SecretSync {}", display(&object.metadata))));
        }
        let configmaps: Api<ConfigMap> = Api::namespaced(client, &key.namespace);
        let name = configmap_name(&key);
        Ok(not_found_as_none(
            configmaps
                .patch(&name, &PatchParams::default(), &patch)
                .await,
        )?
        .map(|configmap| format!("ConfigMap {}", display(&configmap.metadata))))
    })?;
    let Some(what) = annotated else {
        eprintln!(
            "secretsync: SecretSync {key} has neither an object nor a status ConfigMap \
             ({}): is an agent serving namespace {}?",
            configmap_name(&key),
            key.namespace
        );
        return Ok(ExitCode::from(EXIT_NOT_FOUND));
    };
    println!("reconcile of {key} requested at {now} (annotated {what})");
    Ok(ExitCode::SUCCESS)
}

fn not_found_as_none<T>(result: Result<T, kube::Error>) -> anyhow::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn display(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}
