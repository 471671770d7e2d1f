//! Kubeconfig resolution through every kind of reference, its errors, and what the errors
//! never show.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kube::api::Api;
use secretsync::cluster::{
    ClientCache, ClusterError, GitopsCluster, KubeconfigRef, api_resource, read_kubeconfig,
};
use serde_json::json;

use super::{add_cluster, find, leaf, list, nobody, put_secret};
use crate::testenv::fleet::ensure_namespace;
use crate::testenv::{TestEnv, unique_namespace};

#[tokio::test]
async fn kubeconfigs_resolve_through_both_reference_kinds() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-kubeconfig");
    env.register_leaves(&namespace).await;
    let mgmt = env.mgmt.client().await;
    let list = list(env, &namespace).await;

    for (name, secret) in [
        // capiClusterRef: Cluster API's `<cluster>-kubeconfig`.
        ("leaf-cluster-1", "leaf-cluster-1-kubeconfig"),
        // secretRef: the named Secret.
        ("leaf-cluster-2", "leaf-cluster-2-kubeconfig"),
    ] {
        let kubeconfig = read_kubeconfig(&mgmt, find(&list, name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (kubeconfig.secret.as_str(), kubeconfig.key.as_str()),
            (secret, "value")
        );
        assert_eq!(
            kubeconfig.bytes.expose(),
            leaf(env, name).admin_kubeconfig().as_bytes()
        );
    }

    // A secretRef Secret may hold the kubeconfig under `value.yaml` instead.
    let admin = leaf(env, "leaf-cluster-2").admin_kubeconfig();
    put_secret(
        &mgmt,
        &namespace,
        "yaml-kubeconfig",
        &[("value.yaml", admin.as_bytes())],
    )
    .await;
    let clusters = Api::namespaced_with(mgmt.clone(), &namespace, &api_resource());
    let by_yaml = add_cluster(
        &clusters,
        "by-yaml",
        json!({"secretRef": {"name": "yaml-kubeconfig"}}),
    )
    .await;
    let kubeconfig = read_kubeconfig(&mgmt, &by_yaml).await.expect("value.yaml");
    assert_eq!(kubeconfig.key, "value.yaml");

    // Neither reference: `<cluster>-kubeconfig`, as upstream falls back to.
    put_secret(
        &mgmt,
        &namespace,
        "implicit-kubeconfig",
        &[("value", admin.as_bytes())],
    )
    .await;
    let implicit = add_cluster(&clusters, "implicit", json!({})).await;
    assert_eq!(implicit.kubeconfig, KubeconfigRef::Default);
    let kubeconfig = read_kubeconfig(&mgmt, &implicit)
        .await
        .expect("default Secret");
    assert_eq!(kubeconfig.secret, "implicit-kubeconfig");
}

#[tokio::test]
async fn kubeconfig_errors_name_the_cluster_and_the_secret() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-kubeconfig-errors");
    let mgmt = env.mgmt.client().await;
    ensure_namespace(&mgmt, &namespace).await;
    let clusters = Api::namespaced_with(mgmt.clone(), &namespace, &api_resource());
    let admin = leaf(env, "leaf-cluster-1").admin_kubeconfig();
    put_secret(
        &mgmt,
        &namespace,
        "wrong-key",
        &[("kubeconfig", admin.as_bytes())],
    )
    .await;
    put_secret(
        &mgmt,
        &namespace,
        "garbage",
        &[("value", b"\x00\xffnot: [a kubeconfig")],
    )
    .await;
    put_secret(
        &mgmt,
        &namespace,
        "not-yaml",
        &[("value", b"clusters: [unclosed")],
    )
    .await;

    let cases = [
        (
            "absent",
            json!({"secretRef": {"name": "absent"}}),
            "KubeconfigMissing",
            format!(
                "GitopsCluster {namespace}/absent: kubeconfig Secret absent not found in namespace {namespace}"
            ),
        ),
        (
            "capi-absent",
            json!({"capiClusterRef": {"name": "gone"}}),
            "KubeconfigMissing",
            format!(
                "GitopsCluster {namespace}/capi-absent: kubeconfig Secret gone-kubeconfig not found in namespace {namespace}"
            ),
        ),
        (
            "wrong-key",
            json!({"secretRef": {"name": "wrong-key"}}),
            "KubeconfigKeyMissing",
            format!(
                "GitopsCluster {namespace}/wrong-key: kubeconfig Secret wrong-key has no key value or value.yaml"
            ),
        ),
        (
            "garbage",
            json!({"secretRef": {"name": "garbage"}}),
            "KubeconfigInvalid",
            format!(
                "GitopsCluster {namespace}/garbage: invalid kubeconfig: Secret garbage key value: is not UTF-8 text"
            ),
        ),
        (
            "not-yaml",
            json!({"secretRef": {"name": "not-yaml"}}),
            "KubeconfigInvalid",
            format!(
                "GitopsCluster {namespace}/not-yaml: invalid kubeconfig: Secret not-yaml key value: is not a valid kubeconfig (YAML error at line"
            ),
        ),
    ];
    let cache = ClientCache::default();
    for (name, spec, reason, message) in cases {
        let cluster = add_cluster(&clusters, name, spec).await;
        let error = leaf_client_error(&mgmt, &cache, &cluster).await;
        assert_eq!(error.reason(), reason, "{name}: {error}");
        assert!(error.to_string().starts_with(&message), "{name}: {error}");
        assert_eq!(error.cluster(), Some(&cluster.key()));
    }

    // An agent that may not read the Secret says so, rather than "missing".
    let nobody = nobody(env).await;
    let cluster = add_cluster(
        &clusters,
        "forbidden",
        json!({"secretRef": {"name": "wrong-key"}}),
    )
    .await;
    let error = leaf_client_error(&nobody, &cache, &cluster).await;
    assert_eq!(error.reason(), "KubeconfigUnreadable");
    assert!(error.to_string().contains("HTTP 403"), "{error}");
}

