//! `secretsync status` and `secretsync audit`, the real binary, after `run --once` of the
//! documented scenario in a namespace of its own with both leaves labelled `environment:
//! dev`. Two commits: the first adds `my-dev-secret-syncer` (no object in the management
//! cluster: its status goes to a ConfigMap), the second adds `object-syncer`, which also
//! exists as a SecretSync object (its status goes to the object). The first SecretSync's
//! copies keep the first commit as their revision: audit must find it in the history.
//! And, in an environment of its own, `status` where the SecretSync CRD is not installed.

use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams};
use secretsync::manifest::SecretSyncKey;
use secretsync::status::writer::{configmap_name, secret_sync_resource};
use secretsync::status::{ClusterResult, StatusStore, StatusTarget, SyncStatus};
use secretsync::sync::apply::Outcome;
use serde_json::{Value, json};

use crate::testenv::fleet::ensure_namespace;
use crate::testenv::git::{GitServers, Transport};
use crate::testenv::scenario::{self, SECRET_VALUE};
use crate::testenv::{LEAF_CLUSTERS, TestEnv, unique_namespace};

const FIRST_SUBJECT: &str = "sync my-dev-secret to dev clusters";
const SECOND_SUBJECT: &str = "add object-syncer";

/// The scenario after both reconciles.
struct Synced {
    env: &'static TestEnv,
    namespace: String,
    url: String,
    first_commit: String,
    second_commit: String,
    work: tempfile::TempDir,
}

/// A SecretSync of the scenario: its name and where its copies go on the leaves.
struct Sync {
    name: &'static str,
    target: String,
}

impl Synced {
    async fn arrange() -> Synced {
        let env = TestEnv::shared();
        let namespace = unique_namespace("cli-status");
        scenario::arrange_clusters(env, &namespace, &LEAF_CLUSTERS).await;
        let servers = GitServers::shared();
        let repo = servers.create_repo("cli-status");
        let url = servers.url(&repo, Transport::File);
        let work = tempfile::tempdir().expect("tempdir");
        let mut synced = Synced {
            env,
            namespace,
            url,
            first_commit: String::new(),
            second_commit: String::new(),
            work,
        };
        let [first, second] = synced.syncs();
        let first_manifest = scenario::manifest_in(first.name, &synced.namespace, &first.target);
        synced.first_commit = repo
            .write("clusters/my-dev-secret-syncer.yaml", first_manifest)
            .commit(FIRST_SUBJECT);
        synced.run_once();
        let second_manifest = scenario::manifest_in(second.name, &synced.namespace, &second.target);
        synced.create_object(&second_manifest).await;
        synced.second_commit = repo
            .write("clusters/object-syncer.yaml", second_manifest)
            .commit(SECOND_SUBJECT);
        synced.run_once();
        synced
    }

    fn syncs(&self) -> [Sync; 2] {
        [
            Sync {
                name: "my-dev-secret-syncer",
                target: format!("{}-a", self.namespace),
            },
            Sync {
                name: "object-syncer",
                target: format!("{}-b", self.namespace),
            },
        ]
    }

    /// The SecretSync as an object in the management cluster, so that status goes there.
    async fn create_object(&self, manifest: &str) {
        let object: DynamicObject = serde_yaml::from_str(manifest).expect("SecretSync YAML");
        let name = object.metadata.name.clone().expect("name");
        Api::<DynamicObject>::namespaced_with(
            self.env.mgmt.client().await,
            &self.namespace,
            &secret_sync_resource(),
        )
        .patch(&name, &PatchParams::apply("test"), &Patch::Apply(&object))
        .await
        .expect("create the SecretSync object");
    }

