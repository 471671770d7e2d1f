//! Two shards over one repository (`--watch-label-selector`): each agent syncs only the
//! SecretSyncs labelled for it, prunes only the copies its shard wrote, and a SecretSync
//! moved from one shard to the other is taken over without a fight or a prune.

use kube::ResourceExt as _;

use super::{Fixture, eventually};

const SHARD_KEY: &str = "sharding.secretsync.dev/key";

fn sharded_sync(namespace: &str, name: &str, shard: &str) -> String {
    format!(
        "apiVersion: capi.weave.works/v1alpha1
kind: SecretSync
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{{SHARD_KEY}: {shard}}}
spec:
  clusterSelector: {{matchLabels: {{environment: dev}}}}
  secretRef: {{name: {name}}}
  targetNamespace: {namespace}
"
    )
}

fn shard_args(selector: &str) -> Vec<&str> {
    vec![
        "--watch-label-selector",
        selector,
        "--interval",
        "1s",
        "--resync-schedule",
        "0 0 1 1 *",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_syncs_and_never_prune_each_others_copies() {
    let fixture = Fixture::new("agent-shards").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    let ns = fixture.namespace.clone();
    for (name, shard) in [("alpha", "shard1"), ("beta", "shard2")] {
        fixture
            .put_source_secret(name, &format!("{name}-token"))
            .await;
        fixture.repo.write(
            &format!("syncs/{name}.yaml"),
            sharded_sync(&ns, name, shard),
        );
    }
    fixture.repo.commit("two SecretSyncs, one per shard");

    let shard1 = fixture.start_agent("shard1", &shard_args(&format!("{SHARD_KEY} in (shard1)")));
    fixture
        .until_leaf_holds("leaf-cluster-1", "alpha", "alpha-token")
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        fixture.leaf_token("leaf-cluster-1", "beta").await,
        None,
        "shard1 synced shard2's SecretSync"
    );
    let shard2 = fixture.start_agent("shard2", &shard_args(&format!("{SHARD_KEY}=shard2")));
    fixture
        .until_leaf_holds("leaf-cluster-1", "beta", "beta-token")
        .await;
    let leaf = fixture.leaf_secrets("leaf-cluster-1").await;
    let beta = leaf.get("beta").await.expect("beta");
    assert_eq!(
        beta.labels()[SHARD_KEY],
        "shard2",
        "the copy names its shard"
    );

    // beta moves to shard1: shard1 takes the copy over, shard2 does not prune it.
    fixture
        .repo
        .write("syncs/beta.yaml", sharded_sync(&ns, "beta", "shard1"));
    fixture.repo.commit("beta moves to shard1");
    eventually("the beta copy carries shard1", async || {
        let copy = leaf.get_opt("beta").await.expect("read")?;
        (copy.labels().get(SHARD_KEY).map(String::as_str) == Some("shard1")).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        leaf.get_opt("beta").await.expect("read").is_some(),
        "a shard pruned a copy it does not own:\n{}",
        shard2.log()
    );

    // alpha leaves the repository: its shard prunes it.
    fixture
        .repo
        .remove("syncs/alpha.yaml")
        .commit("alpha removed");
    eventually("shard1 prunes alpha", async || {
        leaf.get_opt("alpha")
            .await
            .expect("read")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        !shard2.log().contains("reconcile: pruned"),
        "{}",
        shard2.log()
    );
    fixture.assert_no_leaks(&shard1);
    fixture.assert_no_leaks(&shard2);
}
