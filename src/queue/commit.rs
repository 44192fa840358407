//! The committer: one thread that takes every queue write, groups whatever
//! is waiting into one store transaction with one fsync (group commit), and
//! only then answers the waiters. It also turns delivery outcomes into the
//! next state: delivered, retry later with backoff, or bounce with a DSN.

use super::{Commit, Event, QueueError, QueueSettings, RcptResult, Spool, dsn, ops};
use crate::outbound::DeliveryStatus;
use crate::store::{
    Batch, LogEntry, LogOutcome, QueueEntry, RcptStatus, Store, StoreError, format_queue_id, now_ms,
};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 512;

pub(super) struct Committer {
    pub store: Arc<Store>,
    pub spool: Spool,
    pub settings: QueueSettings,
    pub events: mpsc::UnboundedSender<Event>,
}

/// What one operation produced inside the transaction, to act on after the
/// commit is durable.
enum Applied {
    Inserted,
    Recorded(Option<u64>),
    Retried(usize),
    Dropped(bool),
    Quarantined,
}

/// Work that must wait for the commit: spool deletions, new DSN entries.
#[derive(Default)]
struct AfterCommit {
    delete: Vec<u64>,
    due: Vec<(u64, u64)>,
    removed: Vec<u64>,
    /// DSN spool files written in this batch (deleted if the batch fails).
    dsn_files: Vec<u64>,
}

impl Committer {
    pub(super) fn run(self, mut rx: mpsc::UnboundedReceiver<Commit>) {
        while let Some(first) = rx.blocking_recv() {
            let mut ops = vec![first];
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            self.commit(ops);
        }
    }

    fn commit(&self, ops: Vec<Commit>) {
        let mut after = AfterCommit::default();
        let has_insert = ops.iter().any(|op| matches!(op, Commit::Insert { .. }));
        let dir_synced = if has_insert {
            self.spool.sync_dir()
        } else {
            Ok(())
        };
        let now = now_ms();
        let result = match dir_synced {
            Err(e) => Err(QueueError::Spool(e)),
            Ok(()) => self
                .store
                .batch(true, |b| {
                    ops.iter()
                        .map(|op| self.apply(op, b, now, &mut after))
                        .collect::<Result<Vec<_>, StoreError>>()
                })
                .map_err(QueueError::from),
        };
        match result {
            Ok(applied) => {
                for id in &after.delete {
                    if let Err(e) = self.spool.remove(*id) {
                        tracing::warn!(id = %format_queue_id(*id), error = %e, "cannot delete spool file");
                    }
                }
                for &(id, due) in &after.due {
                    let _ = self.events.send(Event::Due { id, due });
                }
                for &id in &after.removed {
                    let _ = self.events.send(Event::Removed { id });
                }
                metrics::counter!("eas_queue_commits_total").increment(1);
                metrics::histogram!("eas_queue_commit_batch_size").record(ops.len() as f64);
                for (op, applied) in ops.into_iter().zip(applied) {
                    respond(op, Ok(applied), 0);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, ops = ops.len(), "queue commit failed");
                for id in &after.dsn_files {
                    let _ = self.spool.remove(*id);
                }
                let message = e.to_string();
                let retry_at = now + self.settings.retry_initial.as_millis() as u64;
                for op in ops {
                    respond(op, Err(message.clone()), retry_at);
                }
            }
        }
    }

    fn apply(
        &self,
        op: &Commit,
        b: &mut Batch<'_>,
        now: u64,
        after: &mut AfterCommit,
    ) -> Result<Applied, StoreError> {
        Ok(match op {
            Commit::Insert { entry, .. } => {
                b.put((**entry).clone())?;
                Applied::Inserted
            }
            Commit::Results { id, results, .. } => {
                Applied::Recorded(self.record(b, *id, results, now, after)?)
            }
            Commit::Retry { id, .. } => {
                let mut n = 0;
                for id in ops::targets(&self.store, *id)? {
                    if ops::retry(b, id, now)? {
                        n += 1;
                        after.due.push((id, now));
                    }
                }
                Applied::Retried(n)
            }
            Commit::Drop { id, .. } => {
                let found = ops::remove(b, *id)?;
                if found {
                    after.delete.push(*id);
                    after.removed.push(*id);
                }
                Applied::Dropped(found)
            }
            Commit::Quarantine { id, reason } => {
                if let Some(entry) = b.remove(*id)? {
                    let raw = serde_json::to_vec_pretty(&entry).unwrap_or_default();
                    if let Err(e) = self.spool.quarantine(*id, &raw, reason) {
                        tracing::error!(id = %format_queue_id(*id), error = %e, "cannot quarantine");
                    }
                    tracing::error!(id = %format_queue_id(*id), %reason, "queue entry quarantined");
                    metrics::counter!("eas_queue_quarantined_total").increment(1);
                    after.removed.push(*id);
                }
                Applied::Quarantined
            }
        })
    }

