//! A Flux `GitRepository`'s artifact as a source: read `status.artifact`, download the
//! tarball, verify its sha256 digest, unpack it into a private temporary directory, and read
//! the selected files from there.

mod unpack;

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::files;
use super::select::Selection;
use super::{InvalidRevision, Revision, Snapshot};

pub use self::unpack::UnpackError;

/// Largest tarball downloaded by default; a config repository's artifact is far smaller.
pub const DEFAULT_MAX_DOWNLOAD_SIZE: u64 = 64 << 20;
/// Largest total size of the archive's entries by default: bounds a decompression bomb.
pub const DEFAULT_MAX_UNPACKED_SIZE: u64 = 256 << 20;
/// Longest a download may take by default, connection included.
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("GitRepository {repository} not found")]
    NotFound { repository: String },
    #[error("cannot read GitRepository {repository}")]
    Kube {
        repository: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("GitRepository {repository} has no artifact yet (status.artifact is empty)")]
    NoArtifact { repository: String },
    #[error("GitRepository {repository}: status.artifact.{field} {reason}")]
    BadArtifact {
        repository: String,
        field: &'static str,
        reason: &'static str,
    },
    #[error(
        "GitRepository {repository}: artifact digest algorithm {algorithm:?} is not supported (only sha256)"
    )]
    UnsupportedDigest {
        repository: String,
        algorithm: String,
    },
    #[error("GitRepository {repository}: invalid artifact revision")]
    BadRevision {
        repository: String,
        #[source]
        source: InvalidRevision,
    },
    #[error("cannot set up TLS for artifact downloads")]
    Tls(#[source] rustls::Error),
    #[error("cannot download artifact {url}")]
    Download {
        url: String,
        #[source]
        source: BoxError,
    },
    #[error("downloading artifact {url} failed: HTTP {status}")]
    DownloadStatus { url: String, status: u16 },
    #[error("downloading artifact {url} took longer than {after:?}")]
    DownloadTimeout { url: String, after: Duration },
    #[error("artifact {url} is larger than {limit} bytes")]
    DownloadTooLarge { url: String, limit: u64 },
    #[error("artifact {url} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("the unpack task stopped")]
    Task(#[source] tokio::task::JoinError),
}

/// What `status.artifact` of a `GitRepository` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub url: String,
    pub revision: Revision,
    /// Lowercase hex sha256 of the tarball.
    pub sha256: String,
}

/// Bounds on one artifact read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactLimits {
    pub max_download_size: u64,
    pub max_unpacked_size: u64,
    pub timeout: Duration,
}

impl Default for ArtifactLimits {
    fn default() -> Self {
        ArtifactLimits {
            max_download_size: DEFAULT_MAX_DOWNLOAD_SIZE,
            max_unpacked_size: DEFAULT_MAX_UNPACKED_SIZE,
            timeout: DEFAULT_DOWNLOAD_TIMEOUT,
        }
    }
}

/// The `GitRepository` resource (`source.toolkit.fluxcd.io/v1`).
#[must_use]
pub fn git_repository_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository");
    ApiResource::from_gvk_with_plural(&gvk, "gitrepositories")
}

/// A downloaded tarball and its sha256.
struct Download {
    bytes: Vec<u8>,
    sha256: Vec<u8>,
}

/// The artifact of one `GitRepository` in the management cluster.
#[derive(Debug, Clone)]
pub struct ArtifactSource {
    api: Api<DynamicObject>,
    /// `namespace/name`, for messages.
    repository: String,
    name: String,
    selection: Selection,
    limits: ArtifactLimits,
    http: HttpClient,
}

