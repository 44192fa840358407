//! Content scanning (layer 3): every message is shown to rspamd at the end
//! of DATA/BDAT, before the `250`, so that spam and viruses are refused
//! while the client is still there (no accept-then-drop, no backscatter).
//! `rspamd` speaks its HTTP protocol; `verdict` turns its answer into the
//! relay's action (with a domain's own thresholds), a refusal or header
//! fields. Here: the time bound, and the circuit breaker that keeps a dead
//! scanner from holding every session for the whole timeout — while it is
//! open, scans fail at once and `scan.fail` decides (tempfail or accept).

mod rspamd;
mod verdict;

pub(crate) use rspamd::{Envelope, ScanError};
pub(crate) use verdict::{Action, Verdict};

use crate::config::{Config, ScanFailMode, SpamHeaders};
use crate::spool::Body;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The scanner every session shares.
pub(crate) struct Scanner {
    rspamd: rspamd::Rspamd,
    timeout: Duration,
    fail: ScanFailMode,
    headers: SpamHeaders,
    breaker: Breaker,
}

impl Scanner {
    /// None when `scan.enabled` is off (validation checked the URL).
    pub(crate) fn from_config(config: &Config) -> Option<Scanner> {
        let scan = &config.scan;
        if !scan.enabled {
            return None;
        }
        let endpoint = scan.endpoint().ok()?;
        Some(Scanner {
            rspamd: rspamd::Rspamd::new(
                endpoint,
                scan.max_size.0,
                scan.max_idle_connections,
                scan.virus_symbols.clone(),
            ),
            timeout: scan.timeout.0,
            fail: scan.fail,
            headers: scan.headers,
            breaker: Breaker::new(scan.breaker_failures, scan.breaker_cooldown.0),
        })
    }

    /// Scans one message within the timeout. While the breaker is open the
    /// answer is an immediate error, except for the one scan that probes
    /// whether rspamd is back.
    pub(crate) async fn scan(
        &self,
        envelope: &Envelope<'_>,
        header: &[u8],
        body: &Body,
    ) -> Result<Verdict, ScanError> {
        if !self.breaker.allow() {
            metrics::counter!("eas_scan_total", "result" => "breaker_open").increment(1);
            return Err(ScanError::BreakerOpen);
        }
        let started = Instant::now();
        let result =
            match tokio::time::timeout(self.timeout, self.rspamd.check(envelope, header, body))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(ScanError::Timeout),
            };
        metrics::histogram!("eas_scan_seconds").record(started.elapsed().as_secs_f64());
        match &result {
            Ok(verdict) => {
                if self.breaker.success() {
                    tracing::info!("scan: rspamd answers again; circuit closed");
                }
                metrics::counter!("eas_scan_total", "result" => verdict.action.as_str())
                    .increment(1);
            }
            Err(e) => {
                metrics::counter!("eas_scan_total", "result" => "error").increment(1);
                if self.breaker.failure() {
                    tracing::warn!(error = %e, "scan: rspamd keeps failing; circuit open");
                }
            }
        }
        metrics::gauge!("eas_scan_breaker_open").set(if self.breaker.is_open() {
            1.0
        } else {
            0.0
        });
        result
    }

    pub(crate) fn fail_mode(&self) -> ScanFailMode {
        self.fail
    }

    pub(crate) fn headers(&self) -> SpamHeaders {
        self.headers
    }

    /// For `/health`: "ok", or "failing" while the circuit is open.
    pub(crate) fn state(&self) -> &'static str {
        if self.breaker.is_open() {
            "failing"
        } else {
            "ok"
        }
    }
}

/// Consecutive failures open the circuit for a cool-down; after it, one
/// probe is let through: its success closes the circuit, its failure
/// opens it again.
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(BreakerState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is three plain fields: a panic elsewhere cannot leave
        // it inconsistent, so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a scan may go to rspamd now.
    fn allow(&self) -> bool {
        let mut s = self.lock();
        match s.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) if s.probing => false,
            Some(_) => {
                s.probing = true;
                true
            }
        }
    }

    /// Records a success; true when it closed an open circuit.
    fn success(&self) -> bool {
        let mut s = self.lock();
        let was_open = s.open_until.is_some();
        *s = BreakerState::default();
        was_open
    }

    /// Records a failure; true when it opened the circuit (not when a
    /// probe failed and it stays open).
    fn failure(&self) -> bool {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        let was_open = s.open_until.is_some();
        if was_open || s.failures >= self.threshold {
            s.open_until = Some(Instant::now() + self.cooldown);
            s.probing = false;
        }
        !was_open && s.open_until.is_some()
    }

    fn is_open(&self) -> bool {
        self.lock().open_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_in_a_row_and_lets_one_probe_through() {
        let b = Breaker::new(3, Duration::from_millis(50));
        assert!(b.allow());
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(
            !b.success(),
            "a success of a closed circuit changes nothing"
        );
        // The count starts again after a success.
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.failure(), "the third failure in a row opens it");
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow(), "one probe after the cool-down");
        assert!(!b.allow(), "and only one");
        assert!(!b.failure(), "a failed probe keeps it open (not news)");
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow());
        assert!(b.success(), "a good probe closes it");
        assert!(b.allow() && b.allow());
        assert!(!b.is_open());
    }
}
