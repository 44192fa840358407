//! `[chain]`: following the chain (the JSON-RPC endpoint, how the watcher
//! polls and sweeps, the registries and their EAS contracts) and which
//! domains it governs.

use super::error::{ConfigError, nonzero_duration, positive};
use super::units::HumanDuration;
use crate::address::is_hostname;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// One name registry (a TLD) and its EAS contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The TLD the registry rents names under, e.g. "country".
    pub tld: String,
    /// Address of the EAS contract.
    pub eas: String,
    /// Address of the DC-compatible registry (ownerOf(string),
    /// nameExpires(string)); empty: read from the EAS contract's dc().
    #[serde(default)]
    pub dc: String,
    /// The EAS contract emits AliasActivated/AliasDeactivated/AllDeactivated;
    /// false: changes are found in the calldata of transactions to it.
    #[serde(default = "yes")]
    pub eas_events: bool,
    /// More contracts whose Transfer / NameRegistered / NameRenewed logs
    /// change owners or expiries (e.g. the base registrar).
    #[serde(default)]
    pub log_addresses: Vec<String>,
}

/// Following the chain: aliases of chain-governed domains forward only while
/// the chain says so (DESIGN §3, §8).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// Off: no chain-governed domains (the embedded default).
    pub enabled: bool,
    /// JSON-RPC endpoint (HTTP).
    pub rpc_url: String,
    /// Checked against the endpoint at start when not 0 (Harmony: 1666600000).
    pub chain_id: u64,
    /// Blocks behind the head the watcher stays (reorg safety).
    pub confirmations: u64,
    pub poll_interval: HumanDuration,
    pub request_timeout: HumanDuration,
    /// The chain is "stale" when it could not be read for this long: aliases
    /// keep forwarding from the cache, /health and metrics say so.
    pub stale_after: HumanDuration,
    /// How often every active alias is verified again against the chain.
    pub sweep_interval: HumanDuration,
    /// Aliases verified per batch of reads during a sweep.
    pub sweep_batch: usize,
    /// First block a fresh node follows from; 0: the head at first start.
    pub start_block: u64,
    /// Most blocks per eth_getLogs / block scan request.
    pub max_block_range: u64,
    /// How far a confirmed block's timestamp may run ahead of the wall
    /// clock and still count for expiry; a later one is not believed (a
    /// bad or hostile RPC answer would otherwise expire every alias).
    pub max_clock_skew: HumanDuration,
    pub registries: Vec<RegistryConfig>,
    /// Shared secret of the activation endpoints (HMAC-SHA256 of the body in
    /// X-EAS-Signature); empty: no HMAC (the chain checks apply either way).
    pub activation_secret: String,
    /// A file holding that secret.
    pub activation_secret_file: Option<PathBuf>,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            enabled: false,
            rpc_url: "http://127.0.0.1:8545".into(),
            chain_id: 0,
            confirmations: 2,
            poll_interval: HumanDuration::secs(2),
            request_timeout: HumanDuration::secs(10),
            stale_after: HumanDuration::secs(300),
            sweep_interval: HumanDuration::secs(3600),
            sweep_batch: 500,
            start_block: 0,
            max_block_range: 2000,
            max_clock_skew: HumanDuration::secs(600),
            registries: Vec::new(),
            activation_secret: String::new(),
            activation_secret_file: None,
        }
    }
}

/// The largest `chain.max_clock_skew` accepted.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(86_400);

