//! Command-line options that say how to reach a git repository: which reference to follow
//! and which credentials to present. Secrets come from files or the environment, never from
//! the command line, where `ps` would show them.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use secrecy::SecretString;

use crate::source::git::{GitAuth, GitReference, KnownHosts, SshAuth};

#[derive(Debug, Clone, Default, Args)]
#[group(id = "reference", multiple = false)]
pub struct ReferenceArgs {
    /// Branch to follow [default: main].
    #[arg(long, group = "reference", env = "SECRETSYNC_GIT_BRANCH")]
    pub branch: Option<String>,
    /// Tag to follow.
    #[arg(long, group = "reference", env = "SECRETSYNC_GIT_TAG")]
    pub tag: Option<String>,
    /// Follow the highest tag inside a semver range, e.g. ">=1.2.0 <2".
    #[arg(long, group = "reference", env = "SECRETSYNC_GIT_SEMVER")]
    pub semver: Option<String>,
    /// Follow one exact commit (40 hex digits).
    #[arg(long, group = "reference", env = "SECRETSYNC_GIT_COMMIT")]
    pub commit: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// User for HTTPS basic auth (the password comes from SECRETSYNC_GIT_PASSWORD).
    #[arg(long, env = "SECRETSYNC_GIT_USERNAME")]
    pub username: Option<String>,
    /// Private SSH key file (OpenSSH or PEM); its passphrase, if any, from
    /// SECRETSYNC_GIT_SSH_PASSPHRASE.
    #[arg(long, env = "SECRETSYNC_GIT_SSH_KEY", value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file with the SSH server's host key (required for SSH: unknown hosts are
    /// refused).
    #[arg(long, env = "SECRETSYNC_GIT_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// PEM file of CA certificates to trust for HTTPS, in addition to the system's.
    #[arg(long, env = "SECRETSYNC_GIT_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

impl ReferenceArgs {
    pub fn reference(&self) -> anyhow::Result<GitReference> {
        let reference = match (&self.branch, &self.tag, &self.semver, &self.commit) {
            (Some(branch), ..) => GitReference::branch(branch)?,
            (_, Some(tag), ..) => GitReference::tag(tag)?,
            (_, _, Some(range), _) => GitReference::semver(range)?,
            (.., Some(commit)) => GitReference::commit(commit)?,
            _ => GitReference::default(),
        };
        Ok(reference)
    }
}

impl AuthArgs {
    /// Credentials from the options and the environment (`SECRETSYNC_GIT_PASSWORD`,
    /// `SECRETSYNC_GIT_BEARER_TOKEN`, `SECRETSYNC_GIT_SSH_PASSPHRASE`).
    pub fn auth(&self) -> anyhow::Result<GitAuth> {
        let secret_env = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(SecretString::from)
        };
        let mut auth = GitAuth {
            username: self.username.clone(),
            password: secret_env("SECRETSYNC_GIT_PASSWORD"),
            bearer_token: secret_env("SECRETSYNC_GIT_BEARER_TOKEN"),
            ..GitAuth::default()
        };
        if let Some(key_file) = &self.ssh_key {
            let private_key = std::fs::read_to_string(key_file)
                .with_context(|| format!("reading SSH key {}", key_file.display()))?;
            let known_hosts = match &self.known_hosts {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("reading known_hosts {}", file.display()))?,
                None => String::new(),
            };
            let known_hosts = KnownHosts::parse(&known_hosts).context("parsing known_hosts")?;
            auth.ssh = Some(SshAuth {
                private_key: SecretString::from(private_key),
                passphrase: secret_env("SECRETSYNC_GIT_SSH_PASSPHRASE"),
                known_hosts,
            });
        }
        if let Some(ca_file) = &self.ca_file {
            let pem = std::fs::read(ca_file)
                .with_context(|| format!("reading CA file {}", ca_file.display()))?;
            auth = auth
                .with_ca_bundle(&pem)
                .with_context(|| format!("CA file {}", ca_file.display()))?;
        }
        Ok(auth)
    }
}
