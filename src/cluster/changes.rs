//! The change feed as PostgreSQL serves it: a dedicated connection (not
//! one of the pool's, whose notifications nobody reads) that listens on
//! `eas_changes`, reads the change rows after the last id a node applied,
//! and reads the snapshot a fresh node starts from (one REPEATABLE READ
//! transaction: the newest change id and the four tables as change rows).
//! What the rows mean is the replica's business (`crate::replica`).

use super::{ClusterError, Db};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Socket};

/// Bound of one statement of the feed (a batch of changes, a snapshot
/// page): a connection that stops answering is a dead one.
const STATEMENT_LIMIT: Duration = Duration::from_secs(30);

/// Rows read per page of a snapshot.
pub const SNAPSHOT_BATCH: i64 = 5000;

/// One row of `changes` (or of a snapshot, then with id 0).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    pub id: i64,
    /// 'domain' | 'alias' | 'reveal' | 'suspension'.
    pub kind: String,
    /// The domain, or 'local@domain'.
    pub key: String,
    /// The row's state (`to_jsonb(row)`), JSON null when it was removed.
    pub payload: serde_json::Value,
    /// The node that wrote it ('' for anybody else).
    pub origin: String,
}

/// The snapshot's rows: the four tables as change rows (domains first;
/// a cursor's plan is not parallel, so UNION ALL keeps this order, and the
/// replica does not depend on it: suspensions are kept as facts of their
/// own and an alias may arrive before its domain).
const SNAPSHOT_ROWS: &str = "DECLARE eas_snapshot NO SCROLL CURSOR FOR \
     SELECT 'domain'::text, d.domain, eas_payload(to_jsonb(d)) FROM domains d \
     UNION ALL SELECT 'suspension', s.local || '@' || s.domain, eas_payload(to_jsonb(s)) FROM suspensions s \
     UNION ALL SELECT 'alias', a.local || '@' || a.domain, eas_payload(to_jsonb(a)) FROM static_aliases a \
     UNION ALL SELECT 'reveal', r.local || '@' || r.domain, eas_payload(to_jsonb(r)) FROM chain_reveals r";

/// What a node reads instead of a payload it cannot take (too large, or
/// JSON it cannot parse: nesting past serde_json's limit, a number out of
/// range): no row kind decodes a string, so the applier skips the row as
/// unreadable and the feed goes on. Never JSON null, which means removed.
pub const UNREADABLE: &str = "unreadable";

/// A payload's text as PostgreSQL sends it (`eas_payload()`, V3: NULL when
/// larger than 64 KiB, where a row's state is a few hundred bytes), parsed
/// row by row: one bad row is one skipped row, not
/// a batch that fails on every retry and stops the feed for good.
fn parse_payload(text: Option<&str>) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| serde_json::Value::String(UNREADABLE.into()))
}

/// A node's connection to the change feed.
pub struct Feed {
    client: Client,
    /// A message for every notification (folded: one is enough to read);
    /// closed when the connection ends.
    woken: mpsc::Receiver<()>,
    db: Db,
}

/// A snapshot being read (on the feed's connection, inside its
/// transaction): [`Feed::snapshot_page`] until empty, then
/// [`Feed::snapshot_end`].
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// The newest change id the snapshot includes: the feed goes on after it.
    pub upto: i64,
}

/// Opens `pg` with `tls` and drives the connection in a task that turns
/// notifications into messages of the returned channel.
async fn open<T>(
    pg: &tokio_postgres::Config,
    tls: T,
) -> Result<(Client, mpsc::Receiver<()>), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = pg.connect(tls).await?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    // Full: a wake-up is pending already, which is enough.
                    let _ = tx.try_send(());
                }
                Some(Ok(_)) => {}
                // The connection ended (or failed): dropping `tx` says so.
                Some(Err(_)) | None => break,
            }
        }
    });
    Ok((client, rx))
}

impl Db {
    /// A dedicated connection listening on `eas_changes`.
    pub async fn feed(&self) -> Result<Feed, ClusterError> {
        let direct = &self.direct;
        let opening = async {
            match &direct.tls {
                Some(tls) => open(&direct.pg, tls.clone()).await,
                None => open(&direct.pg, tokio_postgres::NoTls).await,
            }
        };
        let (client, woken) = tokio::time::timeout(direct.timeout.saturating_mul(2), opening)
            .await
            .map_err(|_| ClusterError::Timeout {
                target: self.target.shown.clone(),
                limit: direct.timeout.saturating_mul(2),
            })?
            .map_err(|e| self.error(&e))?;
        let feed = Feed {
            client,
            woken,
            db: self.clone(),
        };
        feed.batch("LISTEN eas_changes").await?;
        Ok(feed)
    }
}

