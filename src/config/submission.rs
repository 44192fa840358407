//! `[submission]`: sending as an alias — the authenticated submission
//! listeners (587 with STARTTLS, 465 with implicit TLS), what an
//! authenticated user may send, the quotas, the throttling of failed
//! logins and the limits on wallet-signed credential grants.

use super::error::{ConfigError, nonzero_duration, positive};
use super::units::HumanDuration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionConfig {
    /// Off by default: a relay that only forwards opens no submission port.
    pub enabled: bool,
    /// The STARTTLS port (587 in production): AUTH only after STARTTLS.
    pub listen: SocketAddr,
    /// The implicit-TLS port (465 in production).
    pub listen_tls: SocketAddr,
    /// Whether an authenticated user may send as any address at the
    /// credential's domain; false: only as an existing alias of it (or the
    /// credential's own address).
    pub any_address: bool,
    /// Whether the `Received:` field added to submitted mail names the
    /// client's IP address (false: the user's network stays private).
    pub reveal_client_ip: bool,
    /// Messages one credential may send per hour.
    pub max_per_credential_per_hour: u32,
    /// Messages all credentials of one domain may send per day.
    pub max_per_domain_per_day: u32,
    /// Failed AUTH attempts one client network may make per minute before
    /// further attempts are refused without being checked.
    pub auth_failures_per_minute: u32,
    /// Failed AUTH attempts (within `auth_lockout_time`) after which a
    /// client network is locked out for `auth_lockout_time`.
    pub auth_lockout_after: u32,
    pub auth_lockout_time: HumanDuration,
    /// Longest time ahead a wallet-signed grant or revocation may name as
    /// its expiry (a signature valid for years could be replayed for years).
    pub grant_max_lifetime: HumanDuration,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            enabled: false,
            listen: "127.0.0.1:2587".parse().expect("literal address"),
            listen_tls: "127.0.0.1:2465".parse().expect("literal address"),
            any_address: false,
            reveal_client_ip: false,
            max_per_credential_per_hour: 100,
            max_per_domain_per_day: 500,
            auth_failures_per_minute: 5,
            auth_lockout_after: 20,
            auth_lockout_time: HumanDuration::secs(3600),
            grant_max_lifetime: HumanDuration::secs(3600),
        }
    }
}

impl SubmissionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let count = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        positive(
            "submission.max_per_credential_per_hour",
            count(self.max_per_credential_per_hour),
        )?;
        positive(
            "submission.max_per_domain_per_day",
            count(self.max_per_domain_per_day),
        )?;
        positive(
            "submission.auth_failures_per_minute",
            count(self.auth_failures_per_minute),
        )?;
        positive(
            "submission.auth_lockout_after",
            count(self.auth_lockout_after),
        )?;
        nonzero_duration("submission.auth_lockout_time", self.auth_lockout_time)?;
        nonzero_duration("submission.grant_max_lifetime", self.grant_max_lifetime)?;
        if self.enabled && self.listen == self.listen_tls {
            return Err(ConfigError::invalid(
                "submission.listen_tls",
                self.listen_tls,
                "must differ from submission.listen",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_off_and_valid() {
        let c = SubmissionConfig::default();
        assert!(!c.enabled);
        c.validate().expect("defaults are valid");
    }

    #[test]
    fn one_address_for_both_ports_is_refused() {
        let mut c = SubmissionConfig {
            enabled: true,
            ..SubmissionConfig::default()
        };
        c.listen_tls = c.listen;
        let e = c.validate().expect_err("same address").to_string();
        assert!(e.contains("submission.listen_tls"), "{e}");
    }

    #[test]
    fn a_zero_quota_is_refused() {
        let c = SubmissionConfig {
            max_per_domain_per_day: 0,
            ..SubmissionConfig::default()
        };
        let e = c.validate().expect_err("zero").to_string();
        assert!(e.contains("submission.max_per_domain_per_day"), "{e}");
    }
}