impl ArtifactSource {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        selection: Selection,
    ) -> Result<Self, ArtifactError> {
        Ok(ArtifactSource {
            api: Api::namespaced_with(client, namespace, &git_repository_resource()),
            repository: format!("{namespace}/{name}"),
            name: name.to_owned(),
            selection,
            limits: ArtifactLimits::default(),
            http: http_client()?,
        })
    }

    #[must_use]
    pub fn with_limits(mut self, limits: ArtifactLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads the current artifact: its revision and selected files.
    pub async fn read(&self) -> Result<Snapshot, ArtifactError> {
        let artifact = self.artifact().await?;
        self.fetch(&artifact).await
    }

    /// What the `GitRepository` says its artifact is, without downloading it: a caller that
    /// already holds this revision can stop here.
    pub async fn artifact(&self) -> Result<Artifact, ArtifactError> {
        let object = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| ArtifactError::Kube {
                repository: self.repository.clone(),
                source: Box::new(source),
            })?
            .ok_or_else(|| ArtifactError::NotFound {
                repository: self.repository.clone(),
            })?;
        parse_artifact(&self.repository, &object.data["status"]["artifact"])
    }

    /// Downloads, verifies and reads `artifact`. Nothing is unpacked unless the tarball
    /// matches its digest.
    pub async fn fetch(&self, artifact: &Artifact) -> Result<Snapshot, ArtifactError> {
        let url = redact_url(&artifact.url);
        let tarball = tokio::time::timeout(self.limits.timeout, self.download(&artifact.url, &url))
            .await
            .map_err(|_| ArtifactError::DownloadTimeout {
                url: url.clone(),
                after: self.limits.timeout,
            })??;
        let actual = files::hex(&tarball.sha256);
        if actual != artifact.sha256 {
            return Err(ArtifactError::DigestMismatch {
                url,
                expected: format!("sha256:{}", artifact.sha256),
                actual: format!("sha256:{actual}"),
            });
        }
        let selection = self.selection.clone();
        let max_unpacked = self.limits.max_unpacked_size;
        // Unpacking and reading block on the file system.
        let files = tokio::task::spawn_blocking(move || {
            unpack::unpack_and_read(&tarball.bytes, &selection, max_unpacked)
        })
        .await
        .map_err(ArtifactError::Task)??;
        Ok(Snapshot {
            revision: artifact.revision.clone(),
            commit: None,
            files,
        })
    }

    async fn download(&self, url: &str, shown: &str) -> Result<Download, ArtifactError> {
        let failed = |source: BoxError| ArtifactError::Download {
            url: shown.to_owned(),
            source,
        };
        let request = http::Request::get(url)
            .body(Empty::new())
            .map_err(|e| failed(e.into()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| failed(e.into()))?;
        if !response.status().is_success() {
            return Err(ArtifactError::DownloadStatus {
                url: shown.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let limit = self.limits.max_download_size;
        let too_large = || ArtifactError::DownloadTooLarge {
            url: shown.to_owned(),
            limit,
        };
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(too_large());
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        // Hashed as it arrives, so that no large hash runs in one go on the async runtime.
        let mut hasher = Sha256::new();
        // Counted as it arrives: a missing or false Content-Length must not lift the limit.
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| failed(e.into()))?;
            if let Ok(data) = frame.into_data() {
                if (bytes.len() + data.len()) as u64 > limit {
                    return Err(too_large());
                }
                hasher.update(&data);
                bytes.extend_from_slice(&data);
            }
        }
        Ok(Download {
            bytes,
            sha256: hasher.finalize().to_vec(),
        })
    }
}

fn http_client() -> Result<HttpClient, ArtifactError> {
    // Flux serves artifacts over plain HTTP inside the cluster; for an https URL the system's
    // roots are trusted. A system without a CA store still downloads over HTTP.
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ArtifactError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Reads `status.artifact` (`null` when Flux has not produced one yet).
fn parse_artifact(repository: &str, artifact: &Value) -> Result<Artifact, ArtifactError> {
    if artifact.is_null() {
        return Err(ArtifactError::NoArtifact {
            repository: repository.to_owned(),
        });
    }
    let field = |field: &'static str| {
        artifact[field]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ArtifactError::BadArtifact {
                repository: repository.to_owned(),
                field,
                reason: "is missing",
            })
    };
    let url = field("url")?;
    let revision = field("revision")?
        .parse()
        .map_err(|source| ArtifactError::BadRevision {
            repository: repository.to_owned(),
            source,
        })?;
    let sha256 = parse_digest(repository, field("digest")?)?;
    Ok(Artifact {
        url: url.to_owned(),
        revision,
        sha256,
    })
}

