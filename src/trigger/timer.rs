//! Time-driven triggers: the poll interval (with ±10% jitter, so replicas and agents started
//! together do not fetch in lock-step) and the resync schedule (a cron expression).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Trigger, Triggers};

/// Fraction of the interval by which each poll moves earlier or later.
const JITTER: f64 = 0.1;

/// `interval` moved by `spread` ∈ [-1, 1] times the jitter fraction.
#[must_use]
pub fn jittered(interval: Duration, spread: f64) -> Duration {
    interval.mul_f64(1.0 + JITTER * spread.clamp(-1.0, 1.0))
}

/// Requests a fetch every `interval` (jittered) until cancelled.
pub fn spawn_poll(triggers: Triggers, interval: Duration, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let wait = jittered(interval, rand::random_range(-1.0..=1.0));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => triggers.request(Trigger::Poll),
            }
        }
    });
}

/// A resync schedule: standard five-field cron (`*/10 * * * *`), or six/seven fields with
/// seconds (and years) first, as the `cron` crate reads them.
#[derive(Debug, Clone)]
pub struct ResyncSchedule(cron::Schedule);

#[derive(Debug, thiserror::Error)]
#[error("invalid resync schedule {expression:?}: {source}")]
pub struct InvalidSchedule {
    expression: String,
    #[source]
    source: cron::error::Error,
}

impl std::str::FromStr for ResyncSchedule {
    type Err = InvalidSchedule;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        let with_seconds = if expression.split_whitespace().count() == 5 {
            format!("0 {expression}")
        } else {
            expression.to_owned()
        };
        cron::Schedule::from_str(&with_seconds)
            .map(ResyncSchedule)
            .map_err(|source| InvalidSchedule {
                expression: expression.to_owned(),
                source,
            })
    }
}

impl ResyncSchedule {
    /// How long from `now` until the schedule next fires.
    #[must_use]
    pub fn until_next(&self, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let next = self.0.after(&now).next()?;
        (next - now).to_std().ok()
    }
}

/// Requests a full resync each time the schedule fires, until cancelled.
pub fn spawn_resync(triggers: Triggers, schedule: ResyncSchedule, cancel: CancellationToken) {
    tokio::spawn(async move {
        while let Some(wait) = schedule.until_next(chrono::Utc::now()) {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => triggers.request(Trigger::Resync),
            }
        }
        tracing::warn!("the resync schedule never fires again");
    });
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let minute = Duration::from_secs(60);
        assert_eq!(jittered(minute, 0.0), minute);
        assert_eq!(jittered(minute, 1.0), Duration::from_secs(66));
        assert_eq!(jittered(minute, -1.0), Duration::from_secs(54));
        assert_eq!(jittered(minute, 7.0), Duration::from_secs(66), "clamped");
    }

    #[test]
    fn five_field_cron_is_read_as_minutes_first() {
        let schedule: ResyncSchedule = "*/10 * * * *".parse().expect("valid");
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 12, 4, 18, 3, 30)
            .unwrap();
        assert_eq!(schedule.until_next(now), Some(Duration::from_secs(390)));
    }

    #[test]
    fn six_field_cron_has_seconds_first() {
        let schedule: ResyncSchedule = "*/2 * * * * *".parse().expect("valid");
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 12, 4, 18, 3, 31)
            .unwrap();
        assert_eq!(schedule.until_next(now), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_bad_schedule_names_the_expression() {
        let error = "every ten minutes"
            .parse::<ResyncSchedule>()
            .expect_err("invalid");
        assert!(error.to_string().contains("every ten minutes"), "{error}");
    }
}
