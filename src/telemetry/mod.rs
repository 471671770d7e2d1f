//! Process telemetry: structured logs, Prometheus metrics, and the health endpoints.

pub mod health;
pub mod logs;
pub mod metrics;
pub mod observer;
