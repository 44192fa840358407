//! Settles the removals `/deactivate` and `/deactivate-all` asked for. They
//! read the chain's latest block through one RPC endpoint, which may lag,
//! lie, or be about to be reorged; so they only mark an alias, and here the
//! watcher re-reads each marked alias's own on-chain key at a confirmed
//! block (its cursor, head − `chain.confirmations`):
//!
//! - zero at a block no older than the alias's last check: removed (the
//!   chain no longer commits to it, and that is confirmed);
//! - the commitment still there at a block no older than the mark: the
//!   mark is dropped and the alias stays (the zero read was wrong);
//! - otherwise (the confirmed block is older): wait for the next one.
//!
//! In cluster mode the reveals to remove leave the shared database first
//! (one transaction), then this node's store; while the database cannot
//! take it nothing is removed and the marks wait for the next step. Only a
//! confirmed removal reaches the database: a `/deactivate` read through a
//! lagging endpoint cannot take an alias away from the other nodes.

use super::activation::hex;
use super::registry::Registries;
use super::rpc::{At, ChainError, ChainRpc, StateRead, StateValue};
use super::verify;
use crate::cluster::{ClusterError, Writes};
use crate::store::tables::split_alias_key;
use crate::store::{ChainBinding, Deactivating, Store, StoreError};
use alloy::primitives::B256;

/// What one settlement did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Aliases removed (confirmed gone).
    pub removed: usize,
    /// Marks dropped (the chain still commits, or the alias is gone).
    pub kept: usize,
    /// Marks left for a later block.
    pub waiting: usize,
}

/// Why a settlement stopped short (the watcher logs it and settles again
/// at its next step).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettleError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the cluster database: {0}")]
    Cluster(#[from] ClusterError),
}

/// Settles up to `limit` marks at the confirmed block `block`.
pub(crate) async fn settle(
    rpc: &ChainRpc,
    store: &Store,
    registries: &Registries,
    cluster: Option<&Writes>,
    block: u64,
    limit: usize,
) -> Result<Settled, SettleError> {
    let mut done = Settled::default();
    let marks = store.chain_deactivating(limit.max(1))?;
    if marks.is_empty() {
        return Ok(done);
    }
    let mut pending: Vec<(String, Deactivating, ChainBinding)> = Vec::new();
    let mut reads = Vec::new();
    for (key, mark) in marks {
        let (domain, local) = split_alias_key(&key);
        let binding = store
            .alias_get(domain, local)?
            .and_then(|r| r.chain)
            .filter(|b| mark.marks(b));
        let Some(binding) = binding else {
            // Removed, or replaced by a newer activation: nothing to settle.
            store.chain_unmark(&key)?;
            done.kept += 1;
            continue;
        };
        let Some(registry) = registries.get(Some(&binding.tld)) else {
            done.waiting += 1;
            continue;
        };
        reads.push(StateRead::Commitment {
            eas: registry.eas,
            node: verify::node(&binding.sld),
            alias: verify::alias_hash(&binding.alias),
        });
        pending.push((key, mark, binding));
    }
    if reads.is_empty() {
        return Ok(done);
    }
    let values = rpc.read_many(&reads, At::Number(block)).await?;
    let mut gone = Vec::new();
    for ((key, mark, binding), value) in pending.into_iter().zip(values) {
        match value {
            StateValue::Hash(h) if h == B256::ZERO && block >= binding.checked_block => {
                gone.push((key, binding));
            }
            StateValue::Hash(h) if h != B256::ZERO && block >= mark.from_block => {
                let (domain, _) = split_alias_key(&key);
                tracing::warn!(
                    alias = %binding.alias,
                    %domain,
                    block,
                    marked_at = mark.from_block,
                    on_chain = %hex(h.as_slice()),
                    "a deactivation was not confirmed: the chain still commits to the alias; kept"
                );
                store.chain_unmark(&key)?;
                done.kept += 1;
            }
            _ => done.waiting += 1,
        }
    }
    if let Some(c) = cluster
        && !gone.is_empty()
    {
        let rows: Vec<(&str, &str, &str, &str)> = gone
            .iter()
            .map(|(key, b)| {
                let (domain, local) = split_alias_key(key);
                (domain, local, b.alias.as_str(), b.commitment.as_str())
            })
            .collect();
        c.db.claim_reveals_remove(&c.node_id, &rows).await?;
    }
    for (key, binding) in gone {
        let (domain, local) = split_alias_key(&key);
        let node = verify::node(&binding.sld);
        let alias_hash = verify::alias_hash(&binding.alias);
        if store.chain_forget_alias(domain, local, &binding, &node.0, &alias_hash.0)? {
            tracing::info!(alias = %binding.alias, %domain, block, "alias deactivated (confirmed)");
            metrics::counter!("eas_chain_deactivations_total").increment(1);
        }
        done.removed += 1;
    }
    Ok(done)
}
