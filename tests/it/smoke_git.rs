//! The git side of the test environment is real: `git2` fetches a pushed commit from every
//! server kind, and a wrong credential or an unknown host key fails fast instead of hanging.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use git2::{CertificateCheckStatus, Cred, CredentialType, FetchOptions, RemoteCallbacks};

use crate::testenv::git::{GitServers, HTTP_PASSWORD, HTTP_TOKEN, HTTP_USER, Repo, Transport};

/// A clone that takes longer than this is a hang, not a slow server.
const CLONE_DEADLINE: Duration = Duration::from_secs(30);

/// What the client presents and trusts.
#[derive(Clone, Default)]
struct Access {
    password: Option<String>,
    ssh_key: Option<PathBuf>,
    /// The only TLS certificate (DER) accepted; `None` leaves the check to libgit2.
    pinned_certificate: Option<Vec<u8>>,
    /// The only SSH host key (wire blob) accepted.
    known_host_key: Option<Vec<u8>>,
    /// Extra HTTP headers, e.g. `Authorization: Bearer …`.
    headers: Vec<String>,
}

impl Access {
    fn for_servers(servers: &GitServers) -> Access {
        Access {
            password: Some(HTTP_PASSWORD.to_owned()),
            ssh_key: Some(servers.ssh.client_key.clone()),
            pinned_certificate: Some(servers.http.server_cert_der.clone()),
            known_host_key: Some(known_host_key(&servers.ssh.known_hosts, servers.ssh.port)),
            headers: Vec::new(),
        }
    }

    fn callbacks(&self) -> RemoteCallbacks<'static> {
        let access = self.clone();
        let mut callbacks = RemoteCallbacks::new();
        let mut attempts = 0;
        callbacks.credentials(move |_url, username, allowed| {
            // libgit2 asks again after every rejection; answering once turns a wrong
            // credential into an error instead of an endless loop.
            attempts += 1;
            if attempts > 1 {
                return Err(git2::Error::from_str("credentials rejected"));
            }
            if allowed.contains(CredentialType::SSH_KEY)
                && let Some(key) = &access.ssh_key
            {
                return Cred::ssh_key(username.unwrap_or("git"), None, key, None);
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
                && let Some(password) = &access.password
            {
                return Cred::userpass_plaintext(HTTP_USER, password);
            }
            Err(git2::Error::from_str("no credential for this transport"))
        });
        let access = self.clone();
        callbacks.certificate_check(move |cert, _host| {
            if let Some(x509) = cert.as_x509() {
                return match &access.pinned_certificate {
                    Some(pinned) if x509.data() == pinned.as_slice() => {
                        Ok(CertificateCheckStatus::CertificateOk)
                    }
                    Some(_) => Err(git2::Error::from_str(
                        "TLS certificate is not the pinned one",
                    )),
                    None => Ok(CertificateCheckStatus::CertificatePassthrough),
                };
            }
            if let Some(hostkey) = cert.as_hostkey() {
                return match (&access.known_host_key, hostkey.hostkey()) {
                    (Some(known), Some(offered)) if known.as_slice() == offered => {
                        Ok(CertificateCheckStatus::CertificateOk)
                    }
                    _ => Err(git2::Error::from_str("host key is not in known_hosts")),
                };
            }
            Err(git2::Error::from_str("unexpected certificate kind"))
        });
        callbacks
    }
}

/// The host key blob a known_hosts file lists for `[127.0.0.1]:<port>`.
fn known_host_key(known_hosts: &std::path::Path, port: u16) -> Vec<u8> {
    use base64::Engine as _;
    let host = format!("[127.0.0.1]:{port}");
    let text = std::fs::read_to_string(known_hosts).expect("read known_hosts");
    let key = text
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (hosts, _type, key) = (fields.next()?, fields.next()?, fields.next()?);
            hosts.split(',').any(|h| h == host).then_some(key)
        })
        .unwrap_or_else(|| panic!("{host} is not in {}", known_hosts.display()));
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("host key base64")
}

