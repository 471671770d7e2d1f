//! Secrets and ConfigMaps as the apiserver returns them (LISTs, and the answer to a
//! server-side apply), decoded lean: only the fields secretsync reads (name, namespace, uid,
//! resourceVersion, labels, annotations and the data; for Secrets also type and
//! immutability). The apiserver sends every object's `managedFields` too, which decoded into
//! JSON maps cost more memory and time than all the rest of a copy or a status: across a
//! fleet's leaf namespaces and status ConfigMaps, most of what a reconcile held at its
//! peak.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::Request;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The Secrets of `namespace` (or of every namespace) that `params` selects, whole.
pub async fn secrets(
    client: &kube::Client,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Vec<Secret>, kube::Error> {
    list::<LeanSecret, _>(client, collection("secrets", namespace).list(params)).await
}

/// The same, metadata only: the data of the Secrets is not even sent.
pub async fn secret_metadata(
    client: &kube::Client,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Vec<Secret>, kube::Error> {
    let request = collection("secrets", namespace).list_metadata(params);
    list::<LeanSecret, _>(client, request).await
}

/// Server-side applies `desired` (which names its namespace and name) and returns the
/// Secret the apiserver answered with, decoded lean.
pub async fn apply_secret(
    client: &kube::Client,
    desired: &Secret,
    params: &PatchParams,
) -> Result<Secret, kube::Error> {
    let namespace = desired.metadata.namespace.as_deref();
    let name = desired.metadata.name.as_deref().unwrap_or_default();
    let request = collection("secrets", namespace)
        .patch(name, params, &Patch::Apply(desired))
        .map_err(kube::Error::BuildRequest)?;
    Ok(client.request::<LeanSecret>(request).await?.into())
}

/// The ConfigMaps of `namespace` (or of every namespace) that `params` selects.
pub async fn config_maps(
    client: &kube::Client,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Vec<ConfigMap>, kube::Error> {
    list::<LeanConfigMap, _>(client, collection("configmaps", namespace).list(params)).await
}

/// Sends a LIST request and decodes its items as `Lean`, then turns them into `Object`s.
async fn list<Lean: DeserializeOwned, Object: From<Lean>>(
    client: &kube::Client,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<Vec<Object>, kube::Error> {
    let request = request.map_err(kube::Error::BuildRequest)?;
    Ok(into_objects(
        client.request::<LeanList<Lean>>(request).await?,
    ))
}

/// The path of a core (`/api/v1`) collection, namespaced or across namespaces.
fn collection(plural: &str, namespace: Option<&str>) -> Request {
    Request::new(match namespace {
        Some(namespace) => format!("/api/v1/namespaces/{namespace}/{plural}"),
        None => format!("/api/v1/{plural}"),
    })
}

fn into_objects<Lean, Object: From<Lean>>(list: LeanList<Lean>) -> Vec<Object> {
    list.items.into_iter().flatten().map(Object::from).collect()
}

/// A list as decoded: fields the item type does not name (`managedFields` above all) are
/// skipped by the parser without being built.
#[derive(Deserialize)]
struct LeanList<Item> {
    /// `null` in an empty list.
    #[serde(default = "Option::default")]
    items: Option<Vec<Item>>,
}

#[derive(Deserialize)]
struct LeanConfigMap {
    metadata: LeanMeta,
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct LeanSecret {
    metadata: LeanMeta,
    #[serde(default)]
    data: Option<BTreeMap<String, ByteString>>,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    immutable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

impl From<LeanMeta> for ObjectMeta {
    fn from(meta: LeanMeta) -> ObjectMeta {
        ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            labels: meta.labels,
            annotations: meta.annotations,
            ..ObjectMeta::default()
        }
    }
}

impl From<LeanConfigMap> for ConfigMap {
    fn from(lean: LeanConfigMap) -> ConfigMap {
        ConfigMap {
            metadata: lean.metadata.into(),
            data: lean.data,
            ..ConfigMap::default()
        }
    }
}

impl From<LeanSecret> for Secret {
    fn from(lean: LeanSecret) -> Secret {
        Secret {
            metadata: lean.metadata.into(),
            data: lean.data,
            type_: lean.type_,
            immutable: lean.immutable,
            ..Secret::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_secret_keeps_what_secretsync_reads_and_drops_managed_fields() {
        let body = r#"{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"9"},
          "items":[{"metadata":{"name":"registry","namespace":"apps","uid":"u-1",
            "resourceVersion":"7","labels":{"app.kubernetes.io/managed-by":"secretsync"},
            "annotations":{"secretsync.dev/source":"team/registry"},
            "managedFields":[{"manager":"secretsync","operation":"Apply",
              "fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:token":{}}}}]},
            "data":{"token":"c2VjcmV0"},"type":"Opaque","immutable":true}]}"#;
        let list: LeanList<LeanSecret> = serde_json::from_str(body).expect("a Secret list");
        let secrets: Vec<Secret> = into_objects(list);
        let secret = &secrets[0];
        assert_eq!(secret.metadata.name.as_deref(), Some("registry"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(secret.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(secret.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            secret.metadata.annotations.as_ref().expect("annotations")["secretsync.dev/source"],
            "team/registry"
        );
        assert_eq!(
            secret.data.as_ref().expect("data")["token"],
            ByteString(b"secret".to_vec())
        );
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        assert_eq!(secret.immutable, Some(true));
        assert_eq!(secret.metadata.managed_fields, None);

        let empty = r#"{"kind":"SecretList","apiVersion":"v1","metadata":{},"items":null}"#;
        let list: LeanList<LeanSecret> = serde_json::from_str(empty).expect("an empty list");
        assert!(into_objects::<_, Secret>(list).is_empty());
    }

    #[test]
    fn a_listed_config_map_keeps_its_data() {
        let body = r#"{"items":[{"metadata":{"name":"secretsync.registry","namespace":"team",
            "managedFields":[{"manager":"secretsync","fieldsV1":{"f:data":{}}}]},
            "data":{"status":"versions: {}\n"}}]}"#;
        let list: LeanList<LeanConfigMap> = serde_json::from_str(body).expect("a list");
        let maps: Vec<ConfigMap> = into_objects(list);
        assert_eq!(
            maps[0].metadata.name.as_deref(),
            Some("secretsync.registry")
        );
        assert_eq!(
            maps[0].data.as_ref().expect("data")["status"],
            "versions: {}\n"
        );
        assert_eq!(maps[0].metadata.managed_fields, None);
    }
}
