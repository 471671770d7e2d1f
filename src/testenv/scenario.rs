//! The documented SecretSync scenario's cluster side (`fixtures/scenario/`): what the demo
//! and the CLI tests arrange on the management cluster.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use serde_json::json;

use super::TestEnv;

/// The management cluster's side in `namespace`: both leaves registered, those named in
/// `dev_leaves` labelled `environment: dev`, and the Secret `my-dev-secret` to copy, whose
/// key `password` holds `value`.
pub async fn arrange_clusters(env: &TestEnv, namespace: &str, dev_leaves: &[&str], value: &str) {
    let clusters = env.register_leaves(namespace).await;
    let dev = json!({"metadata": {"labels": {"environment": "dev"}}});
    for leaf in dev_leaves {
        clusters
            .patch(leaf, &PatchParams::default(), &Patch::Merge(&dev))
            .await
            .unwrap_or_else(|e| panic!("label {leaf}: {e}"));
    }
    let source = Secret {
        metadata: ObjectMeta {
            name: Some("my-dev-secret".to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "password".to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(env.mgmt.client().await, namespace)
        .patch(
            "my-dev-secret",
            &PatchParams::apply("secretsync-testenv").force(),
            &Patch::Apply(&source),
        )
        .await
        .unwrap_or_else(|e| panic!("create Secret {namespace}/my-dev-secret: {e}"));
}