#[tokio::test]
async fn no_error_or_debug_output_shows_kubeconfig_content() {
    let env = TestEnv::shared();
    let namespace = unique_namespace("cluster-redaction");
    let mgmt = env.mgmt.client().await;
    ensure_namespace(&mgmt, &namespace).await;
    let clusters = Api::namespaced_with(mgmt.clone(), &namespace, &api_resource());
    let user = env.pki.client("redaction-user", Some("system:masters"));
    let real = leaf(env, "leaf-cluster-1");
    let good = real.kubeconfig_for(&user);
    let key_b64 = BASE64.encode(&user.key_pem);
    // The key's PEM body with its first line changed: still base64, no longer a key.
    let broken_key = BASE64.encode(user.key_pem.replacen("MI", "QQ", 1));

    let cases: [(&str, String); 5] = [
        // Broken YAML after the key.
        ("cut", format!("{good}\n  - [")),
        // The key where a kubeconfig should be.
        ("key-only", user.key_pem.clone()),
        ("key-as-scalar", key_b64.clone()),
        // A kubeconfig whose key data is not a usable key.
        ("bad-key", good.replace(&key_b64, &broken_key)),
        // A kubeconfig whose certificate data is the key.
        (
            "key-as-cert",
            good.replace(&BASE64.encode(&user.cert_pem), &key_b64),
        ),
    ];
    let cache = ClientCache::default();
    let mut shown = Vec::new();
    for (name, value) in cases {
        put_secret(&mgmt, &namespace, name, &[("value", value.as_bytes())]).await;
        let cluster = add_cluster(&clusters, name, json!({"secretRef": {"name": name}})).await;
        let kubeconfig = read_kubeconfig(&mgmt, &cluster).await.expect(name);
        shown.push((name, String::new(), format!("{kubeconfig:?}")));
        let error = cache.client(&kubeconfig).await.expect_err(name);
        shown.push((name, error.to_string(), format!("{error:?}")));
    }
    let secrets: Vec<String> = user
        .key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::to_owned)
        .chain([key_b64.clone()])
        .collect();
    for (name, display, debug) in &shown {
        assert!(
            !display.is_empty() || debug.contains("<redacted>"),
            "{name}: {debug}"
        );
        for secret in &secrets {
            assert!(!display.contains(secret.as_str()), "{name}: {display}");
            assert!(!debug.contains(secret.as_str()), "{name}: {debug}");
        }
    }
}

/// Why no client can be had for `cluster`'s kubeconfig: reading it, or building a client from
/// what was read.
async fn leaf_client_error(
    mgmt: &kube::Client,
    cache: &ClientCache,
    cluster: &GitopsCluster,
) -> ClusterError {
    match read_kubeconfig(mgmt, cluster).await {
        Err(error) => error,
        Ok(kubeconfig) => cache
            .client(&kubeconfig)
            .await
            .expect_err("a client from a broken kubeconfig"),
    }
}
