//! The delivery log: one entry per recipient outcome (delivered, deferred,
//! bounced), kept per alias domain, newest first on read, purged after the
//! configured retention.

use super::{LOG, LOG_TIME, Store, StoreError, decode};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

/// What happened to one recipient on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogOutcome {
    Delivered,
    Deferred,
    Bounced,
}

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
}

impl LogEntry {
    /// The domain the entry is filed under: the alias's domain.
    pub fn alias_domain(&self) -> &str {
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
    pub fn log_list(
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

    /// Deletes entries older than `before_ms`; returns how many.
    pub fn log_purge(&self, before_ms: u64) -> Result<usize, StoreError> {
        let cutoff = before_ms << 12;
        let txn = self.db().begin_write()?;
        let n = {
            let mut time = txn.open_table(LOG_TIME)?;
            let mut log = txn.open_table(LOG)?;
            let mut old = Vec::new();
            for item in time.range(..cutoff)? {
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
    fn purge_removes_only_old_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.batch(true, |b| b.log(entry("a@x.test", LogOutcome::Delivered)))
            .unwrap();
        assert_eq!(s.log_purge(1).unwrap(), 0);
        assert_eq!(s.log_purge(crate::store::now_ms() + 1).unwrap(), 1);
        assert!(s.log_list("x.test", None, 0, 10).unwrap().is_empty());
    }
}
