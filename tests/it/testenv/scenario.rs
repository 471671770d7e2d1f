//! The documented SecretSync scenario (`fixtures/scenario/`), arranged in a namespace of the
//! management cluster, and the built `secretsync` binary run against the environment as a
//! user would run it: what the CLI tests share.

use std::path::Path;
use std::process::{Command, Output};

use super::TestEnv;
use super::fleet::repo_path;

/// The value of the source Secret: it must never appear in any output.
pub const SECRET_VALUE: &str = "dev-registry-password-5f2a";

/// The management cluster's side in `namespace`: both leaves registered, those named in
/// `dev_leaves` labelled `environment: dev`, and the Secret `my-dev-secret` (`SECRET_VALUE`).
pub async fn arrange_clusters(env: &TestEnv, namespace: &str, dev_leaves: &[&str]) {
    secretsync::testenv::scenario::arrange_clusters(env, namespace, dev_leaves, SECRET_VALUE).await;
}

/// The documented SecretSync manifest as the fixture has it: `my-dev-secret-syncer` in
/// `default`, copying to `my-namespace`.
pub fn manifest() -> String {
    std::fs::read_to_string(repo_path("fixtures/scenario/my-dev-secret-syncer.yaml"))
        .expect("fixture")
}

/// The documented manifest, renamed to `name` in `namespace`, copying to `target`.
pub fn manifest_in(name: &str, namespace: &str, target: &str) -> String {
    manifest()
        .replace("name: my-dev-secret-syncer", &format!("name: {name}"))
        .replace("namespace: default", &format!("namespace: {namespace}"))
        .replace(
            "targetNamespace: my-namespace",
            &format!("targetNamespace: {target}"),
        )
}

/// Runs the built binary with `args`, talking to the management cluster through a
/// kubeconfig written to `work`, with debug logs (which tests check for leaks).
pub fn secretsync(env: &TestEnv, args: &[&str], work: &Path) -> Output {
    secretsync_with(&env.mgmt.admin_kubeconfig(), args, work)
}

/// Like `secretsync`, with logs at `log` (a `SECRETSYNC_LOG` filter, e.g. `trace`).
pub fn secretsync_logging(env: &TestEnv, args: &[&str], work: &Path, log: &str) -> Output {
    run(&env.mgmt.admin_kubeconfig(), args, work, log)
}

/// Like `secretsync`, with the management-cluster credentials of `kubeconfig`.
pub fn secretsync_with(kubeconfig_yaml: &str, args: &[&str], work: &Path) -> Output {
    run(kubeconfig_yaml, args, work, "debug")
}

fn run(kubeconfig_yaml: &str, args: &[&str], work: &Path, log: &str) -> Output {
    let kubeconfig = work.join("mgmt.kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml).expect("kubeconfig");
    Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(args)
        .env("KUBECONFIG", &kubeconfig)
        .env("SECRETSYNC_LOG", log)
        .env_remove("SECRETSYNC_NAMESPACES")
        .env_remove("SECRETSYNC_SOURCE")
        .output()
        .expect("run secretsync")
}
