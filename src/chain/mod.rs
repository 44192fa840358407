//! The chain side of chain-governed aliases: EAS / `.country` bindings,
//! signature and commitment verification, and the JSON-RPC client the
//! watcher and the activation endpoints read the chain with.

pub mod activation;
pub mod bindings;
pub mod client;
pub mod deactivation;
mod health;
pub mod registry;
pub mod verify;
pub mod watcher;

pub use client::{
    At, BlockInfo, ChainClient, ChainError, ChainEvent, EasCall, Limits, RpcFailure, StateRead,
    StateValue,
};
pub use verify::VerifyError;

use crate::config::Config;
use std::sync::Arc;

/// The chain parts of a running node.
pub struct Chain {
    pub client: ChainClient,
    pub registries: Arc<registry::Registries>,
    pub watcher: Arc<watcher::Watcher>,
    pub activation: Arc<activation::Activation>,
}

impl Chain {
    /// Builds the client, registries, watcher and activation checks from the
    /// config (no network yet).
    pub fn new(config: &Config, store: Arc<crate::store::Store>) -> Result<Chain, ChainError> {
        store.set_chain_clock_skew(config.chain.max_clock_skew.0.as_secs());
        let client = ChainClient::new(&config.chain.rpc_url, config.chain.request_timeout.0)?
            .with_limits(Limits {
                max_log_range: config.chain.max_block_range,
                ..Limits::default()
            });
        let registries = Arc::new(registry::Registries::from_config(&config.chain));
        let watcher = Arc::new(watcher::Watcher::new(
            client.clone(),
            store.clone(),
            registries.clone(),
            config.chain.clone(),
        ));
        let own = crate::manage::own_domains(config);
        let activation = Arc::new(activation::Activation::new(
            client.clone(),
            store,
            registries.clone(),
            own,
        ));
        Ok(Chain {
            client,
            registries,
            watcher,
            activation,
        })
    }
}
