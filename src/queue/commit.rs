//! The committer: one thread that takes every queue write, groups whatever
//! is waiting into one store transaction with one fsync (group commit), and
//! only then answers the waiters. It also turns delivery outcomes into the
//! next state: delivered, retry later with backoff, or bounce with a DSN.

use super::{Commit, Event, QueueError, QueueSettings, RcptResult, Spool, dsn, ops, redact};
use crate::outbound::DeliveryStatus;
use crate::store::{
    Batch, LogEntry, LogOutcome, QueueEntry, RcptStatus, Store, StoreError, format_queue_id, now_ms,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 512;

pub(super) struct Committer {
    pub store: Arc<Store>,
    pub spool: Spool,
    pub settings: QueueSettings,
    pub events: mpsc::UnboundedSender<Event>,
    pub health: Arc<super::health::Health>,
}

/// What one operation produced inside the transaction, to act on after the
/// commit is durable.
enum Applied {
    Inserted,
    Recorded(Option<u64>),
    Retried(usize),
    Dropped(bool),
    Quarantined,
    Logged,
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

/// Why a transaction did not commit.
enum Failure {
    /// Handling an operation panicked (a bug, or data it cannot handle).
    Panicked(String),
    Store(StoreError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Panicked(m) => write!(f, "panicked: {m}"),
            Failure::Store(e) => e.fmt(f),
        }
    }
}

/// The message of a caught panic.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Committer {
    pub(super) fn run(self, mut rx: mpsc::UnboundedReceiver<Commit>) {
        let _alive = self.health.committer.alive_guard(&self.health);
        while let Some(first) = rx.blocking_recv() {
            let mut ops = vec![first];
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            self.health.committer.busy();
            // Each operation is already isolated inside `commit`; this is
            // the last line: whatever escapes costs this batch's answers
            // (their waiters see the queue closed: 451), never the thread.
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.commit(ops))) {
                metrics::counter!("eas_queue_commit_panics_total").increment(1);
                tracing::error!(panic = %panic_message(&*panic), "queue commit panicked");
            }
            self.health.committer.idle();
        }
    }

    fn commit(&self, ops: Vec<Commit>) {
        let has_insert = ops.iter().any(|op| matches!(op, Commit::Insert { .. }));
        let now = now_ms();
        if has_insert && let Err(e) = self.spool.sync_dir() {
            tracing::error!(error = %e, ops = ops.len(), "cannot sync the spool directory");
            let message = QueueError::Spool(e).to_string();
            for op in ops {
                respond(op, Err(message.clone()), self.retry_at(now));
            }
            return;
        }
        let failure = match self.transact(&ops, now) {
            Ok((applied, after)) => {
                self.after_commit(after);
                metrics::counter!("eas_queue_commits_total").increment(1);
                metrics::histogram!("eas_queue_commit_batch_size").record(ops.len() as f64);
                for (op, applied) in ops.into_iter().zip(applied) {
                    respond(op, Ok(applied), 0);
                }
                return;
            }
            Err(failure) => failure,
        };
        if ops.len() == 1 {
            if let Some(op) = ops.into_iter().next() {
                self.failed_alone(op, failure, now);
            }
            return;
        }
        // One bad operation must not fail the others: replay them one by
        // one and find it.
        tracing::warn!(error = %failure, ops = ops.len(), "group commit failed; replaying one by one");
        for op in ops {
            match self.transact(std::slice::from_ref(&op), now) {
                Ok((applied, after)) => {
                    self.after_commit(after);
                    metrics::counter!("eas_queue_commits_total").increment(1);
                    match applied.into_iter().next() {
                        Some(applied) => respond(op, Ok(applied), 0),
                        None => respond(op, Err("nothing applied".into()), self.retry_at(now)),
                    }
                }
                Err(failure) => self.failed_alone(op, failure, now),
            }
        }
    }

    /// Applies `ops` in one durable transaction. A panic or error in any of
    /// them rolls all of them back (and removes the DSN files written).
    fn transact(&self, ops: &[Commit], now: u64) -> Result<(Vec<Applied>, AfterCommit), Failure> {
        let mut after = AfterCommit::default();
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.store.batch(true, |b| {
                ops.iter()
                    .map(|op| self.apply(op, b, now, &mut after))
                    .collect::<Result<Vec<_>, StoreError>>()
            })
        }));
        let failure = match result {
            Ok(Ok(applied)) => return Ok((applied, after)),
            Ok(Err(e)) => Failure::Store(e),
            Err(panic) => Failure::Panicked(panic_message(&*panic)),
        };
        for id in &after.dsn_files {
            let _ = self.spool.remove(*id);
        }
        Err(failure)
    }

    /// Spool deletions and scheduler events of a durable commit.
    fn after_commit(&self, after: AfterCommit) {
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
    }

    fn retry_at(&self, now: u64) -> u64 {
        now.saturating_add(
            u64::try_from(self.settings.retry_initial.as_millis()).unwrap_or(u64::MAX),
        )
    }

    /// One operation failed on its own. Outcomes for an entry that cannot
    /// be handled (it panics, or its record is damaged) quarantine that
    /// entry; any other failure answers the waiter with an error or a
    /// later retry.
    fn failed_alone(&self, op: Commit, failure: Failure, now: u64) {
        tracing::error!(error = %failure, "queue operation failed");
        let damaged = matches!(
            failure,
            Failure::Panicked(_) | Failure::Store(StoreError::Corrupt { .. })
        );
        match op {
            Commit::Results { id, done, .. } if damaged => {
                self.quarantine_now(
                    id,
                    &format!("recording delivery outcomes failed: {failure}"),
                );
                // Out of the scheduler's hands either way: quarantined, or
                // (quarantine failed) left in the store for the next start.
                let _ = done.send(None);
            }
            op => respond(op, Err(failure.to_string()), self.retry_at(now)),
        }
    }

    /// Quarantines `id` in a transaction of its own.
    fn quarantine_now(&self, id: u64, reason: &str) {
        let op = Commit::Quarantine {
            id,
            reason: reason.to_string(),
        };
        match self.transact(std::slice::from_ref(&op), now_ms()) {
            Ok((_, after)) => self.after_commit(after),
            Err(e) => {
                tracing::error!(id = %format_queue_id(id), error = %e, "cannot quarantine a queue entry; it stays queued");
                let _ = self.events.send(Event::Removed { id });
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
            Commit::Retry { id: only, .. } => {
                let mut n = 0;
                for id in ops::targets(&self.store, *only)? {
                    match ops::retry(b, id, now) {
                        Ok(true) => {
                            n += 1;
                            after.due.push((id, now));
                        }
                        Ok(false) => {}
                        // "Retry all" is not stopped by one damaged record
                        // (recovery quarantines it at the next start).
                        Err(StoreError::Corrupt { reason, .. }) if only.is_none() => {
                            tracing::error!(id = %format_queue_id(id), %reason, "retry: damaged queue record skipped");
                        }
                        Err(e) => return Err(e),
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
            Commit::Log { entries, .. } => {
                for entry in entries {
                    b.log(entry.clone())?;
                }
                Applied::Logged
            }
            Commit::Quarantine { id, reason } => {
                // Raw bytes: a record that no longer decodes is kept too.
                if let Some(raw) = b.remove_raw(*id)? {
                    // Without the files in quarantine the entry stays queued
                    // (the transaction fails): kept, never dropped.
                    self.spool
                        .quarantine(*id, &raw, reason)
                        .map_err(|e| StoreError::Corrupt {
                            table: "queue",
                            key: format_queue_id(*id),
                            reason: format!("cannot move to quarantine: {e}"),
                        })?;
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
        #[cfg(test)]
        if id == tests::PANICS {
            panic!("injected: handling entry {id} panics");
        }
        let max_age = u64::try_from(self.settings.max_age.as_millis()).unwrap_or(u64::MAX);
        let expired = now >= entry.created.saturating_add(max_age);
        for result in results {
            let Some(rcpt) = entry.recipients.get_mut(result.index) else {
                continue;
            };
            if rcpt.status != RcptStatus::Pending {
                continue;
            }
            rcpt.attempts = rcpt.attempts.saturating_add(1);
            // What the remote (or our client) said, with the forwarding
            // address, domain and server hidden: it is shown to the sender
            // (DSN) and in the delivery log.
            let raw = result.reply.to_string();
            let private = redact::Private {
                address: &rcpt.address,
                shown: dsn::shown_address(rcpt),
                server: result.server.as_deref(),
            };
            let mut reply = redact::redact(&raw, &private);
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
                        crate::config::HumanDuration::new(self.settings.max_age)
                    );
                    LogOutcome::Bounced
                }
                DeliveryStatus::Deferred => {
                    let backoff = self.settings.backoff(rcpt.attempts).as_millis();
                    rcpt.next_attempt =
                        now.saturating_add(u64::try_from(backoff).unwrap_or(u64::MAX));
                    LogOutcome::Deferred
                }
            };
            rcpt.last_reply = Some(reply.clone());
            metrics::counter!("eas_deliveries_total", "outcome" => outcome_label(outcome))
                .increment(1);
            let show = self.settings.log_addresses;
            tracing::info!(
                id = %format_queue_id(id),
                to = %crate::observe::loggable_address(&rcpt.address, show),
                alias = %rcpt.alias,
                outcome = outcome_label(outcome),
                reply = %if show { redact::one_line(&raw) } else { reply.clone() },
                "delivery attempt"
            );
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
                spam: entry.spam.clone(),
            })?;
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
        if self.settings.dsn_authenticated_only && !entry.sender_authenticated {
            // The sender may be forged: a DSN would be backscatter.
            metrics::counter!("eas_dsn_withheld_total").increment(1);
            tracing::info!(
                id = %format_queue_id(entry.id),
                "bounce withheld: the sender passed neither SPF nor aligned DKIM"
            );
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
        LogOutcome::Refused => "refused",
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
        (Commit::Log { done, .. }, result) => {
            let _ = done.send(result.is_ok());
        }
        (_, Ok(_)) => unreachable!("operation and its result always match"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;
    use crate::store::sample_entry;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// Recording outcomes for this id panics (a stand-in for any bug that
    /// one entry's data could trigger).
    pub(super) const PANICS: u64 = 0xdead;

    fn committer(dir: &std::path::Path) -> (Committer, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        let settings = QueueSettings {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            max_age: Duration::from_secs(3600),
            max_inflight: 10,
            hostname: "relay.test".into(),
            dsn_authenticated_only: true,
            log_addresses: false,
            stall_timeout: Duration::from_secs(60),
        };
        let c = Committer {
            store: Arc::new(Store::open(&dir.join("s.redb")).unwrap()),
            spool: Spool::open(&dir.join("spool")).unwrap(),
            health: super::super::health::Health::new(settings.stall_timeout),
            settings,
            events,
        };
        (c, rx)
    }

    fn delivered(id: u64) -> (Commit, oneshot::Receiver<Option<u64>>) {
        let (done, rx) = oneshot::channel();
        let results = vec![RcptResult {
            index: 0,
            status: DeliveryStatus::Delivered,
            reply: Reply::new(250, [2, 0, 0], "ok"),
            server: None,
        }];
        (Commit::Results { id, results, done }, rx)
    }

    fn quarantined(c: &Committer, id: u64) -> String {
        let meta = c
            .spool
            .quarantine_dir()
            .join(format!("{}.meta", format_queue_id(id)));
        std::fs::read_to_string(meta).unwrap_or_default()
    }

    #[test]
    fn one_bad_entry_does_not_fail_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _events) = committer(dir.path());
        for id in [1, 2, PANICS] {
            c.spool.write(id, b"Subject: x\r\n\r\nbody").unwrap();
        }
        c.store
            .batch(true, |b| {
                b.put(sample_entry(1, 0))?;
                b.put(sample_entry(PANICS, 0))
            })
            .unwrap();
        // Entry 2's record is damaged.
        let txn = c.store.db().begin_write().unwrap();
        txn.open_table(crate::store::QUEUE)
            .unwrap()
            .insert(2, b"{damaged".as_slice())
            .unwrap();
        txn.commit().unwrap();
        c.spool.write(3, b"new").unwrap();
        let (insert_done, inserted) = oneshot::channel();
        let insert = Commit::Insert {
            entry: Box::new(sample_entry(3, 0)),
            done: insert_done,
        };
        let (r1, mut d1) = delivered(1);
        let (r2, mut d2) = delivered(2);
        let (rp, mut dp) = delivered(PANICS);
        c.commit(vec![r1, r2, insert, rp]);

        assert_eq!(d1.try_recv().unwrap(), None, "entry 1 delivered and done");
        assert!(c.store.queue_get(1).unwrap().is_none());
        assert!(matches!(inserted.blocking_recv().unwrap(), Ok(()),));
        assert!(
            c.store.queue_get(3).unwrap().is_some(),
            "the insert committed"
        );
        // The damaged and the panicking entry are kept in quarantine.
        assert_eq!(d2.try_recv().unwrap(), None);
        assert!(
            quarantined(&c, 2).contains("{damaged"),
            "{}",
            quarantined(&c, 2)
        );
        assert_eq!(dp.try_recv().unwrap(), None);
        assert!(quarantined(&c, PANICS).contains("panicked"));
        assert!(c.store.queue_get(PANICS).unwrap().is_none());
        let eml = c
            .spool
            .quarantine_dir()
            .join(format!("{}.eml", format_queue_id(PANICS)));
        assert!(eml.exists(), "the body is kept");
    }

    #[test]
    fn retry_all_skips_a_damaged_record() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _events) = committer(dir.path());
        c.store.batch(true, |b| b.put(sample_entry(1, 50))).unwrap();
        let txn = c.store.db().begin_write().unwrap();
        txn.open_table(crate::store::QUEUE)
            .unwrap()
            .insert(2, b"{damaged".as_slice())
            .unwrap();
        txn.open_table(crate::store::QUEUE_DUE)
            .unwrap()
            .insert((10, 2), ())
            .unwrap();
        txn.commit().unwrap();
        let (done, mut retried) = oneshot::channel();
        c.commit(vec![Commit::Retry { id: None, done }]);
        assert_eq!(retried.try_recv().unwrap().unwrap(), 1);
    }

    #[test]
    fn the_committer_survives_a_panicking_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _events) = committer(dir.path());
        let health = c.health.clone();
        let store = c.store.clone();
        c.spool.write(PANICS, b"x").unwrap();
        store
            .batch(true, |b| b.put(sample_entry(PANICS, 0)))
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::spawn(move || c.run(rx));
        let (op, done) = delivered(PANICS);
        tx.send(op).ok().unwrap();
        assert_eq!(done.blocking_recv().unwrap(), None);
        // Still committing.
        let (insert_done, inserted) = oneshot::channel();
        let insert = Commit::Insert {
            entry: Box::new(sample_entry(5, 0)),
            done: insert_done,
        };
        tx.send(insert).ok().unwrap();
        assert!(inserted.blocking_recv().unwrap().is_ok());
        assert!(health.healthy());
        drop(tx);
        thread.join().unwrap();
    }

    /// A sample line of a Prometheus rendering, as a number.
    fn sample(rendered: &str, name: &str) -> Option<f64> {
        rendered.lines().find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok())?
        })
    }

    /// Operations that arrive while a group commits wait for it, then go
    /// in the next group together: one transaction (one fsync) for all of
    /// them. Observed through the committer's own metrics, recorded on its
    /// thread by a recorder local to this test; the first group is held
    /// open by holding the store's write transaction, so the grouping does
    /// not depend on timing.
    #[test]
    fn operations_waiting_for_a_commit_go_in_one_group() {
        use super::super::health::{Health, State};
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _events) = committer(dir.path());
        // A 1 ms stall timeout makes "busy with a group" visible in health.
        c.health = Health::new(Duration::from_millis(1));
        let health = c.health.clone();
        let store = c.store.clone();
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let rendered = recorder.handle();
        let (tx, rx) = mpsc::unbounded_channel();
        let thread =
            std::thread::spawn(move || metrics::with_local_recorder(&recorder, || c.run(rx)));
        let insert = |id| {
            let (done, rx) = oneshot::channel();
            let op = Commit::Insert {
                entry: Box::new(sample_entry(id, 0)),
                done,
            };
            (op, rx)
        };

        let txn = store.db().begin_write().unwrap();
        let (first, first_done) = insert(1);
        tx.send(first).ok().unwrap();
        // The committer is inside the first group, waiting for the store.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !health.states().contains(&("committer", State::Stalled)) {
            assert!(std::time::Instant::now() < deadline, "never busy");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Four concurrent writers queue up behind it.
        let waiting: Vec<_> = (2..=5)
            .map(|id| {
                let tx = tx.clone();
                let (op, done) = insert(id);
                std::thread::spawn(move || {
                    tx.send(op).ok().unwrap();
                    done
                })
            })
            .collect();
        let waiting: Vec<_> = waiting.into_iter().map(|t| t.join().unwrap()).collect();
        drop(txn);
        assert!(first_done.blocking_recv().unwrap().is_ok());
        for done in waiting {
            assert!(done.blocking_recv().unwrap().is_ok());
        }
        drop(tx);
        thread.join().unwrap();

        for id in 1..=5 {
            assert!(store.queue_get(id).unwrap().is_some(), "{id} committed");
        }
        let rendered = rendered.render();
        assert_eq!(
            sample(&rendered, "eas_queue_commits_total"),
            Some(2.0),
            "{rendered}"
        );
        assert_eq!(
            sample(&rendered, "eas_queue_commit_batch_size_count"),
            Some(2.0),
            "{rendered}"
        );
        assert_eq!(
            sample(&rendered, "eas_queue_commit_batch_size_sum"),
            Some(5.0),
            "the first alone, then the four together: {rendered}"
        );
    }
}
