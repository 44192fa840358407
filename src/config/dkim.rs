//! `[dkim]` and `[arc]`: the keys that sign forwarded mail (DKIM) and
//! seal it (ARC), and what they sign.

use super::error::ConfigError;
use crate::address::is_hostname;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Signature algorithm of a DKIM key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    Ed25519,
    Rsa,
}

/// One DKIM signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    pub selector: String,
    pub algorithm: KeyAlgorithm,
    /// PEM private key (PKCS#8; RSA keys may also be PKCS#1).
    pub key: PathBuf,
    /// Sign DKIM with this key; false: it only seals ARC (arc.selector).
    #[serde(default = "yes")]
    pub dkim: bool,
}

/// DKIM signing of forwarded mail with the relay's domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DkimConfig {
    pub enabled: bool,
    /// d= of the signatures; empty: `hostname`.
    pub domain: String,
    /// Signing keys; empty: an Ed25519 and an RSA-2048 key are generated on
    /// first start into data_dir/dkim/ (selectors "eas-ed25519", "eas-rsa").
    pub keys: Vec<DkimKeyConfig>,
    /// Header fields signed (also by the ARC-Message-Signature).
    pub headers: Vec<String>,
}

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            enabled: true,
            domain: String::new(),
            keys: Vec::new(),
            headers: [
                "From",
                "Reply-To",
                "Subject",
                "Date",
                "To",
                "Cc",
                "Message-ID",
                "In-Reply-To",
                "References",
                "MIME-Version",
                "Content-Type",
                "Content-Transfer-Encoding",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// ARC sealing (RFC 8617) of forwarded mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArcConfig {
    pub enabled: bool,
    /// Selector of the [dkim] key that seals; empty: the first RSA key
    /// (ARC verifiers expect rsa-sha256).
    pub selector: String,
}

impl Default for ArcConfig {
    fn default() -> Self {
        ArcConfig {
            enabled: true,
            selector: String::new(),
        }
    }
}

impl DkimConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.domain.is_empty() && !is_hostname(&self.domain) {
            return Err(ConfigError::invalid(
                "dkim.domain",
                &self.domain,
                "must be a domain",
            ));
        }
        let mut selectors = std::collections::HashSet::new();
        for (i, key) in self.keys.iter().enumerate() {
            if !is_hostname(&key.selector) || !selectors.insert(key.selector.clone()) {
                return Err(ConfigError::invalid(
                    &format!("dkim.keys[{i}].selector"),
                    &key.selector,
                    "must be a DNS label, unique among the keys",
                ));
            }
        }
        if self.headers.iter().all(|h| !h.eq_ignore_ascii_case("from")) {
            return Err(ConfigError::invalid(
                "dkim.headers",
                format!("{:?}", self.headers),
                "must include From (RFC 6376 §5.4)",
            ));
        }
        if self.enabled && !self.keys.is_empty() && self.keys.iter().all(|k| !k.dkim) {
            return Err(ConfigError::invalid(
                "dkim.keys",
                "(every key has dkim = false)",
                "at least one key must sign DKIM while dkim.enabled",
            ));
        }
        Ok(())
    }
}

impl ArcConfig {
    /// The sealing key is one of `dkim`'s keys.
    pub(super) fn validate(&self, dkim: &DkimConfig) -> Result<(), ConfigError> {
        if !self.selector.is_empty()
            && !dkim.keys.is_empty()
            && !dkim.keys.iter().any(|k| k.selector == self.selector)
        {
            return Err(ConfigError::invalid(
                "arc.selector",
                &self.selector,
                "must name one of dkim.keys",
            ));
        }
        Ok(())
    }
}

/// serde's default for flags that are on unless the file turns them off.
fn yes() -> bool {
    true
}
