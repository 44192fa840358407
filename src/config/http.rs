//! `[http]`: the HTTP API listener, its keys, CORS, rate and connection
//! limits.

use super::error::{ConfigError, nonzero_duration, positive};
use super::units::HumanDuration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Admin API keys. Empty (and no file): one is generated in data_dir/admin.key.
    pub admin_keys: Vec<String>,
    /// File with one admin API key per line (secrets stay out of the config).
    pub admin_keys_file: Option<PathBuf>,
    /// Origins (`https://app.example.org`, or `*`) whose browser pages may
    /// call the API (CORS). Empty: no CORS headers, browsers refuse.
    pub cors_origins: Vec<String>,
    /// Send the defensive headers (nosniff, no framing, no referrer, no
    /// caching, a CSP that loads nothing) with every answer.
    pub security_headers: bool,
    pub rate_limit: RateLimitConfig,
    /// Connections the HTTP listener holds at once (a permit is taken
    /// before `accept`; the rest wait in the backlog).
    pub max_connections: usize,
    /// Connections one client network (an IPv4 address, an IPv6 /64) may
    /// hold; over it the connection is answered `503` and closed.
    pub max_connections_per_ip: usize,
    /// Longest wait for a request's head (request line and headers),
    /// counted from when the server starts waiting for it.
    pub header_timeout: HumanDuration,
    /// Longest a request body may take to arrive, whole (`408` after).
    pub body_timeout: HumanDuration,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout: HumanDuration,
}

/// `*`, or `http(s)://host[:port]` with nothing after.
fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let host_ok = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
    };
    match rest.rsplit_once(':') {
        // host:port (an IPv6 literal is bracketed, so its colons come before `]`)
        Some((host, port)) if !port.contains(']') => {
            host_ok(host) && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        _ => host_ok(rest),
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            admin_keys: Vec::new(),
            admin_keys_file: None,
            cors_origins: Vec::new(),
            security_headers: true,
            rate_limit: RateLimitConfig::default(),
            max_connections: 512,
            max_connections_per_ip: 32,
            header_timeout: HumanDuration::secs(10),
            body_timeout: HumanDuration::secs(30),
            idle_timeout: HumanDuration::secs(60),
        }
    }
}

/// Requests per minute allowed on the HTTP API (bursts up to the same
/// number); 0 turns a limit off. Over the limit: 429 with Retry-After.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Per admin API key (the /v3 admin API).
    pub per_key: u32,
    /// Per client IP address (the /v3 admin API, before the key is checked,
    /// and the EAS activation endpoints).
    pub per_ip: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_key: 600,
            per_ip: 1200,
        }
    }
}

impl HttpConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("http.max_connections", self.max_connections)?;
        positive("http.max_connections_per_ip", self.max_connections_per_ip)?;
        nonzero_duration("http.header_timeout", self.header_timeout)?;
        nonzero_duration("http.body_timeout", self.body_timeout)?;
        nonzero_duration("http.idle_timeout", self.idle_timeout)?;
        for (i, key) in self.admin_keys.iter().enumerate() {
            if key.len() < 16 {
                return Err(ConfigError::invalid(
                    &format!("http.admin_keys[{i}]"),
                    "(secret)",
                    "an admin key must be at least 16 characters",
                ));
            }
        }
        for (i, origin) in self.cors_origins.iter().enumerate() {
            if !valid_origin(origin) {
                return Err(ConfigError::invalid(
                    &format!("http.cors_origins[{i}]"),
                    origin,
                    "must be `*` or an origin like `https://app.example.org` (scheme, host, optional port; no path)",
                ));
            }
        }
        Ok(())
    }
}
