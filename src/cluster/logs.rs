//! Every node's delivery log in PostgreSQL: rows sent in batches (`INSERT
//! … ON CONFLICT (node_id, id) DO NOTHING`, so a row sent twice is one
//! row), read back for the admin API whichever node wrote them (newest
//! first, the same [`LogEntry`] the node's own log gives), and deleted by
//! age in bounded batches.

use super::{ClusterError, Db};
use crate::store::{LogEntry, LogOutcome, SpamLog};
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::Row;

/// Most rows of one INSERT (one round trip; arrays of this many values).
pub const INSERT_BATCH: usize = 500;

const INSERT: &str = "INSERT INTO delivery_log (node_id, id, time, domain, queue_id, sender, \
     alias, recipient, forward, subject, message_id, outcome, code, message, server, spam) \
     SELECT $1, * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::bigint[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
     $13::int[], $14::text[], $15::text[], $16::jsonb[]) \
     ON CONFLICT (node_id, id) DO NOTHING";

const COLUMNS: &str = "id, (extract(epoch FROM time) * 1000)::bigint, queue_id, sender, alias, \
     recipient, forward, subject, message_id, outcome, code, message, server, spam";

/// The local part of an alias (`local@domain`) in SQL, as the node's own
/// log matches it (case-insensitively).
const ALIAS_LOCAL: &str = "lower(regexp_replace(alias, '@[^@]*$', ''))";

const PURGE: &str = "DELETE FROM delivery_log WHERE ctid IN \
     (SELECT ctid FROM delivery_log WHERE time < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// `value` as a PostgreSQL bigint (ids and queue ids are far below
/// i64::MAX: Unix ms shifted by 12 bits).
fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `text` as PostgreSQL can hold it: a text column (and a jsonb string)
/// refuses the NUL character, which a sender may put in a Subject or a
/// Message-ID. Refused, it would fail its whole batch, and the outbox,
/// retrying its oldest rows first, would never send anything again; so a
/// NUL is shown as U+FFFD instead.
fn pg_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// A row's spam verdict as jsonb, its strings (rspamd's symbols, taken
/// from the message's scan) without NUL, as [`pg_text`].
fn spam_json(spam: &SpamLog) -> Option<serde_json::Value> {
    let text = serde_json::to_string(spam).ok()?;
    if text.contains("\\u0000") {
        serde_json::from_str(&text.replace("\\u0000", "\\ufffd")).ok()
    } else {
        serde_json::from_str(&text).ok()
    }
}

fn timestamp(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn outcome_text(outcome: LogOutcome) -> &'static str {
    match outcome {
        LogOutcome::Delivered => "delivered",
        LogOutcome::Deferred => "deferred",
        LogOutcome::Bounced => "bounced",
        LogOutcome::Refused => "refused",
    }
}

fn outcome_of(text: &str) -> Option<LogOutcome> {
    Some(match text {
        "delivered" => LogOutcome::Delivered,
        "deferred" => LogOutcome::Deferred,
        "bounced" => LogOutcome::Bounced,
        "refused" => LogOutcome::Refused,
        _ => return None,
    })
}

