//! `secretsync demo`, the newcomer's first command: the real binary starts its own
//! environment, shows the documented Secret arriving on the leaf and the status, and (with
//! `--exit-after-sync`) stops, without printing the Secret's value.

use std::process::Command;

/// The demo's source value (src/cli/demo.rs): it must never be printed.
const DEMO_VALUE: &str = "not-a-real-password-demo-only";

#[test]
fn demo_shows_the_secret_arriving_and_the_status_then_exits() {
    let output = Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(["demo", "--exit-after-sync"])
        .env_remove("KUBECONFIG")
        .env_remove("SECRETSYNC_NAMESPACES")
        .env_remove("SECRETSYNC_SOURCE")
        .output()
        .expect("run secretsync demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");

    assert!(
        stdout.contains("leaf-cluster-1: Secret my-namespace/my-dev-secret (resourceVersion "),
        "{stdout}"
    );
    assert!(stdout.contains("secretsync.dev/revision: "), "{stdout}");
    assert!(stdout.contains("default/my-dev-secret-syncer"), "{stdout}");
    assert!(stdout.contains("leaf-cluster-1"), "{stdout}");
    assert!(stdout.contains("kubeconfigs/mgmt.yaml"), "{stdout}");
    assert!(
        stdout.contains("label gitopscluster leaf-cluster-2"),
        "{stdout}"
    );
    assert!(stderr.contains("waiting for the Secret"), "{stderr}");

    for text in [&stdout, &stderr] {
        assert!(!text.contains(DEMO_VALUE), "the Secret's value was printed");
        assert!(
            !text.contains("bm90LWEtcmVhbC1wYXNzd29yZC1kZW1vLW9ubHk"),
            "the Secret's value was printed (base64)"
        );
    }
}
