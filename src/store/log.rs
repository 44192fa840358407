//! The delivery log: one entry per recipient outcome (delivered, deferred,
//! bounced, or refused at the end of DATA by the content scan), kept per
//! alias domain, newest first on read, purged after the
//! configured retention.

use super::db::{Store, StoreError, decode};
use super::tables::{LOG, LOG_TIME};
use redb::{ReadableDatabase, ReadableTable};

/// Most log entries deleted in one transaction of a purge.
pub(crate) const PURGE_BATCH: usize = 1000;
use serde::{Deserialize, Serialize};

/// What happened to one recipient on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogOutcome {
    Delivered,
    Deferred,
    Bounced,
    /// Refused before acceptance (the content scan said spam or virus):
    /// the sender's server got the reply, nothing was queued.
    Refused,
}

/// The content scan's verdict on a refused or flagged message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpamLog {
    pub score: f64,
    pub required: f64,
    /// The relay's action (rspamd's, or a domain's thresholds').
    pub action: String,
    /// `NAME(score)` of the highest-scoring symbols, comma-separated.
    pub symbols: String,
}

/// Scores are finite (rspamd's non-finite numbers are read as 0).
impl Eq for SpamLog {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Assigned by the store (time-ordered).
    pub id: u64,
    /// Unix ms.
    pub time: u64,
    pub queue_id: u64,
    /// Envelope sender of the message.
    pub sender: String,
    /// The alias that matched (`local@domain`, `*@domain`).
    pub alias: String,
    /// The address the client sent to, as sent.
    #[serde(default)]
    pub recipient: String,
    /// The forwarding address tried.
    pub forward: String,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub outcome: LogOutcome,
    /// SMTP code of the reply (remote, or our own for local failures).
    pub code: u16,
    /// The reply text.
    pub message: String,
    /// The host that answered, when one did.
    pub server: Option<String>,
    /// The content scan's verdict, for a refused message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam: Option<SpamLog>,
}

