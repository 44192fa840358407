//! [`Local`]: the operator actions on a store this process holds, and the
//! lookups every action starts with (the domain, whether the chain governs
//! it).

use super::validate::{conflict, parse_domain};
use super::{AliasView, DomainView, Manage, ManageError, QueueView, Removed};
use crate::cluster::Writes;
use crate::config::Config;
use crate::queue::Queue;
use crate::spool::Spool;
use crate::store::{DomainRecord, Source, Store};
use std::sync::Arc;

/// How queue changes are made.
pub enum QueueAccess {
    /// Through the running node's committer.
    Live(Queue),
    /// Directly in the store (no node running).
    Offline(Spool),
}

/// Operator actions carried out in this process, on a store it holds: the
/// node's (for its admin API) or the CLI's own when no node runs.
pub struct Local {
    pub(super) config: Arc<Config>,
    pub(super) store: Arc<Store>,
    pub(super) queue: QueueAccess,
    /// Cluster mode: where every write is committed first (the store is
    /// then written with the ids given there). None: a single node.
    pub(super) cluster: Option<Writes>,
}

impl Local {
    pub fn new(config: Arc<Config>, store: Arc<Store>, queue: QueueAccess) -> Local {
        Local {
            config,
            store,
            queue,
            cluster: None,
        }
    }

    /// Cluster mode (`Some`): every write is committed in the shared
    /// database first, then in the store with the ids it gave; while the
    /// database cannot take it, the write is refused
    /// ([`ManageError::ClusterDown`]) and nothing is written. Reads stay
    /// on the store (the node's replica).
    pub fn with_cluster(mut self, writes: Option<Writes>) -> Local {
        self.cluster = writes;
        self
    }

    /// The running node's queue workers (None offline).
    pub(crate) fn queue_health(&self) -> Option<Arc<crate::queue::health::Health>> {
        match &self.queue {
            QueueAccess::Live(queue) => Some(queue.health().clone()),
            QueueAccess::Offline(_) => None,
        }
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub(super) fn domain_record(
        &self,
        domain: &str,
    ) -> Result<(String, DomainRecord), ManageError> {
        let name = parse_domain(domain)?;
        match self.store.domain_get(&name)? {
            Some(record) => Ok((name, record)),
            None => Err(ManageError::NotFound(format!("domain {name}"))),
        }
    }

    /// Refuses (409) a name under a chain-governed TLD: the operator may
    /// not claim it, whoever holds it on chain (or nobody yet).
    pub(super) fn not_chain_governed(&self, name: &str) -> Result<(), ManageError> {
        match self.config.chain.governing_tld(name) {
            Some(tld) => Err(conflict(
                "domain",
                format!(
                    "{name} is under .{tld}, whose names are governed by the chain: \
                     its owner activates aliases on chain and with POST /activate"
                ),
            )),
            None => Ok(()),
        }
    }

    /// The normalized name of a domain whose aliases the operator manages
    /// (refused under a chain-governed TLD and for chain-governed domains).
    pub(super) fn static_domain(&self, domain: &str) -> Result<String, ManageError> {
        self.not_chain_governed(&parse_domain(domain)?)?;
        let (name, record) = self.domain_record(domain)?;
        if record.source == Source::Chain {
            return Err(conflict(
                "alias",
                format!("aliases of {name} are governed by the chain"),
            ));
        }
        Ok(name)
    }
}

/// The CLI's commands on this store: the same actions the admin API calls.
impl Manage for Local {
    async fn domains(&self) -> Result<Vec<DomainView>, ManageError> {
        Local::domains(self)
    }

    async fn add_domain(&self, domain: &str) -> Result<DomainView, ManageError> {
        Local::add_domain(self, domain).await
    }

    async fn remove_domain(&self, domain: &str) -> Result<(), ManageError> {
        Local::remove_domain(self, domain).await
    }

    async fn aliases(&self, domain: &str) -> Result<Vec<AliasView>, ManageError> {
        Local::aliases(self, domain)
    }

    async fn add_alias(
        &self,
        domain: &str,
        alias: &str,
        forward: &str,
    ) -> Result<AliasView, ManageError> {
        self.put_alias(domain, alias, forward, false).await
    }

    async fn remove_alias(&self, domain: &str, alias: &str) -> Result<Removed, ManageError> {
        Local::remove_alias(self, domain, alias).await
    }

    async fn import_aliases(&self, text: &str) -> Result<usize, ManageError> {
        Local::import_aliases(self, text).await
    }

    async fn queue(&self) -> Result<Vec<QueueView>, ManageError> {
        Local::queue(self)
    }

    async fn queue_entry(&self, id: &str) -> Result<QueueView, ManageError> {
        Local::queue_entry(self, id)
    }

    async fn retry(&self, id: Option<&str>) -> Result<usize, ManageError> {
        Local::retry(self, id).await
    }

    async fn drop_message(&self, id: &str) -> Result<(), ManageError> {
        Local::drop_message(self, id).await
    }

    async fn logs(
        &self,
        domain: &str,
        alias: Option<&str>,
        limit: usize,
    ) -> Result<serde_json::Value, ManageError> {
        let logs = Local::logs(self, domain, alias, 1, limit)?;
        Ok(serde_json::Value::Array(super::log_items(&logs)))
    }
}
