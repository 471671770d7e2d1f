//! Credentials and trust for one remote: basic auth, bearer token, SSH key with known_hosts,
//! and an extra CA bundle for HTTPS; turned into libgit2 callbacks that answer once (so a
//! rejected credential is an error, not an endless retry).

use std::sync::Mutex;

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use secrecy::{ExposeSecret, SecretString};

use super::known_hosts::{HostKeyCheck, KnownHosts, KnownHostsError};
use super::url::RemoteUrl;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the CA bundle holds no PEM certificate")]
    EmptyCaBundle,
    #[error("the CA bundle is not valid PEM: {0}")]
    InvalidCaBundle(String),
    #[error(transparent)]
    KnownHosts(#[from] KnownHostsError),
}

/// An SSH identity and the host keys to trust.
#[derive(Debug, Clone)]
pub struct SshAuth {
    /// Private key (OpenSSH or PEM format).
    pub private_key: SecretString,
    pub passphrase: Option<SecretString>,
    pub known_hosts: KnownHosts,
}

/// Everything needed to reach one remote. `Debug` shows no secret.
#[derive(Debug, Clone, Default)]
pub struct GitAuth {
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub bearer_token: Option<SecretString>,
    pub ssh: Option<SshAuth>,
    /// DER certificates trusted for HTTPS in addition to the system's.
    pub ca_bundle: Vec<CertificateDer<'static>>,
}

impl GitAuth {
    /// Adds the PEM certificates of `pem` to the trusted CAs.
    pub fn with_ca_bundle(mut self, pem: &[u8]) -> Result<Self, AuthError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AuthError::InvalidCaBundle(e.to_string()))?;
        if certs.is_empty() {
            return Err(AuthError::EmptyCaBundle);
        }
        self.ca_bundle = certs;
        Ok(self)
    }

    /// Extra HTTP headers for every request (`Authorization: Bearer …`).
    #[must_use]
    pub fn http_headers(&self) -> Vec<String> {
        self.bearer_token
            .iter()
            .map(|token| format!("Authorization: Bearer {}", token.expose_secret()))
            .collect()
    }

    /// Every secret value, so that messages from libgit2 can be scrubbed of them.
    pub(super) fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = [&self.password, &self.bearer_token]
            .into_iter()
            .flatten()
            .map(ExposeSecret::expose_secret)
            .collect();
        if let Some(ssh) = &self.ssh {
            secrets.extend(ssh.passphrase.as_ref().map(ExposeSecret::expose_secret));
        }
        secrets.retain(|s| !s.is_empty());
        secrets
    }

    /// libgit2 callbacks for one operation on `url`.
    pub(super) fn callbacks<'a>(
        &'a self,
        url: &'a RemoteUrl,
        transfer: &'a Transfer,
    ) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        let mut asked = false;
        callbacks.credentials(move |_, username_from_url, allowed| {
            // libgit2 asks again after each rejection; a second question means the answer
            // was wrong, and asking forever would hang the fetch.
            if std::mem::replace(&mut asked, true) {
                return Err(
                    transfer.refuse("the server rejected the configured credentials".to_owned())
                );
            }
            self.credential(url, username_from_url, allowed)
        });
        callbacks.certificate_check(move |cert, host| {
            if let Some(x509) = cert.as_x509() {
                return Ok(self.check_tls(x509.data(), host));
            }
            let Some(key) = cert.as_hostkey().and_then(git2::cert::CertHostkey::hostkey) else {
                return Err(
                    transfer.refuse("the server presented no certificate or host key".to_owned())
                );
            };
            self.check_host_key(url, host, key)
                .map_err(|reason| transfer.refuse(reason))
        });
        callbacks
    }

    fn credential(
        &self,
        url: &RemoteUrl,
        username_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        // For SSH the user is part of the address (`git@host`); libgit2 refuses another one.
        let username = self
            .username
            .as_deref()
            .or(username_from_url)
            .or(url.username());
        if allowed.contains(CredentialType::SSH_KEY)
            && let Some(ssh) = &self.ssh
        {
            let username = username_from_url.or(url.username()).or(username);
            let passphrase = ssh.passphrase.as_ref().map(ExposeSecret::expose_secret);
            return Cred::ssh_key_from_memory(
                username.unwrap_or("git"),
                None,
                ssh.private_key.expose_secret(),
                passphrase,
            );
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let password = self
                .password
                .as_ref()
                .map(ExposeSecret::expose_secret)
                .or(url.password());
            if let Some(password) = password {
                return Cred::userpass_plaintext(username.unwrap_or("git"), password);
            }
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username.unwrap_or("git"));
        }
        Err(git2::Error::from_str(
            "the server asks for credentials and none are configured for this kind",
        ))
    }

    /// Accepts a certificate that chains to the configured CA bundle; anything else is left
    /// to libgit2's own verification against the system's trust store.
    fn check_tls(&self, leaf: &[u8], host: &str) -> CertificateCheckStatus {
        if !self.ca_bundle.is_empty() && verify_with_bundle(&self.ca_bundle, leaf, host) {
            CertificateCheckStatus::CertificateOk
        } else {
            CertificateCheckStatus::CertificatePassthrough
        }
    }

    /// Whether known_hosts trusts `key` for `host`; the reason when it does not.
    fn check_host_key(
        &self,
        url: &RemoteUrl,
        host: &str,
        key: &[u8],
    ) -> Result<CertificateCheckStatus, String> {
        let Some(ssh) = &self.ssh else {
            return Err(
                "no known_hosts configured: refusing an unverified SSH host key".to_owned(),
            );
        };
        let port = url.port().unwrap_or(22);
        match ssh.known_hosts.check(host, port, key) {
            HostKeyCheck::Trusted => Ok(CertificateCheckStatus::CertificateOk),
            HostKeyCheck::Mismatch => Err(format!(
                "the host key of {host} port {port} does not match known_hosts (changed key or an attack)"
            )),
            HostKeyCheck::Revoked => {
                Err(format!("the host key of {host} is revoked in known_hosts"))
            }
            HostKeyCheck::Unknown => Err(format!("{host} port {port} is not in known_hosts")),
        }
    }
}

/// State shared by the callbacks of one libgit2 operation and the code that runs it.
#[derive(Debug, Default)]
pub(super) struct Transfer {
    /// Why a callback refused: libgit2 replaces a callback's error with a generic message
    /// ("invalid or unknown remote ssh hostkey"), so the reason is kept here.
    refusal: Mutex<Option<String>>,
}

impl Transfer {
    fn refuse(&self, reason: String) -> git2::Error {
        let error = git2::Error::from_str(&reason);
        if let Ok(mut refusal) = self.refusal.lock() {
            refusal.get_or_insert(reason);
        }
        error
    }

    /// The reason a callback refused, if one did.
    pub(super) fn take_refusal(&self) -> Option<String> {
        self.refusal
            .lock()
            .ok()
            .and_then(|mut refusal| refusal.take())
    }
}

fn verify_with_bundle(bundle: &[CertificateDer<'static>], leaf: &[u8], host: &str) -> bool {
    let anchors: Vec<_> = bundle
        .iter()
        .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
        .collect();
    let leaf = CertificateDer::from(leaf);
    let Ok(cert) = webpki::EndEntityCert::try_from(&leaf) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    // Certificates of the bundle may be intermediates too.
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        bundle,
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .is_ok()
        && cert.verify_is_valid_for_subject_name(&name).is_ok()
}
