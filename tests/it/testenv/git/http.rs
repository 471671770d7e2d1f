//! Smart HTTP git server: `git http-backend` run as CGI behind a small axum server, once on
//! plain HTTP and once on HTTPS with a certificate from its own test CA. Every request must
//! carry basic auth (`HTTP_USER`/`HTTP_PASSWORD`) or a bearer token (`HTTP_TOKEN`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls::{self, pki_types::pem::PemObject};

use crate::testenv::pki::Pki;

pub const HTTP_USER: &str = "git";
pub const HTTP_PASSWORD: &str = "test-password";
pub const HTTP_TOKEN: &str = "test-bearer-token";

/// Largest request body accepted (a push of the test repositories is far smaller).
const MAX_BODY: usize = 64 << 20;

pub struct HttpGitServer {
    pub plain_port: u16,
    pub tls_port: u16,
    /// The CA that signed the HTTPS server's certificate (PEM).
    pub ca_pem: String,
    /// The HTTPS server's certificate (DER), for clients that pin it.
    pub server_cert_der: Vec<u8>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl HttpGitServer {
    pub fn start(repos: &Path) -> HttpGitServer {
        let pki = Pki::new("secretsync-test-git-ca");
        let serving = pki.loopback_server("git-http");
        let cert = rustls::pki_types::CertificateDer::from_pem_slice(serving.cert_pem.as_bytes())
            .expect("parse server certificate");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())
            .expect("parse server key");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("TLS server config");

        let plain = TcpListener::bind("127.0.0.1:0").expect("bind HTTP port");
        let secure = TcpListener::bind("127.0.0.1:0").expect("bind HTTPS port");
        for listener in [&plain, &secure] {
            listener
                .set_nonblocking(true)
                .expect("non-blocking listener");
        }
        let server = HttpGitServer {
            plain_port: plain.local_addr().expect("addr").port(),
            tls_port: secure.local_addr().expect("addr").port(),
            ca_pem: pki.ca_pem.clone(),
            server_cert_der: cert.to_vec(),
            runtime: Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("git-http")
                    .enable_all()
                    .build()
                    .expect("tokio runtime"),
            ),
        };

        let app = axum::Router::new()
            .fallback(serve_git)
            .with_state(Arc::new(repos.to_path_buf()));
        let runtime = server.runtime.as_ref().expect("runtime");
        let plain_app = app.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(plain).expect("tokio listener");
            axum::serve(listener, plain_app).await.expect("serve HTTP");
        });
        runtime.spawn(serve_tls(
            secure,
            tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            app,
        ));
        server
    }
}

impl Drop for HttpGitServer {
    fn drop(&mut self) {
        // `shutdown_background` may be called from inside another runtime, a plain drop not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn serve_tls(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, app: axum::Router) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            // A client that rejects our certificate ends the handshake; nothing to serve.
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        });
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return token == HTTP_TOKEN;
    }
    value
        .strip_prefix("Basic ")
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .is_some_and(|decoded| decoded == format!("{HTTP_USER}:{HTTP_PASSWORD}").as_bytes())
}

/// Runs one request through `git http-backend` (CGI/1.1) and turns its output into a response.
async fn serve_git(State(repos): State<Arc<PathBuf>>, request: Request) -> Response {
    if !authorized(request.headers()) {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"secretsync-test\""),
        );
        return response;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let header = |name: &header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", repos.as_os_str())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header(&header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header(&header::CONTENT_ENCODING))
        .env(
            "GIT_PROTOCOL",
            header(&header::HeaderName::from_static("git-protocol")),
        )
        .env("REMOTE_USER", HTTP_USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let Ok(mut child) = command.spawn() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let Ok(output) = child.wait_with_output().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let _ = writer.await;
    cgi_response(&output.stdout)
}

/// Splits CGI output into headers (with `Status:` as the status line) and body.
fn cgi_response(output: &[u8]) -> Response {
    let (head, body) = match find(output, b"\r\n\r\n") {
        Some(at) => (&output[..at], &output[at + 4..]),
        None => match find(output, b"\n\n") {
            Some(at) => (&output[..at], &output[at + 2..]),
            None => return StatusCode::BAD_GATEWAY.into_response(),
        },
    };
    let mut response = Response::new(Body::from(Bytes::copy_from_slice(body)));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok());
            *response.status_mut() = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(name), Ok(value)) = (
            header::HeaderName::try_from(name),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
