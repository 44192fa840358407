//! Why a configuration cannot be used ([`ConfigError`]), and the small
//! checks every section's validation shares.

use super::units::HumanDuration;
use std::fmt;
use std::path::PathBuf;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid config: key `{key}` = {value}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub(super) fn invalid(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// `value` is not 0.
pub(super) fn positive(key: &str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError::invalid(key, 0, "must be greater than 0"))
    } else {
        Ok(())
    }
}

/// `value` is longer than 0s.
pub(super) fn nonzero_duration(key: &str, value: HumanDuration) -> Result<(), ConfigError> {
    if value.0.is_zero() {
        Err(ConfigError::invalid(key, value, "must be longer than 0s"))
    } else {
        Ok(())
    }
}