impl LogEntry {
    /// The domain the entry is filed under: the alias's domain.
    pub(crate) fn alias_domain(&self) -> &str {
        let addr = if self.alias.is_empty() {
            &self.forward
        } else {
            &self.alias
        };
        addr.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl Store {
    /// Log entries of a domain, newest first; `alias` filters on the local
    /// part of the alias. Skips `offset` matches and returns at most `limit`.
    pub(crate) fn log_list(
        &self,
        domain: &str,
        alias: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let txn = self.db().begin_read()?;
        let table = txn.open_table(LOG)?;
        let mut skipped = 0;
        for item in table.range((domain, 0u64)..=(domain, u64::MAX))?.rev() {
            let (k, v) = item?;
            let entry: LogEntry = decode("delivery_log", k.value().1, v.value())?;
            if let Some(a) = alias {
                let local = entry.alias.rsplit_once('@').map(|(l, _)| l).unwrap_or("");
                if !local.eq_ignore_ascii_case(a) {
                    continue;
                }
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            out.push(entry);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` log entries with an id above `after`, oldest first
    /// (every domain's: `cluster init` pages through the whole log).
    pub(crate) fn log_after(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let txn = self.db().begin_read()?;
        let time = txn.open_table(LOG_TIME)?;
        let log = txn.open_table(LOG)?;
        let mut out = Vec::new();
        let Some(start) = after.checked_add(1) else {
            return Ok(out);
        };
        for item in time.range(start..)?.take(limit) {
            let (k, v) = item?;
            let id = k.value();
            // An index row whose entry is gone (a purge in between) is skipped.
            if let Some(bytes) = log.get((v.value(), id))? {
                out.push(decode("delivery_log", id, bytes.value())?);
            }
        }
        Ok(out)
    }

    /// Deletes entries older than `before_ms`; returns how many. Works in
    /// transactions of at most [`PURGE_BATCH`] entries, so the committer
    /// (which needs the store's one write transaction) waits for one short
    /// batch at most, never for the whole purge.
    pub(crate) fn log_purge(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.log_purge_batch(before_ms, PURGE_BATCH)?;
            total += n;
            if n < PURGE_BATCH {
                return Ok(total);
            }
            // Let a waiting committer in between two batches.
            std::thread::yield_now();
        }
    }

    /// Deletes at most `max` entries older than `before_ms` in one
    /// transaction; returns how many.
    pub(crate) fn log_purge_batch(&self, before_ms: u64, max: usize) -> Result<usize, StoreError> {
        // Log ids are (unix ms << 12 | sequence); an absurd time cannot
        // overflow into a wrong cutoff.
        let cutoff = before_ms
            .checked_shl(12)
            .filter(|c| c >> 12 == before_ms)
            .unwrap_or(u64::MAX);
        let mut txn = self.db().begin_write()?;
        // A purge lost in a crash is simply done again: no fsync of its own.
        txn.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Corrupt {
                table: "transaction",
                key: "durability".into(),
                reason: e.to_string(),
            })?;
        let n = {
            let mut time = txn.open_table(LOG_TIME)?;
            let mut log = txn.open_table(LOG)?;
            let mut old = Vec::new();
            for item in time.range(..cutoff)?.take(max) {
                let (k, v) = item?;
                old.push((k.value(), v.value().to_string()));
            }
            for (id, domain) in &old {
                log.remove((domain.as_str(), *id))?;
                time.remove(*id)?;
            }
            old.len()
        };
        txn.commit()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(alias: &str, outcome: LogOutcome) -> LogEntry {
        LogEntry {
            id: 0,
            time: crate::store::now_ms(),
            queue_id: 1,
            sender: "s@example.org".into(),
            alias: alias.into(),
            recipient: alias.into(),
            forward: "u@dest.test".into(),
            subject: Some("hi".into()),
            message_id: None,
            outcome,
            code: 250,
            message: "ok".into(),
            server: Some("127.0.0.1".into()),
            spam: None,
        }
    }

    #[test]
    fn newest_first_filtered_and_paginated() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.batch(true, |b| {
            b.log(entry("a@x.test", LogOutcome::Deferred))?;
            b.log(entry("b@x.test", LogOutcome::Delivered))?;
            b.log(entry("a@x.test", LogOutcome::Delivered))?;
            b.log(entry("a@y.test", LogOutcome::Bounced))
        })
        .unwrap();
        let all = s.log_list("x.test", None, 0, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[0].id > all[1].id && all[1].id > all[2].id);
        assert_eq!(all[0].outcome, LogOutcome::Delivered);
        let a = s.log_list("x.test", Some("A"), 0, 10).unwrap();
        assert_eq!(a.len(), 2);
        assert!(s.log_list("x.test", None, 0, 0).unwrap().is_empty());
        let page = s.log_list("x.test", None, 1, 1).unwrap();
        assert_eq!(page[0].alias, "b@x.test");
        assert_eq!(s.log_list("y.test", None, 0, 10).unwrap().len(), 1);
    }

    #[test]
    fn log_after_pages_through_every_domain_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.batch(true, |b| {
            b.log(entry("a@x.test", LogOutcome::Delivered))?;
            b.log(entry("a@y.test", LogOutcome::Bounced))?;
            b.log(entry("b@x.test", LogOutcome::Deferred))
        })
        .unwrap();
        let first = s.log_after(0, 2).unwrap();
        let aliases: Vec<&str> = first.iter().map(|e| e.alias.as_str()).collect();
        assert_eq!(aliases, vec!["a@x.test", "a@y.test"]);
        let rest = s.log_after(first[1].id, 2).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].alias, "b@x.test");
        assert!(s.log_after(rest[0].id, 2).unwrap().is_empty());
        assert!(s.log_after(u64::MAX, 2).unwrap().is_empty());
    }

    #[test]
    fn purge_removes_only_old_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.batch(true, |b| b.log(entry("a@x.test", LogOutcome::Delivered)))
            .unwrap();
        assert_eq!(s.log_purge(1).unwrap(), 0);
        assert_eq!(s.log_purge(crate::store::now_ms() + 1).unwrap(), 1);
        assert!(s.log_list("x.test", None, 0, 10).unwrap().is_empty());
    }

    #[test]
    fn purge_goes_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.batch(true, |b| {
            for _ in 0..5 {
                b.log(entry("a@x.test", LogOutcome::Delivered))?;
            }
            Ok(())
        })
        .unwrap();
        let later = crate::store::now_ms() + 1;
        assert_eq!(s.log_purge_batch(later, 2).unwrap(), 2);
        assert_eq!(s.log_list("x.test", None, 0, 10).unwrap().len(), 3);
        assert_eq!(s.log_purge_batch(later, 2).unwrap(), 2);
        assert_eq!(s.log_purge_batch(later, 2).unwrap(), 1);
        assert_eq!(s.log_purge_batch(later, 2).unwrap(), 0);
        assert_eq!(s.log_purge(u64::MAX).unwrap(), 0, "no overflow");
    }
}
