//! `--verify-signatures` in the running agent: only signed commits are reconciled. An
//! unsigned head is refused, the last good revision keeps serving (a rotated Secret still
//! reaches the leaf), and every status says why until a trusted key signs a new head.

use super::Fixture;
use crate::testenv::git::ssh_signing_key;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_head_is_not_reconciled_and_every_status_says_why() {
    let fixture = Fixture::new("agent-sign").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.put_source_secret("registry", "sign-token-1").await;
    fixture.put_source_secret("vault", "sign-token-2").await;
    let (key, public) = ssh_signing_key(fixture.work.path(), "platform-team");
    let trusted = fixture.work.path().join("trusted-keys");
    std::fs::write(&trusted, public).expect("write the trusted keys");
    fixture
        .write_sync("registry", "dev", "registry")
        .commit_signed("sync the registry, signed", &key);
    let agent = fixture.start_agent(
        "sign",
        &[
            "--verify-signatures",
            "--trusted-keys",
            trusted.to_str().expect("utf-8 path"),
            "--interval",
            "1s",
        ],
    );
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "sign-token-1")
        .await;

    let unsigned = fixture.commit_sync("vault", "dev", "vault");
    let refused = fixture
        .until_source_ready(
            "registry",
            "False",
            "the status tells the head commit was refused",
        )
        .await;
    assert_eq!(refused.reason, "VerificationFailed");
    assert!(
        refused.message.contains(&unsigned) && refused.message.contains("not signed"),
        "{}",
        refused.message
    );
    // The last good revision keeps serving; the refused commit's SecretSync is not applied.
    fixture.put_source_secret("registry", "sign-token-3").await;
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "sign-token-3")
        .await;
    assert_eq!(fixture.leaf_token("leaf-cluster-1", "vault").await, None);

    fixture.repo.commit_signed("signed on top", &key);
    fixture
        .until_leaf_holds("leaf-cluster-1", "vault", "sign-token-2")
        .await;
    fixture
        .until_source_ready(
            "registry",
            "True",
            "the status tells the source is read again",
        )
        .await;
    fixture.assert_no_leaks(&agent);
}