    fn run_once(&self) {
        let data = self.data_dir();
        let output = self.secretsync(&[
            "run",
            "--once",
            "--namespaces",
            &self.namespace,
            "--source",
            &self.url,
            "--data-dir",
            &data,
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    }

    fn data_dir(&self) -> String {
        self.work
            .path()
            .join("data")
            .to_str()
            .expect("utf-8")
            .to_owned()
    }

    fn secretsync(&self, args: &[&str]) -> Output {
        let output = scenario::secretsync(self.env, args, self.work.path());
        assert_no_secret_value(&output);
        output
    }

    /// The resourceVersion and revision of a copy on a leaf.
    async fn leaf_copy(&self, leaf: &str, target: &str) -> (String, String) {
        let secrets: Api<Secret> = Api::namespaced(self.env.leaf(leaf).client().await, target);
        let copy = secrets
            .get("my-dev-secret")
            .await
            .unwrap_or_else(|e| panic!("the copy in {target} on {leaf}: {e}"));
        let revision =
            copy.metadata.annotations.as_ref().expect("annotations")["secretsync.dev/revision"]
                .clone();
        (copy.metadata.resource_version.expect("rv"), revision)
    }

    /// The revision each SecretSync's copies carry: the commit that added it.
    fn revision_of(&self, sync: &Sync) -> String {
        let commit = if sync.name == "object-syncer" {
            &self.second_commit
        } else {
            &self.first_commit
        };
        format!("main@sha1:{commit}")
    }
}

fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_no_secret_value(output: &Output) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE);
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(SECRET_VALUE) && !text.contains(&encoded),
            "the secret value leaked: {text}"
        );
    }
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", shown(output)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_clusters_versions_and_revisions_from_configmap_and_object() {
    let synced = Synced::arrange().await;
    let ns = synced.namespace.as_str();

    let output = synced.secretsync(&["status", "-n", ns, "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    let items = json_of(&output)["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 2, "{items:?}");
    let text_output = synced.secretsync(&["status", "--namespace", ns]);
    assert_eq!(
        text_output.status.code(),
        Some(0),
        "{}",
        shown(&text_output)
    );
    let text = String::from_utf8_lossy(&text_output.stdout).into_owned();

    for (sync, stored_in) in synced.syncs().iter().zip(["ConfigMap", "SecretSync"]) {
        let item = items
            .iter()
            .find(|i| i["name"] == sync.name)
            .unwrap_or_else(|| panic!("no status for {}: {items:?}", sync.name));
        assert_eq!(item["storedIn"]["kind"], stored_in, "{item}");
        let heading = match stored_in {
            "ConfigMap" => format!(
                "SecretSync {ns}/{0} (status in ConfigMap secretsync.{0})",
                sync.name
            ),
            _ => format!("SecretSync {ns}/{0} (status in SecretSync {0})", sync.name),
        };
        assert!(text.contains(&heading), "{heading}\n{text}");
        let section = text
            .split("\n\n")
            .find(|s| s.starts_with(&heading))
            .expect("the SecretSync's section");
        let revision = synced.revision_of(sync);
        for leaf in LEAF_CLUSTERS {
            let (version, leaf_revision) = synced.leaf_copy(leaf, &sync.target).await;
            assert_eq!(leaf_revision, revision);
            let status = &item["status"];
            assert_eq!(status["versions"][leaf], json!(version), "{item}");
            assert_eq!(
                status["clusters"][leaf]["revision"],
                json!(revision),
                "{item}"
            );
            assert_eq!(status["clusters"][leaf]["result"], "Synced", "{item}");
            let short = &revision[..revision.len() - 28];
            let row = section
                .lines()
                .find(|line| line.starts_with(&format!("{leaf} ")))
                .unwrap_or_else(|| panic!("no row for {leaf}: {section}"));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(
                cells[..4],
                [leaf, version.as_str(), short, "Synced"],
                "{row}"
            );
        }
    }
    assert!(
        text.contains(&format!(
            "Last applied revision: main@sha1:{}",
            synced.second_commit
        )),
        "{text}"
    );

    let yaml = synced.secretsync(&["status", "-n", ns, "-o", "yaml"]);
    assert_eq!(yaml.status.code(), Some(0), "{}", shown(&yaml));
    let parsed: Value = serde_yaml::from_slice(&yaml.stdout).expect("YAML");
    assert_eq!(parsed["items"], json!(items));

    let empty = unique_namespace("cli-status-empty");
    let nothing = synced.secretsync(&["status", "-n", &empty]);
    assert_eq!(nothing.status.code(), Some(1), "{}", shown(&nothing));
    assert!(
        String::from_utf8_lossy(&nothing.stderr)
            .contains(&format!("no SecretSync status found in namespace {empty}")),
        "{}",
        shown(&nothing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_names_the_commit_of_a_leaf_secret_and_every_copy_of_a_revision() {
    let synced = Synced::arrange().await;
    let [first, second] = synced.syncs();
    explains_a_leaf_secret(&synced, &first).await;
    lists_the_copies_of_a_revision(&synced, &first, &second);
    answers_not_found(&synced, &first).await;
}

/// `audit --cluster --secret --source`: SHA, author, subject of the first commit (no longer
/// the branch head), the manifest path, the leaf version.
async fn explains_a_leaf_secret(synced: &Synced, sync: &Sync) {
    let cluster = format!("{}/leaf-cluster-1", synced.namespace);
    let secret = format!("{}/my-dev-secret", sync.target);
    let data = synced.data_dir();
    let args = [
        "audit",
        "--cluster",
        &cluster,
        "--secret",
        &secret,
        "--source",
        &synced.url,
        "--data-dir",
        &data,
    ];
    let output = synced.secretsync(&args);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    let (version, _) = synced.leaf_copy("leaf-cluster-1", &sync.target).await;
    for expected in [
        format!("Secret {secret} on GitopsCluster {cluster}"),
        format!("commit:           {}", synced.first_commit),
        "author:           secretsync test <test@secretsync.invalid>".to_owned(),
        format!("subject:          {FIRST_SUBJECT}"),
        "manifest:         clusters/my-dev-secret-syncer.yaml".to_owned(),
        format!("revision:         main@sha1:{}", synced.first_commit),
        format!("resourceVersion:  {version}"),
        format!("SecretSync:       {}/{}", synced.namespace, sync.name),
    ] {
        assert!(text.contains(&expected), "{expected}\n{text}");
    }

    let output = synced.secretsync(&[&args[..], &["-o", "json"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    let json = json_of(&output);
    assert_eq!(json["commit"]["id"], json!(synced.first_commit));
    assert_eq!(json["commit"]["subject"], FIRST_SUBJECT);
    assert_eq!(json["manifest"], "clusters/my-dev-secret-syncer.yaml");
    assert_eq!(json["resourceVersion"], json!(version));
}

/// `audit --revision`: both leaves' copies of the SecretSync that commit produced, whether
/// asked by prefix or by Flux revision, and none of the other SecretSync's.
fn lists_the_copies_of_a_revision(synced: &Synced, first: &Sync, second: &Sync) {
    let ns = synced.namespace.as_str();
    let prefix = &synced.first_commit[..7];
    let output = synced.secretsync(&["audit", "--revision", prefix, "-n", ns]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    for leaf in LEAF_CLUSTERS {
        let row = format!(
            "{ns}/{leaf}   {}/my-dev-secret   {ns}/{}",
            first.target, first.name
        );
        assert!(text.contains(&row), "{row}\n{text}");
    }
    assert!(!text.contains(&second.target), "{text}");
    assert!(
        text.contains(&format!("2 leaf Secret(s) from revision {prefix}")),
        "{text}"
    );

    let revision = format!("main@sha1:{}", synced.second_commit);
    let data = synced.data_dir();
    let output = synced.secretsync(&[
        "audit",
        "--revision",
        &revision,
        "-n",
        ns,
        "--source",
        &synced.url,
        "--data-dir",
        &data,
        "-o",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    let json = json_of(&output);
    assert_eq!(json["commit"]["subject"], SECOND_SUBJECT);
    let mut found: Vec<(String, String)> = json["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .map(|c| {
            assert_eq!(c["revision"], json!(revision), "{c}");
            assert_eq!(c["manifest"], "clusters/object-syncer.yaml", "{c}");
            (
                c["cluster"].as_str().expect("cluster").to_owned(),
                c["secret"].as_str().expect("secret").to_owned(),
            )
        })
        .collect();
    found.sort();
    let secret = format!("{}/my-dev-secret", second.target);
    let expected: Vec<(String, String)> = LEAF_CLUSTERS
        .iter()
        .map(|leaf| (format!("{ns}/{leaf}"), secret.clone()))
        .collect();
    assert_eq!(found, expected);
}

/// Unknown cluster, unknown Secret, a Secret that is not ours, an unknown revision: exit 1
/// with a message that says which.
async fn answers_not_found(synced: &Synced, sync: &Sync) {
    let ns = synced.namespace.as_str();
    let cluster = format!("{ns}/leaf-cluster-1");
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some("not-ours".to_owned()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    Api::<Secret>::namespaced(
        synced.env.leaf("leaf-cluster-1").client().await,
        &sync.target,
    )
    .patch(
        "not-ours",
        &PatchParams::apply("test"),
        &Patch::Apply(&foreign),
    )
    .await
    .expect("a Secret secretsync did not write");
    let missing = format!("{}/no-such-secret", sync.target);
    let not_ours = format!("{}/not-ours", sync.target);
    let unknown_cluster = format!("{ns}/leaf-cluster-9");
    let cases: [(Vec<&str>, String); 4] = [
        (
            vec!["--cluster", &cluster, "--secret", &missing],
            format!("Secret {missing} not found on the leaf cluster of GitopsCluster {cluster}"),
        ),
        (
            vec!["--cluster", &cluster, "--secret", &not_ours],
            format!(
                "Secret {not_ours} on the leaf cluster of GitopsCluster {cluster} was not written by secretsync"
            ),
        ),
        (
            vec!["--cluster", &unknown_cluster, "--secret", &missing],
            format!("GitopsCluster {unknown_cluster} not found"),
        ),
        (
            vec!["--revision", "0000000deadbeef", "-n", ns],
            "no leaf Secret written by secretsync carries revision 0000000deadbeef".to_owned(),
        ),
    ];
    for (args, message) in cases {
        let output = synced.secretsync(&[&["audit"], &args[..]].concat());
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            shown(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(&message),
            "{message}\n{}",
            shown(&output)
        );
    }
}

/// Without the SecretSync CRD there are no objects to list: `status` shows what the
/// ConfigMaps hold (written here by the agent's own status writer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_the_secretsync_crd_reads_the_configmaps() {
    let env = TestEnv::start();
    let client = env.mgmt.client().await;
    remove_secretsync_crd(&client).await;
    let namespace = unique_namespace("cli-status-no-crd");
    ensure_namespace(&client, &namespace).await;
    let key = SecretSyncKey {
        namespace: namespace.clone(),
        name: "my-dev-secret-syncer".to_owned(),
    };
    let revision = format!("main@sha1:{}", "ab".repeat(20));
    let applied = ClusterResult {
        cluster: "leaf-cluster-1".to_owned(),
        outcome: Outcome::Applied {
            resource_version: "211496".to_owned(),
            revision: revision.clone(),
        },
        source_version: Some("7".to_owned()),
    };
    let status = SyncStatus::next(
        &SyncStatus::default(),
        &revision,
        &[applied],
        "2024-05-01T12:00:00Z",
    );
    let store = StatusStore::new(client);
    let (target, _) = store.read(&key).await.expect("read status");
    assert_eq!(target, StatusTarget::ConfigMap(configmap_name(&key)));
    store
        .write(&key, &target, &status)
        .await
        .expect("write status");

    let work = tempfile::tempdir().expect("tempdir");
    let output = scenario::secretsync(&env, &["status", "-o", "json"], work.path());
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    let json = json_of(&output);
    assert_eq!(json["items"].as_array().map(Vec::len), Some(1), "{json}");
    let item = &json["items"][0];
    assert_eq!(
        (&item["namespace"], &item["storedIn"]["kind"]),
        (&json!(namespace), &json!("ConfigMap"))
    );
    assert_eq!(item["status"]["versions"]["leaf-cluster-1"], "211496");
    let text = scenario::secretsync(&env, &["status"], work.path());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("leaf-cluster-1   211496    main@sha1:abababababab   Synced")),
        "{text}"
    );
}

/// Deletes the SecretSync CRD and waits until the apiserver no longer serves it.
async fn remove_secretsync_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "secretsyncs.capi.weave.works";
    crds.delete(name, &DeleteParams::default())
        .await
        .expect("delete the SecretSync CRD");
    let objects: Api<DynamicObject> = Api::all_with(client.clone(), &secret_sync_resource());
    for _ in 0..100 {
        let gone = crds.get_opt(name).await.expect("read CRD").is_none();
        let unserved = matches!(
            objects.list(&ListParams::default()).await,
            Err(kube::Error::Api(status)) if status.code == 404
        );
        if gone && unserved {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the SecretSync CRD was still served 20s after its deletion");
}
