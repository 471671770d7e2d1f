//! A Flux `GitRepository`'s artifact is a source: the agent reads `status.artifact` from the
//! management cluster, downloads the tarball over HTTP, checks its sha256 digest before
//! unpacking, refuses entries that climb out, and reads the selected files.
//!
//! The test environment runs no source-controller: each test plays its part, writing
//! `status.artifact` and serving the tarball from its own loopback HTTP server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use secretsync::source::artifact::{UnpackError, git_repository_resource};
use secretsync::source::{ArtifactError, ArtifactSource, FileContent, Selection};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::testenv::fleet::{apply_crd, ensure_namespace, load_documents};
use crate::testenv::{TestEnv, unique_namespace};

const FIELD_MANAGER: &str = "secretsync-test";
const COMMIT: &str = "5a4f1e0c9b8d7a6f5e4d3c2b1a09f8e7d6c5b4a3";
const REPOSITORY: &str = "config";

/// Tarballs by file name.
type Tarballs = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Serves tarballs at `/<name>` on 127.0.0.1.
#[derive(Clone, Default)]
struct ArtifactServer {
    files: Tarballs,
    port: u16,
}

impl ArtifactServer {
    async fn start() -> ArtifactServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind artifact server");
        let server = ArtifactServer {
            port: listener.local_addr().expect("addr").port(),
            ..ArtifactServer::default()
        };
        let app = axum::Router::new()
            .route("/{name}", axum::routing::get(serve))
            .with_state(server.files.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    fn publish(&self, name: &str, tarball: Vec<u8>) -> String {
        self.files
            .lock()
            .expect("lock")
            .insert(name.to_owned(), tarball);
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

async fn serve(
    State(files): State<Tarballs>,
    Path(name): Path<String>,
) -> Result<Vec<u8>, StatusCode> {
    files
        .lock()
        .expect("lock")
        .get(&name)
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)
}

/// A `.tar.gz` like source-controller's: `(path, content)` entries written raw, so that a
/// test can also write the paths a hostile archive would hold.
fn tarball(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().expect("gnu header").name[..path.len()]
            .copy_from_slice(path.as_bytes());
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *content).expect("append entry");
    }
    builder
        .into_inner()
        .expect("finish tar")
        .finish()
        .expect("finish gzip")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, byte| {
            write!(hex, "{byte:02x}").expect("write to a String");
            hex
        })
}

/// Installs the GitRepository CRD fixture (idempotent) and waits until it is served.
async fn install_git_repository_crd(client: &kube::Client) {
    for crd in load_documents::<CustomResourceDefinition>(
        "fixtures/testenv/flux/gitrepositories.source.toolkit.fluxcd.io.yaml",
    ) {
        apply_crd(client, &crd).await;
    }
}

/// A namespace holding a `GitRepository` named `config`, with `status.artifact` when given.
async fn git_repository(artifact: Option<serde_json::Value>) -> (kube::Client, String) {
    let client = TestEnv::shared().mgmt.client().await;
    install_git_repository_crd(&client).await;
    let namespace = unique_namespace("source-artifact");
    ensure_namespace(&client, &namespace).await;
    let repositories: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &git_repository_resource());
    let object = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": REPOSITORY},
        "spec": {"url": "ssh://git@127.0.0.1/config.git", "interval": "1m", "ref": {"branch": "main"}},
    });
    repositories
        .patch(
            REPOSITORY,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&object),
        )
        .await
        .expect("create GitRepository");
    if let Some(artifact) = artifact {
        repositories
            .patch_status(
                REPOSITORY,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"artifact": artifact}})),
            )
            .await
            .expect("set status.artifact");
    }
    (client, namespace)
}

/// `status.artifact` as source-controller writes it.
fn artifact_status(url: &str, tarball: &[u8]) -> serde_json::Value {
    json!({
        "path": "gitrepository/ns/config/artifact.tar.gz",
        "url": url,
        "revision": format!("main@sha1:{COMMIT}"),
        "digest": format!("sha256:{}", sha256_hex(tarball)),
        "lastUpdateTime": "2025-01-01T00:00:00Z",
        "size": tarball.len(),
    })
}

fn source(client: kube::Client, namespace: &str) -> ArtifactSource {
    let selection = Selection::new(&["clusters"]).expect("selection");
    ArtifactSource::new(client, namespace, REPOSITORY, selection).expect("artifact source")
}

