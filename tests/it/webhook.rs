//! The webhook receiver and the health/metrics endpoints, served for real on loopback ports
//! and reached over HTTP: a verified push queues one fetch on the agent's trigger queue,
//! anything unverified is refused and queues nothing, and the operator's endpoints say
//! whether the agent is ready and what it did, without ever showing the webhook secret.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::SecretString;
use secretsync::telemetry::health::{self, Health};
use secretsync::telemetry::metrics::Metrics;
use secretsync::trigger::webhook::verify::sign;
use secretsync::trigger::webhook::{self, MAX_BODY_BYTES, WebhookConfig};
use secretsync::trigger::{Pending, Triggers};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SECRET: &str = "webhook-secret-d41d8cd98f00b204";
const MAIN_PUSH: &str =
    r#"{"ref":"refs/heads/main","after":"5a4f1e0c9b8d7a6f5e4d3c2b1a09f8e7d6c5b4a3"}"#;
const FEATURE_PUSH: &str = r#"{"ref":"refs/heads/feature","after":"0123"}"#;

/// The webhook router and the health/metrics router, each on its own 127.0.0.1 port, as
/// the agent runs them. Dropping it stops both servers.
struct Agent {
    hook: SocketAddr,
    ops: SocketAddr,
    triggers: Triggers,
    health: Health,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: Vec<oneshot::Sender<()>>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

/// One HTTP request to a loopback server: status, headers and the body as text.
pub async fn request(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    let response = client.request(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (
        status,
        headers,
        String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    )
}

/// A plain HTTP client for loopback servers.
#[must_use]
pub fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

impl Agent {
    async fn start() -> Agent {
        let triggers = Triggers::new();
        let health = Health::new();
        let metrics = Metrics::new();
        let config = WebhookConfig::new(SecretString::from(SECRET))
            .expect("config")
            .with_branch("main");
        let mut agent = Agent {
            hook: SocketAddr::from(([127, 0, 0, 1], 0)),
            ops: SocketAddr::from(([127, 0, 0, 1], 0)),
            triggers: triggers.clone(),
            health: health.clone(),
            client: http_client(),
            stop: Vec::new(),
            servers: Vec::new(),
        };
        agent.hook = agent
            .serve(webhook::router(config, triggers, Some(metrics.clone())))
            .await;
        agent.ops = agent.serve(health::router(health, metrics)).await;
        agent
    }

    async fn serve(&mut self, router: axum::Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        };
        self.servers
            .push(tokio::spawn(health::serve(listener, router, shutdown)));
        self.stop.push(stop);
        addr
    }

    async fn send(
        &self,
        method: Method,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, String) {
        request(&self.client, method, addr, path, headers, body).await
    }

    /// POSTs `body` to a webhook route; returns status and body.
    async fn hook(&self, path: &str, headers: &[(&str, &str)], body: &str) -> (StatusCode, String) {
        let (status, _, text) = self
            .send(
                Method::POST,
                self.hook,
                path,
                headers,
                body.as_bytes().to_vec(),
            )
            .await;
        (status, text)
    }

    /// GETs an operator endpoint.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        self.send(Method::GET, self.ops, path, headers, Vec::new())
            .await
    }

    /// What the trigger queue holds now (taking it).
    fn queued(&self) -> Pending {
        self.triggers.take()
    }
}

fn signed(body: &str) -> String {
    sign(SECRET.as_bytes(), body.as_bytes())
}

fn one_fetch() -> Pending {
    Pending {
        fetch: true,
        ..Pending::default()
    }
}

