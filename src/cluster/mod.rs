//! The cluster's shared database (issue 13): PostgreSQL holds what people
//! said (domains, static aliases, chain reveals, suspensions), the DNS
//! provisioning work, every node's delivery log, the ordered change table
//! the nodes replicate from, and the nodes themselves. This module is the
//! connection ([`Db::connect`]: a pool, TLS with rustls), the versioned
//! schema embedded in the binary ([`Db::migrate`], under an advisory lock
//! so that N nodes starting at once migrate once), the nodes' heartbeat,
//! every node's delivery log (`logs`: sent from the node's outbox by
//! `outbox::Flusher`, read by the admin API), `cluster init`'s copy of a
//! single node's store (`init`), and the replica's side of the change feed
//! (`changes`: a dedicated connection listening on `eas_changes`, the
//! change rows after an id, the snapshot a fresh node starts from; the
//! `replica` module applies them). The writes of what people said
//! (`claims`) are typed transactions, each recorded as its node's
//! (`eas.origin`) in the change table. A single node keeps its embedded
//! store and never opens a connection.

mod changes;
mod claims;
mod connect;
mod error;
mod init;
mod logs;
mod migrate;
mod nodes;
pub mod outbox;

pub use changes::{ChangeRow, Feed, SNAPSHOT_BATCH, Snapshot};
pub use claims::{
    AliasClaim, AliasWrite, DomainRemoval, RevealClaim, StaticAliasRow, Writes, domain_settings,
};
pub use error::ClusterError;
pub use init::{Counts, InitError, InitReport};
pub use logs::INSERT_BATCH;
pub use migrate::{HISTORY_TABLE, MIGRATION_LOCK};
pub use nodes::{ClusterStatus, NodeRow};

use crate::config::ClusterConfig;
use deadpool_postgres::{Object, Pool};
use error::Target;
use std::time::Duration;

/// The shared database: a pool of connections to PostgreSQL.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    target: Target,
    /// Bound of getting a connection from the pool (opening one included).
    limit: Duration,
    /// What a dedicated connection (the change feed's) is opened with.
    direct: std::sync::Arc<connect::Direct>,
    /// Set once this process has migrated the schema (a node at start; a
    /// CLI writing offline at its first write: a fresh database then gets
    /// its tables instead of answering "relation does not exist").
    schema: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("target", &self.target.shown)
            .field("user", &self.target.user)
            .field("database", &self.target.database)
            .finish_non_exhaustive()
    }
}

/// Reads and checks `[cluster]`'s connection settings as [`Db::connect`]
/// would (the URL or its file, the CA file, the TLS roots) without opening
/// a connection: `config check` calls it.
pub fn check(config: &ClusterConfig) -> Result<(), ClusterError> {
    connect::settings(config).map(|_| ())
}

impl Db {
    /// A pool for `[cluster]`'s database, after one connection proved that
    /// the server answers, takes the login and has the database: a wrong
    /// URL or password is said at start, not at the first write.
    pub async fn connect(config: &ClusterConfig) -> Result<Db, ClusterError> {
        let db = Db::open(config)?;
        db.probe().await?;
        Ok(db)
    }

    /// A pool for `[cluster]`'s database without connecting: the settings
    /// are checked, connections open when first needed. For a node that
    /// starts while PostgreSQL is down and waits for it (its replica, if
    /// synced, serves meanwhile; its log waits in the outbox).
    pub fn open(config: &ClusterConfig) -> Result<Db, ClusterError> {
        let settings = connect::settings(config)?;
        let pool = connect::pool(&settings)?;
        Ok(Db {
            pool,
            limit: settings.connect_timeout.saturating_mul(2),
            direct: std::sync::Arc::new(connect::Direct {
                pg: settings.pg,
                tls: settings.tls,
                timeout: settings.connect_timeout,
            }),
            target: settings.target,
            schema: std::sync::Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    /// One round trip on a connection of the pool: whether the server
    /// answers, takes the login and has the database.
    pub async fn probe(&self) -> Result<(), ClusterError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| self.target.classify(&e))?;
        Ok(())
    }

    /// A connection of the pool.
    pub async fn client(&self) -> Result<Object, ClusterError> {
        self.pool
            .get()
            .await
            .map_err(|e| self.target.classify_pool(&e, self.limit))
    }

    /// Sorts a driver error of a statement run on one of this pool's
    /// connections (for the cluster's own modules and the tests).
    pub fn error(&self, e: &tokio_postgres::Error) -> ClusterError {
        self.target.classify(e)
    }

    /// Where the pool connects, `host:port` (no login, no password).
    pub fn target(&self) -> &str {
        &self.target.shown
    }

    /// Closes the pool: connections handed out end when given back.
    pub fn close(&self) {
        self.pool.close();
    }
}