impl Db {
    /// Sends `rows` of node `node_id`'s log; returns how many were new
    /// (a row already there, sent before a crash or by `cluster init`, is
    /// skipped).
    pub async fn insert_logs(&self, node_id: &str, rows: &[LogEntry]) -> Result<u64, ClusterError> {
        let client = self.client().await?;
        let mut new = 0;
        for chunk in rows.chunks(INSERT_BATCH) {
            let ids: Vec<i64> = chunk.iter().map(|r| bigint(r.id)).collect();
            let times: Vec<SystemTime> = chunk.iter().map(|r| timestamp(r.time)).collect();
            let text = |f: fn(&LogEntry) -> &str| -> Vec<Cow<'_, str>> {
                chunk.iter().map(|r| pg_text(f(r))).collect()
            };
            let optional = |f: fn(&LogEntry) -> Option<&str>| -> Vec<Option<Cow<'_, str>>> {
                chunk.iter().map(|r| f(r).map(pg_text)).collect()
            };
            let domains = text(|r| r.alias_domain());
            let queue_ids: Vec<i64> = chunk.iter().map(|r| bigint(r.queue_id)).collect();
            let senders = text(|r| &r.sender);
            let aliases = text(|r| &r.alias);
            let recipients = text(|r| &r.recipient);
            let forwards = text(|r| &r.forward);
            let subjects = optional(|r| r.subject.as_deref());
            let message_ids = optional(|r| r.message_id.as_deref());
            let outcomes: Vec<&str> = chunk.iter().map(|r| outcome_text(r.outcome)).collect();
            let codes: Vec<i32> = chunk.iter().map(|r| i32::from(r.code)).collect();
            let messages = text(|r| &r.message);
            let servers = optional(|r| r.server.as_deref());
            let spam: Vec<Option<serde_json::Value>> = chunk
                .iter()
                .map(|r| r.spam.as_ref().and_then(spam_json))
                .collect();
            new += client
                .execute(
                    INSERT,
                    &[
                        &node_id,
                        &ids,
                        &times,
                        &domains,
                        &queue_ids,
                        &senders,
                        &aliases,
                        &recipients,
                        &forwards,
                        &subjects,
                        &message_ids,
                        &outcomes,
                        &codes,
                        &messages,
                        &servers,
                        &spam,
                    ],
                )
                .await
                .map_err(|e| self.error(&e))?;
        }
        Ok(new)
    }

    /// The log of `domain` (or of one alias of it, by local part) over
    /// every node, newest first; skips `offset` rows, at most `limit`.
    pub async fn list_logs(
        &self,
        domain: &str,
        alias: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<LogEntry>, ClusterError> {
        let client = self.client().await?;
        let (offset, limit) = (bigint(offset as u64), bigint(limit as u64));
        let rows = match alias {
            None => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM delivery_log WHERE domain = $1 \
                     ORDER BY time DESC, id DESC, node_id OFFSET $2 LIMIT $3"
                );
                client.query(&sql, &[&domain, &offset, &limit]).await
            }
            Some(alias) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM delivery_log WHERE domain = $1 \
                     AND {ALIAS_LOCAL} = lower($2) \
                     ORDER BY time DESC, id DESC, node_id OFFSET $3 LIMIT $4"
                );
                client
                    .query(&sql, &[&domain, &alias, &offset, &limit])
                    .await
            }
        }
        .map_err(|e| self.error(&e))?;
        rows.iter().map(|row| self.log_row(row)).collect()
    }

    fn log_row(&self, row: &Row) -> Result<LogEntry, ClusterError> {
        // try_get: a column of another type (a schema changed by hand) is
        // an error, not a panic.
        let get = |e: tokio_postgres::Error| self.error(&e);
        let outcome: String = row.try_get(9).map_err(get)?;
        let code: i32 = row.try_get(10).map_err(get)?;
        let spam: Option<serde_json::Value> = row.try_get(13).map_err(get)?;
        Ok(LogEntry {
            id: u64::try_from(row.try_get::<_, i64>(0).map_err(get)?).unwrap_or(0),
            time: u64::try_from(row.try_get::<_, i64>(1).map_err(get)?).unwrap_or(0),
            queue_id: u64::try_from(row.try_get::<_, i64>(2).map_err(get)?).unwrap_or(0),
            sender: row.try_get(3).map_err(get)?,
            alias: row.try_get(4).map_err(get)?,
            recipient: row.try_get(5).map_err(get)?,
            forward: row.try_get(6).map_err(get)?,
            subject: row.try_get(7).map_err(get)?,
            message_id: row.try_get(8).map_err(get)?,
            outcome: outcome_of(&outcome)
                .ok_or_else(|| ClusterError::Other(format!("unknown log outcome {outcome:?}")))?,
            // The CHECK keeps it in 0..=65535.
            code: u16::try_from(code).unwrap_or(0),
            message: row.try_get(11).map_err(get)?,
            server: row.try_get(12).map_err(get)?,
            // A verdict that does not read as one is left out, not fatal.
            spam: spam.and_then(|v| serde_json::from_value::<SpamLog>(v).ok()),
        })
    }

    /// Deletes log rows older than `before_ms` (Unix ms), every node's, in
    /// statements of at most `batch` rows; returns how many. Nodes purging
    /// at once skip each other's rows (SKIP LOCKED).
    pub async fn purge_logs(&self, before_ms: u64, batch: usize) -> Result<u64, ClusterError> {
        let client = self.client().await?;
        let (before, batch) = (timestamp(before_ms), bigint(batch as u64));
        let mut total = 0;
        loop {
            let n = client
                .execute(PURGE, &[&before, &batch])
                .await
                .map_err(|e| self.error(&e))?;
            total += n;
            if n < batch as u64 {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_as_written() {
        for o in [
            LogOutcome::Delivered,
            LogOutcome::Deferred,
            LogOutcome::Bounced,
            LogOutcome::Refused,
        ] {
            assert_eq!(outcome_of(outcome_text(o)), Some(o));
            // The same words as the node's own log (serde).
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::String(outcome_text(o).into())
            );
        }
        assert_eq!(outcome_of("lost"), None);
    }
}
