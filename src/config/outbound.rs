//! `[outbound]`: the SMTP client that delivers (ports, STARTTLS policy,
//! timeouts, connection limits, allowed networks, fixed routes).

use super::error::{ConfigError, nonzero_duration, positive};
use super::units::HumanDuration;
use crate::address::is_hostname;
use crate::net::Network;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// When outbound connections use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Use STARTTLS when offered, plain text otherwise.
    Opportunistic,
    /// Never deliver in plain text: a host without working STARTTLS is
    /// skipped. The certificate is not checked, so this defeats passive
    /// eavesdropping only.
    Required,
    /// Like `Required`, and the certificate must chain to a trusted root
    /// (system roots plus `outbound.tls_ca_file`) and name the MX host.
    Verified,
    /// Never use STARTTLS.
    Disabled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// TCP port of remote MX hosts.
    pub port: u16,
    /// Name sent in EHLO; empty: `hostname`.
    pub helo_name: String,
    pub tls: TlsPolicy,
    pub connect_timeout: HumanDuration,
    pub command_timeout: HumanDuration,
    pub data_timeout: HumanDuration,
    /// Concurrent connections to one destination domain.
    pub max_per_destination: usize,
    /// Concurrent outbound connections in all.
    pub max_connections: usize,
    /// How long an idle connection is kept for reuse.
    pub idle_timeout: HumanDuration,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: usize,
    /// DNS servers ("ip:port") for MX lookups; empty: the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// Non-public networks (CIDR) that MX hosts (and the host names of
    /// routes) may resolve to; empty: only public addresses are delivered
    /// to. A route to an IP address is never filtered.
    pub allow_networks: Vec<Network>,
    /// Extra trusted CA certificates (PEM) for `tls = "verified"`, added to
    /// the system's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Fixed next hop per destination domain ("host:port"), bypassing MX.
    pub routes: BTreeMap<String, String>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            port: 25,
            helo_name: String::new(),
            tls: TlsPolicy::Opportunistic,
            connect_timeout: HumanDuration::secs(30),
            command_timeout: HumanDuration::secs(300),
            data_timeout: HumanDuration::secs(600),
            max_per_destination: 20,
            max_connections: 100,
            idle_timeout: HumanDuration::secs(30),
            max_messages_per_connection: 100,
            nameservers: Vec::new(),
            allow_networks: Vec::new(),
            tls_ca_file: None,
            routes: BTreeMap::new(),
        }
    }
}

impl OutboundConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.port == 0 {
            return Err(ConfigError::invalid("outbound.port", 0, "must not be 0"));
        }
        if !self.helo_name.is_empty() && !is_hostname(&self.helo_name) {
            return Err(ConfigError::invalid(
                "outbound.helo_name",
                &self.helo_name,
                "must be a DNS host name",
            ));
        }
        nonzero_duration("outbound.connect_timeout", self.connect_timeout)?;
        nonzero_duration("outbound.command_timeout", self.command_timeout)?;
        nonzero_duration("outbound.data_timeout", self.data_timeout)?;
        positive("outbound.max_per_destination", self.max_per_destination)?;
        positive("outbound.max_connections", self.max_connections)?;
        positive(
            "outbound.max_messages_per_connection",
            self.max_messages_per_connection,
        )?;
        if let Some(file) = &self.tls_ca_file
            && self.tls != TlsPolicy::Verified
        {
            return Err(ConfigError::invalid(
                "outbound.tls_ca_file",
                format!("\"{}\"", file.display()),
                "is used only with outbound.tls = \"verified\" (no certificate is checked otherwise)",
            ));
        }
        for (domain, target) in &self.routes {
            let key = format!("outbound.routes.\"{domain}\"");
            if !is_hostname(domain) {
                return Err(ConfigError::invalid(
                    &key,
                    target,
                    "the key must be a domain",
                ));
            }
            if parse_host_port(target).is_none() {
                return Err(ConfigError::invalid(
                    &key,
                    target,
                    "must be \"host:port\" (IPv6 as \"[addr]:port\")",
                ));
            }
        }
        Ok(())
    }
}

/// Splits "host:port" (or "[v6]:port"), the form of a route's target; None
/// when malformed.
pub(crate) fn parse_host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if host.contains(':') || !is_hostname(host) {
        return None;
    }
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            parse_host_port("127.0.0.1:2526"),
            Some(("127.0.0.1".into(), 2526))
        );
        assert_eq!(parse_host_port("[::1]:25"), Some(("::1".into(), 25)));
        assert_eq!(
            parse_host_port("mx.example.com:25"),
            Some(("mx.example.com".into(), 25))
        );
        assert_eq!(parse_host_port("mx.example.com"), None);
        assert_eq!(parse_host_port("mx:0"), None);
    }
}
