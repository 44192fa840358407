//! The `nodes` table: each node's heartbeat (an upsert of its last-seen
//! time, the last change it applied and its queue depth, times from the
//! database's clock so that nodes' clocks need not agree) and what
//! `cluster status` shows (each node, its age and its lag behind the
//! newest change).

use super::{ClusterError, Db};
use crate::config::valid_node_id;

/// One node as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub id: String,
    /// Unix ms of its first and last heartbeat (the database's clock).
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub applied_change_id: i64,
    pub queue_depth: i64,
    pub version: String,
}

const HEARTBEAT: &str = "INSERT INTO nodes AS n (id, last_seen, applied_change_id, queue_depth, version) \
     VALUES ($1, now(), $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET last_seen = now(), \
         applied_change_id = EXCLUDED.applied_change_id, \
         queue_depth = EXCLUDED.queue_depth, version = EXCLUDED.version";

const LIST: &str = "SELECT id, (extract(epoch FROM first_seen) * 1000)::bigint, \
     (extract(epoch FROM last_seen) * 1000)::bigint, applied_change_id, queue_depth, version \
     FROM nodes ORDER BY id";

/// The cluster as `cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The database's clock (Unix ms): ages are measured against it.
    pub now_ms: i64,
    /// The newest change id (0: none yet).
    pub max_change_id: i64,
    pub nodes: Vec<NodeRow>,
}

impl ClusterStatus {
    /// How many changes `node` has still to apply.
    pub fn lag(&self, node: &NodeRow) -> i64 {
        (self.max_change_id - node.applied_change_id).max(0)
    }

    /// Milliseconds since `node`'s last heartbeat.
    pub fn age_ms(&self, node: &NodeRow) -> i64 {
        (self.now_ms - node.last_seen_ms).max(0)
    }
}

/// `value` as a PostgreSQL bigint (a count past i64::MAX is shown as it).
fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Db {
    /// Records that `node_id` is alive, has applied changes up to
    /// `applied_change_id` and holds `queue_depth` messages.
    pub async fn heartbeat(
        &self,
        node_id: &str,
        applied_change_id: u64,
        queue_depth: u64,
    ) -> Result<(), ClusterError> {
        if !valid_node_id(node_id) {
            return Err(ClusterError::NodeId(node_id.to_string()));
        }
        let client = self.client().await?;
        client
            .execute(
                HEARTBEAT,
                &[
                    &node_id,
                    &bigint(applied_change_id),
                    &bigint(queue_depth),
                    &env!("CARGO_PKG_VERSION"),
                ],
            )
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    /// Every node that ever sent a heartbeat, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, ClusterError> {
        let client = self.client().await?;
        let rows = client.query(LIST, &[]).await.map_err(|e| self.error(&e))?;
        rows.iter()
            .map(|row| {
                // try_get: a column of another type (a schema changed by
                // hand) is an error, not a panic.
                let get = |e: tokio_postgres::Error| self.error(&e);
                Ok(NodeRow {
                    id: row.try_get(0).map_err(get)?,
                    first_seen_ms: row.try_get(1).map_err(get)?,
                    last_seen_ms: row.try_get(2).map_err(get)?,
                    applied_change_id: row.try_get(3).map_err(get)?,
                    queue_depth: row.try_get(4).map_err(get)?,
                    version: row.try_get(5).map_err(get)?,
                })
            })
            .collect()
    }

    /// The nodes, the newest change id and the database's time.
    pub async fn status(&self) -> Result<ClusterStatus, ClusterError> {
        let nodes = self.nodes().await?;
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (extract(epoch FROM now()) * 1000)::bigint, \
                 coalesce((SELECT max(id) FROM changes), 0)",
                &[],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let get = |e: tokio_postgres::Error| self.error(&e);
        Ok(ClusterStatus {
            now_ms: row.try_get(0).map_err(get)?,
            max_change_id: row.try_get(1).map_err(get)?,
            nodes,
        })
    }
}
