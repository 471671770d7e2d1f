//! The real test environment: a management cluster and two leaf clusters (kube-apiservers
//! on one etcd), and git servers of every kind the agent speaks to, all on loopback.
//!
//! `TestEnv::shared()` starts one environment for the whole test binary; tests keep out of
//! each other's way by working in their own namespace (`unique_namespace`). A test that
//! stops or restarts servers starts its own with `TestEnv::start()`.

pub mod binaries;
pub mod fleet;
pub mod git;
pub mod kube;
pub mod pki;
pub mod process;
pub mod scenario;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use self::binaries::Binaries;
use self::kube::{Etcd, KubeCluster};
use self::pki::Pki;
use self::process::Reaper;

/// The leaf clusters every environment starts, in the order of `TestEnv::leaves`.
pub const LEAF_CLUSTERS: [&str; 2] = ["leaf-cluster-1", "leaf-cluster-2"];

pub struct TestEnv {
    pub pki: Pki,
    pub mgmt: KubeCluster,
    pub leaves: Vec<KubeCluster>,
    // Kept alive for the apiservers; stopped when the environment is dropped.
    _etcd: Etcd,
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
    pub fn start() -> TestEnv {
        // Set-up is async (readiness, CRDs) but may be called from inside a test's runtime,
        // so it runs on a thread with a runtime of its own.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(TestEnv::start_async())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    async fn start_async() -> TestEnv {
        let binaries = Binaries::ensure();
        let started = Instant::now();
        let root = tempfile::Builder::new()
            .prefix("secretsync-testenv-")
            .tempdir()
            .expect("create test environment dir")
            .keep();
        let reaper = Reaper::start(&root);
        let pki = Pki::new("secretsync-testenv-ca");

        let mut etcd = Etcd::spawn(&binaries.etcd, &root, &reaper);
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
        let leaves: Vec<KubeCluster> = LEAF_CLUSTERS.iter().map(|name| spawn(name)).collect();

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
            mgmt,
            leaves,
            _etcd: etcd,
            reaper,
        }
    }
}

impl TestEnv {
    /// Stops a leaf's apiserver (in a private environment: other tests share the shared one).
    pub async fn stop_leaf(&self, name: &str) {
        self.leaf(name).stop().await;
    }

    /// Starts a stopped leaf's apiserver again, on the same port, and waits until it is ready.
    pub async fn restart_leaf(&self, name: &str) {
        self.leaf(name).restart(&self.reaper).await;
    }

    pub fn leaf(&self, name: &str) -> &KubeCluster {
        self.leaves
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no leaf {name}"))
    }
}

/// A namespace name no other test of this run uses (namespaces are never deleted: the
/// environment has no namespace controller to finish a deletion).
pub fn unique_namespace(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
