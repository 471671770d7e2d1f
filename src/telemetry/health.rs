//! Health and metrics endpoints (`/healthz`, `/readyz`, `/metrics`), and the one way this
//! crate serves HTTP (with graceful shutdown), used for them and for webhooks alike.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use super::metrics::{ExpositionFormat, Metrics};

/// Why the agent is not ready before anyone said otherwise.
const STARTING: &str = "starting";

/// Whether the agent can do its work; cheap to clone, every clone sees the same state.
/// Starts not ready ("starting").
#[derive(Debug, Clone)]
pub struct Health {
    /// `None` when ready, else why not.
    not_ready: Arc<RwLock<Option<String>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    #[must_use]
    pub fn new() -> Self {
        Health {
            not_ready: Arc::new(RwLock::new(Some(STARTING.to_owned()))),
        }
    }

    pub fn mark_ready(&self) {
        *self.write() = None;
    }

    /// `reason` is served on `/readyz`: name what is wrong (a source, a cluster), never
    /// quote credentials or Secret data.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.write() = Some(reason.into());
    }

    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why the agent is not ready, when it is not.
    #[must_use]
    pub fn not_ready_reason(&self) -> Option<String> {
        self.not_ready
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<String>> {
        // The guarded value is replaced whole; a poisoned lock holds a complete value.
        self.not_ready
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
struct Endpoints {
    health: Health,
    metrics: Metrics,
}

/// `/healthz` (the process answers), `/readyz` (200 when ready, else 503 and why) and
/// `/metrics` (Prometheus text, OpenMetrics when the scraper asks for it).
pub fn router(health: Health, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Endpoints { health, metrics })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    match endpoints.health.not_ready_reason() {
        None => (StatusCode::OK, "ok").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(endpoints): State<Endpoints>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = ExpositionFormat::from_accept(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        endpoints.metrics.encode_as(format),
    )
        .into_response()
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits
/// for requests in flight to finish. Put a deadline around it if a slow client must not
/// hold up the exit.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_starts_not_ready_and_follows_what_it_is_told() {
        let health = Health::new();
        assert!(!health.is_ready());
        assert_eq!(health.not_ready_reason().as_deref(), Some("starting"));
        let clone = health.clone();
        clone.mark_ready();
        assert!(health.is_ready());
        health.set_not_ready("source fetch failing");
        assert_eq!(
            clone.not_ready_reason().as_deref(),
            Some("source fetch failing")
        );
    }
}
