//! The chain side of chain-governed aliases: EAS / `.country` bindings,
//! signature and commitment verification, and the JSON-RPC reader the
//! watcher and the activation endpoints read the chain with.

pub mod activation;
pub(crate) mod bindings;
pub(crate) mod deactivation;
mod health;
pub mod registry;
pub(crate) mod rpc;
pub mod verify;
pub mod watcher;

pub use rpc::{
    At, BlockInfo, ChainError, ChainEvent, ChainRpc, EasCall, Limits, RpcFailure, StateRead,
    StateValue,
};

use crate::config::Config;
use std::sync::Arc;

/// The chain parts of a running node.
pub(crate) struct Chain {
    pub(crate) watcher: Arc<watcher::Watcher>,
    pub(crate) activation: Arc<activation::Activation>,
}

impl Chain {
    /// Builds the RPC reader, registries, watcher and activation checks from the
    /// config (no network yet).
    pub(crate) fn new(
        config: &Config,
        store: Arc<crate::store::Store>,
        cluster: Option<crate::cluster::Writes>,
    ) -> Result<Chain, ChainError> {
        store.set_chain_clock_skew(config.chain.max_clock_skew.0.as_secs());
        let rpc = ChainRpc::new(&config.chain.rpc_url, config.chain.request_timeout.0)?
            .with_limits(Limits {
                max_log_range: config.chain.max_block_range,
                ..Limits::default()
            });
        let registries = Arc::new(registry::Registries::from_config(&config.chain));
        let watcher = Arc::new(
            watcher::Watcher::new(
                rpc.clone(),
                store.clone(),
                registries.clone(),
                config.chain.clone(),
            )
            .with_cluster(cluster.clone()),
        );
        let own = config.own_domains();
        let activation = Arc::new(
            activation::Activation::new(rpc, store, registries, own).with_cluster(cluster),
        );
        Ok(Chain {
            watcher,
            activation,
        })
    }
}
