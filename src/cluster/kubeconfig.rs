//! A cluster's kubeconfig: read from its Secret in the management cluster, checked, and
//! turned into a client configuration. Kubeconfig content never reaches an error message or
//! a `Debug` output.

use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::config::{KubeConfigOptions, KubeconfigError, LoadDataError};
use secrecy::{ExposeSecret, SecretSlice};

use super::model::{ClusterKey, GitopsCluster, KubeconfigLocation};
use super::{ApiFailure, ClusterError};

/// Kubeconfig bytes: credentials. `Debug` prints `<redacted>`, and the memory is zeroed on
/// drop.
#[derive(Clone)]
pub struct KubeconfigBytes(SecretSlice<u8>);

impl KubeconfigBytes {
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        KubeconfigBytes(SecretSlice::from(bytes))
    }

    #[must_use]
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for KubeconfigBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A cluster's kubeconfig and where it was read from.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    pub cluster: ClusterKey,
    /// The Secret (in the cluster's namespace) and the key the kubeconfig was found under.
    pub secret: String,
    pub key: String,
    pub bytes: KubeconfigBytes,
}

/// Reads the kubeconfig of `cluster` through the management-cluster client. Its content is
/// checked where it is used, when `ClientCache` builds a client from bytes it has not seen
/// (see `Kubeconfig::config`): a reconcile reads every cluster's kubeconfig, and parsing
/// the unchanged ones again each time would be work for nothing.
pub async fn read_kubeconfig(
    mgmt: &kube::Client,
    cluster: &GitopsCluster,
) -> Result<Kubeconfig, ClusterError> {
    let key = cluster.key();
    let location = cluster.kubeconfig_location();
    let secrets: Api<Secret> = Api::namespaced(mgmt.clone(), &cluster.namespace);
    let secret = match secrets.get_opt(&location.secret).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(ClusterError::KubeconfigMissing {
                cluster: key,
                secret: location.secret,
            });
        }
        Err(error) => {
            return Err(ClusterError::KubeconfigUnreadable {
                cluster: key,
                secret: location.secret,
                source: ApiFailure::from_kube(&error),
            });
        }
    };
    Kubeconfig::from_secret(key, &location, secret)
}

impl Kubeconfig {
    /// Takes the kubeconfig out of `secret`: the first of the location's keys it holds.
    pub fn from_secret(
        cluster: ClusterKey,
        location: &KubeconfigLocation,
        secret: Secret,
    ) -> Result<Self, ClusterError> {
        let mut data = secret.data.unwrap_or_default();
        let found = location
            .keys
            .iter()
            .find_map(|key| data.remove(*key).map(|value| (*key, value)));
        // The other values are dropped with `data`; only the kubeconfig is kept.
        let Some((key, value)) = found else {
            return Err(ClusterError::KubeconfigKeyMissing {
                cluster,
                secret: location.secret.clone(),
                keys: location.keys.iter().map(|k| (*k).to_owned()).collect(),
            });
        };
        Ok(Kubeconfig {
            cluster,
            secret: location.secret.clone(),
            key: key.to_owned(),
            bytes: KubeconfigBytes::new(value.0),
        })
    }

    /// A client configuration for the kubeconfig's current context. Refused: anything that
    /// would make the agent run a command or read its own files on behalf of whoever wrote
    /// the Secret (`exec`, `auth-provider`, file paths such as `tokenFile`, which could hand
    /// the agent's own service-account token to another server).
    pub async fn config(&self) -> Result<kube::Config, ClusterError> {
        let text = std::str::from_utf8(self.bytes.expose())
            .map_err(|_| self.invalid("is not UTF-8 text"))?;
        let parsed = kube::config::Kubeconfig::from_yaml(text)
            .map_err(|e| self.invalid(&describe_kubeconfig_error(&e)))?;
        check_self_contained(&parsed).map_err(|reason| self.invalid(&reason))?;
        kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
            .await
            .map_err(|e| self.invalid(&describe_kubeconfig_error(&e)))
    }

    /// A `KubeconfigInvalid` error naming this kubeconfig's Secret and key.
    pub(super) fn invalid(&self, what: &str) -> ClusterError {
        ClusterError::KubeconfigInvalid {
            cluster: self.cluster.clone(),
            reason: format!("Secret {} key {}: {what}", self.secret, self.key),
        }
    }
}

