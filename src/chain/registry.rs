//! The configured registries (one per TLD) with their addresses parsed, and
//! the DC address read from the EAS contract when the config leaves it out.

use super::rpc::{At, ChainError, ChainRpc};
use crate::config::ChainConfig;
use alloy::primitives::Address;
use std::sync::OnceLock;

/// One registry, ready to use.
#[derive(Debug)]
pub struct Registry {
    pub tld: String,
    pub eas: Address,
    /// The configured DC, or the EAS contract's dc() once read.
    dc: OnceLock<Address>,
    pub eas_events: bool,
    /// Contracts whose name logs (Transfer, NameRenewed...) are followed,
    /// besides the DC.
    pub log_addresses: Vec<Address>,
}

impl Registry {
    /// The DC address, reading it from the EAS contract on first use.
    pub async fn dc(&self, rpc: &ChainRpc) -> Result<Address, ChainError> {
        if let Some(dc) = self.dc.get() {
            return Ok(*dc);
        }
        let dc = rpc.dc_of(self.eas, At::Latest).await?;
        Ok(*self.dc.get_or_init(|| dc))
    }
}

/// Every configured registry.
#[derive(Debug, Default)]
pub struct Registries {
    pub list: Vec<Registry>,
}

impl Registries {
    /// Parses the addresses of `[[chain.registries]]` (validated by config).
    pub fn from_config(config: &ChainConfig) -> Registries {
        let parse = |s: &str| s.parse::<Address>().ok();
        let list = config
            .registries
            .iter()
            .filter_map(|r| {
                let dc = OnceLock::new();
                if let Some(a) = parse(&r.dc) {
                    let _ = dc.set(a);
                }
                Some(Registry {
                    tld: r.tld.to_ascii_lowercase(),
                    eas: parse(&r.eas)?,
                    dc,
                    eas_events: r.eas_events,
                    log_addresses: r.log_addresses.iter().filter_map(|a| parse(a)).collect(),
                })
            })
            .collect();
        Registries { list }
    }

    /// The registry of `tld`; None when unknown. With `tld` None, the first
    /// (the EAS frontend sends no TLD: it is `.country`).
    pub fn get(&self, tld: Option<&str>) -> Option<&Registry> {
        match tld {
            Some(t) => self.list.iter().find(|r| r.tld.eq_ignore_ascii_case(t)),
            None => self.list.first(),
        }
    }
}
