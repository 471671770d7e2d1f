//! Kubernetes control planes: one etcd, and one kube-apiserver per cluster on its own etcd
//! prefix and loopback port, with client-certificate authentication and RBAC on.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::pki::{CertPair, Pki};
use super::process::{self, Reaper, Service};

/// How long a fresh kube-apiserver may take to answer `/readyz` on a loaded 2-core machine.
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The verbs of `apiserver_request_total` that change objects (APPLY: server-side apply).
pub const WRITE_VERBS: &[&str] = &["POST", "PUT", "PATCH", "APPLY", "DELETE"];
/// The verbs that read objects (WATCH is left out: a watch is one long request).
pub const READ_VERBS: &[&str] = &["GET", "LIST"];

pub struct Etcd {
    pub url: String,
    // Behind an async lock so that a test holding `&TestEnv` can stop and restart it.
    service: tokio::sync::Mutex<Service>,
}

impl Etcd {
    #[must_use]
    pub fn spawn(binary: &Path, dir: &Path, reaper: &Reaper) -> Etcd {
        let client_port = process::free_port();
        let peer_port = process::free_port();
        let url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut command = Command::new(binary);
        command
            .arg("--data-dir")
            .arg(dir.join("etcd-data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(["--unsafe-no-fsync", "--log-level", "warn"]);
        Etcd {
            url,
            service: tokio::sync::Mutex::new(Service::spawn("etcd", command, dir, reaper)),
        }
    }

    pub async fn wait_ready(&self) -> Result<(), String> {
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let mut service = self.service.lock().await;
        process::wait_ready(&mut service, Duration::from_secs(30), || async move {
            process::port_open(port)
        })
        .await
    }

    /// Stops etcd: every apiserver of the environment loses its storage.
    pub async fn stop(&self) {
        self.service.lock().await.stop();
    }

    /// Starts etcd again on the same port and data, and waits until it listens.
    pub async fn restart(&self, reaper: &Reaper) {
        self.service.lock().await.start(reaper);
        self.wait_ready().await.expect("etcd ready after restart");
    }
}

/// One Kubernetes cluster: a kube-apiserver and the admin credentials to reach it.
pub struct KubeCluster {
    pub name: String,
    /// `https://127.0.0.1:<port>`
    pub server: String,
    ca_pem: String,
    admin: CertPair,
    // Behind an async lock so that a test holding `&TestEnv` can stop and restart it.
    service: tokio::sync::Mutex<Service>,
}

impl KubeCluster {
    /// Starts a kube-apiserver for `name`, storing under `/<name>` in etcd.
    #[must_use]
    pub fn spawn(
        name: &str,
        binary: &Path,
        etcd_url: &str,
        pki: &Pki,
        root: &Path,
        reaper: &Reaper,
    ) -> KubeCluster {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("create cluster dir");
        let serving = pki.loopback_server(&format!("{name}-apiserver"));
        let tls_cert = process::write_private(&dir, "apiserver.crt", &serving.cert_pem);
        let tls_key = process::write_private(&dir, "apiserver.key", &serving.key_pem);
        let client_ca = process::write_private(&dir, "client-ca.crt", &pki.ca_pem);
        let (sa_private, sa_public) = super::pki::key_pair_pem();
        let sa_signing_key = process::write_private(&dir, "service-account.key", &sa_private);
        let sa_key = process::write_private(&dir, "service-account.pub", &sa_public);
        let port = process::free_port();

        let mut command = Command::new(binary);
        command
            .args([
                "--etcd-servers",
                etcd_url,
                "--etcd-prefix",
                &format!("/{name}"),
            ])
            .arg("--cert-dir")
            .arg(&dir)
            .args(["--secure-port", &port.to_string()])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
            ])
            // The `kubernetes` Service endpoint may not be a loopback address, and nothing
            // here needs it.
            .args(["--endpoint-reconciler-type", "none"])
            .arg("--tls-cert-file")
            .arg(&tls_cert)
            .arg("--tls-private-key-file")
            .arg(&tls_key)
            .arg("--client-ca-file")
            .arg(&client_ca)
            .args([
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                "--allow-privileged=true",
            ])
            .args(["--disable-admission-plugins", "ServiceAccount"])
            .args(["--authorization-mode", "RBAC"])
            .args(["--service-account-issuer", "https://127.0.0.1"])
            .arg("--service-account-key-file")
            .arg(&sa_key)
            .arg("--service-account-signing-key-file")
            .arg(&sa_signing_key);
        let service = Service::spawn(&format!("kube-apiserver-{name}"), command, &dir, reaper);
        KubeCluster {
            name: name.to_owned(),
            server: format!("https://127.0.0.1:{port}"),
            ca_pem: pki.ca_pem.clone(),
            admin: pki.client(&format!("{name}-admin"), Some("system:masters")),
            service: tokio::sync::Mutex::new(service),
        }
    }

