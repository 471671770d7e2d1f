//! SSH git server: Debian's `sshd`, started as the test user on a free loopback port with a
//! generated host key; one generated client key is authorized, and a known_hosts file names
//! the host key.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::testenv::process::{self, Reaper, Service};

const SSHD: &str = "/usr/sbin/sshd";

pub struct SshServer {
    pub port: u16,
    /// The login user (the user running the tests).
    pub user: String,
    /// The authorized client key (OpenSSH private key, no passphrase).
    pub client_key: PathBuf,
    /// A known_hosts file with the server's host key for `[127.0.0.1]:<port>`.
    pub known_hosts: PathBuf,
    service: Service,
}

impl SshServer {
    pub fn spawn(root: &Path, reaper: &Reaper) -> SshServer {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install Debian's openssh-server (scripts/test does)"
        );
        let dir = root.join("ssh");
        std::fs::create_dir_all(&dir).expect("create ssh dir");
        let host_key = keygen(&dir, "host_key");
        let client_key = keygen(&dir, "client_key");
        let authorized_keys = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized_keys)
            .expect("authorize client key");

        let port = process::free_port();
        let host_public =
            std::fs::read_to_string(host_key.with_extension("pub")).expect("host key");
        let mut fields = host_public.split_whitespace();
        let (key_type, key_base64) = (fields.next().expect("type"), fields.next().expect("key"));
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {key_type} {key_base64}\n"),
        )
        .expect("write known_hosts");

        let user = current_user();
        let config = process::write_private(
            &dir,
            "sshd_config",
            &format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile none\n\
                 AuthorizedKeysFile {authorized}\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n",
                host = host_key.display(),
                authorized = authorized_keys.display(),
            ),
        );
        // sshd started as root wants its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut command = Command::new(SSHD);
        command.args(["-D", "-e", "-f"]).arg(&config);
        SshServer {
            port,
            user,
            client_key,
            known_hosts,
            service: Service::spawn("sshd", command, &dir, reaper),
        }
    }

    /// Authorizes one more public key (OpenSSH `.pub` line); sshd reads the file on every
    /// login, so it takes effect at once.
    pub fn authorize(&self, public_key: &str) {
        use std::io::Write as _;
        let path = self.client_key.with_file_name("authorized_keys");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open authorized_keys");
        writeln!(file, "{}", public_key.trim()).expect("authorize key");
    }

    pub async fn wait_ready(&mut self) -> Result<(), String> {
        let port = self.port;
        process::wait_ready(&mut self.service, Duration::from_secs(10), || async move {
            process::port_open(port)
        })
        .await
    }
}

/// Generates an ed25519 key pair without a passphrase; returns the private key's path.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed for {name}");
    path
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
