//! The change feed task: a dedicated connection listening on
//! `eas_changes`; on every notification, every `poll` interval and after
//! every (re)connection it reads `changes` after the last id applied, in
//! batches, and applies each batch with its last id in one store
//! transaction (a crash never skips a change). A replica never synced, or
//! one whose next changes were pruned, takes a snapshot first. Any error
//! of the database ends the connection; the task reconnects with backoff
//! and catches up from the table.

use super::apply::Step;
use super::{Replica, ReplicaError};
use crate::cluster::{ChangeRow, Feed};
use crate::store::ReplicaOp;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Change rows read per batch.
const BATCH: i64 = 1000;
/// Reconnection backoff: from this, doubling, up to MAX_BACKOFF.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What waits outside the change order.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Snapshot rows whose reveal could not be checked yet (the chain
    /// unreachable), by key: tried again before each catch-up.
    pub(crate) reveals: HashMap<String, ChangeRow>,
    /// Reveal rows refused, by key → the payload refused: the
    /// reconciliation does not check the same claim again.
    pub(crate) refused: HashMap<String, ChangeRow>,
}

impl Replica {
    /// Follows the database until `stop`: connects, catches up, waits for
    /// notifications; reconnects with backoff after any failure.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            if *stop.borrow() {
                return;
            }
            let outcome = match self.db.feed().await {
                Ok(mut feed) => self.follow(&mut feed, &mut stop).await,
                Err(e) => Err(e.into()),
            };
            match outcome {
                Ok(()) => return,
                Err(e) => {
                    if self.status.is_connected() {
                        tracing::warn!(error = %e, "cluster database unreachable: serving the local replica");
                        backoff = MIN_BACKOFF;
                    } else {
                        tracing::debug!(error = %e, "cluster database still unreachable");
                    }
                    self.status.set_connected(false);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: Ok once stopped, Err when it failed.
    async fn follow(
        &self,
        feed: &mut Feed,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), ReplicaError> {
        self.migrate().await?;
        self.catch_up(feed).await?;
        if !self.status.is_connected() {
            tracing::info!("following the cluster database");
        }
        self.status.set_connected(true);
        let mut poll = tokio::time::interval(self.timing.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let first = tokio::time::Instant::now() + self.timing.reconcile;
        let mut reconcile = tokio::time::interval_at(first, self.timing.reconcile);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                alive = feed.notified() => if !alive {
                    return Err(ReplicaError::Disconnected);
                },
                _ = poll.tick() => {}
                _ = reconcile.tick() => {
                    self.catch_up(feed).await?;
                    self.reconcile(feed).await?;
                }
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return Ok(()),
            }
            self.catch_up(feed).await?;
        }
    }

    /// Applies every change after the last one applied (a snapshot first
    /// when needed); stops early at a reveal the chain cannot check now.
    pub(crate) async fn catch_up(&self, feed: &mut Feed) -> Result<(), ReplicaError> {
        let applied = self.store().replica_applied()?;
        let pruned = match applied {
            Some(last) => u64::try_from(feed.oldest().await?).unwrap_or(0) > last + 1,
            None => false,
        };
        let Some(mut last) = applied.filter(|_| !pruned) else {
            if pruned {
                tracing::warn!("changes this node has not applied were pruned: taking a snapshot");
            }
            return self.sync(feed).await;
        };
        self.retry_pending().await?;
        loop {
            let rows = feed
                .after(i64::try_from(last).unwrap_or(i64::MAX), BATCH)
                .await?;
            let Some(end) = rows.last().map(|r| r.id) else {
                return Ok(());
            };
            let mut ops = Vec::with_capacity(rows.len());
            let mut done = last;
            let mut deferred = None;
            for row in &rows {
                let step = self.applier.step(row).await;
                if let Step::Defer(why) = step {
                    deferred = Some(why);
                    break;
                }
                self.forget_pending(row, &step);
                if let Step::Op(op) = step {
                    ops.push(op);
                }
                done = u64::try_from(row.id).unwrap_or(done);
            }
            self.write(ops, Some(done)).await?;
            metrics::gauge!("eas_replica_applied_change_id").set(done as f64);
            if let Some(why) = deferred {
                let before = self
                    .status
                    .waiting
                    .swap(1, std::sync::atomic::Ordering::Relaxed);
                // Said once per wait, not at every poll while it lasts.
                if before == 0 {
                    tracing::warn!(after = done, error = %why,
                        "a reveal waits for the chain to be checked; the feed resumes there");
                }
                return Ok(());
            }
            self.status
                .waiting
                .store(0, std::sync::atomic::Ordering::Relaxed);
            last = done;
            if rows.len() < BATCH as usize {
                return Ok(());
            }
            debug_assert_eq!(i64::try_from(last).ok(), Some(end));
        }
    }

    /// A newer row for the same key replaces a pending snapshot row; a
    /// reveal refused is remembered with its row (see [`Pending`]).
    pub(crate) fn forget_pending(&self, row: &ChangeRow, step: &Step) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if row.kind == "reveal" {
            match step {
                Step::Op(ReplicaOp::Reveal { reveal: None, .. }) if !row.payload.is_null() => {
                    pending.refused.insert(row.key.clone(), row.clone());
                }
                _ => {
                    pending.refused.remove(&row.key);
                }
            }
        }
        if pending.reveals.is_empty() {
            return;
        }
        match row.kind.as_str() {
            "reveal" => {
                pending.reveals.remove(&row.key);
            }
            "domain" if row.payload.is_null() => {
                let suffix = format!("@{}", row.key);
                pending.reveals.retain(|k, _| !k.ends_with(&suffix));
            }
            _ => {}
        }
    }

    /// Checks again the snapshot's reveals that waited for the chain.
    async fn retry_pending(&self) -> Result<(), ReplicaError> {
        let rows: Vec<ChangeRow> = {
            let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.reveals.values().cloned().collect()
        };
        if rows.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::new();
        for row in rows {
            let step = self.applier.step(&row).await;
            if matches!(step, Step::Defer(_)) {
                continue;
            }
            self.forget_pending(&row, &step);
            if let Step::Op(op) = step {
                ops.push(op);
            }
        }
        let left = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reveals
            .len();
        self.status
            .waiting
            .store(left as u64, std::sync::atomic::Ordering::Relaxed);
        self.write(ops, None).await
    }

    /// Writes `ops` (and the last id applied) in one store transaction.
    pub(crate) async fn write(
        &self,
        ops: Vec<ReplicaOp>,
        applied: Option<u64>,
    ) -> Result<(), ReplicaError> {
        self.write_with(ops, applied, true).await
    }

    /// [`Replica::write`], without an fsync unless `durable` (see
    /// [`crate::store::Store::replica_apply_with`]).
    async fn write_with(
        &self,
        ops: Vec<ReplicaOp>,
        applied: Option<u64>,
        durable: bool,
    ) -> Result<(), ReplicaError> {
        if ops.is_empty() && applied.is_none() {
            return Ok(());
        }
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || store.replica_apply_with(&ops, applied, durable))
            .await
            .map_err(|e| ReplicaError::Task(e.to_string()))??;
        Ok(())
    }

    /// A snapshot: every domain, suspension, static alias and reveal as of
    /// one moment, applied in batches; what the replica holds beyond it is
    /// removed; then the feed goes on from the snapshot's change id.
    pub(crate) async fn sync(&self, feed: &mut Feed) -> Result<(), ReplicaError> {
        let started = std::time::Instant::now();
        let snapshot = feed.snapshot_begin().await?;
        tracing::info!(
            upto = snapshot.upto,
            "taking a snapshot of the cluster database"
        );
        let mut domains = HashSet::new();
        let mut aliases = HashSet::new();
        let mut suspended = HashSet::new();
        let mut rows_seen = 0u64;
        loop {
            let rows = feed.snapshot_page().await?;
            if rows.is_empty() {
                break;
            }
            rows_seen += rows.len() as u64;
            let mut ops = Vec::with_capacity(rows.len());
            for row in &rows {
                match row.kind.as_str() {
                    "domain" => {
                        domains.insert(row.key.clone());
                    }
                    "suspension" => {
                        suspended.insert(row.key.clone());
                    }
                    _ => {
                        aliases.insert(row.key.clone());
                    }
                }
                let step = self.applier.step(row).await;
                if let Step::Defer(why) = &step {
                    tracing::warn!(alias = %row.key, error = %why,
                        "a reveal of the snapshot waits for the chain to be checked");
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    pending.reveals.insert(row.key.clone(), row.clone());
                    continue;
                }
                self.forget_pending(row, &step);
                if let Step::Op(op) = step {
                    ops.push(op);
                }
            }
            // Not fsynced: the snapshot counts once its last write, durable,
            // records the change id it reached.
            self.write_with(ops, None, false).await?;
        }
        feed.snapshot_end().await?;
        if self.store().replica_applied()?.is_none() {
            // A first sync: whatever the store holds that the database
            // does not is the node's own data, not a stale replica.
            let store = self.store().clone();
            let known = domains.clone();
            let (count, first) =
                tokio::task::spawn_blocking(move || store.replica_unknown_domains(&known))
                    .await
                    .map_err(|e| ReplicaError::Task(e.to_string()))??;
            if count > 0 {
                return Err(ReplicaError::LocalData {
                    count,
                    first: first.join(", "),
                });
            }
        }
        let store = self.store().clone();
        let removed = tokio::task::spawn_blocking(move || {
            store.replica_sweep(&domains, &aliases, &suspended)
        })
        .await
        .map_err(|e| ReplicaError::Task(e.to_string()))??;
        let upto = u64::try_from(snapshot.upto).unwrap_or(0);
        self.write(Vec::new(), Some(upto)).await?;
        metrics::gauge!("eas_replica_applied_change_id").set(upto as f64);
        tracing::info!(
            rows = rows_seen,
            removed,
            upto,
            ms = started.elapsed().as_millis() as u64,
            "snapshot applied"
        );
        Ok(())
    }
}
