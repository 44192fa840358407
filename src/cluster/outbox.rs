//! The flusher of a cluster node's delivery-log outbox: sends the rows the
//! store's outbox holds to PostgreSQL in batches and removes them once
//! committed there; while PostgreSQL is away they wait (durably, bounded:
//! `cluster.log_outbox_max`) and go when it returns. It also deletes
//! PostgreSQL's log rows past the retention (bounded batches). Metrics:
//! `eas_cluster_log_outbox_depth`, `eas_cluster_log_flushed_total`,
//! `eas_cluster_log_outbox_dropped_total`; a full outbox is warned once
//! per episode.

use super::Db;
use crate::store::{LogEntry, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Rows read from the outbox and sent per pass.
const PASS_ROWS: usize = 2_000;
/// How often an idle outbox is looked at.
const POLL: Duration = Duration::from_millis(250);
/// The longest wait between two attempts while PostgreSQL fails.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often old rows are deleted from PostgreSQL.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// Most rows of one purge statement.
const PURGE_BATCH: usize = 1_000;

/// What the flusher needs.
pub struct Flusher {
    pub db: Db,
    pub store: Arc<Store>,
    pub node_id: String,
    /// The delivery log's retention (PostgreSQL's rows older than this go).
    pub retention: Duration,
}

/// What one pass did.
enum Pass {
    /// Nothing waits.
    Idle,
    /// Rows were sent; more may wait.
    Sent,
    /// PostgreSQL (or the store) failed.
    Failed,
}

impl Flusher {
    /// Runs until `stop` turns true; then makes one last bounded attempt.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = POLL;
        let mut purge = tokio::time::interval(PURGE_INTERVAL);
        let mut episode = Episode::default();
        loop {
            let pause = match self.pass(&mut episode).await {
                Pass::Sent => {
                    backoff = POLL;
                    Duration::ZERO
                }
                Pass::Idle => {
                    backoff = POLL;
                    POLL
                }
                Pass::Failed => {
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = purge.tick() => self.purge().await,
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => break,
            }
        }
        // Rows written by the last deliveries: sent now if PostgreSQL
        // answers at once, else by the next start (the outbox is durable).
        let _ = tokio::time::timeout(Duration::from_secs(2), self.pass(&mut episode)).await;
    }

    /// Sends up to [`PASS_ROWS`] rows.
    async fn pass(&self, episode: &mut Episode) -> Pass {
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || {
            let page = store.log_outbox_peek(PASS_ROWS)?;
            let depth = store.log_outbox_len()?;
            Ok::<_, crate::store::StoreError>((page, depth))
        })
        .await;
        let ((rows, damaged), depth) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the delivery-log outbox");
                return Pass::Failed;
            }
            Err(_) => return Pass::Failed,
        };
        episode.observe(&self.store, depth);
        if !damaged.is_empty() {
            tracing::warn!(
                rows = damaged.len(),
                "damaged rows in the delivery-log outbox are dropped"
            );
            self.remove(damaged).await;
        }
        if rows.is_empty() {
            return Pass::Idle;
        }
        match self.db.insert_logs(&self.node_id, &rows).await {
            Ok(_) => {
                metrics::counter!("eas_cluster_log_flushed_total").increment(rows.len() as u64);
                if episode.unreachable {
                    tracing::info!(rows = depth, "PostgreSQL is back: sending the buffered log");
                    episode.unreachable = false;
                }
                let sent = rows.len() as u64;
                self.remove(rows.iter().map(|r: &LogEntry| r.id).collect())
                    .await;
                metrics::gauge!("eas_cluster_log_outbox_depth")
                    .set(depth.saturating_sub(sent) as f64);
                Pass::Sent
            }
            Err(e) => {
                if !episode.unreachable {
                    tracing::warn!(
                        error = %e,
                        buffered = depth,
                        "cannot send the delivery log to PostgreSQL: rows wait in the outbox"
                    );
                    episode.unreachable = true;
                }
                Pass::Failed
            }
        }
    }

    async fn remove(&self, ids: Vec<u64>) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.log_outbox_remove(&ids)).await {
            Ok(Ok(())) => {}
            // Sent again on the next pass: PostgreSQL ignores the copies.
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove sent rows from the outbox"),
            Err(_) => {}
        }
    }

    async fn purge(&self) {
        let before = crate::store::now_ms().saturating_sub(self.retention.as_millis() as u64);
        match self.db.purge_logs(before, PURGE_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "cluster delivery log purged"),
            Err(e) => tracing::warn!(error = %e, "cluster delivery log purge failed"),
        }
    }
}

/// What the flusher has said already: PostgreSQL unreachable, outbox full.
#[derive(Default)]
struct Episode {
    unreachable: bool,
    dropped_seen: u64,
    full: bool,
}

impl Episode {
    /// Updates the depth and drop metrics; warns once when the outbox
    /// starts dropping rows, and says when it has room again.
    fn observe(&mut self, store: &Store, depth: u64) {
        metrics::gauge!("eas_cluster_log_outbox_depth").set(depth as f64);
        let dropped = store.log_outbox_dropped();
        if dropped > self.dropped_seen {
            metrics::counter!("eas_cluster_log_outbox_dropped_total")
                .increment(dropped - self.dropped_seen);
            self.dropped_seen = dropped;
            if !self.full {
                tracing::warn!(
                    max = store.log_outbox_max(),
                    dropped,
                    "the delivery-log outbox is full: its oldest rows are dropped \
                     (they stay in this node's own log, not in PostgreSQL's)"
                );
                self.full = true;
            }
        } else if self.full && depth < store.log_outbox_max() {
            tracing::info!(depth, "the delivery-log outbox has room again");
            self.full = false;
        }
    }
}
