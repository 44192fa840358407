//! `[srs]`: the Sender Rewriting Scheme of forwarded envelopes and the
//! limits on what comes back through SRS addresses.

use super::error::{ConfigError, nonzero_duration, positive};
use super::units::HumanDuration;
use crate::address::is_hostname;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Sender Rewriting Scheme (postsrsd/libsrs2 compatible).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrsConfig {
    /// Rewrite envelope senders of forwarded mail (not `<>`, not local domains).
    pub enabled: bool,
    /// Domain of SRS addresses (bounces come back here); empty: `hostname`.
    pub domain: String,
    /// Secrets: the first signs, all verify (rotation). With none here nor in
    /// `secrets_file`, one is generated into data_dir/srs.secret.
    pub secrets: Vec<String>,
    /// A file with one secret per line (first signs).
    pub secrets_file: Option<PathBuf>,
    /// Characters of the base64 HMAC kept in the addresses minted.
    pub hash_length: usize,
    /// Shortest hash accepted in a bounce (at least 4); unset: `hash_length`.
    /// Lower it to the old length for `max_age` after raising `hash_length`,
    /// so bounces of mail sent before still come back.
    pub hash_min_length: Option<usize>,
    /// SRS addresses older than this are refused (the timestamp's day).
    pub max_age: HumanDuration,
    /// Accept mail with a non-null sender at SRS addresses. Off: only what
    /// a bounce path carries (DSNs and RFC 3834 auto-replies, sent from
    /// `<>`) comes back through them.
    pub allow_non_null_senders: bool,
    /// Messages a day one original sender may receive back through SRS
    /// addresses (counted when accepted); 0: no cap.
    pub max_bounces_per_address: u32,
    /// Failed reversals (forged or expired SRS addresses) one client network
    /// may try within `failure_window` before its bounces are tempfailed
    /// (`451 4.7.1`) and its session closed.
    pub max_failures: u32,
    pub failure_window: HumanDuration,
}

impl Default for SrsConfig {
    fn default() -> Self {
        SrsConfig {
            enabled: true,
            domain: String::new(),
            secrets: Vec::new(),
            secrets_file: None,
            hash_length: 8,
            hash_min_length: None,
            max_age: HumanDuration::secs(21 * 86400),
            allow_non_null_senders: false,
            max_bounces_per_address: 20,
            max_failures: 10,
            failure_window: HumanDuration::secs(3600),
        }
    }
}

impl SrsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.domain.is_empty() && !is_hostname(&self.domain) {
            return Err(ConfigError::invalid(
                "srs.domain",
                &self.domain,
                "must be a domain",
            ));
        }
        if !(4..=28).contains(&self.hash_length) {
            return Err(ConfigError::invalid(
                "srs.hash_length",
                self.hash_length,
                "must be between 4 and 28 (base64 of HMAC-SHA1)",
            ));
        }
        if let Some(min) = self.hash_min_length
            && !(4..=self.hash_length).contains(&min)
        {
            return Err(ConfigError::invalid(
                "srs.hash_min_length",
                min,
                format!(
                    "must be between 4 and srs.hash_length ({})",
                    self.hash_length
                ),
            ));
        }
        nonzero_duration("srs.max_age", self.max_age)?;
        positive("srs.max_failures", self.max_failures as usize)?;
        nonzero_duration("srs.failure_window", self.failure_window)?;
        for (i, secret) in self.secrets.iter().enumerate() {
            if secret.len() < 8 {
                return Err(ConfigError::invalid(
                    &format!("srs.secrets[{i}]"),
                    "(secret)",
                    "an SRS secret must be at least 8 characters",
                ));
            }
        }
        Ok(())
    }
}
