//! Log setup: `tracing` events to stderr, as human text or as one JSON object per line.

use std::io::IsTerminal as _;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Error from setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("invalid log filter {filter:?}: {source}")]
    InvalidFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax (e.g. `info,secretsync=debug`).
pub fn init(format: LogFormat, filter: &str) -> Result<(), LogInitError> {
    let env_filter = EnvFilter::try_new(filter).map_err(|source| LogInitError::InvalidFilter {
        filter: filter.to_owned(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|_| LogInitError::AlreadyInstalled)
}