impl ChainConfig {
    /// The TLD of the registry that governs `domain` (a host name, any
    /// case): with the chain enabled, every name under a configured TLD,
    /// registered or not, and its subdomains (and the TLD itself) belong to
    /// the chain, never to the operator.
    pub(crate) fn governing_tld(&self, domain: &str) -> Option<&str> {
        if !self.enabled {
            return None;
        }
        let domain = domain.strip_suffix('.').unwrap_or(domain).as_bytes();
        self.registries.iter().map(|r| r.tld.as_str()).find(|tld| {
            let tld = tld.as_bytes();
            match domain.len().checked_sub(tld.len()) {
                Some(0) => domain.eq_ignore_ascii_case(tld),
                Some(dot) => {
                    domain.get(dot - 1) == Some(&b'.')
                        && domain
                            .get(dot..)
                            .is_some_and(|t| t.eq_ignore_ascii_case(tld))
                }
                None => false,
            }
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if !(self.rpc_url.starts_with("http://") || self.rpc_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "chain.rpc_url",
                &self.rpc_url,
                "must be an http:// or https:// JSON-RPC URL",
            ));
        }
        nonzero_duration("chain.poll_interval", self.poll_interval)?;
        nonzero_duration("chain.request_timeout", self.request_timeout)?;
        nonzero_duration("chain.stale_after", self.stale_after)?;
        nonzero_duration("chain.sweep_interval", self.sweep_interval)?;
        positive("chain.sweep_batch", self.sweep_batch)?;
        if self.max_block_range == 0 {
            return Err(ConfigError::invalid(
                "chain.max_block_range",
                0,
                "must be greater than 0",
            ));
        }
        if self.max_clock_skew.0 > MAX_CLOCK_SKEW {
            return Err(ConfigError::invalid(
                "chain.max_clock_skew",
                self.max_clock_skew,
                "must be at most 1d: a block timestamp that far ahead of the clock \
                 would expire names early",
            ));
        }
        if self.registries.is_empty() {
            return Err(ConfigError::invalid(
                "chain.registries",
                "[]",
                "chain.enabled needs at least one [[chain.registries]] (tld, eas)",
            ));
        }
        let mut tlds = std::collections::HashSet::new();
        for (i, r) in self.registries.iter().enumerate() {
            let key = |k: &str| format!("chain.registries[{i}].{k}");
            if !is_hostname(&r.tld)
                || r.tld.contains('.')
                || !tlds.insert(r.tld.to_ascii_lowercase())
            {
                return Err(ConfigError::invalid(
                    &key("tld"),
                    &r.tld,
                    "must be one DNS label, unique among the registries",
                ));
            }
            if !is_eth_address(&r.eas) {
                return Err(ConfigError::invalid(
                    &key("eas"),
                    &r.eas,
                    "must be a 0x-prefixed 20-byte hex address",
                ));
            }
            if !r.dc.is_empty() && !is_eth_address(&r.dc) {
                return Err(ConfigError::invalid(
                    &key("dc"),
                    &r.dc,
                    "must be a 0x-prefixed 20-byte hex address (or empty)",
                ));
            }
            for (j, a) in r.log_addresses.iter().enumerate() {
                if !is_eth_address(a) {
                    return Err(ConfigError::invalid(
                        &format!("chain.registries[{i}].log_addresses[{j}]"),
                        a,
                        "must be a 0x-prefixed 20-byte hex address",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An Ethereum address in hex ("0x" and 40 hex digits, any case).
fn is_eth_address(s: &str) -> bool {
    s.strip_prefix("0x")
        .is_some_and(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// serde's default for flags that are on unless the file turns them off.
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// A domain (from RCPT, the admin API) is governed exactly when it
        /// is a registry's TLD or ends in `.` and that TLD, in any case, with
        /// at most one trailing dot; never with the chain off. Total on any
        /// text.
        #[test]
        fn governing_tld_is_exact(
            domain in "[a-zA-Z.]{0,12}(country|COUNTRY|xcountry|countr)?\\.?",
            any in "\\PC{0,40}",
        ) {
            let mut c = ChainConfig {
                enabled: true,
                ..ChainConfig::default()
            };
            c.registries = vec![RegistryConfig {
                tld: "country".into(),
                eas: String::new(),
                dc: String::new(),
                eas_events: true,
                log_addresses: Vec::new(),
            }];
            let d = domain.strip_suffix('.').unwrap_or(&domain).to_ascii_lowercase();
            let expected = d == "country" || d.ends_with(".country");
            proptest::prop_assert_eq!(c.governing_tld(&domain).is_some(), expected);
            let _ = c.governing_tld(&any);
            c.enabled = false;
            proptest::prop_assert!(c.governing_tld(&domain).is_none());
        }
    }
}