    /// Applies delivery outcomes to an entry; returns its next due time.
    fn record(
        &self,
        b: &mut Batch<'_>,
        id: u64,
        results: &[RcptResult],
        now: u64,
        after: &mut AfterCommit,
    ) -> Result<Option<u64>, StoreError> {
        let Some(mut entry) = b.get(id)? else {
            return Ok(None); // dropped while in flight
        };
        let expired = now >= entry.created + self.settings.max_age.as_millis() as u64;
        for result in results {
            let Some(rcpt) = entry.recipients.get_mut(result.index) else {
                continue;
            };
            if rcpt.status != RcptStatus::Pending {
                continue;
            }
            rcpt.attempts += 1;
            let mut reply = result.reply.to_string();
            let outcome = match result.status {
                DeliveryStatus::Delivered => {
                    rcpt.status = RcptStatus::Delivered;
                    metrics::histogram!("eas_delivery_latency_seconds")
                        .record(now.saturating_sub(entry.created) as f64 / 1000.0);
                    LogOutcome::Delivered
                }
                DeliveryStatus::Failed => {
                    rcpt.status = RcptStatus::Failed;
                    LogOutcome::Bounced
                }
                DeliveryStatus::Deferred if expired => {
                    rcpt.status = RcptStatus::Failed;
                    reply = format!(
                        "delivery time expired after {}, last error: {reply}",
                        crate::config::HumanDuration(self.settings.max_age)
                    );
                    LogOutcome::Bounced
                }
                DeliveryStatus::Deferred => {
                    rcpt.next_attempt =
                        now + self.settings.backoff(rcpt.attempts).as_millis() as u64;
                    LogOutcome::Deferred
                }
            };
            rcpt.last_reply = Some(reply.clone());
            metrics::counter!("eas_deliveries_total", "outcome" => outcome_label(outcome))
                .increment(1);
            b.log(LogEntry {
                id: 0,
                time: now,
                queue_id: id,
                sender: entry.sender.clone(),
                alias: rcpt.alias.clone(),
                recipient: rcpt.rcpt.clone(),
                forward: rcpt.address.clone(),
                subject: entry.subject.clone(),
                message_id: entry.message_id.clone(),
                outcome,
                code: result.reply.code,
                message: reply,
                server: result.server.clone(),
            })?;
            tracing::info!(
                id = %format_queue_id(id),
                to = %rcpt.address,
                alias = %rcpt.alias,
                outcome = outcome_label(outcome),
                reply = %result.reply,
                "delivery attempt"
            );
        }
        if !entry.is_finished() {
            let due = entry.next_due();
            b.put(entry)?;
            return Ok(due);
        }
        b.remove(id)?;
        after.delete.push(id);
        if let Some(dsn) = self.bounce(&entry, now)? {
            after.dsn_files.push(dsn.id);
            after.due.push((dsn.id, now));
            b.put(dsn)?;
        }
        Ok(None)
    }

    /// Builds and spools a DSN for the failed recipients of a finished
    /// entry, when one is owed (never to the null sender, never for a DSN).
    fn bounce(&self, entry: &QueueEntry, now: u64) -> Result<Option<QueueEntry>, StoreError> {
        let failed: Vec<_> = entry
            .recipients
            .iter()
            .filter(|r| r.status == RcptStatus::Failed)
            .collect();
        if failed.is_empty() || entry.sender.is_empty() || entry.is_dsn {
            return Ok(None);
        }
        let original = self.spool.read(entry.id).unwrap_or_default();
        let id = self.store.next_queue_id();
        let (dsn_entry, message) =
            dsn::build(entry, &failed, &original, &self.settings.hostname, id, now);
        if let Err(e) = self
            .spool
            .write(id, &message)
            .and_then(|_| self.spool.sync_dir())
        {
            // Without a durable DSN body the bounce is lost; say so loudly
            // but still finish the original (its recipients did fail).
            tracing::error!(id = %format_queue_id(entry.id), error = %e, "cannot spool DSN");
            return Ok(None);
        }
        tracing::info!(
            id = %format_queue_id(entry.id),
            dsn = %format_queue_id(id),
            to = %entry.sender,
            "bounce generated"
        );
        Ok(Some(dsn_entry))
    }
}

fn outcome_label(o: LogOutcome) -> &'static str {
    match o {
        LogOutcome::Delivered => "delivered",
        LogOutcome::Deferred => "deferred",
        LogOutcome::Bounced => "bounced",
    }
}

/// Answers the waiter of `op`; `retry_at` is when a delivery whose outcome
/// could not be recorded is tried again.
fn respond(op: Commit, result: Result<Applied, String>, retry_at: u64) {
    let fail = |m: &str| {
        QueueError::Store(StoreError::Corrupt {
            table: "queue",
            key: "commit".into(),
            reason: m.to_string(),
        })
    };
    match (op, result) {
        (Commit::Insert { done, .. }, Ok(_)) => {
            let _ = done.send(Ok(()));
        }
        (Commit::Insert { done, .. }, Err(m)) => {
            let _ = done.send(Err(fail(&m)));
        }
        (Commit::Results { done, .. }, Ok(Applied::Recorded(due))) => {
            let _ = done.send(due);
        }
        (Commit::Results { done, .. }, _) => {
            // The outcome was not recorded: try again after the first delay.
            let _ = done.send(Some(retry_at));
        }
        (Commit::Retry { done, .. }, Ok(Applied::Retried(n))) => {
            let _ = done.send(Ok(n));
        }
        (Commit::Retry { done, .. }, Err(m)) => {
            let _ = done.send(Err(fail(&m)));
        }
        (Commit::Drop { done, .. }, Ok(Applied::Dropped(found))) => {
            let _ = done.send(Ok(found));
        }
        (Commit::Drop { done, .. }, Err(m)) => {
            let _ = done.send(Err(fail(&m)));
        }
        (Commit::Quarantine { .. }, _) => {}
        (_, Ok(_)) => unreachable!("operation and its result always match"),
    }
}