#[tokio::test]
async fn reads_the_files_and_revision_of_the_artifact() {
    let server = ArtifactServer::start().await;
    let archive = tarball(&[
        ("./clusters/registry.yaml", b"kind: SecretSync\n"),
        ("./clusters/prod/token.yml", b"kind: SecretSync # prod\n"),
        ("./clusters/README.md", b"# not a manifest\n"),
        ("./apps/app.yaml", b"kind: Deployment\n"),
    ]);
    let url = server.publish("artifact.tar.gz", archive.clone());
    let (client, namespace) = git_repository(Some(artifact_status(&url, &archive))).await;

    let snapshot = source(client, &namespace)
        .read()
        .await
        .expect("read artifact");

    assert_eq!(snapshot.revision.to_string(), format!("main@sha1:{COMMIT}"));
    assert_eq!(snapshot.revision.commit(), Some(COMMIT));
    assert!(snapshot.commit.is_none());
    let files: Vec<_> = snapshot
        .files
        .iter()
        .map(|f| {
            let FileContent::Bytes(bytes) = &f.content else {
                panic!("{} not read", f.path)
            };
            (f.path.as_str(), String::from_utf8_lossy(bytes).into_owned())
        })
        .collect();
    assert_eq!(
        files,
        [
            (
                "clusters/prod/token.yml",
                "kind: SecretSync # prod\n".to_owned()
            ),
            ("clusters/registry.yaml", "kind: SecretSync\n".to_owned()),
        ]
    );
    let blob = git2::Oid::hash_object(git2::ObjectType::Blob, b"kind: SecretSync\n")
        .expect("hash")
        .to_string();
    assert_eq!(snapshot.files[1].id, blob);
}

#[tokio::test]
async fn a_tarball_that_does_not_match_its_digest_is_refused() {
    let server = ArtifactServer::start().await;
    let published = tarball(&[("./clusters/a.yaml", b"kind: SecretSync\n")]);
    let tampered = tarball(&[("./clusters/a.yaml", b"kind: SecretSync # tampered\n")]);
    let url = server.publish("artifact.tar.gz", tampered.clone());
    let (client, namespace) = git_repository(Some(artifact_status(&url, &published))).await;

    match source(client, &namespace).read().await {
        Err(ArtifactError::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, format!("sha256:{}", sha256_hex(&published)));
            assert_eq!(actual, format!("sha256:{}", sha256_hex(&tampered)));
        }
        other => panic!("a tampered artifact was not refused: {other:?}"),
    }
}

#[tokio::test]
async fn a_repository_without_artifact_is_a_clear_error() {
    let (client, namespace) = git_repository(None).await;
    let error = source(client.clone(), &namespace)
        .read()
        .await
        .expect_err("no artifact yet");
    assert!(
        matches!(error, ArtifactError::NoArtifact { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("{namespace}/{REPOSITORY}")),
        "{error}"
    );

    let missing = ArtifactSource::new(client, &namespace, "absent", Selection::default())
        .expect("artifact source");
    let error = missing.read().await.expect_err("no such GitRepository");
    assert!(matches!(error, ArtifactError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn an_entry_that_climbs_out_refuses_the_archive() {
    let server = ArtifactServer::start().await;
    // Where `../` from the unpack directory (a fresh dir in the temp dir) would land.
    let evil = format!("evil-{}.yaml", unique_namespace("artifact"));
    let landing = std::env::temp_dir().join(&evil);
    let archive = tarball(&[
        ("./clusters/a.yaml", b"kind: SecretSync\n"),
        (&format!("../{evil}"), b"kind: SecretSync # escaped\n"),
    ]);
    let url = server.publish("artifact.tar.gz", archive.clone());
    let (client, namespace) = git_repository(Some(artifact_status(&url, &archive))).await;

    let error = source(client, &namespace)
        .read()
        .await
        .expect_err("hostile archive");
    assert!(
        matches!(&error, ArtifactError::Unpack(UnpackError::BadEntry { entry, .. }) if entry.contains("evil")),
        "{error:?}"
    );
    assert!(!landing.exists(), "{} was written", landing.display());
}

#[tokio::test]
async fn download_errors_name_the_url_without_its_query() {
    let server = ArtifactServer::start().await;
    let archive = tarball(&[("./clusters/a.yaml", b"kind: SecretSync\n")]);
    let url = format!(
        "http://127.0.0.1:{}/missing.tar.gz?token=do-not-print",
        server.port
    );
    let (client, namespace) = git_repository(Some(artifact_status(&url, &archive))).await;

    let error = source(client, &namespace)
        .read()
        .await
        .expect_err("missing tarball");
    assert!(
        matches!(error, ArtifactError::DownloadStatus { status: 404, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("/missing.tar.gz"), "{message}");
    assert!(!message.contains("do-not-print"), "{message}");
}