impl Feed {
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(STATEMENT_LIMIT, work).await {
            Ok(result) => result.map_err(|e| self.db.error(&e)),
            Err(_) => Err(ClusterError::Timeout {
                target: self.db.target.shown.clone(),
                limit: STATEMENT_LIMIT,
            }),
        }
    }

    async fn batch(&self, sql: &str) -> Result<(), ClusterError> {
        self.bounded(self.client.batch_execute(sql)).await
    }

    /// Waits for a notification; false once the connection has ended.
    pub async fn notified(&mut self) -> bool {
        self.woken.recv().await.is_some()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// At most `limit` change rows after `last`, in id order.
    pub async fn after(&self, last: i64, limit: i64) -> Result<Vec<ChangeRow>, ClusterError> {
        let rows = self
            .bounded(self.client.query(
                // Ids past what the sequence handed out were written by
                // hand (an id of i64::MAX would end the feed: no row is
                // ever after it): they are not read.
                "SELECT id, kind, key, eas_payload(payload), origin FROM changes \
                 WHERE id > $1 AND id <= (SELECT last_value FROM changes_id_seq) \
                 ORDER BY id LIMIT $2",
                &[&last, &limit],
            ))
            .await?;
        rows.iter().map(|r| self.change_row(r, true)).collect()
    }

    /// The lowest change id that can still be read: the table's lowest,
    /// or when it is empty the next id the sequence gives. A node that
    /// applied less than this minus one may have missed pruned rows (or
    /// ids a rolled-back transaction took: a snapshot too many, harmless).
    pub async fn oldest(&self) -> Result<i64, ClusterError> {
        let row = self
            .bounded(self.client.query_one(
                "SELECT coalesce((SELECT min(id) FROM changes), \
                     (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END \
                      FROM changes_id_seq))",
                &[],
            ))
            .await?;
        row.try_get(0).map_err(|e| self.db.error(&e))
    }

    /// The newest change id (0: none yet).
    pub async fn newest(&self) -> Result<i64, ClusterError> {
        let row = self
            .bounded(
                self.client
                    .query_one("SELECT coalesce(max(id), 0) FROM changes", &[]),
            )
            .await?;
        row.try_get(0).map_err(|e| self.db.error(&e))
    }

    /// Starts a snapshot: a REPEATABLE READ, read-only transaction on this
    /// connection, in which the newest change id and the tables are read
    /// as of one moment.
    pub async fn snapshot_begin(&self) -> Result<Snapshot, ClusterError> {
        self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let upto = self.newest().await?;
        self.batch(SNAPSHOT_ROWS).await?;
        Ok(Snapshot { upto })
    }

    /// The next page of the snapshot (empty: the end).
    pub async fn snapshot_page(&self) -> Result<Vec<ChangeRow>, ClusterError> {
        let sql = format!("FETCH {SNAPSHOT_BATCH} FROM eas_snapshot");
        let rows = self.bounded(self.client.query(sql.as_str(), &[])).await?;
        rows.iter().map(|r| self.change_row(r, false)).collect()
    }

    /// Ends the snapshot's transaction.
    pub async fn snapshot_end(&self) -> Result<(), ClusterError> {
        self.batch("COMMIT").await
    }

    /// One domain's rows as change rows (the domain first; none when the
    /// database no longer has it): a reconciliation's repair.
    pub async fn domain_rows(&self, domain: &str) -> Result<Vec<ChangeRow>, ClusterError> {
        let rows = self
            .bounded(self.client.query(
                "SELECT 'domain'::text, d.domain, eas_payload(to_jsonb(d)) FROM domains d \
                     WHERE d.domain = $1 \
                 UNION ALL SELECT 'suspension', s.local || '@' || s.domain, eas_payload(to_jsonb(s)) \
                     FROM suspensions s WHERE s.domain = $1 \
                 UNION ALL SELECT 'alias', a.local || '@' || a.domain, eas_payload(to_jsonb(a)) \
                     FROM static_aliases a WHERE a.domain = $1 \
                 UNION ALL SELECT 'reveal', r.local || '@' || r.domain, eas_payload(to_jsonb(r)) \
                     FROM chain_reveals r WHERE r.domain = $1",
                &[&domain],
            ))
            .await?;
        rows.iter().map(|r| self.change_row(r, false)).collect()
    }

    /// Runs `sql` (one statement, no parameters) and returns its rows as
    /// text columns: the reconciliation's digests.
    pub async fn text_rows(&self, sql: &str) -> Result<Vec<Vec<String>>, ClusterError> {
        let rows = self.bounded(self.client.query(sql, &[])).await?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<_, Option<String>>(i)
                            .map(|v| v.unwrap_or_default())
                            .map_err(|e| self.db.error(&e))
                    })
                    .collect()
            })
            .collect()
    }

    /// A row of `changes` (`with_id`) or of the snapshot (kind, key,
    /// payload), read with try_get: a column of another type (a schema
    /// changed by hand) is an error, not a panic.
    fn change_row(
        &self,
        row: &tokio_postgres::Row,
        with_id: bool,
    ) -> Result<ChangeRow, ClusterError> {
        let get = |e: tokio_postgres::Error| self.db.error(&e);
        if with_id {
            Ok(ChangeRow {
                id: row.try_get(0).map_err(get)?,
                kind: row.try_get(1).map_err(get)?,
                key: row.try_get(2).map_err(get)?,
                payload: parse_payload(row.try_get::<_, Option<&str>>(3).map_err(get)?),
                origin: row.try_get(4).map_err(get)?,
            })
        } else {
            Ok(ChangeRow {
                id: 0,
                kind: row.try_get(0).map_err(get)?,
                key: row.try_get(1).map_err(get)?,
                payload: parse_payload(row.try_get::<_, Option<&str>>(2).map_err(get)?),
                origin: String::new(),
            })
        }
    }
}