/// Refuses kubeconfigs that depend on the agent's host, naming the first entry that does.
fn check_self_contained(kubeconfig: &kube::config::Kubeconfig) -> Result<(), String> {
    for named in &kubeconfig.clusters {
        let Some(cluster) = &named.cluster else {
            continue;
        };
        if cluster.certificate_authority.is_some() {
            return Err(format!(
                "cluster {:?} refers to a file (certificate-authority); only inline certificate-authority-data is accepted",
                named.name
            ));
        }
    }
    for named in &kubeconfig.auth_infos {
        let Some(user) = &named.auth_info else {
            continue;
        };
        let refused = [
            (user.exec.is_some(), "runs a command (exec)"),
            (user.auth_provider.is_some(), "uses an auth-provider plugin"),
            (user.token_file.is_some(), "refers to a file (tokenFile)"),
            (
                user.client_certificate.is_some(),
                "refers to a file (client-certificate)",
            ),
            (user.client_key.is_some(), "refers to a file (client-key)"),
        ];
        if let Some((_, what)) = refused.iter().find(|(refused, _)| *refused) {
            return Err(format!(
                "user {:?} {what}; only inline credentials (client-certificate-data, client-key-data, token, username/password) are accepted",
                named.name
            ));
        }
    }
    Ok(())
}

/// What is wrong with a kubeconfig, in words that never quote it: parse errors of YAML
/// libraries tend to repeat the offending value, which may be a key.
pub(super) fn describe_kubeconfig_error(error: &KubeconfigError) -> String {
    match error {
        KubeconfigError::Parse(parse) => match parse.location() {
            Some(location) => format!(
                "is not a valid kubeconfig (YAML error at line {}, column {})",
                location.line(),
                location.column()
            ),
            None => "is not a valid kubeconfig".to_owned(),
        },
        KubeconfigError::KindMismatch | KubeconfigError::ApiVersionMismatch => {
            "holds several YAML documents that do not agree on kind or apiVersion".to_owned()
        }
        KubeconfigError::CurrentContextNotSet => "has no current-context".to_owned(),
        KubeconfigError::LoadContext(name) => {
            format!("current-context {name:?} is not among its contexts")
        }
        KubeconfigError::LoadClusterOfContext(name) => {
            format!("cluster {name:?} of the current context is not among its clusters")
        }
        KubeconfigError::MissingClusterUrl => "the current cluster has no server".to_owned(),
        KubeconfigError::ParseClusterUrl(_) => "the server is not a valid URL".to_owned(),
        KubeconfigError::ParseProxyUrl(_) => "the proxy-url is not a valid URL".to_owned(),
        KubeconfigError::LoadCertificateAuthority(e) => {
            format!("certificate-authority-data {}", describe_data_error(e))
        }
        KubeconfigError::LoadClientCertificate(e) => {
            format!("client-certificate-data {}", describe_data_error(e))
        }
        KubeconfigError::LoadClientKey(e) => {
            format!("client-key-data {}", describe_data_error(e))
        }
        KubeconfigError::ParseCertificates(_) => {
            "certificate-authority-data is not PEM certificates".to_owned()
        }
        KubeconfigError::FindPath | KubeconfigError::ReadConfig(..) => {
            "could not be loaded".to_owned()
        }
    }
}

