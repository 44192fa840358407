//! `[log]`: what the logs show (the filter, and whether forwarding
//! addresses appear in them).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "eas_relay=debug"; RUST_LOG wins if set.
    pub level: String,
    /// Print forwarding addresses (and unredacted replies) in INFO logs;
    /// otherwise a stable token `forward#<hash>` stands for each address.
    pub addresses: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            addresses: false,
        }
    }
}