    /// Waits until the apiserver reports `/readyz` ok (etcd reachable, bootstrap done).
    pub async fn wait_ready(&self) -> Result<(), String> {
        let client = self.client().await;
        let mut service = self.service.lock().await;
        process::wait_ready(&mut service, APISERVER_READY_TIMEOUT, || {
            let client = client.clone();
            async move {
                let request = http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("request");
                matches!(client.request_text(request).await, Ok(body) if body.trim() == "ok")
            }
        })
        .await
    }

    /// Write requests (POST, PUT, PATCH, server-side APPLY, DELETE) the apiserver has served
    /// for `resources`.
    pub async fn write_requests(&self, resources: &[&str]) -> u64 {
        self.requests(WRITE_VERBS, resources).await
    }

    /// Read requests (GET, LIST; not WATCH) the apiserver has served for `resources`.
    pub async fn read_requests(&self, resources: &[&str]) -> u64 {
        self.requests(READ_VERBS, resources).await
    }

    /// Requests with one of `verbs` the apiserver has served for `resources` (subresources
    /// included), from its own `apiserver_request_total` metric: what a client really sent,
    /// counted where it cannot be missed.
    pub async fn requests(&self, verbs: &[&str], resources: &[&str]) -> u64 {
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .expect("request");
        let metrics = self
            .client()
            .await
            .request_text(request)
            .await
            .expect("read /metrics");
        // The `resource` label, not `subresource`: it follows `{` or `,`.
        let has_label = |line: &str, label: &str, value: &str| {
            line.contains(&format!("{{{label}=\"{value}\""))
                || line.contains(&format!(",{label}=\"{value}\""))
        };
        metrics
            .lines()
            .filter(|line| line.starts_with("apiserver_request_total{"))
            .filter(|line| verbs.iter().any(|verb| has_label(line, "verb", verb)))
            .filter(|line| {
                resources
                    .iter()
                    .any(|resource| has_label(line, "resource", resource))
            })
            // Counters are whole numbers, written without a fraction.
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Stops the apiserver, as a crashed or unreachable leaf.
    pub async fn stop(&self) {
        self.service.lock().await.stop();
    }

    /// Starts the apiserver again on the same port and waits until it is ready.
    pub async fn restart(&self, reaper: &Reaper) {
        self.service.lock().await.start(reaper);
        self.wait_ready()
            .await
            .expect("apiserver ready after restart");
    }

    /// A kubeconfig for the cluster admin (group `system:masters`).
    pub fn admin_kubeconfig(&self) -> String {
        self.kubeconfig_for(&self.admin)
    }

    /// A kubeconfig authenticating with `client`, a certificate from the test CA.
    pub fn kubeconfig_for(&self, client: &CertPair) -> String {
        self.kubeconfig_with_user(&serde_json::json!({
            "client-certificate-data": BASE64.encode(&client.cert_pem),
            "client-key-data": BASE64.encode(&client.key_pem),
        }))
    }

    /// A kubeconfig authenticating with a bearer token, e.g. a ServiceAccount's from the
    /// TokenRequest API (the apiserver signs those with its service-account key).
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        self.kubeconfig_with_user(&serde_json::json!({ "token": token }))
    }

    fn kubeconfig_with_user(&self, user: &serde_json::Value) -> String {
        let name = &self.name;
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {
                "server": self.server,
                "certificate-authority-data": BASE64.encode(&self.ca_pem),
            }}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        });
        serde_yaml::to_string(&kubeconfig).expect("serialize kubeconfig")
    }

    /// An admin client.
    pub async fn client(&self) -> kube::Client {
        client_from_kubeconfig(&self.admin_kubeconfig()).await
    }
}

/// A client for a kubeconfig document, the way the agent builds one.
pub async fn client_from_kubeconfig(yaml: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(yaml).expect("parse kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config from kubeconfig");
    kube::Client::try_from(config).expect("build client")
}