/// Fetches `main` of `url` into a fresh bare repository and returns the commit it points at.
/// Runs on its own thread so that a hang fails the test instead of stalling it.
fn fetch_main(url: &str, access: &Access) -> Result<String, String> {
    let (done, result) = mpsc::channel();
    let (target, access) = (url.to_owned(), access.clone());
    std::thread::spawn(move || {
        let dir = tempfile::tempdir().expect("tempdir");
        let fetched = (|| {
            let repo = git2::Repository::init_bare(dir.path())?;
            let mut remote = repo.remote_anonymous(&target)?;
            let mut options = FetchOptions::new();
            options.remote_callbacks(access.callbacks());
            let headers: Vec<&str> = access.headers.iter().map(String::as_str).collect();
            options.custom_headers(&headers);
            remote.fetch(
                &["+refs/heads/main:refs/heads/main"],
                Some(&mut options),
                None,
            )?;
            let commit = repo.find_reference("refs/heads/main")?.peel_to_commit()?;
            let tree = commit.tree()?;
            let entry = tree.get_path(std::path::Path::new("clusters/secretsync.yaml"))?;
            let blob = repo.find_blob(entry.id())?;
            assert!(
                blob.content()
                    .starts_with(b"apiVersion: capi.weave.works/v1alpha1")
            );
            Ok::<_, git2::Error>(commit.id().to_string())
        })();
        let _ = done.send(fetched.map_err(|e| e.message().to_owned()));
    });
    result
        .recv_timeout(CLONE_DEADLINE)
        .unwrap_or_else(|_| panic!("fetching {url} hung for {CLONE_DEADLINE:?}"))
}

fn repo_with_one_commit(servers: &GitServers) -> (Repo, String) {
    let repo = servers.create_repo("smoke");
    let commit = repo
        .write(
            "clusters/secretsync.yaml",
            "apiVersion: capi.weave.works/v1alpha1\nkind: SecretSync\n",
        )
        .commit("add a SecretSync");
    (repo, commit)
}

#[test]
fn every_server_kind_serves_the_pushed_commit() {
    let servers = GitServers::shared();
    let (repo, commit) = repo_with_one_commit(servers);
    let access = Access::for_servers(servers);
    for transport in [
        Transport::File,
        Transport::GitDaemon,
        Transport::Http,
        Transport::Https,
        Transport::Ssh,
    ] {
        let url = servers.url(&repo, transport);
        let fetched = fetch_main(&url, &access).unwrap_or_else(|e| panic!("fetch {url}: {e}"));
        assert_eq!(fetched, commit, "{transport:?} served another commit");
    }
}

#[test]
fn bearer_token_is_accepted_over_https() {
    let servers = GitServers::shared();
    let (repo, commit) = repo_with_one_commit(servers);
    let access = Access {
        password: None,
        headers: vec![format!("Authorization: Bearer {HTTP_TOKEN}")],
        ..Access::for_servers(servers)
    };
    let fetched = fetch_main(&servers.url(&repo, Transport::Https), &access)
        .expect("fetch with a bearer token");
    assert_eq!(fetched, commit);
}

#[test]
fn wrong_password_fails_without_hanging() {
    let servers = GitServers::shared();
    let (repo, _) = repo_with_one_commit(servers);
    let access = Access {
        password: Some("not-the-password".to_owned()),
        ..Access::for_servers(servers)
    };
    for transport in [Transport::Http, Transport::Https] {
        let url = servers.url(&repo, transport);
        let error = fetch_main(&url, &access).expect_err("a wrong password was accepted");
        assert!(
            !error.contains("not-the-password"),
            "the error repeats the password: {error}"
        );
    }
}

#[test]
fn untrusted_tls_certificate_is_refused() {
    let servers = GitServers::shared();
    let (repo, _) = repo_with_one_commit(servers);
    let access = Access {
        pinned_certificate: None,
        ..Access::for_servers(servers)
    };
    let error = fetch_main(&servers.url(&repo, Transport::Https), &access)
        .expect_err("a certificate from an unknown CA was trusted");
    assert!(
        error.to_lowercase().contains("certificate"),
        "unexpected error: {error}"
    );
}

#[test]
fn unknown_ssh_host_key_is_refused() {
    let servers = GitServers::shared();
    let (repo, _) = repo_with_one_commit(servers);
    let access = Access {
        known_host_key: Some(b"some other host key".to_vec()),
        ..Access::for_servers(servers)
    };
    let error = fetch_main(&servers.url(&repo, Transport::Ssh), &access)
        .expect_err("an unknown host key was accepted");
    assert!(
        error.contains("hostkey") || error.contains("known_hosts"),
        "unexpected error: {error}"
    );
}

#[test]
fn unauthorized_ssh_key_is_refused() {
    let servers = GitServers::shared();
    let (repo, _) = repo_with_one_commit(servers);
    let stranger = tempfile::tempdir().expect("tempdir");
    let key = stranger.path().join("id_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let access = Access {
        ssh_key: Some(key),
        ..Access::for_servers(servers)
    };
    fetch_main(&servers.url(&repo, Transport::Ssh), &access)
        .expect_err("an unauthorized key logged in");
}