#[tokio::test]
async fn a_signed_github_push_queues_a_fetch() {
    let agent = Agent::start().await;
    let signature = signed(MAIN_PUSH);
    let (status, body) = agent
        .hook(
            "/hook/github",
            &[
                ("x-github-event", "push"),
                ("x-hub-signature-256", &signature),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("content-type", "application/json"),
            ],
            MAIN_PUSH,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(agent.queued(), one_fetch());
}

#[tokio::test]
async fn github_pings_other_events_and_other_branches_queue_nothing() {
    let agent = Agent::start().await;
    let ping = r#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let cases = [
        ("ping", ping, StatusCode::OK),
        ("issues", r#"{"action":"opened"}"#, StatusCode::NO_CONTENT),
        ("push", FEATURE_PUSH, StatusCode::NO_CONTENT),
    ];
    for (event, payload, expected) in cases {
        let signature = signed(payload);
        let (status, _) = agent
            .hook(
                "/hook/github",
                &[
                    ("x-github-event", event),
                    ("x-hub-signature-256", &signature),
                ],
                payload,
            )
            .await;
        assert_eq!(status, expected, "{event}");
        assert!(agent.queued().is_empty(), "{event} queued nothing");
    }
}

#[tokio::test]
async fn a_bad_or_missing_signature_gets_401_and_queues_nothing() {
    let agent = Agent::start().await;
    let wrong_secret = sign(b"not the secret", MAIN_PUSH.as_bytes());
    let other_body = signed(FEATURE_PUSH);
    let signatures = [
        None,
        Some("sha256=00"),
        Some(wrong_secret.as_str()),
        Some(other_body.as_str()),
    ];
    for (path, header) in [
        ("/hook/github", "x-hub-signature-256"),
        ("/hook/generic", "x-signature-256"),
    ] {
        for signature in signatures {
            let mut headers = vec![("x-github-event", "push")];
            headers.extend(signature.map(|value| (header, value)));
            let (status, body) = agent.hook(path, &headers, MAIN_PUSH).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {signature:?}");
            assert!(!body.contains(SECRET), "{path}: {body}");
            if let Some(signature) = signature {
                let digits = signature.trim_start_matches("sha256=");
                assert!(
                    !body.contains(digits),
                    "{path} echoed the signature: {body}"
                );
            }
            assert!(
                agent.queued().is_empty(),
                "{path} {signature:?} queued nothing"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_twenty_deliveries_is_one_fetch() {
    let agent = Agent::start().await;
    let signature = signed(MAIN_PUSH);
    let headers = [
        ("x-github-event", "push"),
        ("x-hub-signature-256", signature.as_str()),
    ];
    let deliveries = (0..20).map(|_| agent.hook("/hook/github", &headers, MAIN_PUSH));
    for (status, body) in futures::future::join_all(deliveries).await {
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert_eq!(agent.queued(), one_fetch());
    assert!(agent.queued().is_empty(), "the burst was one entry");
}

#[tokio::test]
async fn webhook_routes_take_only_posts() {
    let agent = Agent::start().await;
    let (status, _, _) = agent
        .send(Method::GET, agent.hook, "/hook/github", &[], Vec::new())
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(agent.queued().is_empty());
}

#[tokio::test]
async fn an_oversize_body_gets_413_and_queues_nothing() {
    let agent = Agent::start().await;
    let payload = format!(
        r#"{{"ref":"refs/heads/main","padding":"{}"}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    let signature = signed(&payload);
    let (status, body) = agent
        .hook(
            "/hook/github",
            &[
                ("x-github-event", "push"),
                ("x-hub-signature-256", &signature),
            ],
            &payload,
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(agent.queued().is_empty());
}

#[tokio::test]
async fn gitlab_pushes_need_the_token() {
    let agent = Agent::start().await;
    let push = r#"{"object_kind":"push","ref":"refs/heads/main"}"#;
    let (status, body) = agent
        .hook(
            "/hook/gitlab",
            &[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", SECRET)],
            push,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(agent.queued(), one_fetch());

    let almost = &SECRET[..SECRET.len() - 1];
    for token in [None, Some(almost), Some("")] {
        let mut headers = vec![("x-gitlab-event", "Push Hook")];
        headers.extend(token.map(|value| ("x-gitlab-token", value)));
        let (status, body) = agent.hook("/hook/gitlab", &headers, push).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(!body.contains(almost), "{body}");
        assert!(agent.queued().is_empty(), "{token:?} queued nothing");
    }
}

#[tokio::test]
async fn a_generic_delivery_with_a_valid_hmac_queues_a_fetch() {
    let agent = Agent::start().await;
    let payload = "deploy please";
    let signature = signed(payload);
    let (status, body) = agent
        .hook("/hook/generic", &[("x-signature-256", &signature)], payload)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(agent.queued(), one_fetch());
}

#[tokio::test]
async fn readyz_says_503_and_why_until_the_agent_is_ready() {
    let agent = Agent::start().await;
    let (status, _, body) = agent.get("/healthz", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    let (status, _, body) = agent.get("/readyz", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("starting"), "{body}");

    agent.health.mark_ready();
    let (status, _, _) = agent.get("/readyz", &[]).await;
    assert_eq!(status, StatusCode::OK);

    agent.health.set_not_ready("source fetch failing");
    let (status, _, body) = agent.get("/readyz", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("source fetch failing"), "{body}");
}

#[tokio::test]
async fn metrics_name_every_family_and_never_the_secret() {
    let agent = Agent::start().await;
    let signature = signed(MAIN_PUSH);
    let push = [
        ("x-github-event", "push"),
        ("x-hub-signature-256", signature.as_str()),
    ];
    agent.hook("/hook/github", &push, MAIN_PUSH).await;
    let wrong = [("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "guess")];
    agent.hook("/hook/gitlab", &wrong, "{}").await;

    let (status, headers, text) = agent.get("/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    for name in [
        "secretsync_reconcile_duration_seconds",
        "secretsync_pairs",
        "secretsync_applies_total",
        "secretsync_prunes_total",
        "secretsync_source_fetch_duration_seconds",
        "secretsync_source_fetch_errors_total",
        "secretsync_leader",
        "secretsync_webhook_requests_total{provider=\"github\",outcome=\"triggered\"} 1",
        "secretsync_webhook_requests_total{provider=\"gitlab\",outcome=\"unauthorized\"} 1",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(!text.contains(SECRET));
    assert!(!text.contains(signature.trim_start_matches("sha256=")));

    let openmetrics = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
    let (status, headers, text) = agent.get("/metrics", &[("accept", openmetrics)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[tokio::test]
async fn serve_returns_once_shutdown_completes() {
    let mut agent = Agent::start().await;
    let (status, _, _) = agent.get("/healthz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    for stop in agent.stop.drain(..) {
        stop.send(()).expect("server still running");
    }
    for server in agent.servers.drain(..) {
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("stopped within 10 s")
            .expect("server task")
            .expect("served without error");
    }
    let refused = tokio::net::TcpStream::connect(agent.ops).await;
    assert!(refused.is_err(), "the port is closed after shutdown");
}