/// `sha256:<64 hex>` → the lowercase hex.
fn parse_digest(repository: &str, digest: &str) -> Result<String, ArtifactError> {
    let bad = |reason| ArtifactError::BadArtifact {
        repository: repository.to_owned(),
        field: "digest",
        reason,
    };
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| bad("is not `<algorithm>:<hex>`"))?;
    if algorithm != "sha256" {
        return Err(ArtifactError::UnsupportedDigest {
            repository: repository.to_owned(),
            algorithm: algorithm.to_owned(),
        });
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("is not 64 hex digits"));
    }
    Ok(hex.to_ascii_lowercase())
}

/// The URL as it may be shown: scheme, host, port and path, without credentials or query
/// (either may carry a token).
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return "<invalid URL>".to_owned();
    };
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            let port = authority
                .port()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            format!("{scheme}://{}{port}{}", authority.host(), uri.path())
        }
        _ => "<invalid URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn digest_of(bytes: &[u8]) -> String {
        files::hex(&Sha256::digest(bytes))
    }

    #[test]
    fn parses_a_flux_artifact() {
        let sha = digest_of(b"x");
        let artifact = parse_artifact(
            "flux-system/config",
            &json!({"url": "http://source-controller/x.tar.gz", "revision": format!("main@sha1:{COMMIT}"),
                    "digest": format!("sha256:{}", sha.to_uppercase()), "path": "x.tar.gz"}),
        )
        .unwrap();
        assert_eq!(artifact.revision.to_string(), format!("main@sha1:{COMMIT}"));
        assert_eq!(artifact.sha256, sha);
    }

    #[test]
    fn refuses_incomplete_or_unsupported_artifacts() {
        let revision = format!("main@sha1:{COMMIT}");
        let digest = format!("sha256:{}", digest_of(b"x"));
        let cases = [
            (Value::Null, "NoArtifact"),
            (
                json!({"revision": revision, "digest": digest}),
                "BadArtifact",
            ),
            (json!({"url": "u", "digest": digest}), "BadArtifact"),
            (
                json!({"url": "u", "revision": "main", "digest": digest}),
                "BadRevision",
            ),
            (json!({"url": "u", "revision": revision}), "BadArtifact"),
            (
                json!({"url": "u", "revision": revision, "digest": "sha256:abc"}),
                "BadArtifact",
            ),
            (
                json!({"url": "u", "revision": revision, "digest": "abc"}),
                "BadArtifact",
            ),
            (
                json!({"url": "u", "revision": revision, "digest": "sha512:ab"}),
                "UnsupportedDigest",
            ),
        ];
        for (status, expected) in cases {
            let error = parse_artifact("ns/repo", &status).unwrap_err();
            assert!(
                format!("{error:?}").starts_with(expected),
                "{status}: {error:?}"
            );
            assert!(error.to_string().contains("ns/repo"), "{error}");
        }
    }

    #[test]
    fn shown_urls_carry_no_credentials_or_query() {
        let cases = [
            (
                "http://src.flux-system.svc/gitrepository/a/b/c.tar.gz",
                "http://src.flux-system.svc/gitrepository/a/b/c.tar.gz",
            ),
            (
                "https://user:hunter2@example.com:8443/a.tar.gz?token=abc#x",
                "https://example.com:8443/a.tar.gz",
            ),
            ("not a url", "<invalid URL>"),
            ("/relative/path", "<invalid URL>"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown);
        }
    }
}
