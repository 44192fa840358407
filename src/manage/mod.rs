//! Operator actions on domains, aliases and the queue, with their input
//! validation and the views they return. [`Local`] carries them out on a
//! store this process holds: the admin API calls it on a running node, the
//! CLI when no node runs. The CLI reaches a running node through the same
//! [`Manage`] trait (`cli::remote`), so it prints the same either way.
//!
//! In cluster mode ([`Local::with_cluster`]) every write is committed in
//! the shared database first and then in the store with the ids it gave;
//! while the database cannot take it the write is refused
//! ([`ManageError::ClusterDown`], 503) and nothing is written. Reads stay
//! on the store, the node's replica.

mod aliases;
mod domains;
mod local;
mod queue;
mod validate;
mod views;

#[cfg(test)]
mod tests;

pub(crate) use aliases::{BulkBehavior, BulkItem};
pub(crate) use domains::DomainUpdate;
pub use local::{Local, QueueAccess};
pub(crate) use queue::LogQuery;
pub(crate) use validate::{parse_alias, parse_domain};
pub(crate) use views::{
    AliasView, DOMAIN_ALIASES_SHOWN, DomainView, QueueView, Removed, log_items,
};

use crate::queue::QueueError;
use crate::store::StoreError;

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManageError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Remote(String),
    /// Cluster mode: the shared database cannot take the write now (down,
    /// unreachable, refusing the login); nothing was written anywhere.
    /// Temporary: the API answers 503.
    #[error("the cluster database is unreachable: {0}")]
    ClusterDown(String),
    /// Cluster mode: the shared database refused the statement itself (a
    /// schema changed by hand, a constraint): an internal error.
    #[error("the cluster database refused the write: {0}")]
    ClusterRefused(String),
}

impl From<crate::cluster::ClusterError> for ManageError {
    fn from(e: crate::cluster::ClusterError) -> ManageError {
        if e.is_refused_write() {
            ManageError::ClusterRefused(e.to_string())
        } else {
            // Unreachable, timed out, TLS or login refused, no database, a
            // schema of another version: the database cannot be used now.
            ManageError::ClusterDown(e.to_string())
        }
    }
}

/// The operator actions the CLI offers, wherever they are carried out: on
/// a store this process holds ([`Local`]) or by the running node through
/// its admin API (`cli::remote`). Both return the same views.
pub(crate) trait Manage {
    async fn domains(&self) -> Result<Vec<DomainView>, ManageError>;
    async fn add_domain(&self, domain: &str) -> Result<DomainView, ManageError>;
    async fn remove_domain(&self, domain: &str) -> Result<(), ManageError>;
    async fn aliases(&self, domain: &str) -> Result<Vec<AliasView>, ManageError>;
    /// Creates an alias (refused when it exists).
    async fn add_alias(
        &self,
        domain: &str,
        alias: &str,
        forward: &str,
    ) -> Result<AliasView, ManageError>;
    async fn remove_alias(&self, domain: &str, alias: &str) -> Result<Removed, ManageError>;
    async fn import_aliases(&self, text: &str) -> Result<usize, ManageError>;
    async fn queue(&self) -> Result<Vec<QueueView>, ManageError>;
    async fn queue_entry(&self, id: &str) -> Result<QueueView, ManageError>;
    /// Makes one message (or all) due now; returns how many.
    async fn retry(&self, id: Option<&str>) -> Result<usize, ManageError>;
    async fn drop_message(&self, id: &str) -> Result<(), ManageError>;
    /// Up to `limit` items of the delivery log of a domain (or one alias
    /// of it), newest first, as the API renders them.
    async fn logs(
        &self,
        domain: &str,
        alias: Option<&str>,
        limit: usize,
    ) -> Result<serde_json::Value, ManageError>;
}
