//! The watcher's health as the rest of the relay sees it: the last good
//! read, head, cursor and last error, staleness, and the status view that
//! `/health`, `/v3/chain/status` and `eas-relay chain status` show.

use super::rpc::BlockInfo;
use crate::config::ChainConfig;
use crate::store::now_ms;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the rest of the relay can see of the watcher (health, metrics).
#[derive(Debug, Default)]
pub(crate) struct ChainHealth {
    /// Unix ms of the last successful read of the chain.
    pub last_ok_ms: AtomicU64,
    pub head: AtomicU64,
    pub cursor: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// Seconds since `last_ok_ms` (Unix ms of the last good read; 0: never).
pub(crate) fn seconds_since(last_ok_ms: u64) -> Option<u64> {
    (last_ok_ms != 0).then(|| now_ms().saturating_sub(last_ok_ms) / 1000)
}

/// Stale: never read, or not for longer than `chain.stale_after`.
pub(crate) fn is_stale(seconds_since_ok: Option<u64>, config: &ChainConfig) -> bool {
    seconds_since_ok.is_none_or(|s| s > config.stale_after.0.as_secs())
}

/// The watcher's state as `/health`, `/v3/chain/status` and `eas-relay
/// chain status` show it.
pub(crate) fn status_view(
    config: &ChainConfig,
    head: u64,
    cursor: u64,
    last_ok_ms: u64,
    last_error: Option<String>,
) -> serde_json::Value {
    let since = seconds_since(last_ok_ms);
    serde_json::json!({
        "enabled": true,
        "head": head,
        "cursor": cursor,
        "confirmations": config.confirmations,
        "lag": head.saturating_sub(cursor),
        "seconds_since_ok": since,
        "stale": is_stale(since, config),
        "last_error": last_error,
    })
}

impl ChainHealth {
    /// Seconds since the chain was last read successfully (None: never).
    pub(crate) fn seconds_since_ok(&self) -> Option<u64> {
        seconds_since(self.last_ok_ms.load(Ordering::Relaxed))
    }

    pub(super) fn ok(&self, head: &BlockInfo) {
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        self.head.store(head.number, Ordering::Relaxed);
        *self.last_error.lock().expect("health lock") = None;
        metrics::gauge!("eas_chain_head").set(head.number as f64);
    }

    pub(super) fn failed(&self, error: &str) {
        *self.last_error.lock().expect("health lock") = Some(error.to_string());
        metrics::counter!("eas_chain_errors_total").increment(1);
    }
}
