//! The real test environment: the library's (`secretsync::testenv`: a management cluster
//! and two leaf clusters, kube-apiservers on one etcd), and git servers of every kind the
//! agent speaks to, all on loopback.
//!
//! `TestEnv::shared()` starts one environment for the whole test binary; tests keep out of
//! each other's way by working in their own namespace (`unique_namespace`). A test that
//! stops or restarts servers starts its own with `TestEnv::start()`.

pub mod fleet;
pub mod git;
pub mod scenario;

pub use secretsync::testenv::{LEAF_CLUSTERS, TestEnv, kube, pki, process};

use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace name no other test of this run uses (namespaces are never deleted: the
/// environment has no namespace controller to finish a deletion).
pub fn unique_namespace(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
