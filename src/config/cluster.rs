//! `[cluster]`: several MX nodes sharing one PostgreSQL (issue 13). Only
//! the settings of the connection are here: the database URL (a secret:
//! it may come from a private file), this node's id, the pool and the
//! private CA of TLS, the bound of the delivery-log outbox (rows waiting
//! on the node for PostgreSQL), and how often the replica polls, reconciles
//! and reports itself. `enabled = true` needs a URL (or its file) and a
//! valid node id (`node_id`, or else the hostname); a single node needs
//! none of it and keeps its embedded store.

use super::error::{ConfigError, nonzero_duration, redacted};
use super::units::HumanDuration;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The most connections one node's pool may hold (PostgreSQL's default
/// `max_connections` is 100, shared by every node).
pub const MAX_POOL_SIZE: usize = 100;
/// The longest `connect_timeout` accepted: a node waiting minutes for a
/// database is down anyway.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest node id (it is a column of every node's rows).
pub const MAX_NODE_ID: usize = 64;
/// Default bound of the delivery-log outbox (rows of about 0.5 KB each).
pub const DEFAULT_LOG_OUTBOX_MAX: u64 = 1_000_000;

/// Debug shows `database_url` redacted (it may hold the password).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Run as one of several nodes sharing PostgreSQL: writes go to it
    /// first (needs `database_url` or `database_url_file`).
    pub enabled: bool,
    /// `postgres://user:password@host:port/database[?sslmode=require]`;
    /// empty when `database_url_file` holds it.
    pub database_url: String,
    /// A private file holding the whole URL (keeps the password out of
    /// the config file).
    pub database_url_file: Option<PathBuf>,
    /// This node's name among the nodes; empty: the relay's `hostname`.
    pub node_id: String,
    /// Connections this node keeps to PostgreSQL at most.
    pub pool_size: usize,
    /// Deadline of opening one connection (TCP, TLS, authentication).
    pub connect_timeout: HumanDuration,
    /// PEM certificates trusted (instead of the system's roots) for the
    /// server's certificate with `sslmode=require`: a private CA.
    pub ca_file: Option<PathBuf>,
    /// How often the replica reads the change table without a
    /// notification (a lost NOTIFY delays a change at most this).
    pub poll_interval: HumanDuration,
    /// How often the replica compares its digests with the database's and
    /// repairs what differs.
    pub reconcile_interval: HumanDuration,
    /// How often the node records itself in `nodes` (last seen, applied
    /// change id, queue depth).
    pub heartbeat_interval: HumanDuration,
    /// Delivery-log rows kept on the node for PostgreSQL at most (while it
    /// is unreachable); past it the oldest leave the outbox (they stay in
    /// the node's own log).
    pub log_outbox_max: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            database_url: String::new(),
            database_url_file: None,
            node_id: String::new(),
            pool_size: 8,
            connect_timeout: HumanDuration::secs(5),
            ca_file: None,
            poll_interval: HumanDuration::secs(5),
            reconcile_interval: HumanDuration::secs(600),
            heartbeat_interval: HumanDuration::secs(10),
            log_outbox_max: DEFAULT_LOG_OUTBOX_MAX,
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("enabled", &self.enabled)
            .field("database_url", &redacted(&self.database_url))
            .field("database_url_file", &self.database_url_file)
            .field("node_id", &self.node_id)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("ca_file", &self.ca_file)
            .field("poll_interval", &self.poll_interval)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("log_outbox_max", &self.log_outbox_max)
            .finish()
    }
}

/// How the connection to PostgreSQL is protected, from the URL's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No `sslmode`, or `disable`: plain TCP (loopback, a Unix socket, a
    /// private network the operator trusts).
    Disable,
    /// `require`, `verify-ca` or `verify-full`: TLS, and always with the
    /// certificate and host name verified (libpq's `require` checks
    /// neither; here no TLS goes unverified).
    Require,
}

/// Why an `sslmode` value is refused, or the mode it means.
pub fn ssl_mode(url: &str) -> Result<SslMode, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let query = query.split('#').next().unwrap_or("");
    let mut mode = SslMode::Disable;
    for param in query.split('&') {
        let Some(value) = param.strip_prefix("sslmode=") else {
            continue;
        };
        mode = match value {
            "disable" => SslMode::Disable,
            "require" | "verify-ca" | "verify-full" => SslMode::Require,
            "allow" | "prefer" => {
                return Err(format!(
                    "sslmode={value} is TLS that anyone on the path can strip: write sslmode=require (TLS, certificate verified) or sslmode=disable"
                ));
            }
            other => {
                return Err(format!(
                    "unknown sslmode {other:?} (disable, require, verify-ca or verify-full)"
                ));
            }
        };
    }
    Ok(mode)
}

/// The checks of a database URL that need no file and no network: the
/// scheme, a host, and its `sslmode`. `Err` is the reason (the caller
/// names the key and shows the URL redacted).
pub fn check_database_url(url: &str) -> Result<SslMode, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("must be a postgres://user:password@host[:port]/database URL")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // A host in the URL, or `?host=/run/postgresql` (a Unix socket).
    if host.is_empty() && !rest.contains("host=") {
        return Err("names no host (postgres://user:password@host:port/database)".into());
    }
    ssl_mode(url)
}

