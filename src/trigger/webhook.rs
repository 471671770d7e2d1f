//! Webhook receiver: a verified push delivery (GitHub, GitLab, or any sender that signs
//! with HMAC-SHA256) queues a fetch on the agent's trigger queue.
//!
//! Routes (POST only):
//! - `/hook/github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>`; `X-GitHub-Event`
//!   `push` fetches, `ping` is answered with 200, other events are acknowledged (204).
//! - `/hook/gitlab`: `X-Gitlab-Token` equal to the secret; `Push Hook` and `Tag Push Hook`
//!   fetch, other events are acknowledged (204).
//! - `/hook/generic`: `X-Signature-256: sha256=<hex HMAC-SHA256(body)>`; any verified
//!   delivery fetches.
//!
//! A delivery without a valid signature or token gets 401 and changes nothing. Bodies over
//! [`MAX_BODY_BYTES`] get 413. Responses and logs never repeat the secret, the signature
//! or the token.
//!
//! Replay: the signatures carry no timestamp or nonce, so whoever captured one verified
//! delivery can send it again. All a delivery can do is queue a fetch, which coalesces with
//! every other trigger and reads the source the agent was configured with; a replay
//! therefore costs at most one fetch, never a change of what is synced.

pub mod verify;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::{ExposeSecret as _, SecretString};

use self::verify::{
    AuthError, Decision, PayloadEncoding, github_decision, gitlab_decision, verify_signature,
    verify_token,
};
use super::{Trigger, Triggers};
use crate::telemetry::metrics::{Metrics, WebhookOutcome, WebhookProvider};

/// Largest delivery accepted. GitHub caps its payloads at 25 MB, but a push touching a
/// config repository is a few KiB; anything near this is not a delivery worth reading.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// GitHub's signature header.
pub const GITHUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const GITHUB_EVENT_HEADER: &str = "x-github-event";
pub const GITHUB_DELIVERY_HEADER: &str = "x-github-delivery";
/// GitLab sends the secret itself ("secret token").
pub const GITLAB_TOKEN_HEADER: &str = "x-gitlab-token";
pub const GITLAB_EVENT_HEADER: &str = "x-gitlab-event";
pub const GITLAB_DELIVERY_HEADER: &str = "x-gitlab-event-uuid";
/// The generic route's signature header.
pub const GENERIC_SIGNATURE_HEADER: &str = "x-signature-256";

/// What the webhook receiver needs to know.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Shared with the git host; its Debug prints `[REDACTED]`.
    secret: SecretString,
    /// The branch the agent follows; pushes to other refs do not fetch. `None`: every push
    /// fetches (the agent follows a tag, a semver range or a commit).
    branch: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("the webhook secret is empty: anyone could sign a delivery")]
    EmptySecret,
}

impl WebhookConfig {
    /// The secret is used byte for byte (a trailing newline is part of it).
    pub fn new(secret: SecretString) -> Result<Self, WebhookConfigError> {
        if secret.expose_secret().trim().is_empty() {
            return Err(WebhookConfigError::EmptySecret);
        }
        Ok(WebhookConfig {
            secret,
            branch: None,
        })
    }

    /// Only pushes to `branch` (`main` or `refs/heads/main`) fetch.
    #[must_use]
    pub fn with_branch(mut self, branch: impl Into<String>) -> Self {
        let branch = branch.into();
        let name = branch.strip_prefix("refs/heads/").unwrap_or(&branch);
        self.branch = Some(name.to_owned());
        self
    }

    #[must_use]
    pub fn branch(&self) -> Option<&str> {
        self.branch.as_deref()
    }
}

struct Receiver {
    config: WebhookConfig,
    triggers: Triggers,
    metrics: Option<Metrics>,
}

/// The webhook routes (see the module documentation), feeding `triggers`, counting
/// deliveries in `metrics` when given.
pub fn router(config: WebhookConfig, triggers: Triggers, metrics: Option<Metrics>) -> Router {
    let receiver = Arc::new(Receiver {
        config,
        triggers,
        metrics,
    });
    Router::new()
        .route("/hook/github", post(github))
        .route("/hook/gitlab", post(gitlab))
        .route("/hook/generic", post(generic))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(receiver)
}

async fn github(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let provider = WebhookProvider::Github;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return receiver.unreadable(provider, &rejection),
    };
    let signature = header_str(&headers, GITHUB_SIGNATURE_HEADER);
    if let Err(error) = verify_signature(receiver.secret(), &body, signature) {
        return receiver.unauthorized(provider, error);
    }
    let encoding =
        PayloadEncoding::from_content_type(header_str(&headers, header::CONTENT_TYPE.as_str()));
    let decision = github_decision(
        header_str(&headers, GITHUB_EVENT_HEADER),
        &body,
        encoding,
        receiver.config.branch(),
    );
    receiver.act(
        provider,
        decision,
        delivery_id(&headers, GITHUB_DELIVERY_HEADER),
    )
}

