//! `[auth]`: inbound SPF, DKIM, DMARC and ARC verdicts and the policy
//! applied to them.

use super::error::ConfigError;
use serde::{Deserialize, Serialize};

/// Inbound verdicts (SPF, DKIM, DMARC, ARC) and the policy applied to them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Verify inbound mail and record Authentication-Results.
    pub enabled: bool,
    /// Refuse (550 5.7.1 at end of data) DMARC failures of p=reject domains.
    pub reject_dmarc_failures: bool,
    /// Answer 451 4.7.x when a lookup fails temporarily (never for a
    /// missing record).
    pub tempfail_on_dns_error: bool,
    /// DKIM signatures verified per message (the topmost); the others are
    /// ignored (RFC 6376 §6.1 lets a verifier limit them).
    pub max_dkim_signatures: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            reject_dmarc_failures: true,
            tempfail_on_dns_error: true,
            max_dkim_signatures: 5,
        }
    }
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_dkim_signatures) {
            return Err(ConfigError::invalid(
                "auth.max_dkim_signatures",
                self.max_dkim_signatures,
                "must be between 1 and 1000",
            ));
        }
        Ok(())
    }
}
