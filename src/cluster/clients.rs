//! Leaf clients, built from kubeconfigs and cached by the kubeconfig's sha256: the same
//! kubeconfig reuses its client (and its connections), a rotated one gets a new client.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kube::client::RustlsTlsError;
use sha2::{Digest, Sha256};

use super::ClusterError;
use super::kube_error_chain;
use super::kubeconfig::{Kubeconfig, describe_kubeconfig_error};

/// Timeouts of every leaf client: a leaf that stops answering must fail its own requests
/// rather than hold a reconcile forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    /// Per response; the agent does not watch leaves, so no request is meant to be long.
    pub read_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// The sha256 of a kubeconfig's bytes. `Display` shows the first 12 hex digits, enough to
/// tell two kubeconfigs apart in a log.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KubeconfigDigest([u8; 32]);

impl KubeconfigDigest {
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        KubeconfigDigest(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for KubeconfigDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..6]))
    }
}

impl fmt::Debug for KubeconfigDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KubeconfigDigest({self})")
    }
}

/// A client for one leaf API server.
pub struct LeafClient {
    client: kube::Client,
    server: String,
    digest: KubeconfigDigest,
}

impl LeafClient {
    #[must_use]
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// `scheme://host:port` of the API server, for messages.
    #[must_use]
    pub fn server(&self) -> &str {
        &self.server
    }

    #[must_use]
    pub fn digest(&self) -> KubeconfigDigest {
        self.digest
    }
}

impl fmt::Debug for LeafClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafClient")
            .field("server", &self.server)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

struct Entry {
    client: Arc<LeafClient>,
    used: bool,
}

/// Leaf clients by kubeconfig digest, shared by concurrent reconciles.
pub struct ClientCache {
    settings: ClientSettings,
    entries: Mutex<HashMap<KubeconfigDigest, Entry>>,
}

impl ClientCache {
    #[must_use]
    pub fn new(settings: ClientSettings) -> Self {
        ClientCache {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `kubeconfig`: the cached one when these exact bytes were seen before,
    /// else a new one.
    pub async fn client(&self, kubeconfig: &Kubeconfig) -> Result<Arc<LeafClient>, ClusterError> {
        let digest = KubeconfigDigest::of(kubeconfig.bytes.expose());
        if let Some(entry) = self.lock().get_mut(&digest) {
            entry.used = true;
            return Ok(Arc::clone(&entry.client));
        }
        // Built without the lock held: building is async. Two tasks racing on the same new
        // kubeconfig both build; the first to insert wins and both get its client.
        let built = Arc::new(self.build(kubeconfig, digest).await?);
        let mut entries = self.lock();
        let entry = entries.entry(digest).or_insert(Entry {
            client: built,
            used: true,
        });
        entry.used = true;
        Ok(Arc::clone(&entry.client))
    }

    /// Drops the clients not asked for since the previous sweep, and returns how many. Called
    /// once per reconcile pass, the cache follows the fleet: clusters that left, and
    /// kubeconfigs that were rotated, lose their clients.
    pub fn sweep(&self) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, entry| std::mem::replace(&mut entry.used, false));
        before - entries.len()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<KubeconfigDigest, Entry>> {
        // A panic elsewhere cannot leave a half-written entry behind: every entry is
        // inserted whole. The cache stays usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn build(
        &self,
        kubeconfig: &Kubeconfig,
        digest: KubeconfigDigest,
    ) -> Result<LeafClient, ClusterError> {
        let mut config = kubeconfig.config().await?;
        config.connect_timeout = Some(self.settings.connect_timeout);
        config.read_timeout = Some(self.settings.read_timeout);
        // Otherwise the time a pooled connection sat idle counts against the read timeout.
        config.reset_reader_on_write = true;
        let server = server_of(&config.cluster_url);
        let client = kube::Client::try_from(config)
            .map_err(|e| kubeconfig.invalid(&describe_client_error(&e)))?;
        Ok(LeafClient {
            client,
            server,
            digest,
        })
    }
}

impl Default for ClientCache {
    fn default() -> Self {
        ClientCache::new(ClientSettings::default())
    }
}

impl fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCache")
            .field("settings", &self.settings)
            .field("clients", &self.len())
            .finish_non_exhaustive()
    }
}

