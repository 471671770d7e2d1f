//! What the shipped manifests say, read from their rendering alone (no apiserver): hardened
//! and sized containers, namespaced least-privilege RBAC, a ServiceMonitor and alerts that
//! fit the metrics Service.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::manifests::{all_of, container, find, render_repo};
use super::{AGENT, FLUX_NAMESPACE, STANDALONE_NAMESPACE};

#[test]
fn containers_are_hardened_and_sized() {
    let standalone = render_repo("deploy/overlays/standalone");
    let deployment = find(&standalone, "Deployment", "secretsync");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["serviceAccountName"], AGENT);
    assert_hardened(container(deployment, "secretsync"), "standalone");

    let flux = render_repo("fixtures/deploy/flux-system");
    assert!(
        all_of(&flux, "Deployment").all(|d| d["metadata"]["name"] != "secretsync"),
        "the sidecar replaces the standalone Deployment"
    );
    let source_controller = find(&flux, "Deployment", "source-controller");
    let sidecar = container(source_controller, "secretsync");
    assert_hardened(sidecar, "flux-sidecar");
    sidecar_uses_its_own_token(source_controller, sidecar);
    // Containers of a pod share its network: no port twice.
    let ports: Vec<&Value> = source_controller["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .flat_map(|c| c["ports"].as_array().expect("ports"))
        .map(|p| &p["containerPort"])
        .collect();
    let distinct: BTreeSet<String> = ports.iter().map(ToString::to_string).collect();
    assert_eq!(distinct.len(), ports.len(), "ports {ports:?}");
}

fn assert_hardened(container: &Value, what: &str) {
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(security["runAsNonRoot"], true, "{what}");
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{what}");
    assert_eq!(
        security["seccompProfile"]["type"], "RuntimeDefault",
        "{what}"
    );
    // README "Resources and security context" explains these figures (bench/RESULTS.md: 75 MiB peak RSS).
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "50m", "memory": "128Mi"},
               "limits": {"cpu": "1", "memory": "256Mi"}}),
        "{what}"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"], "/healthz",
        "{what}"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/readyz",
        "{what}"
    );
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    assert!(
        mounts.iter().any(|m| m["mountPath"] == "/tmp"),
        "{what}: a writable /tmp on the read-only root filesystem"
    );
}

/// The sidecar authenticates as `secretsync` (its token Secret mounted over the
/// service-account path), and source-controller's own container is left as it was.
fn sidecar_uses_its_own_token(source_controller: &Value, sidecar: &Value) {
    const SA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let mount = sidecar["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == SA_PATH)
        .expect("the sidecar mounts its own token");
    let volume = source_controller["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the token volume");
    assert_eq!(volume["secret"]["secretName"], "secretsync-token");
    let manager = container(source_controller, "manager");
    assert!(
        manager["volumeMounts"]
            .as_array()
            .is_none_or(|mounts| mounts.iter().all(|m| m["mountPath"] != SA_PATH)),
        "source-controller keeps its own token"
    );
}

#[test]
fn rbac_is_namespaced_and_least_privilege() {
    for (rendered, agent_namespace, served) in [
        (
            "deploy/overlays/standalone",
            STANDALONE_NAMESPACE,
            "default",
        ),
        (
            "fixtures/deploy/flux-system",
            FLUX_NAMESPACE,
            FLUX_NAMESPACE,
        ),
    ] {
        let documents = render_repo(rendered);
        assert_eq!(
            all_of(&documents, "ClusterRoleBinding").count(),
            0,
            "{rendered}"
        );
        let cluster_roles: Vec<&Value> = all_of(&documents, "ClusterRole").collect();
        assert_eq!(cluster_roles.len(), 1, "{rendered}: only secretsync-tenant");
        for role in cluster_roles
            .iter()
            .copied()
            .chain(all_of(&documents, "Role"))
        {
            for rule in role["rules"].as_array().expect("rules") {
                rule_is_narrow(rule, rendered);
            }
        }
        let bindings: BTreeSet<(String, String)> = all_of(&documents, "RoleBinding")
            .map(|binding| {
                assert_eq!(
                    binding["subjects"],
                    json!([{"kind": "ServiceAccount", "name": AGENT, "namespace": agent_namespace}]),
                    "{rendered}"
                );
                (
                    binding["metadata"]["namespace"].as_str().expect("namespace").to_owned(),
                    binding["roleRef"]["name"].as_str().expect("role").to_owned(),
                )
            })
            .collect();
        let expected = BTreeSet::from([
            (served.to_owned(), "secretsync-tenant".to_owned()),
            (
                agent_namespace.to_owned(),
                "secretsync-leader-election".to_owned(),
            ),
        ]);
        assert_eq!(bindings, expected, "{rendered}");
    }
}

/// No wildcards; Secrets are only read; Leases beyond `create` only by name.
fn rule_is_narrow(rule: &Value, rendered: &str) {
    let strings = |field: &str| -> Vec<&str> {
        rule[field]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().expect("string")).collect())
            .unwrap_or_default()
    };
    for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
        assert!(
            !strings(field).contains(&"*"),
            "{rendered}: a wildcard in {rule}"
        );
    }
    let verbs = strings("verbs");
    if strings("resources").contains(&"secrets") {
        assert!(
            verbs.iter().all(|v| ["get", "list", "watch"].contains(v)),
            "{rendered}: Secrets are only read: {rule}"
        );
    }
    if strings("resources").contains(&"leases") && verbs != ["create"] {
        assert_eq!(strings("resourceNames"), [AGENT], "{rendered}: {rule}");
    }
}

#[test]
fn monitoring_matches_the_metrics_service() {
    let monitoring = render_repo("deploy/monitoring");
    let standalone = render_repo("deploy/overlays/standalone");
    let service = find(&standalone, "Service", "secretsync-metrics");
    let monitor = find(&monitoring, "ServiceMonitor", "secretsync");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&service["metadata"]["labels"][key], value, "label {key}");
    }
    let port = &monitor["spec"]["endpoints"][0]["port"];
    assert!(
        service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| &p["name"] == port),
        "the ServiceMonitor scrapes port {port} of the Service"
    );

    // The alerts use the metrics README documents, and the job the ServiceMonitor names
    // (the Service's name).
    let documented = [
        "secretsync_pairs",
        "secretsync_reconcile_duration_seconds",
        "secretsync_source_fetch_errors_total",
        "secretsync_cluster_up",
        "secretsync_last_applied_revision_info",
    ];
    let rules = find(&monitoring, "PrometheusRule", "secretsync");
    for rule in rules["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
    {
        let expr = rule["expr"].as_str().expect("expr");
        for metric in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("secretsync_"))
        {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| metric.strip_suffix(suffix))
                .filter(|family| documented.contains(family))
                .unwrap_or(metric);
            assert!(documented.contains(&family), "{metric} in {expr}");
        }
        if expr.contains("job=") {
            assert!(expr.contains("job=\"secretsync-metrics\""), "{expr}");
        }
    }
}

/// The base and the CRDs are kustomizations of their own, for overlays of one's own.
#[test]
fn base_and_crds_render_on_their_own() {
    let base = render_repo("deploy/base");
    assert!(
        base.iter()
            .filter(|d| d["kind"] != "CustomResourceDefinition")
            .all(|d| d["metadata"]["namespace"].is_null()),
        "base sets no namespace"
    );
    let crds = render_repo("deploy/crds");
    let crds: Vec<&str> = all_of(&crds, "CustomResourceDefinition")
        .map(|crd| crd["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        crds,
        [
            "gitopsclusters.gitops.weave.works",
            "secretsyncs.capi.weave.works"
        ]
    );
}
