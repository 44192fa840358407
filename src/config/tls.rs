//! `[tls]`: the certificate the inbound listener offers with STARTTLS.

use super::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; empty: a self-signed one in data_dir/tls/.
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(ConfigError::invalid(
                "tls.key",
                "(missing)",
                "tls.cert is set, so tls.key must be set too",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "tls.cert",
                "(missing)",
                "tls.key is set, so tls.cert must be set too",
            )),
            _ => Ok(()),
        }
    }
}
