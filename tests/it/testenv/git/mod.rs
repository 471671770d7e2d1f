//! Git servers on loopback, all serving the same bare repositories: `file://`, `git daemon`
//! (`git://`), smart HTTP through `git http-backend` (plain and TLS, basic auth or bearer
//! token) and `sshd` (key auth, host key in a known_hosts file); plus helpers to commit and
//! push.

mod http;
mod repo;
mod ssh;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub use self::http::{HTTP_PASSWORD, HTTP_TOKEN, HTTP_USER, HttpGitServer};
pub use self::repo::Repo;
pub use self::ssh::SshServer;
use super::process::{self, Reaper, Service};

/// How a client reaches a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    File,
    GitDaemon,
    Http,
    Https,
    Ssh,
}

pub struct GitServers {
    repos: PathBuf,
    daemon_port: u16,
    pub http: HttpGitServer,
    pub ssh: SshServer,
    _daemon: Service,
    // Dropped last: kills what is left and removes the directory.
    _reaper: Reaper,
}

impl GitServers {
    /// The servers shared by every test of this binary, started on first use.
    pub fn shared() -> &'static GitServers {
        static SHARED: OnceLock<GitServers> = OnceLock::new();
        SHARED.get_or_init(GitServers::start)
    }

    /// Starts private servers; they stop when dropped.
    pub fn start() -> GitServers {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(GitServers::start_async())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    async fn start_async() -> GitServers {
        let root = tempfile::Builder::new()
            .prefix("secretsync-git-")
            .tempdir()
            .expect("create git server dir")
            .keep();
        let reaper = Reaper::start(&root);
        let repos = root.join("repos");
        std::fs::create_dir_all(&repos).expect("create repos dir");

        let daemon_port = process::free_port();
        let mut daemon = Command::new("git");
        daemon
            .args([
                "daemon",
                "--export-all",
                "--reuseaddr",
                "--informative-errors",
            ])
            .args(["--listen=127.0.0.1", &format!("--port={daemon_port}")])
            .arg(format!("--base-path={}", repos.display()));
        let mut daemon = Service::spawn("git-daemon", daemon, &root, &reaper);
        let http = HttpGitServer::start(&repos);
        let mut ssh = SshServer::spawn(&root, &reaper);

        process::wait_ready(&mut daemon, Duration::from_secs(10), || async {
            process::port_open(daemon_port)
        })
        .await
        .expect("git daemon ready");
        ssh.wait_ready().await.expect("sshd ready");
        GitServers {
            repos,
            daemon_port,
            http,
            ssh,
            _daemon: daemon,
            _reaper: reaper,
        }
    }

    /// A new, empty bare repository (branch `main`) and a work tree to commit from.
    pub fn create_repo(&self, prefix: &str) -> Repo {
        Repo::create(&self.repos, &super::unique_namespace(prefix))
    }

    /// The URL of `repo` over `transport`.
    pub fn url(&self, repo: &Repo, transport: Transport) -> String {
        let name = repo.name();
        match transport {
            Transport::File => format!("file://{}", repo.bare_path().display()),
            Transport::GitDaemon => format!("git://127.0.0.1:{}/{name}.git", self.daemon_port),
            Transport::Http => format!("http://127.0.0.1:{}/{name}.git", self.http.plain_port),
            Transport::Https => format!("https://127.0.0.1:{}/{name}.git", self.http.tls_port),
            Transport::Ssh => format!(
                "ssh://{}@127.0.0.1:{}{}",
                self.ssh.user,
                self.ssh.port,
                repo.bare_path().display()
            ),
        }
    }
}

/// A fresh ed25519 key pair made by `ssh-keygen` in `dir`: (private key path, public line).
pub fn ssh_signing_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let private = dir.join(name);
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let public = std::fs::read_to_string(private.with_extension("pub")).expect("public key");
    (private, public)
}