impl ClusterConfig {
    /// This node's id: `node_id`, or the relay's host name.
    pub fn node_id_or<'a>(&'a self, hostname: &'a str) -> &'a str {
        if self.node_id.is_empty() {
            hostname
        } else {
            &self.node_id
        }
    }

    /// Checks the keys; with `enabled`, also that a URL is set and that
    /// the node id (`node_id`, or else `hostname`) is one the cluster
    /// takes.
    pub(super) fn validate(&self, hostname: &str) -> Result<(), ConfigError> {
        self.check_keys()?;
        if self.enabled && !valid_node_id(self.node_id_or(hostname)) {
            return Err(ConfigError::invalid(
                "cluster.node_id",
                "\"\"",
                format!(
                    "the hostname {hostname:?} is not a valid node id (1 to {MAX_NODE_ID} letters, digits, '.', '-' or '_'): set cluster.node_id"
                ),
            ));
        }
        Ok(())
    }

    /// Every key's own check, and the URL `enabled = true` needs.
    pub(crate) fn check_keys(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("cluster.{k}");
        let shown = || format!("{:?}", redacted(&self.database_url));
        if !self.database_url.is_empty() && self.database_url_file.is_some() {
            return Err(ConfigError::invalid(
                &key("database_url"),
                shown(),
                "set database_url or database_url_file, not both",
            ));
        }
        if self.enabled && self.database_url.is_empty() && self.database_url_file.is_none() {
            return Err(ConfigError::invalid(
                &key("database_url"),
                "\"\"",
                "cluster.enabled needs database_url or database_url_file",
            ));
        }
        if !self.database_url.is_empty() {
            let mode = check_database_url(&self.database_url)
                .map_err(|reason| ConfigError::invalid(&key("database_url"), shown(), reason))?;
            if let Some(file) = &self.ca_file
                && mode != SslMode::Require
            {
                return Err(ConfigError::invalid(
                    &key("ca_file"),
                    format!("\"{}\"", file.display()),
                    "is used only with sslmode=require in database_url (no certificate is checked otherwise)",
                ));
            }
        }
        if !self.node_id.is_empty() && !valid_node_id(&self.node_id) {
            return Err(ConfigError::invalid(
                &key("node_id"),
                format!("{:?}", self.node_id),
                format!(
                    "must be 1 to {MAX_NODE_ID} letters, digits, '.', '-' or '_' (empty: the hostname)"
                ),
            ));
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return Err(ConfigError::invalid(
                &key("pool_size"),
                self.pool_size,
                format!("must be 1 to {MAX_POOL_SIZE}"),
            ));
        }
        if self.log_outbox_max == 0 {
            return Err(ConfigError::invalid(
                &key("log_outbox_max"),
                self.log_outbox_max,
                "must be at least 1 (rows kept for PostgreSQL while it is away)",
            ));
        }
        nonzero_duration(&key("connect_timeout"), self.connect_timeout)?;
        nonzero_duration(&key("poll_interval"), self.poll_interval)?;
        nonzero_duration(&key("reconcile_interval"), self.reconcile_interval)?;
        nonzero_duration(&key("heartbeat_interval"), self.heartbeat_interval)?;
        if self.connect_timeout.0 > MAX_CONNECT_TIMEOUT {
            return Err(ConfigError::invalid(
                &key("connect_timeout"),
                self.connect_timeout,
                format!("must be at most {}s", MAX_CONNECT_TIMEOUT.as_secs()),
            ));
        }
        Ok(())
    }
}

