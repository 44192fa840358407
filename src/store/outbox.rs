//! The delivery-log outbox of a cluster node: every log row the node writes
//! is also put here, in the same transaction (so a crash cannot keep one
//! without the other), until the cluster's flusher has sent it to
//! PostgreSQL. It is bounded: when full, the oldest rows leave the outbox
//! (they stay in the node's own log) and are counted. Off (nothing
//! written, the table never opened by a commit) on a single node.

use super::db::{Store, StoreError, decode};
use super::log::LogEntry;
use super::tables::LOG_OUTBOX;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::sync::atomic::Ordering;

/// What the flusher reads from the outbox: the decodable rows, oldest
/// first, and the ids of rows that do not decode (to be removed: a
/// damaged row must not stop the rows behind it).
pub type OutboxPage = (Vec<LogEntry>, Vec<u64>);

/// Puts `entry` (its id assigned) into the outbox, first removing the
/// oldest rows while it holds `max` or more; returns how many it removed.
pub(super) fn put(
    outbox: &mut redb::Table<'_, u64, &'static [u8]>,
    max: u64,
    id: u64,
    bytes: &[u8],
) -> Result<u64, StoreError> {
    let mut dropped = 0;
    while outbox.len()? >= max {
        if outbox.pop_first()?.is_none() {
            break;
        }
        dropped += 1;
    }
    outbox.insert(id, bytes)?;
    Ok(dropped)
}

impl Store {
    /// Turns the outbox on with a bound of `max` rows (`cluster.enabled`),
    /// or off with 0. Set once at start, before the committer writes.
    pub fn set_log_outbox(&self, max: u64) {
        self.outbox_max.store(max, Ordering::Relaxed);
    }

    /// The bound of the outbox; 0: off.
    pub(crate) fn log_outbox_max(&self) -> u64 {
        self.outbox_max.load(Ordering::Relaxed)
    }

    /// Rows dropped from the full outbox since this store was opened.
    pub fn log_outbox_dropped(&self) -> u64 {
        self.outbox_dropped.load(Ordering::Relaxed)
    }

    /// Rows waiting in the outbox.
    pub fn log_outbox_len(&self) -> Result<u64, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(txn.open_table(LOG_OUTBOX)?.len()?)
    }

    /// The oldest `limit` rows of the outbox.
    pub fn log_outbox_peek(&self, limit: usize) -> Result<OutboxPage, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(LOG_OUTBOX)?;
        let (mut rows, mut damaged) = (Vec::new(), Vec::new());
        for item in table.iter()?.take(limit) {
            let (k, v) = item?;
            match decode::<LogEntry>("delivery_log_outbox", k.value(), v.value()) {
                Ok(entry) if entry.id == k.value() => rows.push(entry),
                _ => damaged.push(k.value()),
            }
        }
        Ok((rows, damaged))
    }

    /// Removes rows sent (or damaged) from the outbox. Not fsynced of its
    /// own: a removal lost in a crash sends the rows again, which
    /// PostgreSQL ignores (same node id and log id).
    pub fn log_outbox_remove(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut txn = self.db().begin_write()?;
        txn.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Corrupt {
                table: "transaction",
                key: "durability".into(),
                reason: e.to_string(),
            })?;
        {
            let mut table = txn.open_table(LOG_OUTBOX)?;
            for id in ids {
                table.remove(*id)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LogOutcome;

    fn entry(n: u64) -> LogEntry {
        LogEntry {
            id: 0,
            time: crate::store::now_ms(),
            queue_id: n,
            sender: "s@example.org".into(),
            alias: "a@x.test".into(),
            recipient: "a@x.test".into(),
            forward: "u@dest.test".into(),
            subject: None,
            message_id: None,
            outcome: LogOutcome::Delivered,
            code: 250,
            message: "ok".into(),
            server: None,
            spam: None,
        }
    }

    fn log(s: &Store, from: u64, to: u64) {
        s.batch(true, |b| {
            for n in from..to {
                b.log(entry(n))?;
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn off_by_default_then_every_row_in_the_same_commit_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let s = Store::open(&path).unwrap();
            log(&s, 0, 2);
            assert_eq!(s.log_outbox_len().unwrap(), 0, "off: nothing kept");
            s.set_log_outbox(100);
            log(&s, 2, 5);
            assert_eq!(s.log_outbox_len().unwrap(), 3);
        }
        let s = Store::open(&path).unwrap();
        let (rows, damaged) = s.log_outbox_peek(10).unwrap();
        assert!(damaged.is_empty());
        let queued: Vec<u64> = rows.iter().map(|r| r.queue_id).collect();
        assert_eq!(queued, vec![2, 3, 4], "oldest first, kept across a reopen");
        // The rows are the log's own (same ids).
        let logged = s.log_list("x.test", None, 0, 10).unwrap();
        assert!(rows.iter().all(|r| logged.contains(r)));
        s.log_outbox_remove(&[rows[0].id, rows[1].id]).unwrap();
        let (rows, _) = s.log_outbox_peek(10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].queue_id, 4);
    }

    #[test]
    fn a_full_outbox_drops_its_oldest_rows_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.set_log_outbox(3);
        log(&s, 0, 5);
        assert_eq!(s.log_outbox_len().unwrap(), 3);
        assert_eq!(s.log_outbox_dropped(), 2);
        let (rows, _) = s.log_outbox_peek(10).unwrap();
        let queued: Vec<u64> = rows.iter().map(|r| r.queue_id).collect();
        assert_eq!(queued, vec![2, 3, 4], "the newest stay");
        // The node's own log keeps every row.
        assert_eq!(s.log_list("x.test", None, 0, 10).unwrap().len(), 5);
        log(&s, 5, 6);
        assert_eq!(s.log_outbox_dropped(), 3);
    }

    #[test]
    fn a_damaged_row_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.set_log_outbox(10);
        log(&s, 0, 1);
        let txn = s.db().begin_write().unwrap();
        txn.open_table(LOG_OUTBOX)
            .unwrap()
            .insert(1u64, b"not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
        let (rows, damaged) = s.log_outbox_peek(10).unwrap();
        assert_eq!((rows.len(), damaged), (1, vec![1]));
    }
}
