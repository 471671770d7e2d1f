//! Leaf clients from the cache against the real leaves, rotation, and the reachability
//! probe against live, dead, silent and untrusted servers, and with an expired certificate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use secretsync::cluster::{ClientCache, ClientSettings, PROBE_TIMEOUT, api_resource, probe};
use serde_json::json;

use super::{add_cluster, find, leaf, leaf_client, list, put_secret};
use crate::testenv::fleet::ensure_namespace;
use crate::testenv::process::free_port;
use crate::testenv::{TestEnv, unique_namespace};

#[tokio::test]
async fn a_cached_leaf_client_reaches_its_leaf() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-client");
    env.register_leaves(&namespace).await;
    let mgmt = env.mgmt.client().await;
    let cache = ClientCache::default();

    for cluster in &list(env, &namespace).await.clusters {
        let leaf_client = leaf_client(&mgmt, &cache, cluster)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let real = leaf(env, cluster.name.as_str());
        assert_eq!(leaf_client.server(), real.server);
        probe(&cluster.key(), &leaf_client, PROBE_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        ensure_namespace(leaf_client.client(), &namespace).await;
        let secrets: Api<Secret> = Api::namespaced(leaf_client.client().clone(), &namespace);
        let mut secret = Secret::default();
        secret.metadata.name = Some("through-the-cache".to_owned());
        secret.string_data = Some(BTreeMap::from([(
            "cluster".to_owned(),
            cluster.name.to_string(),
        )]));
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create on the leaf");
    }
    // Each leaf holds the copy written through its own client.
    for real in &env.leaves {
        let direct: Api<Secret> = Api::namespaced(real.client().await, &namespace);
        let found = direct
            .get("through-the-cache")
            .await
            .expect("read directly");
        assert_eq!(found.data.expect("data")["cluster"].0, real.name.as_bytes());
    }
    assert_eq!(cache.len(), 2);
}

#[tokio::test]
async fn the_same_kubeconfig_reuses_its_client_and_a_rotated_one_gets_a_new_one() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-rotate");
    env.register_leaves(&namespace).await;
    let mgmt = env.mgmt.client().await;
    let cache = ClientCache::default();
    let cluster = find(&list(env, &namespace).await, "leaf-cluster-2").clone();

    let first = leaf_client(&mgmt, &cache, &cluster).await.expect("client");
    let again = leaf_client(&mgmt, &cache, &cluster).await.expect("client");
    assert!(Arc::ptr_eq(&first, &again), "same kubeconfig, same client");

    // Rotation: the Secret now holds a kubeconfig for another user.
    let rotated_user = env.pki.client("rotated-admin", Some("system:masters"));
    let rotated = leaf(env, "leaf-cluster-2").kubeconfig_for(&rotated_user);
    put_secret(
        &mgmt,
        &namespace,
        "leaf-cluster-2-kubeconfig",
        &[("value", rotated.as_bytes())],
    )
    .await;
    let second = leaf_client(&mgmt, &cache, &cluster).await.expect("client");
    assert!(
        !Arc::ptr_eq(&first, &second),
        "rotated kubeconfig, new client"
    );
    assert_ne!(first.digest(), second.digest());
    probe(&cluster.key(), &second, PROBE_TIMEOUT)
        .await
        .expect("the new client works");
    let secrets: Api<Secret> = Api::namespaced(second.client().clone(), "default");
    secrets
        .list(&ListParams::default())
        .await
        .expect("the rotated user is an admin");

    // The next pass uses only the rotated kubeconfig: the old client goes.
    assert_eq!(cache.sweep(), 0);
    leaf_client(&mgmt, &cache, &cluster).await.expect("client");
    assert_eq!(cache.sweep(), 1);
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn an_unreachable_leaf_is_reported_within_the_timeout() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-unreachable");
    let mgmt = env.mgmt.client().await;
    ensure_namespace(&mgmt, &namespace).await;
    let clusters = Api::namespaced_with(mgmt.clone(), &namespace, &api_resource());
    let real = leaf(env, "leaf-cluster-1");
    let cache = ClientCache::new(ClientSettings::default());

    // Nothing listens on a port that was free a moment ago: refused at once.
    let dead = format!("https://127.0.0.1:{}", free_port());
    // A listener that never accepts: the TCP handshake completes, no TLS answer ever comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!(
        "https://127.0.0.1:{}",
        silent.local_addr().expect("addr").port()
    );
    let timeout = Duration::from_secs(1);
    // The real leaf, but a kubeconfig trusting another CA: the server is not who it should be.
    let foreign_ca = crate::testenv::pki::Pki::new("another-ca").ca_pem;
    let untrusted = real
        .admin_kubeconfig()
        .replace(&BASE64.encode(&env.pki.ca_pem), &BASE64.encode(&foreign_ca));
    // The real leaf, but a client certificate that expired years ago: the server refuses it.
    let expired = real.kubeconfig_for(&env.pki.expired_client("admin", Some("system:masters")));

    let cases = [
        (
            "dead",
            real.admin_kubeconfig().replace(&real.server, &dead),
            dead.as_str(),
            "Connection refused",
        ),
        (
            "silent",
            real.admin_kubeconfig().replace(&real.server, &silent_url),
            silent_url.as_str(),
            "no answer to /readyz within 1s",
        ),
        (
            "untrusted",
            untrusted,
            real.server.as_str(),
            "invalid peer certificate: UnknownIssuer",
        ),
        ("expired", expired, real.server.as_str(), "Unauthorized"),
    ];
    for (name, kubeconfig, server, expected) in cases {
        put_secret(
            &mgmt,
            &namespace,
            &format!("{name}-kubeconfig"),
            &[("value", kubeconfig.as_bytes())],
        )
        .await;
        let cluster = add_cluster(&clusters, name, json!({})).await;
        let leaf_client = leaf_client(&mgmt, &cache, &cluster)
            .await
            .expect("a client, even for a dead server");

        let started = Instant::now();
        let error = probe(&cluster.key(), &leaf_client, timeout)
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            elapsed < timeout + Duration::from_secs(2),
            "{name}: took {elapsed:?}"
        );
        assert_eq!(error.reason(), "ClusterUnreachable");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "GitopsCluster {namespace}/{name}: API server {server} is unreachable: "
            )),
            "{message}"
        );
        assert!(message.contains(expected), "{name}: {message}");
    }
    drop(silent);
}
