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
pub(crate) use verdict::{Action, Verdict, strip_spam_fields};

use crate::config::{Config, ScanFailMode, SpamHeaders};
use crate::spool::Body;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The scanner every session shares.
pub(crate) struct Scanner {
    rspamd: rspamd::Rspamd,
    timeout: Duration,
    fail: ScanFailMode,
    headers: SpamHeaders,
    breaker: Breaker,
    /// Scans under way at most (`scan.concurrency`).
    slots: tokio::sync::Semaphore,
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
            slots: tokio::sync::Semaphore::new(scan.concurrency),
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
        let Some(mut permit) = self.breaker.allow() else {
            metrics::counter!("eas_scan_total", "result" => "breaker_open").increment(1);
            return Err(ScanError::BreakerOpen);
        };
        let started = Instant::now();
        let slotted = AtomicBool::new(false);
        let scanned = async {
            // A slot first: at most `scan.concurrency` messages are shown to
            // rspamd at once (the wait counts in the timeout).
            let Ok(_slot) = self.slots.acquire().await else {
                return Err(ScanError::Busy);
            };
            slotted.store(true, Ordering::Relaxed);
            self.rspamd.check(envelope, header, body).await
        };
        let result = match tokio::time::timeout(self.timeout, scanned).await {
            Ok(result) => result,
            // Timed out waiting for a slot: the relay's load, not rspamd.
            Err(_) if !slotted.load(Ordering::Relaxed) => Err(ScanError::Busy),
            Err(_) => Err(ScanError::Timeout),
        };
        metrics::histogram!("eas_scan_seconds").record(started.elapsed().as_secs_f64());
        match &result {
            Ok(verdict) => {
                if permit.success() {
                    tracing::info!("scan: rspamd answers again; circuit closed");
                }
                metrics::counter!("eas_scan_total", "result" => verdict.action.as_str())
                    .increment(1);
            }
            Err(e) if e.trips_breaker() => {
                metrics::counter!("eas_scan_total", "result" => "error").increment(1);
                if permit.failure() {
                    tracing::warn!(error = %e, "scan: rspamd keeps failing; circuit open");
                }
            }
            Err(e) => {
                // This message's failure, or load: says nothing of rspamd.
                metrics::counter!("eas_scan_total", "result" => "message_error").increment(1);
                tracing::info!(error = %e, "scan: this message could not be scanned");
            }
        }
        drop(permit);
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

    /// Whether a scan may go to rspamd now: a permit to report its
    /// outcome with. A probe's permit dropped unreported (the scan was
    /// cancelled) lets the next scan probe instead, so the circuit cannot
    /// stay open for good.
    fn allow(&self) -> Option<Permit<'_>> {
        let mut s = self.lock();
        let probe = match s.open_until {
            None => false,
            Some(until) if Instant::now() < until => return None,
            Some(_) if s.probing => return None,
            Some(_) => {
                s.probing = true;
                true
            }
        };
        Some(Permit {
            breaker: self,
            probe,
        })
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

/// One scan's right to go to rspamd, and to report how it went.
struct Permit<'a> {
    breaker: &'a Breaker,
    /// This scan probes an open circuit.
    probe: bool,
}

impl Permit<'_> {
    fn success(&mut self) -> bool {
        self.probe = false;
        self.breaker.success()
    }

    fn failure(&mut self) -> bool {
        self.probe = false;
        self.breaker.failure()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.lock().probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_in_a_row_and_lets_one_probe_through() {
        let b = Breaker::new(3, Duration::from_millis(50));
        let report = |ok: bool| {
            let mut p = b.allow().expect("allowed");
            if ok { p.success() } else { p.failure() }
        };
        assert!(!report(false));
        assert!(!report(false));
        assert!(
            !report(true),
            "a success of a closed circuit changes nothing"
        );
        // The count starts again after a success.
        assert!(!report(false));
        assert!(!report(false));
        assert!(report(false), "the third failure in a row opens it");
        assert!(b.allow().is_none());
        std::thread::sleep(Duration::from_millis(60));
        let mut probe = b.allow().expect("one probe after the cool-down");
        assert!(b.allow().is_none(), "and only one");
        assert!(!probe.failure(), "a failed probe keeps it open (not news)");
        drop(probe);
        assert!(b.allow().is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(report(true), "a good probe closes it");
        assert!(b.allow().is_some() && b.allow().is_some());
        assert!(!b.is_open());
    }

    #[test]
    fn a_cancelled_probe_does_not_keep_the_circuit_open_for_good() {
        let b = Breaker::new(1, Duration::from_millis(20));
        assert!(b.allow().unwrap().failure());
        std::thread::sleep(Duration::from_millis(30));
        // The probing scan is dropped before it reports (cancelled).
        drop(b.allow().expect("probe"));
        assert!(b.allow().expect("another probe").success());
        assert!(!b.is_open());
    }
}
