//! `[rewrite]`: header rewriting of forwarded mail (From for DMARC-strict
//! senders).

use super::error::ConfigError;
use serde::{Deserialize, Serialize};

/// Header rewriting of forwarded mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewriteConfig {
    /// Rewrite From for DMARC-strict senders without an aligned DKIM
    /// signature (p=quarantine or p=reject), which would fail DMARC downstream.
    pub from_for_strict_dmarc: bool,
    /// The address that replaces theirs; empty: "forwarder@" + the DKIM domain.
    pub from_address: String,
    /// Header keeping the original From.
    pub original_from_header: String,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig {
            from_for_strict_dmarc: true,
            from_address: String::new(),
            original_from_header: "X-Original-From".into(),
        }
    }
}

impl RewriteConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.from_address.is_empty()
            && crate::address::Mailbox::parse(&self.from_address).is_none()
        {
            return Err(ConfigError::invalid(
                "rewrite.from_address",
                &self.from_address,
                "must be an email address (or empty)",
            ));
        }
        Ok(())
    }
}