async fn gitlab(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let provider = WebhookProvider::Gitlab;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return receiver.unreadable(provider, &rejection),
    };
    let token = headers
        .get(GITLAB_TOKEN_HEADER)
        .map(axum::http::HeaderValue::as_bytes);
    if let Err(error) = verify_token(receiver.secret(), token) {
        return receiver.unauthorized(provider, error);
    }
    let decision = gitlab_decision(
        header_str(&headers, GITLAB_EVENT_HEADER),
        &body,
        receiver.config.branch(),
    );
    receiver.act(
        provider,
        decision,
        delivery_id(&headers, GITLAB_DELIVERY_HEADER),
    )
}

async fn generic(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let provider = WebhookProvider::Generic;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return receiver.unreadable(provider, &rejection),
    };
    let signature = header_str(&headers, GENERIC_SIGNATURE_HEADER);
    if let Err(error) = verify_signature(receiver.secret(), &body, signature) {
        return receiver.unauthorized(provider, error);
    }
    receiver.act(provider, Decision::Trigger, None)
}

impl Receiver {
    fn secret(&self) -> &[u8] {
        self.config.secret.expose_secret().as_bytes()
    }

    fn record(&self, provider: WebhookProvider, outcome: WebhookOutcome) {
        if let Some(metrics) = &self.metrics {
            metrics.record_webhook(provider, outcome);
        }
    }

    fn unreadable(&self, provider: WebhookProvider, rejection: &BytesRejection) -> Response {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            self.record(provider, WebhookOutcome::TooLarge);
            tracing::warn!(
                provider = provider.as_str(),
                limit = MAX_BODY_BYTES,
                "webhook delivery refused: body over the size limit"
            );
            (status, "body over the size limit\n").into_response()
        } else {
            self.record(provider, WebhookOutcome::BadRequest);
            tracing::warn!(
                provider = provider.as_str(),
                %status,
                "webhook delivery refused: body could not be read"
            );
            (status, "body could not be read\n").into_response()
        }
    }

    fn unauthorized(&self, provider: WebhookProvider, error: AuthError) -> Response {
        self.record(provider, WebhookOutcome::Unauthorized);
        // The kind of failure only: never the value that was sent.
        tracing::warn!(
            provider = provider.as_str(),
            reason = %error,
            "webhook delivery refused"
        );
        let what = match provider {
            WebhookProvider::Gitlab => "token",
            WebhookProvider::Github | WebhookProvider::Generic => "signature",
        };
        (
            StatusCode::UNAUTHORIZED,
            format!("missing or invalid {what}\n"),
        )
            .into_response()
    }

    fn act(
        &self,
        provider: WebhookProvider,
        decision: Decision,
        delivery: Option<&str>,
    ) -> Response {
        match decision {
            Decision::Trigger => {
                self.triggers.request(Trigger::Webhook);
                self.record(provider, WebhookOutcome::Triggered);
                tracing::info!(
                    provider = provider.as_str(),
                    delivery,
                    "webhook delivery queued a fetch"
                );
                (StatusCode::ACCEPTED, "fetch queued\n").into_response()
            }
            Decision::Ping => {
                self.record(provider, WebhookOutcome::Ping);
                tracing::info!(provider = provider.as_str(), delivery, "webhook ping");
                (StatusCode::OK, "pong\n").into_response()
            }
            Decision::Ignore(reason) => {
                self.record(provider, WebhookOutcome::Ignored);
                tracing::debug!(
                    provider = provider.as_str(),
                    delivery,
                    reason = reason.as_str(),
                    "webhook delivery ignored"
                );
                StatusCode::NO_CONTENT.into_response()
            }
        }
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The delivery's id for the logs, when it looks like one (a UUID): it is chosen by the
/// sender, so anything else is left out rather than logged.
fn delivery_id<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    header_str(headers, name)
        .filter(|id| id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_never_shows_its_secret() {
        let config = WebhookConfig::new(SecretString::from("s3cr3t-value"))
            .expect("config")
            .with_branch("refs/heads/main");
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        assert_eq!(config.branch(), Some("main"));
    }

    #[test]
    fn an_empty_secret_is_refused() {
        for secret in ["", "  \n"] {
            assert!(matches!(
                WebhookConfig::new(SecretString::from(secret)),
                Err(WebhookConfigError::EmptySecret)
            ));
        }
    }

    #[test]
    fn delivery_ids_are_logged_only_when_they_look_like_one() {
        let mut headers = HeaderMap::new();
        headers.insert(
            GITHUB_DELIVERY_HEADER,
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".parse().unwrap(),
        );
        headers.insert(GITLAB_DELIVERY_HEADER, "<script>".parse().unwrap());
        assert_eq!(
            delivery_id(&headers, GITHUB_DELIVERY_HEADER),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert_eq!(delivery_id(&headers, GITLAB_DELIVERY_HEADER), None);
    }
}
