//! `[store]` and `[delivery_log]`: the embedded store's page cache and how
//! long it keeps delivery log entries.

use super::error::ConfigError;
use super::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

/// The default page cache: enough to keep the tables RCPT reads (domains,
/// aliases, names) of about two million aliases in memory.
pub(crate) const DEFAULT_CACHE_SIZE: usize = 2 << 30;

/// The embedded store (data_dir/eas-relay.redb).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Most memory the store's page cache may use. It fills only as pages are
    /// read; RCPT lookups stay fast while the domains, aliases and names
    /// tables fit (about 0.9 KB per alias).
    pub cache_size: ByteSize,
    /// Read those tables into the cache at start (in the background), so
    /// the first lookup of each alias is not a slow read from the file.
    pub prewarm: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_size: ByteSize::new(DEFAULT_CACHE_SIZE as u64),
            prewarm: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryLogConfig {
    /// How long delivery log entries are kept.
    pub retention: HumanDuration,
}

impl Default for DeliveryLogConfig {
    fn default() -> Self {
        DeliveryLogConfig {
            retention: HumanDuration::secs(7 * 24 * 3600),
        }
    }
}

impl StoreConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_size.0 < 16 << 20 {
            return Err(ConfigError::invalid(
                "store.cache_size",
                self.cache_size,
                "must be at least 16MiB",
            ));
        }
        Ok(())
    }
}
