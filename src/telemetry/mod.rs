//! Process telemetry: structured logs (and, as the runtime arrives, metrics and health).

pub mod logs;