fn describe_data_error(error: &LoadDataError) -> &'static str {
    match error {
        LoadDataError::DecodeBase64(_) => "is not valid base64",
        LoadDataError::ReadFile(..) => "refers to a file",
        LoadDataError::NoBase64DataOrFile => {
            "is missing (a certificate needs its key and a key its certificate)"
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;
    use crate::cluster::ClusterName;

    const KEY_MATERIAL: &str = "c2VjcmV0LWtleS1tYXRlcmlhbA==";

    fn cluster() -> ClusterKey {
        ClusterKey {
            namespace: "fleet".to_owned(),
            name: ClusterName::new("leaf"),
        }
    }

    fn kubeconfig(text: &str) -> Kubeconfig {
        Kubeconfig {
            cluster: cluster(),
            secret: "leaf-kubeconfig".to_owned(),
            key: "value".to_owned(),
            bytes: KubeconfigBytes::new(text.as_bytes().to_vec()),
        }
    }

    fn document(user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: leaf\n\
             clusters: [{{name: leaf, cluster: {{server: 'https://127.0.0.1:6443'}}}}]\n\
             contexts: [{{name: leaf, context: {{cluster: leaf, user: leaf}}}}]\n\
             users: [{{name: leaf, user: {user}}}]\n"
        )
    }

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn takes_the_first_candidate_key_the_secret_holds() {
        let location = KubeconfigLocation {
            secret: "creds".to_owned(),
            keys: &["value", "value.yaml"],
        };
        let cases = [
            (
                &[("value", "a"), ("value.yaml", "b")][..],
                Some(("value", "a")),
            ),
            (
                &[("value.yaml", "b"), ("other", "c")][..],
                Some(("value.yaml", "b")),
            ),
            (&[("other", "c")][..], None),
            (&[][..], None),
        ];
        for (pairs, expected) in cases {
            let got = Kubeconfig::from_secret(cluster(), &location, secret(pairs));
            match (got, expected) {
                (Ok(k), Some((key, value))) => {
                    assert_eq!((k.key.as_str(), k.bytes.expose()), (key, value.as_bytes()));
                    assert_eq!(k.secret, "creds");
                }
                (Err(e), None) => assert_eq!(
                    e.to_string(),
                    "GitopsCluster fleet/leaf: kubeconfig Secret creds has no key value or value.yaml"
                ),
                (got, expected) => panic!("{pairs:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[tokio::test]
    async fn accepts_inline_credentials() {
        let config = kubeconfig(&document(&format!(
            "{{token: {KEY_MATERIAL}, client-key-data: {KEY_MATERIAL}}}"
        )))
        .config()
        .await
        .unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_use_without_quoting_it() {
        let cases = [
            (
                format!("{KEY_MATERIAL}: [unclosed"),
                "is not a valid kubeconfig (YAML error",
            ),
            (KEY_MATERIAL.to_owned(), "is not a valid kubeconfig"),
            (format!("{{a: {KEY_MATERIAL}}}"), "has no current-context"),
            (
                document(&format!(
                    "{{exec: {{command: /bin/sh, args: [{KEY_MATERIAL}]}}}}"
                )),
                "user \"leaf\" runs a command (exec)",
            ),
            (
                document("{tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}"),
                "user \"leaf\" refers to a file (tokenFile)",
            ),
            (
                document("{auth-provider: {name: gcp}}"),
                "user \"leaf\" uses an auth-provider plugin",
            ),
            (
                document("{}").replace("server:", "certificate-authority: /etc/ca.crt, server:"),
                "cluster \"leaf\" refers to a file (certificate-authority)",
            ),
            (
                document("{}").replace("current-context: leaf", "current-context: other"),
                "current-context \"other\" is not among its contexts",
            ),
            (
                document("{}").replace("'https://127.0.0.1:6443'", "'https://bad host'"),
                "the server is not a valid URL",
            ),
        ];
        for (text, expected) in cases {
            let error = kubeconfig(&text).config().await.unwrap_err();
            let message = error.to_string();
            assert_eq!(error.reason(), "KubeconfigInvalid");
            assert!(
                message.starts_with("GitopsCluster fleet/leaf: invalid kubeconfig: Secret leaf-kubeconfig key value: "),
                "{message}"
            );
            assert!(message.contains(expected), "{message} lacks {expected}");
            for shown in [message, format!("{error:?}")] {
                assert!(!shown.contains(KEY_MATERIAL), "{shown}");
            }
        }
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let kubeconfig = kubeconfig(KEY_MATERIAL);
        let shown = format!("{kubeconfig:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains(KEY_MATERIAL), "{shown}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A kubeconfig whose credentials are a marked secret, cut off or corrupted at a
        /// random point: whatever the error, it never shows the credentials.
        fn damaged() -> impl Strategy<Value = (String, String)> {
            ("[a-zA-Z0-9]{8,16}", 0..400_usize, "\\PC{0,6}").prop_map(|(secret, cut, junk)| {
                let marker = format!("SENTINEL{secret}");
                let text = document(&format!(
                    "{{token: {marker}, client-key-data: {marker}, client-certificate-data: {marker}}}"
                ));
                let cut = text.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(text.len());
                (format!("{}{junk}{}", &text[..cut], &text[cut..]), marker)
            })
        }

        proptest! {
            #[test]
            fn errors_never_show_the_credentials((text, marker) in damaged()) {
                let result = futures::executor::block_on(kubeconfig(&text).config());
                if let Err(error) = result {
                    let shown = format!("{error} {error:?}");
                    prop_assert!(!shown.contains(&marker), "{}", shown);
                }
            }
        }
    }
}
