//! `[aliases]`: limits of aliases and where `postmaster` goes.

use super::error::{ConfigError, positive};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AliasConfig {
    /// Most forwarding addresses one alias may have (1:N forwarding).
    pub max_destinations: usize,
    /// Where `postmaster` (RFC 5321 §4.5.1) goes for every served domain
    /// that has no alias, catch-all or `postmaster` alias of its own.
    /// Empty: such mail is refused like any unknown address.
    pub postmaster: String,
}

impl Default for AliasConfig {
    fn default() -> Self {
        AliasConfig {
            max_destinations: 10,
            postmaster: String::new(),
        }
    }
}

impl AliasConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("aliases.max_destinations", self.max_destinations)?;
        if !self.postmaster.is_empty() && crate::address::Mailbox::parse(&self.postmaster).is_none()
        {
            return Err(ConfigError::invalid(
                "aliases.postmaster",
                &self.postmaster,
                "must be an email address (or empty)",
            ));
        }
        Ok(())
    }
}