/// A node id: what a host name may hold, and `_`, at most [`MAX_NODE_ID`].
pub fn valid_node_id(id: &str) -> bool {
    (1..=MAX_NODE_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(c: &ClusterConfig) -> (String, String, String) {
        match c.validate("mx1.example") {
            Err(ConfigError::Invalid { key, value, reason }) => (key, value, reason),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn with_url(url: &str) -> ClusterConfig {
        ClusterConfig {
            database_url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_good_urls_are_valid() {
        ClusterConfig::default().validate("mx1.example").unwrap();
        for url in [
            "postgres://eas:pw@db.example:5432/eas",
            "postgresql://eas@10.0.0.5/eas?sslmode=require",
            "postgres://eas:pw@db/eas?application_name=x&sslmode=verify-full",
            "postgres:///eas?host=/run/postgresql",
        ] {
            with_url(url)
                .validate("mx1.example")
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        let tls = ClusterConfig {
            ca_file: Some("/etc/eas-relay/pg-ca.pem".into()),
            ..with_url("postgres://eas:pw@db/eas?sslmode=require")
        };
        tls.validate("mx1.example").unwrap();
        assert_eq!(
            ClusterConfig::default().node_id_or("mx1.example"),
            "mx1.example"
        );
        let named = ClusterConfig {
            node_id: "node-a".into(),
            ..Default::default()
        };
        assert_eq!(named.node_id_or("mx1.example"), "node-a");
    }

    #[test]
    fn enabled_needs_a_url_and_a_valid_node_id() {
        let c = ClusterConfig {
            enabled: true,
            ..with_url("postgres://eas:pw@db/eas")
        };
        c.validate("mx1.example").unwrap();
        let from_file = ClusterConfig {
            enabled: true,
            database_url_file: Some("/etc/eas-relay/db.url".into()),
            ..Default::default()
        };
        from_file.validate("mx1.example").unwrap();
        // Enabled without any URL: the missing URL is named.
        let c = ClusterConfig {
            enabled: true,
            ..Default::default()
        };
        assert_eq!(refusal(&c).0, "cluster.database_url");
        // A hostname longer than a node id may be: node_id must be set.
        let long = format!("{}.example", "h".repeat(MAX_NODE_ID));
        let c = ClusterConfig {
            enabled: true,
            ..with_url("postgres://eas:pw@db/eas")
        };
        match c.validate(&long) {
            Err(ConfigError::Invalid { key, reason, .. }) => {
                assert_eq!(key, "cluster.node_id");
                assert!(reason.contains("set cluster.node_id"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let named = ClusterConfig {
            node_id: "mx-1".into(),
            ..c
        };
        named.validate(&long).unwrap();
    }

    #[test]
    fn bad_values_name_their_key_and_never_show_the_password() {
        let cases: Vec<(ClusterConfig, &str, &str)> = vec![
            (
                with_url("mysql://eas:s3cret@db/eas"),
                "cluster.database_url",
                "postgres://",
            ),
            (
                with_url("postgres://eas:s3cret@/eas"),
                "cluster.database_url",
                "no host",
            ),
            (
                with_url("postgres://eas:s3cret@db/eas?sslmode=prefer"),
                "cluster.database_url",
                "strip",
            ),
            (
                with_url("postgres://db/eas?password=s3cret&sslmode=bogus"),
                "cluster.database_url",
                "unknown sslmode",
            ),
            (
                ClusterConfig {
                    database_url_file: Some("/etc/eas-relay/db.url".into()),
                    ..with_url("postgres://eas:s3cret@db/eas")
                },
                "cluster.database_url",
                "not both",
            ),
            (
                ClusterConfig {
                    ca_file: Some("/etc/ca.pem".into()),
                    ..with_url("postgres://eas:s3cret@db/eas")
                },
                "cluster.ca_file",
                "sslmode=require",
            ),
            (
                ClusterConfig {
                    node_id: "node a".into(),
                    ..Default::default()
                },
                "cluster.node_id",
                "letters",
            ),
            (
                ClusterConfig {
                    node_id: "n".repeat(MAX_NODE_ID + 1),
                    ..Default::default()
                },
                "cluster.node_id",
                "letters",
            ),
            (
                ClusterConfig {
                    log_outbox_max: 0,
                    ..Default::default()
                },
                "cluster.log_outbox_max",
                "at least 1",
            ),
            (
                ClusterConfig {
                    pool_size: 0,
                    ..Default::default()
                },
                "cluster.pool_size",
                "1 to",
            ),
            (
                ClusterConfig {
                    pool_size: MAX_POOL_SIZE + 1,
                    ..Default::default()
                },
                "cluster.pool_size",
                "1 to",
            ),
            (
                ClusterConfig {
                    connect_timeout: HumanDuration::secs(0),
                    ..Default::default()
                },
                "cluster.connect_timeout",
                "longer than 0s",
            ),
            (
                ClusterConfig {
                    connect_timeout: HumanDuration::secs(301),
                    ..Default::default()
                },
                "cluster.connect_timeout",
                "at most",
            ),
        ];
        for (config, want_key, want_reason) in cases {
            let (key, value, reason) = refusal(&config);
            assert_eq!(key, want_key, "{config:?}");
            assert!(reason.contains(want_reason), "{key}: {reason}");
            assert!(
                !value.contains("s3cret"),
                "{key} shows the password: {value}"
            );
            assert!(
                !reason.contains("s3cret"),
                "{key} shows the password: {reason}"
            );
        }
        let debug = format!("{:?}", with_url("postgres://eas:s3cret@db/eas"));
        assert!(
            debug.contains("***@db/eas") && !debug.contains("s3cret"),
            "{debug}"
        );
    }

    #[test]
    fn ssl_modes() {
        assert_eq!(ssl_mode("postgres://db/eas"), Ok(SslMode::Disable));
        assert_eq!(
            ssl_mode("postgres://db/eas?sslmode=disable"),
            Ok(SslMode::Disable)
        );
        assert_eq!(
            ssl_mode("postgres://db/eas?sslmode=require"),
            Ok(SslMode::Require)
        );
        assert_eq!(
            ssl_mode("postgres://db/eas?a=b&sslmode=verify-ca#x"),
            Ok(SslMode::Require)
        );
        assert!(ssl_mode("postgres://db/eas?sslmode=allow").is_err());
    }
}
