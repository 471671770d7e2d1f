//! The shipped kustomizations as a cluster receives them: rendered with `kubectl kustomize`
//! (or kustomize itself where kubectl is missing: tests/testenv/kustomize.sh), then
//! server-side applied document by document, as `kubectl apply --server-side -k` does.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use serde::Deserialize;
use serde_json::Value;

use crate::testenv::fleet::{apply_crd, repo_path};

const FIELD_MANAGER: &str = "secretsync-deploy-test";

/// The command that renders a kustomization, the directory to be appended.
fn renderer() -> &'static [String] {
    static RENDERER: OnceLock<Vec<String>> = OnceLock::new();
    RENDERER.get_or_init(|| {
        let script = repo_path("tests/testenv/kustomize.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed; see its output above",
            script.display()
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .expect("kustomize.sh prints a command")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    })
}

/// Every document the kustomization in `dir` renders.
pub fn render(dir: &Path) -> Vec<Value> {
    let (program, args) = renderer().split_first().expect("a command");
    let output = Command::new(program)
        .args(args)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "rendering {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("rendered YAML is UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("rendered YAML parses"))
        .filter(|document| !document.is_null())
        .collect()
}

/// Renders a directory of the repository.
pub fn render_repo(relative: &str) -> Vec<Value> {
    render(&repo_path(relative))
}

/// The rendered document of `kind` named `name`.
pub fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} was rendered"))
}

/// Every rendered document of `kind`.
pub fn all_of<'a>(documents: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    documents.iter().filter(move |d| d["kind"] == kind)
}

/// The container `name` of a rendered Deployment.
pub fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Server-side applies every document as `admin`. CRDs (waiting until they are established)
/// and Namespaces go first, since the other documents may need them.
pub async fn apply_all(admin: &kube::Client, documents: &[Value]) {
    let goes_first =
        |d: &&Value| d["kind"] == "CustomResourceDefinition" || d["kind"] == "Namespace";
    for document in documents.iter().filter(goes_first) {
        apply(admin, document).await;
    }
    for document in documents.iter().filter(|d| !goes_first(d)) {
        apply(admin, document).await;
    }
}

async fn apply(admin: &kube::Client, document: &Value) {
    if document["kind"] == "CustomResourceDefinition" {
        let crd: CustomResourceDefinition =
            serde_json::from_value(document.clone()).expect("a CustomResourceDefinition");
        apply_crd(admin, &crd).await;
        return;
    }
    let object: DynamicObject = serde_json::from_value(document.clone()).expect("an object");
    let types = object.types.as_ref().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(types).expect("a group, version and kind");
    let (resource, capabilities) = discovery::pinned_kind(admin, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the apiserver does not serve {}: {e}", gvk.kind));
    let name = object.metadata.name.as_deref().expect("a name");
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            let namespace =
                object.metadata.namespace.as_deref().unwrap_or_else(|| {
                    panic!("{} {name} was rendered without a namespace", gvk.kind)
                });
            Api::namespaced_with(admin.clone(), namespace, &resource)
        }
        Scope::Cluster => Api::all_with(admin.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(document),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind));
}
