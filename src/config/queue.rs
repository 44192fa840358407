//! `[queue]`: retries, expiry and the limits of the delivery queue.

use super::error::{ConfigError, nonzero_duration, positive};
use super::units::HumanDuration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Delay before the first retry of a deferred recipient; doubles each time.
    pub retry_initial: HumanDuration,
    /// Upper bound of the retry delay.
    pub retry_max: HumanDuration,
    /// A message still undelivered after this long is bounced.
    pub max_age: HumanDuration,
    /// Messages being delivered at once (bounds memory of the scheduler).
    pub max_inflight: usize,
    /// Send a DSN only when the sender passed SPF (MAIL FROM) or aligned
    /// DKIM at reception: bounces to forged senders are backscatter.
    pub dsn_authenticated_only: bool,
    /// The committer or scheduler busy with one piece of work for longer is
    /// reported stuck (`/health` 503, `eas_component_healthy` 0).
    pub stall_timeout: HumanDuration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            retry_initial: HumanDuration::secs(60),
            retry_max: HumanDuration::secs(3600),
            max_age: HumanDuration::secs(5 * 24 * 3600),
            max_inflight: 1000,
            dsn_authenticated_only: true,
            stall_timeout: HumanDuration::secs(120),
        }
    }
}

impl QueueConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        nonzero_duration("queue.retry_initial", self.retry_initial)?;
        if self.retry_max.0 < self.retry_initial.0 {
            return Err(ConfigError::invalid(
                "queue.retry_max",
                self.retry_max,
                "must not be shorter than queue.retry_initial",
            ));
        }
        nonzero_duration("queue.max_age", self.max_age)?;
        positive("queue.max_inflight", self.max_inflight)?;
        if self.stall_timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "queue.stall_timeout",
                self.stall_timeout,
                "must be at least 1s (a group commit takes an fsync)",
            ));
        }
        Ok(())
    }
}