/// `scheme://host:port`: without user info or path, which have no place in messages.
fn server_of(url: &http::Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("https");
    match (url.host(), url.port_u16()) {
        (Some(host), Some(port)) => format!("{scheme}://{host}:{port}"),
        (Some(host), None) => format!("{scheme}://{host}"),
        (None, _) => "(no host)".to_owned(),
    }
}

/// Why no client could be made, without quoting certificate or key material.
fn describe_client_error(error: &kube::Error) -> String {
    match error {
        kube::Error::RustlsTls(tls) => match tls {
            RustlsTlsError::InvalidIdentityPem(_) => {
                "client-certificate-data or client-key-data is not valid PEM".to_owned()
            }
            RustlsTlsError::InvalidPrivateKey(_) => {
                "client-key-data holds a private key that cannot be used".to_owned()
            }
            RustlsTlsError::AddRootCertificate(_) => {
                "certificate-authority-data holds a certificate that cannot be used".to_owned()
            }
            RustlsTlsError::InvalidServerName(_) => {
                "the server name is not valid for TLS".to_owned()
            }
            RustlsTlsError::MissingPrivateKey => {
                "client-key-data holds no PKCS#8 or RSA private key".to_owned()
            }
            RustlsTlsError::MissingCertificate => {
                "client-certificate-data holds no certificate".to_owned()
            }
            RustlsTlsError::UnknownPrivateKeyFormat => {
                "client-key-data holds a key of an unknown format".to_owned()
            }
            RustlsTlsError::NoValidNativeRootCA(_) => {
                "there is no certificate-authority-data and the host has no usable root certificates"
                    .to_owned()
            }
        },
        kube::Error::InferKubeconfig(e) => describe_kubeconfig_error(e),
        other => format!("no client could be made: {}", kube_error_chain(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterKey, ClusterName, KubeconfigBytes};

    fn kubeconfig(server: &str) -> Kubeconfig {
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: leaf\n\
             clusters: [{{name: leaf, cluster: {{server: '{server}'}}}}]\n\
             contexts: [{{name: leaf, context: {{cluster: leaf, user: leaf}}}}]\n\
             users: [{{name: leaf, user: {{token: abc}}}}]\n"
        );
        Kubeconfig {
            cluster: ClusterKey {
                namespace: "fleet".to_owned(),
                name: ClusterName::new("leaf"),
            },
            secret: "leaf-kubeconfig".to_owned(),
            key: "value".to_owned(),
            bytes: KubeconfigBytes::new(text.into_bytes()),
        }
    }

    #[tokio::test]
    async fn same_bytes_same_client_new_bytes_new_client() {
        let cache = ClientCache::default();
        let first = cache
            .client(&kubeconfig("https://127.0.0.1:1"))
            .await
            .unwrap();
        let again = cache
            .client(&kubeconfig("https://127.0.0.1:1"))
            .await
            .unwrap();
        let rotated = cache
            .client(&kubeconfig("https://127.0.0.1:2"))
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &rotated));
        assert_ne!(first.digest(), rotated.digest());
        assert_eq!(first.server(), "https://127.0.0.1:1");
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn sweep_drops_the_clients_a_pass_did_not_use() {
        let cache = ClientCache::default();
        let (a, b) = (
            kubeconfig("https://127.0.0.1:1"),
            kubeconfig("https://127.0.0.1:2"),
        );
        cache.client(&a).await.unwrap();
        cache.client(&b).await.unwrap();
        assert_eq!(cache.sweep(), 0, "both were used in the first pass");
        let kept = cache.client(&a).await.unwrap();
        assert_eq!(cache.sweep(), 1, "b was not used in the second pass");
        assert_eq!(cache.len(), 1);
        assert!(Arc::ptr_eq(&kept, &cache.client(&a).await.unwrap()));
        assert_eq!(cache.sweep(), 0);
        assert_eq!(cache.sweep(), 1, "a pass with no use empties the cache");
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_client() {
        let cache = Arc::new(ClientCache::default());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move { cache.client(&kubeconfig("https://127.0.0.1:1")).await })
            })
            .collect();
        let mut clients = Vec::new();
        for task in tasks {
            clients.push(task.await.unwrap().unwrap());
        }
        assert!(clients.iter().all(|c| Arc::ptr_eq(c, &clients[0])));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn servers_are_shown_without_user_info_or_path() {
        let url: http::Uri = "https://admin:hunter2@leaf.example:6443/prefix"
            .parse()
            .unwrap();
        assert_eq!(server_of(&url), "https://leaf.example:6443");
    }
}
