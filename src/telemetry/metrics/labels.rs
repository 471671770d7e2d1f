//! The label sets of the agent's metrics, and the fixed words webhook deliveries are
//! counted by: a sender can never choose a label value.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// Which webhook route a delivery came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookProvider {
    Github,
    Gitlab,
    Generic,
}

impl WebhookProvider {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Generic => "generic",
        }
    }
}

/// What became of a webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookOutcome {
    /// Verified, and a fetch was queued.
    Triggered,
    /// Verified ping (GitHub's "is this hook set up?"); nothing queued.
    Ping,
    /// Verified, but not a push, or a push for a ref the agent does not follow.
    Ignored,
    /// Missing or wrong signature or token; nothing queued.
    Unauthorized,
    /// Body over the size limit.
    TooLarge,
    /// The body could not be read.
    BadRequest,
}

impl WebhookOutcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Triggered => "triggered",
            Self::Ping => "ping",
            Self::Ignored => "ignored",
            Self::Unauthorized => "unauthorized",
            Self::TooLarge => "too_large",
            Self::BadRequest => "bad_request",
        }
    }
}

impl EncodeLabelValue for WebhookProvider {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for WebhookOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub(super) result: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ClusterLabels {
    pub(super) namespace: String,
    pub(super) cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct WebhookLabels {
    pub(super) provider: WebhookProvider,
    pub(super) outcome: WebhookOutcome,
}
