//! Each cluster node's read replica of the shared database (issue 13): the
//! change feed (`feed`: LISTEN, catch-up from the last applied id, a
//! snapshot for a fresh node, reconnection with backoff), the applier
//! (`apply`: change rows to store writes, every reveal checked against this
//! node's own chain view), the periodic reconciliation (`reconcile`) and
//! the node's heartbeat. RCPT reads the local store only, so mail to known
//! aliases flows while PostgreSQL is away.

mod apply;
mod feed;
mod reconcile;

use crate::chain::activation::Activation;
use crate::cluster::{ClusterError, Db};
use crate::config::ClusterConfig;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Why the replica cannot go on now (the feed reconnects and retries).
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the change feed's connection ended")]
    Disconnected,
    #[error("a store task failed: {0}")]
    Task(String),
    /// The node's store holds records of its own (a single node turned
    /// into a cluster node): a first snapshot would remove them.
    #[error(
        "this node's store holds {count} domain(s) the cluster database does not ({first}): \
         move them into the database with `eas-relay cluster init`, or start from an empty data directory"
    )]
    LocalData { count: usize, first: String },
}

impl ReplicaError {
    /// Whether it passes by itself (the database or its connection away).
    pub fn is_temporary(&self) -> bool {
        match self {
            ReplicaError::Cluster(e) => e.is_temporary(),
            ReplicaError::Disconnected => true,
            _ => false,
        }
    }
}

/// What `/health` and the heartbeat tell of the replica.
#[derive(Debug, Default)]
pub struct Status {
    /// The feed is connected and following.
    connected: AtomicBool,
    /// Reveals refused by the chain check since start.
    refused: AtomicU64,
    /// Rows waiting for the chain (unreachable) to be checked.
    waiting: AtomicU64,
}

impl Status {
    /// `"ok"` while the feed follows the database, else `"unreachable"`.
    pub fn state(&self) -> &'static str {
        if self.connected.load(Ordering::Relaxed) {
            "ok"
        } else {
            "unreachable"
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    fn set_connected(&self, up: bool) {
        metrics::gauge!("eas_replica_connected").set(if up { 1.0 } else { 0.0 });
        self.connected.store(up, Ordering::Relaxed);
    }

    pub(crate) fn note_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// How often the replica does what it does (`[cluster]`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Reading `changes` without a notification (a lost NOTIFY costs this).
    pub poll: Duration,
    pub reconcile: Duration,
    pub heartbeat: Duration,
}

impl Timing {
    pub fn from_config(config: &ClusterConfig) -> Timing {
        Timing {
            poll: config.poll_interval.0,
            reconcile: config.reconcile_interval.0,
            heartbeat: config.heartbeat_interval.0,
        }
    }
}

/// One node's replica of the shared database.
pub struct Replica {
    db: Db,
    node_id: String,
    applier: apply::Applier,
    status: Arc<Status>,
    timing: Timing,
    /// The schema was migrated by this process (once per start).
    migrated: AtomicBool,
    /// Snapshot rows whose reveal waits for the chain, and digests of
    /// reveal rows refused (not checked again by every reconciliation).
    pending: std::sync::Mutex<feed::Pending>,
}

impl Replica {
    pub fn new(
        db: Db,
        node_id: String,
        store: Arc<Store>,
        activation: Option<Arc<Activation>>,
        timing: Timing,
    ) -> Arc<Replica> {
        let status = Arc::new(Status::default());
        Arc::new(Replica {
            applier: apply::Applier::new(store, activation, status.clone()),
            db,
            node_id,
            status,
            timing,
            migrated: AtomicBool::new(false),
            pending: Default::default(),
        })
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    fn store(&self) -> &Arc<Store> {
        &self.applier.store
    }

    /// Whether a snapshot ever completed here (the node may then serve
    /// while PostgreSQL is down).
    pub fn synced(&self) -> Result<bool, StoreError> {
        Ok(self.store().replica_applied()?.is_some())
    }

    /// At start: migrates the schema and catches up before the node
    /// serves, with a snapshot when this replica was never synced (an
    /// empty replica would refuse mail to every alias) or missed pruned
    /// changes.
    pub async fn start(&self) -> Result<(), ReplicaError> {
        self.migrate().await?;
        let mut feed = self.db.feed().await?;
        self.catch_up(&mut feed).await?;
        self.status.set_connected(true);
        Ok(())
    }

    /// One reconciliation now, on a connection of its own (the periodic
    /// one runs on the feed's): how many domains were repaired.
    pub async fn reconcile_now(&self) -> Result<usize, ReplicaError> {
        let mut feed = self.db.feed().await?;
        self.reconcile(&mut feed).await
    }

    async fn migrate(&self) -> Result<(), ReplicaError> {
        if !self.migrated.load(Ordering::Relaxed) {
            let applied = self.db.migrate().await?;
            if !applied.is_empty() {
                tracing::info!(migrations = ?applied, "cluster database migrated");
            }
            self.migrated.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Reports this node alive every `timing.heartbeat` (applied change
    /// id, queue depth) until `stop`.
    pub async fn heartbeat(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.timing.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return,
            }
            let store = self.store().clone();
            let read = tokio::task::spawn_blocking(move || {
                Ok::<_, StoreError>((
                    store.replica_applied()?.unwrap_or(0),
                    store.queue_due_count()?,
                ))
            })
            .await;
            let Ok(Ok((applied, depth))) = read else {
                continue;
            };
            if let Err(e) = self.db.heartbeat(&self.node_id, applied, depth).await {
                tracing::debug!(error = %e, "heartbeat not recorded");
            }
        }
    }
}
