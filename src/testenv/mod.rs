//! The local test environment: a management cluster and two leaf clusters (real
//! kube-apiservers on one etcd, on loopback, with client-certificate authentication), as
//! `secretsync demo` and the integration tests start it.
//!
//! It is a development tool, not part of the agent: set-up failures panic with what went
//! wrong (the binaries missing, a server that does not come up), and everything it starts
//! is killed, and its directory removed, when the process exits, however it exits.
//!
//! `TestEnv::shared()` starts one environment for a whole test binary; a caller that stops
//! or restarts servers (or the demo) starts its own with `TestEnv::start()`.

pub mod binaries;
pub mod fleet;
pub mod kube;
pub mod pki;
pub mod process;
pub mod procfs;
pub mod scenario;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use self::binaries::Binaries;
use self::kube::{Etcd, KubeCluster};
use self::pki::Pki;
use self::process::Reaper;

/// The leaf clusters every environment starts, in the order of `TestEnv::leaves`.
pub const LEAF_CLUSTERS: [&str; 2] = ["leaf-cluster-1", "leaf-cluster-2"];

pub struct TestEnv {
    pub pki: Pki,
    // The environment's directory (logs, certificates, etcd data); removed on exit.
    root: PathBuf,
    pub mgmt: KubeCluster,
    pub leaves: Vec<KubeCluster>,
    // Kept alive for the apiservers; stopped when the environment is dropped.
    etcd: Etcd,
    // Declared last so that it is dropped last: it removes `root` once the servers are gone.
    reaper: Reaper,
}

impl TestEnv {
    /// The environment shared by every test of this binary, started on first use.
    pub fn shared() -> &'static TestEnv {
        static SHARED: OnceLock<TestEnv> = OnceLock::new();
        SHARED.get_or_init(TestEnv::start)
    }

    /// Starts a private environment; everything stops when it is dropped.
    #[must_use]
    pub fn start() -> TestEnv {
        let leaves = LEAF_CLUSTERS.iter().map(|&name| name.to_owned()).collect();
        TestEnv::start_with_leaves(leaves)
    }

    /// Starts a private environment with these leaf clusters (e.g. more than two for a fleet
    /// benchmark) instead of `LEAF_CLUSTERS`.
    #[must_use]
    pub fn start_with_leaves(leaves: Vec<String>) -> TestEnv {
        // Set-up is async (readiness, CRDs) but may be called from inside a test's runtime,
        // so it runs on a thread with a runtime of its own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(TestEnv::start_async(&leaves))
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    async fn start_async(leaf_names: &[String]) -> TestEnv {
        eprintln!(
            "testenv: finding kube-apiserver and etcd (built once into ~/.cache/secretsync/testenv: the first time takes ~10 min)…"
        );
        let binaries = Binaries::ensure();
        let started = Instant::now();
        eprintln!(
            "testenv: starting etcd and {} kube-apiservers…",
            1 + leaf_names.len()
        );
        let root = tempfile::Builder::new()
            .prefix("secretsync-testenv-")
            .tempdir()
            .expect("create test environment dir")
            .keep();
        let reaper = Reaper::start(&root);
        let pki = Pki::new("secretsync-testenv-ca");

        let etcd = Etcd::spawn(&binaries.etcd, &root, &reaper);
        etcd.wait_ready().await.expect("etcd ready");
        let spawn = |name: &str| {
            KubeCluster::spawn(
                name,
                &binaries.kube_apiserver,
                &etcd.url,
                &pki,
                &root,
                &reaper,
            )
        };
        let mgmt = spawn("mgmt");
        let leaves: Vec<KubeCluster> = leaf_names.iter().map(|name| spawn(name)).collect();

        let (mgmt_ready, leaves_ready) = tokio::join!(
            mgmt.wait_ready(),
            futures::future::join_all(leaves.iter().map(KubeCluster::wait_ready)),
        );
        mgmt_ready.expect("management cluster ready");
        for ready in leaves_ready {
            ready.expect("leaf cluster ready");
        }
        fleet::install_crds(&mgmt.client().await).await;
        eprintln!(
            "testenv: etcd + {} kube-apiservers ready in {:.1?} under {}",
            1 + leaves.len(),
            started.elapsed(),
            root.display()
        );
        TestEnv {
            pki,
            root,
            mgmt,
            leaves,
            etcd,
            reaper,
        }
    }
}

impl TestEnv {
    /// The directory everything of this environment lives in, removed when the process exits.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The reaper that kills the environment's processes on exit; register further children
    /// (e.g. an agent) with `Reaper::register` so that they go with it.
    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    /// Stops a leaf's apiserver (in a private environment: other tests share the shared one).
    pub async fn stop_leaf(&self, name: &str) {
        self.leaf(name).stop().await;
    }

    /// Starts a stopped leaf's apiserver again, on the same port, and waits until it is ready.
    pub async fn restart_leaf(&self, name: &str) {
        self.leaf(name).restart(&self.reaper).await;
    }

    /// Stops etcd (in a private environment): every apiserver answers errors until
    /// `start_etcd`.
    pub async fn stop_etcd(&self) {
        self.etcd.stop().await;
    }

    /// Starts etcd again on the same port and data, and waits until it listens.
    pub async fn start_etcd(&self) {
        self.etcd.restart(&self.reaper).await;
    }

    pub fn leaf(&self, name: &str) -> &KubeCluster {
        self.leaves
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no leaf {name}"))
    }
}
