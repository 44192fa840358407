//! Typed configuration: embedded defaults, the TOML file, environment
//! overrides, and validation that names the bad key, its value and why.
//!
//! Precedence: built-in default < config file < `EAS_RELAY_*` environment
//! variable. An environment variable names a key path with `__` between
//! sections, e.g. `EAS_RELAY_SMTP__MAX_CONNECTIONS=200` sets
//! `smtp.max_connections`. Every key is documented in `config.example.toml`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "EAS_RELAY_";
/// Environment variable naming the config file (read by the CLI, not a key).
pub const ENV_CONFIG_FILE: &str = "EAS_RELAY_CONFIG";

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
    fn invalid(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration of one relay node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name of this host in the SMTP banner, EHLO, Received headers and DSNs.
    pub hostname: String,
    /// Directory holding the store, the spool and generated keys.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub smtp: SmtpConfig,
    pub tls: TlsConfig,
    pub http: HttpConfig,
    pub aliases: AliasConfig,
    pub queue: QueueConfig,
    pub outbound: OutboundConfig,
    pub delivery_log: DeliveryLogConfig,
    pub srs: SrsConfig,
    pub auth: AuthConfig,
    pub dkim: DkimConfig,
    pub arc: ArcConfig,
    pub rewrite: RewriteConfig,
    pub chain: ChainConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: default_hostname(),
            data_dir: PathBuf::from("./data"),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            smtp: SmtpConfig::default(),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            aliases: AliasConfig::default(),
            queue: QueueConfig::default(),
            outbound: OutboundConfig::default(),
            delivery_log: DeliveryLogConfig::default(),
            srs: SrsConfig::default(),
            auth: AuthConfig::default(),
            dkim: DkimConfig::default(),
            arc: ArcConfig::default(),
            rewrite: RewriteConfig::default(),
            chain: ChainConfig::default(),
        }
    }
}

fn default_hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().to_lowercase();
    if name.is_empty() || !is_hostname(&name) {
        "localhost".to_string()
    } else {
        name
    }
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Sessions one client network (an IPv4 address, an IPv6 /64) may hold;
    /// `max_connections_per_ip`, its former name, is still read.
    #[serde(alias = "max_connections_per_ip")]
    pub max_connections_per_network: usize,
    /// Share of `max_connections` (percent, rounded up) kept for networks
    /// that hold no session yet, so that no single network takes them all.
    pub reserved_percent: u8,
    /// Longest a session may last, whatever it does.
    pub max_session_time: HumanDuration,
    /// Commands without progress (NOOP, RSET, VRFY, EXPN, HELP, HELO/EHLO)
    /// a session may send between two accepted messages.
    pub max_junk_commands: usize,
    pub command_timeout: HumanDuration,
    pub data_timeout: HumanDuration,
    pub max_line_length: usize,
    pub max_recipients: usize,
    pub max_message_size: ByteSize,
    /// Header section of a message (refused with 552 5.3.4 beyond it).
    pub max_header_size: ByteSize,
    /// Header fields of a message (refused with 554 5.6.0 beyond it).
    pub max_header_fields: usize,
    pub max_received_headers: usize,
    pub max_errors: usize,
    pub starttls: bool,
    pub shutdown_grace: HumanDuration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: "127.0.0.1:2525".parse().expect("literal address"),
            max_connections: 1000,
            max_connections_per_network: 50,
            reserved_percent: 10,
            max_session_time: HumanDuration::secs(30 * 60),
            max_junk_commands: 50,
            command_timeout: HumanDuration::secs(300),
            data_timeout: HumanDuration::secs(600),
            max_line_length: 2048,
            max_recipients: 100,
            max_message_size: ByteSize(25 * 1024 * 1024),
            max_header_size: ByteSize(256 * 1024),
            max_header_fields: 1000,
            max_received_headers: 50,
            max_errors: 20,
            starttls: true,
            shutdown_grace: HumanDuration::secs(30),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; empty: a self-signed one in data_dir/tls/.
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    pub key: Option<PathBuf>,
}

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
            cache_size: ByteSize(crate::store::DEFAULT_CACHE_SIZE as u64),
            prewarm: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AliasConfig {
    /// Most forwarding addresses one alias may have (1:N forwarding).
    pub max_destinations: usize,
    /// Where `postmaster` (RFC 5321 §4.5.1) goes for every served domain
    /// that has no alias, catch-all or `postmaster` alias of its own.
    /// Empty: such mail is refused like any unknown address.
    pub postmaster: String,
}

impl Default for AliasConfig {
    fn default() -> Self {
        AliasConfig {
            max_destinations: 10,
            postmaster: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Delay before the first retry of a deferred recipient; doubles each time.
    pub retry_initial: HumanDuration,
    /// Upper bound of the retry delay.
    pub retry_max: HumanDuration,
    /// A message still undelivered after this long is bounced.
    pub max_age: HumanDuration,
    /// Messages being delivered at once (bounds memory of the scheduler).
    pub max_inflight: usize,
    /// Send a DSN only when the sender passed SPF (MAIL FROM) or aligned
    /// DKIM at reception: bounces to forged senders are backscatter.
    pub dsn_authenticated_only: bool,
    /// The committer or scheduler busy with one piece of work for longer is
    /// reported stuck (`/health` 503, `eas_component_healthy` 0).
    pub stall_timeout: HumanDuration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            retry_initial: HumanDuration::secs(60),
            retry_max: HumanDuration::secs(3600),
            max_age: HumanDuration::secs(5 * 24 * 3600),
            max_inflight: 1000,
            dsn_authenticated_only: true,
            stall_timeout: HumanDuration::secs(120),
        }
    }
}

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
    pub allow_networks: Vec<crate::outbound::network::Network>,
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

/// Inbound verdicts (SPF, DKIM, DMARC, ARC) and the policy applied to them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Verify inbound mail and record Authentication-Results.
    pub enabled: bool,
    /// Refuse (550 5.7.1 at end of data) DMARC failures of p=reject domains.
    pub reject_dmarc_failures: bool,
    /// Answer 451 4.7.x when a lookup fails temporarily (never for a
    /// missing record).
    pub tempfail_on_dns_error: bool,
    /// DKIM signatures verified per message (the topmost); the others are
    /// ignored (RFC 6376 §6.1 lets a verifier limit them).
    pub max_dkim_signatures: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            reject_dmarc_failures: true,
            tempfail_on_dns_error: true,
            max_dkim_signatures: 5,
        }
    }
}

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

fn yes() -> bool {
    true
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

/// Header rewriting of forwarded mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewriteConfig {
    /// Rewrite From for DMARC-strict senders without an aligned DKIM
    /// signature (p=quarantine or p=reject), which would fail DMARC downstream.
    pub from_for_strict_dmarc: bool,
    /// The address that replaces theirs; empty: "forwarder@" + the DKIM domain.
    pub from_address: String,
    /// Header keeping the original From.
    pub original_from_header: String,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig {
            from_for_strict_dmarc: true,
            from_address: String::new(),
            original_from_header: "X-Original-From".into(),
        }
    }
}

/// One name registry (a TLD) and its EAS contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The TLD the registry rents names under, e.g. "country".
    pub tld: String,
    /// Address of the EAS contract.
    pub eas: String,
    /// Address of the DC-compatible registry (ownerOf(string),
    /// nameExpires(string)); empty: read from the EAS contract's dc().
    #[serde(default)]
    pub dc: String,
    /// The EAS contract emits AliasActivated/AliasDeactivated/AllDeactivated;
    /// false: changes are found in the calldata of transactions to it.
    #[serde(default = "yes")]
    pub eas_events: bool,
    /// More contracts whose Transfer / NameRegistered / NameRenewed logs
    /// change owners or expiries (e.g. the base registrar).
    #[serde(default)]
    pub log_addresses: Vec<String>,
}

/// Following the chain: aliases of chain-governed domains forward only while
/// the chain says so (DESIGN §3, §8).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// Off: no chain-governed domains (the embedded default).
    pub enabled: bool,
    /// JSON-RPC endpoint (HTTP).
    pub rpc_url: String,
    /// Checked against the endpoint at start when not 0 (Harmony: 1666600000).
    pub chain_id: u64,
    /// Blocks behind the head the watcher stays (reorg safety).
    pub confirmations: u64,
    pub poll_interval: HumanDuration,
    pub request_timeout: HumanDuration,
    /// The chain is "stale" when it could not be read for this long: aliases
    /// keep forwarding from the cache, /health and metrics say so.
    pub stale_after: HumanDuration,
    /// How often every active alias is verified again against the chain.
    pub sweep_interval: HumanDuration,
    /// Aliases verified per batch of reads during a sweep.
    pub sweep_batch: usize,
    /// First block a fresh node follows from; 0: the head at first start.
    pub start_block: u64,
    /// Most blocks per eth_getLogs / block scan request.
    pub max_block_range: u64,
    /// How far a confirmed block's timestamp may run ahead of the wall
    /// clock and still count for expiry; a later one is not believed (a
    /// bad or hostile RPC answer would otherwise expire every alias).
    pub max_clock_skew: HumanDuration,
    pub registries: Vec<RegistryConfig>,
    /// Shared secret of the activation endpoints (HMAC-SHA256 of the body in
    /// X-EAS-Signature); empty: no HMAC (the chain checks apply either way).
    pub activation_secret: String,
    /// A file holding that secret.
    pub activation_secret_file: Option<PathBuf>,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            enabled: false,
            rpc_url: "http://127.0.0.1:8545".into(),
            chain_id: 0,
            confirmations: 2,
            poll_interval: HumanDuration::secs(2),
            request_timeout: HumanDuration::secs(10),
            stale_after: HumanDuration::secs(300),
            sweep_interval: HumanDuration::secs(3600),
            sweep_batch: 500,
            start_block: 0,
            max_block_range: 2000,
            max_clock_skew: HumanDuration::secs(600),
            registries: Vec::new(),
            activation_secret: String::new(),
            activation_secret_file: None,
        }
    }
}

/// The largest `chain.max_clock_skew` accepted.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(86_400);

impl ChainConfig {
    /// The TLD of the registry that governs `domain` (a host name, any
    /// case): with the chain enabled, every name under a configured TLD,
    /// registered or not, and its subdomains (and the TLD itself) belong to
    /// the chain, never to the operator.
    pub fn governing_tld(&self, domain: &str) -> Option<&str> {
        if !self.enabled {
            return None;
        }
        let domain = domain.strip_suffix('.').unwrap_or(domain).as_bytes();
        self.registries.iter().map(|r| r.tld.as_str()).find(|tld| {
            let tld = tld.as_bytes();
            match domain.len().checked_sub(tld.len()) {
                Some(0) => domain.eq_ignore_ascii_case(tld),
                Some(dot) => {
                    domain.get(dot - 1) == Some(&b'.')
                        && domain
                            .get(dot..)
                            .is_some_and(|t| t.eq_ignore_ascii_case(tld))
                }
                None => false,
            }
        })
    }
}

/// An Ethereum address in hex ("0x" and 40 hex digits, any case).
pub fn is_address(s: &str) -> bool {
    s.strip_prefix("0x")
        .is_some_and(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Config {
    /// The embedded defaults with environment overrides applied.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_table(toml::Table::new(), std::env::vars())
    }

    /// Reads `path`, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, std::env::vars())
    }

    /// Parses config text (as if read from `path`) with the given environment.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string().trim().to_string(),
                })?;
        Self::from_table(table, env)
    }

    fn from_table(
        mut table: toml::Table,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let origins = apply_env(&mut table, env)?;
        let value = toml::Value::Table(table.clone());
        let config: Config = serde_path_to_error::deserialize(value)
            .map_err(|err| {
                let key = err.path().to_string();
                let shown = lookup(&table, &key)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "(missing)".into());
                ConfigError::invalid(&key, shown, err.into_inner().message().to_string())
            })
            .map_err(|e| attribute(e, &origins))?;
        config.validate().map_err(|e| attribute(e, &origins))?;
        Ok(config)
    }

    /// Semantic checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_hostname(&self.hostname) {
            return Err(ConfigError::invalid(
                "hostname",
                &self.hostname,
                "must be a DNS host name (letters, digits, '-', '.')",
            ));
        }
        positive("smtp.max_connections", self.smtp.max_connections)?;
        self.validate_limits()?;
        positive("smtp.max_recipients", self.smtp.max_recipients)?;
        positive("smtp.max_errors", self.smtp.max_errors)?;
        positive("smtp.max_received_headers", self.smtp.max_received_headers)?;
        if !(512..=65536).contains(&self.smtp.max_line_length) {
            return Err(ConfigError::invalid(
                "smtp.max_line_length",
                self.smtp.max_line_length,
                "must be between 512 (RFC 5321 minimum) and 65536",
            ));
        }
        if self.store.cache_size.0 < 16 << 20 {
            return Err(ConfigError::invalid(
                "store.cache_size",
                self.store.cache_size,
                "must be at least 16MiB",
            ));
        }
        if !(1..=1000).contains(&self.auth.max_dkim_signatures) {
            return Err(ConfigError::invalid(
                "auth.max_dkim_signatures",
                self.auth.max_dkim_signatures,
                "must be between 1 and 1000",
            ));
        }
        if !(1..=100_000).contains(&self.smtp.max_header_fields) {
            return Err(ConfigError::invalid(
                "smtp.max_header_fields",
                self.smtp.max_header_fields,
                "must be between 1 and 100000",
            ));
        }
        if self.smtp.max_header_size.0 < 1024
            || self.smtp.max_header_size.0 > self.smtp.max_message_size.0.max(1024)
        {
            return Err(ConfigError::invalid(
                "smtp.max_header_size",
                self.smtp.max_header_size,
                "must be at least 1KiB and at most smtp.max_message_size",
            ));
        }
        if self.smtp.max_message_size.0 < 1024 {
            return Err(ConfigError::invalid(
                "smtp.max_message_size",
                self.smtp.max_message_size,
                "must be at least 1KiB",
            ));
        }
        nonzero_duration("smtp.command_timeout", self.smtp.command_timeout)?;
        nonzero_duration("smtp.data_timeout", self.smtp.data_timeout)?;
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "tls.key",
                    "(missing)",
                    "tls.cert is set, so tls.key must be set too",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "tls.cert",
                    "(missing)",
                    "tls.key is set, so tls.cert must be set too",
                ));
            }
            _ => {}
        }
        for (i, key) in self.http.admin_keys.iter().enumerate() {
            if key.len() < 16 {
                return Err(ConfigError::invalid(
                    &format!("http.admin_keys[{i}]"),
                    "(secret)",
                    "an admin key must be at least 16 characters",
                ));
            }
        }
        for (i, origin) in self.http.cors_origins.iter().enumerate() {
            if !valid_origin(origin) {
                return Err(ConfigError::invalid(
                    &format!("http.cors_origins[{i}]"),
                    origin,
                    "must be `*` or an origin like `https://app.example.org` (scheme, host, optional port; no path)",
                ));
            }
        }
        positive("aliases.max_destinations", self.aliases.max_destinations)?;
        if !self.aliases.postmaster.is_empty()
            && crate::address::Mailbox::parse(&self.aliases.postmaster).is_none()
        {
            return Err(ConfigError::invalid(
                "aliases.postmaster",
                &self.aliases.postmaster,
                "must be an email address (or empty)",
            ));
        }
        nonzero_duration("queue.retry_initial", self.queue.retry_initial)?;
        if self.queue.retry_max.0 < self.queue.retry_initial.0 {
            return Err(ConfigError::invalid(
                "queue.retry_max",
                self.queue.retry_max,
                "must not be shorter than queue.retry_initial",
            ));
        }
        nonzero_duration("queue.max_age", self.queue.max_age)?;
        positive("queue.max_inflight", self.queue.max_inflight)?;
        if self.queue.stall_timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "queue.stall_timeout",
                self.queue.stall_timeout,
                "must be at least 1s (a group commit takes an fsync)",
            ));
        }
        if self.outbound.port == 0 {
            return Err(ConfigError::invalid("outbound.port", 0, "must not be 0"));
        }
        if !self.outbound.helo_name.is_empty() && !is_hostname(&self.outbound.helo_name) {
            return Err(ConfigError::invalid(
                "outbound.helo_name",
                &self.outbound.helo_name,
                "must be a DNS host name",
            ));
        }
        nonzero_duration("outbound.connect_timeout", self.outbound.connect_timeout)?;
        nonzero_duration("outbound.command_timeout", self.outbound.command_timeout)?;
        nonzero_duration("outbound.data_timeout", self.outbound.data_timeout)?;
        positive(
            "outbound.max_per_destination",
            self.outbound.max_per_destination,
        )?;
        positive("outbound.max_connections", self.outbound.max_connections)?;
        positive(
            "outbound.max_messages_per_connection",
            self.outbound.max_messages_per_connection,
        )?;
        if let Some(file) = &self.outbound.tls_ca_file
            && self.outbound.tls != TlsPolicy::Verified
        {
            return Err(ConfigError::invalid(
                "outbound.tls_ca_file",
                format!("\"{}\"", file.display()),
                "is used only with outbound.tls = \"verified\" (no certificate is checked otherwise)",
            ));
        }
        if !self.srs.domain.is_empty() && !is_hostname(&self.srs.domain) {
            return Err(ConfigError::invalid(
                "srs.domain",
                &self.srs.domain,
                "must be a domain",
            ));
        }
        if !(4..=28).contains(&self.srs.hash_length) {
            return Err(ConfigError::invalid(
                "srs.hash_length",
                self.srs.hash_length,
                "must be between 4 and 28 (base64 of HMAC-SHA1)",
            ));
        }
        if let Some(min) = self.srs.hash_min_length
            && !(4..=self.srs.hash_length).contains(&min)
        {
            return Err(ConfigError::invalid(
                "srs.hash_min_length",
                min,
                format!(
                    "must be between 4 and srs.hash_length ({})",
                    self.srs.hash_length
                ),
            ));
        }
        nonzero_duration("srs.max_age", self.srs.max_age)?;
        positive("srs.max_failures", self.srs.max_failures as usize)?;
        nonzero_duration("srs.failure_window", self.srs.failure_window)?;
        for (i, secret) in self.srs.secrets.iter().enumerate() {
            if secret.len() < 8 {
                return Err(ConfigError::invalid(
                    &format!("srs.secrets[{i}]"),
                    "(secret)",
                    "an SRS secret must be at least 8 characters",
                ));
            }
        }
        if !self.dkim.domain.is_empty() && !is_hostname(&self.dkim.domain) {
            return Err(ConfigError::invalid(
                "dkim.domain",
                &self.dkim.domain,
                "must be a domain",
            ));
        }
        let mut selectors = std::collections::HashSet::new();
        for (i, key) in self.dkim.keys.iter().enumerate() {
            if !is_hostname(&key.selector) || !selectors.insert(key.selector.clone()) {
                return Err(ConfigError::invalid(
                    &format!("dkim.keys[{i}].selector"),
                    &key.selector,
                    "must be a DNS label, unique among the keys",
                ));
            }
        }
        if self
            .dkim
            .headers
            .iter()
            .all(|h| !h.eq_ignore_ascii_case("from"))
        {
            return Err(ConfigError::invalid(
                "dkim.headers",
                format!("{:?}", self.dkim.headers),
                "must include From (RFC 6376 §5.4)",
            ));
        }
        if self.dkim.enabled && !self.dkim.keys.is_empty() && self.dkim.keys.iter().all(|k| !k.dkim)
        {
            return Err(ConfigError::invalid(
                "dkim.keys",
                "(every key has dkim = false)",
                "at least one key must sign DKIM while dkim.enabled",
            ));
        }
        if !self.arc.selector.is_empty()
            && !self.dkim.keys.is_empty()
            && !self
                .dkim
                .keys
                .iter()
                .any(|k| k.selector == self.arc.selector)
        {
            return Err(ConfigError::invalid(
                "arc.selector",
                &self.arc.selector,
                "must name one of dkim.keys",
            ));
        }
        if !self.rewrite.from_address.is_empty()
            && crate::address::Mailbox::parse(&self.rewrite.from_address).is_none()
        {
            return Err(ConfigError::invalid(
                "rewrite.from_address",
                &self.rewrite.from_address,
                "must be an email address (or empty)",
            ));
        }
        self.validate_chain()?;
        for (domain, target) in &self.outbound.routes {
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

    /// The connection and session limits of the SMTP and HTTP listeners.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        positive(
            "smtp.max_connections_per_network",
            self.smtp.max_connections_per_network,
        )?;
        if self.smtp.reserved_percent > 50 {
            return Err(ConfigError::invalid(
                "smtp.reserved_percent",
                self.smtp.reserved_percent,
                "must be between 0 and 50 (percent of smtp.max_connections)",
            ));
        }
        nonzero_duration("smtp.max_session_time", self.smtp.max_session_time)?;
        positive("smtp.max_junk_commands", self.smtp.max_junk_commands)?;
        positive("http.max_connections", self.http.max_connections)?;
        positive(
            "http.max_connections_per_ip",
            self.http.max_connections_per_ip,
        )?;
        nonzero_duration("http.header_timeout", self.http.header_timeout)?;
        nonzero_duration("http.body_timeout", self.http.body_timeout)?;
        nonzero_duration("http.idle_timeout", self.http.idle_timeout)?;
        Ok(())
    }

    /// Shortest SRS hash a bounce may carry.
    pub fn srs_hash_min_length(&self) -> usize {
        self.srs.hash_min_length.unwrap_or(self.srs.hash_length)
    }

    fn validate_chain(&self) -> Result<(), ConfigError> {
        let c = &self.chain;
        if !c.enabled {
            return Ok(());
        }
        if !(c.rpc_url.starts_with("http://") || c.rpc_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "chain.rpc_url",
                &c.rpc_url,
                "must be an http:// or https:// JSON-RPC URL",
            ));
        }
        nonzero_duration("chain.poll_interval", c.poll_interval)?;
        nonzero_duration("chain.request_timeout", c.request_timeout)?;
        nonzero_duration("chain.stale_after", c.stale_after)?;
        nonzero_duration("chain.sweep_interval", c.sweep_interval)?;
        positive("chain.sweep_batch", c.sweep_batch)?;
        if c.max_block_range == 0 {
            return Err(ConfigError::invalid(
                "chain.max_block_range",
                0,
                "must be greater than 0",
            ));
        }
        if c.max_clock_skew.0 > MAX_CLOCK_SKEW {
            return Err(ConfigError::invalid(
                "chain.max_clock_skew",
                c.max_clock_skew,
                "must be at most 1d: a block timestamp that far ahead of the clock \
                 would expire names early",
            ));
        }
        if c.registries.is_empty() {
            return Err(ConfigError::invalid(
                "chain.registries",
                "[]",
                "chain.enabled needs at least one [[chain.registries]] (tld, eas)",
            ));
        }
        let mut tlds = std::collections::HashSet::new();
        for (i, r) in c.registries.iter().enumerate() {
            let key = |k: &str| format!("chain.registries[{i}].{k}");
            if !is_hostname(&r.tld)
                || r.tld.contains('.')
                || !tlds.insert(r.tld.to_ascii_lowercase())
            {
                return Err(ConfigError::invalid(
                    &key("tld"),
                    &r.tld,
                    "must be one DNS label, unique among the registries",
                ));
            }
            if !is_address(&r.eas) {
                return Err(ConfigError::invalid(
                    &key("eas"),
                    &r.eas,
                    "must be a 0x-prefixed 20-byte hex address",
                ));
            }
            if !r.dc.is_empty() && !is_address(&r.dc) {
                return Err(ConfigError::invalid(
                    &key("dc"),
                    &r.dc,
                    "must be a 0x-prefixed 20-byte hex address (or empty)",
                ));
            }
            for (j, a) in r.log_addresses.iter().enumerate() {
                if !is_address(a) {
                    return Err(ConfigError::invalid(
                        &format!("chain.registries[{i}].log_addresses[{j}]"),
                        a,
                        "must be a 0x-prefixed 20-byte hex address",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Name this node sends in outbound EHLO.
    pub fn helo_name(&self) -> &str {
        if self.outbound.helo_name.is_empty() {
            &self.hostname
        } else {
            &self.outbound.helo_name
        }
    }

    /// Domain of SRS addresses.
    pub fn srs_domain(&self) -> &str {
        if self.srs.domain.is_empty() {
            &self.hostname
        } else {
            &self.srs.domain
        }
    }

    /// The relay's own domains (its host name and SRS domain): never a
    /// forwarding address's, since mail there would come back.
    pub fn own_domains(&self) -> Vec<String> {
        vec![
            self.hostname.to_ascii_lowercase(),
            self.srs_domain().to_ascii_lowercase(),
        ]
    }

    /// d= of the relay's DKIM signatures.
    pub fn dkim_domain(&self) -> &str {
        if self.dkim.domain.is_empty() {
            &self.hostname
        } else {
            &self.dkim.domain
        }
    }

    /// Path of the redb store.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("eas-relay.redb")
    }

    /// Directory of spooled message bodies.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    /// The config as TOML, for `config show` and documentation checks.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }
}

/// Splits "host:port" (or "[v6]:port"); None when malformed.
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
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

/// A DNS host name: labels of letters, digits and '-', dot-separated.
pub fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn positive(key: &str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError::invalid(key, 0, "must be greater than 0"))
    } else {
        Ok(())
    }
}

fn nonzero_duration(key: &str, value: HumanDuration) -> Result<(), ConfigError> {
    if value.0.is_zero() {
        Err(ConfigError::invalid(key, value, "must be longer than 0s"))
    } else {
        Ok(())
    }
}

/// Names the environment variable behind a bad value, so that nobody
/// searches the file for it.
fn attribute(err: ConfigError, origins: &BTreeMap<String, String>) -> ConfigError {
    match err {
        ConfigError::Invalid { key, value, reason } => {
            let origin = origins.iter().find(|(path, _)| {
                key == **path
                    || key.starts_with(&format!("{path}."))
                    || key.starts_with(&format!("{path}["))
            });
            let value = match origin {
                Some((_, var)) => format!("{value} (set by {var})"),
                None => value,
            };
            ConfigError::Invalid { key, value, reason }
        }
        other => other,
    }
}

/// Applies `EAS_RELAY_A__B=value` variables onto the table as key `a.b`;
/// returns which key path each variable set.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut origins = BTreeMap::new();
    for (name, raw) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == ENV_CONFIG_FILE || path.is_empty() {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(|k| k.to_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(ConfigError::invalid(
                &name,
                &raw,
                "environment override has an empty key segment",
            ));
        }
        let value = env_value(&raw);
        let mut cursor = &mut *table;
        for key in &keys[..keys.len() - 1] {
            let entry = cursor
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::invalid(
                        &keys.join("."),
                        &raw,
                        format!("`{key}` is not a section, so {name} cannot set a key inside it"),
                    ));
                }
            };
        }
        cursor.insert(keys[keys.len() - 1].clone(), value);
        origins.insert(keys.join("."), name);
    }
    Ok(origins)
}

/// An environment value is read as a TOML value when it is one (numbers,
/// booleans, arrays, quoted strings) and as a plain string otherwise.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Finds the value at a serde_path_to_error path like `smtp.listen` or `a[0]`.
fn lookup<'t>(table: &'t toml::Table, path: &str) -> Option<&'t toml::Value> {
    let mut segments = path.split('.');
    let mut value = table.get(segments.next()?.split('[').next()?)?;
    for seg in segments {
        let name = seg.split('[').next()?;
        value = value.as_table()?.get(name)?;
    }
    Some(value)
}

/// A duration written as "30s", "5m", "2h", "7d", "250ms" or whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration such as \"30s\", \"5m\", \"7d\""))?;
        let ms = match unit.trim() {
            "ms" => n,
            "" | "s" => n.saturating_mul(1000),
            "m" => n.saturating_mul(60_000),
            "h" => n.saturating_mul(3_600_000),
            "d" => n.saturating_mul(86_400_000),
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        Ok(HumanDuration(Duration::from_millis(ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(HumanDuration::secs(s)),
            Raw::Text(t) => HumanDuration::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A size written as "25MiB", "512KiB", "10MB", "4096" (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size such as \"25MiB\" or \"4096\""))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            "kB" | "KB" => 1000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` (use B, KiB, MiB, GiB, kB, MB, GB)"
                ));
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n != 0 && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(b) => Ok(ByteSize(b)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"), Vec::new())
    }

    fn invalid_key(text: &str) -> (String, String, String) {
        match parse(text) {
            Err(ConfigError::Invalid { key, value, reason }) => (key, value, reason),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_gives_embedded_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.smtp.listen.to_string(), "127.0.0.1:2525");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.queue.max_age, HumanDuration::secs(5 * 86400));
        assert_eq!(c.delivery_log.retention, HumanDuration::secs(7 * 86400));
    }

    #[test]
    fn example_config_parses_and_equals_defaults() {
        let text = include_str!("../config.example.toml");
        let parsed = parse(text).expect("config.example.toml must be valid");
        let defaults = Config::default();
        // hostname depends on the machine; the example shows a placeholder.
        let mut parsed_toml: toml::Table = parsed.to_toml().parse().unwrap();
        let mut default_toml: toml::Table = defaults.to_toml().parse().unwrap();
        parsed_toml.remove("hostname");
        default_toml.remove("hostname");
        assert_eq!(
            parsed_toml, default_toml,
            "config.example.toml must show every default"
        );
    }

    #[test]
    fn every_key_is_documented_in_the_example() {
        let example = include_str!("../config.example.toml");
        let defaults: toml::Table = Config::default().to_toml().parse().unwrap();
        fn walk(prefix: &str, t: &toml::Table, example: &str) {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(inner) => {
                        assert!(
                            example.contains(&format!("[{path}]")),
                            "section [{path}] missing from config.example.toml"
                        );
                        walk(&path, inner, example);
                    }
                    _ => assert!(
                        example.lines().any(|l| {
                            let l = l.trim_start_matches('#').trim_start();
                            l.starts_with(&format!("{k} ")) || l.starts_with(&format!("{k}="))
                        }),
                        "key {path} missing from config.example.toml"
                    ),
                }
            }
        }
        walk("", &defaults, example);
    }

    #[test]
    fn unknown_key_is_named() {
        let (key, _, reason) = invalid_key("[smtp]\nmax_conections = 5\n");
        assert_eq!(key, "smtp.max_conections");
        assert!(reason.contains("unknown field"), "{reason}");
        assert!(!reason.contains('\n'), "one line: {reason}");
    }

    #[test]
    fn wrong_type_names_key_and_value() {
        let (key, value, reason) = invalid_key("[smtp]\nmax_connections = \"many\"\n");
        assert_eq!(key, "smtp.max_connections");
        assert_eq!(value, "\"many\"");
        assert!(reason.contains("invalid type"), "{reason}");
    }

    #[test]
    fn bad_duration_and_size_are_explained() {
        let (key, value, reason) = invalid_key("[queue]\nmax_age = \"5 fortnights\"\n");
        assert_eq!(key, "queue.max_age");
        assert_eq!(value, "\"5 fortnights\"");
        assert!(reason.contains("unit"), "{reason}");
        let (key, _, reason) = invalid_key("[smtp]\nmax_message_size = \"lots\"\n");
        assert_eq!(key, "smtp.max_message_size");
        assert!(reason.contains("not a size"), "{reason}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let (key, value, _) = invalid_key("[smtp]\nmax_line_length = 100\n");
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("smtp.max_line_length", "100")
        );
        let (key, _, _) = invalid_key("[tls]\ncert = \"/x.pem\"\n");
        assert_eq!(key, "tls.key");
        let (key, _, _) = invalid_key("[outbound.routes]\n\"a.test\" = \"nohost\"\n");
        assert_eq!(key, "outbound.routes.\"a.test\"");
        let (key, _, _) = invalid_key("[queue]\nretry_initial = \"2h\"\nretry_max = \"1h\"\n");
        assert_eq!(key, "queue.retry_max");
    }

    #[test]
    fn outbound_networks_and_ca_file_are_checked() {
        let c = parse("[outbound]\nallow_networks = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        assert_eq!(c.outbound.allow_networks.len(), 2);
        let (key, value, reason) = invalid_key("[outbound]\nallow_networks = [\"10.1.2.3/8\"]\n");
        assert_eq!(key, "outbound.allow_networks[0]");
        assert!(value.contains("10.1.2.3/8"), "{value}");
        assert!(reason.contains("10.0.0.0/8"), "{reason}");
        let (key, _, reason) = invalid_key("[outbound]\ntls_ca_file = \"/ca.pem\"\n");
        assert_eq!(key, "outbound.tls_ca_file");
        assert!(reason.contains("verified"), "{reason}");
        let c = parse("[outbound]\ntls = \"verified\"\ntls_ca_file = \"/ca.pem\"\n").unwrap();
        assert_eq!(c.outbound.tls, TlsPolicy::Verified);
    }

    #[test]
    fn syntax_error_is_reported() {
        assert!(matches!(parse("[smtp\n"), Err(ConfigError::Syntax { .. })));
    }

    #[test]
    fn env_overrides_file_and_defaults() {
        let env = vec![
            (
                "EAS_RELAY_SMTP__MAX_CONNECTIONS".to_string(),
                "7".to_string(),
            ),
            (
                "EAS_RELAY_SMTP__LISTEN".to_string(),
                "127.0.0.1:2600".to_string(),
            ),
            ("EAS_RELAY_QUEUE__MAX_AGE".to_string(), "2d".to_string()),
            ("EAS_RELAY_CONFIG".to_string(), "/ignored.toml".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::parse("[smtp]\nmax_connections = 3\n", Path::new("t"), env).unwrap();
        assert_eq!(c.smtp.max_connections, 7);
        assert_eq!(c.smtp.listen.port(), 2600);
        assert_eq!(c.queue.max_age, HumanDuration::secs(2 * 86400));
    }

    #[test]
    fn bad_env_override_names_key() {
        let env = vec![("EAS_RELAY_SMTP__MAX_RECIPIENTS".into(), "none".into())];
        match Config::parse("", Path::new("t"), env) {
            Err(ConfigError::Invalid { key, value, .. }) => {
                assert_eq!(key, "smtp.max_recipients");
                assert_eq!(value, "\"none\" (set by EAS_RELAY_SMTP__MAX_RECIPIENTS)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn durations_and_sizes_round_trip() {
        for s in ["250ms", "30s", "5m", "2h", "7d"] {
            assert_eq!(HumanDuration::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(HumanDuration::parse("90").unwrap(), HumanDuration::secs(90));
        assert_eq!(ByteSize::parse("25MiB").unwrap().0, 25 << 20);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
        assert_eq!(ByteSize::parse("4096").unwrap().to_string(), "4KiB");
        assert!(ByteSize::parse("99999999999999GiB").is_err());
    }

    #[test]
    fn chain_settings_are_checked_when_enabled() {
        // Off by default: nothing to check.
        assert!(!parse("").unwrap().chain.enabled);
        let eas = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
        let ok = format!(
            "[chain]\nenabled = true\n[[chain.registries]]\ntld = \"country\"\neas = \"{eas}\"\n"
        );
        let c = parse(&ok).unwrap();
        assert_eq!(c.chain.registries[0].tld, "country");
        assert!(c.chain.registries[0].eas_events);
        let (key, _, reason) = invalid_key("[chain]\nenabled = true\n");
        assert_eq!(key, "chain.registries");
        assert!(reason.contains("at least one"), "{reason}");
        let (key, value, _) = invalid_key(&ok.replace(eas, "0x1234"));
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("chain.registries[0].eas", "0x1234")
        );
        let (key, _, _) =
            invalid_key(&ok.replace("enabled = true", "enabled = true\nrpc_url = \"ws://x\""));
        assert_eq!(key, "chain.rpc_url");
        let (key, _, _) = invalid_key(&ok.replace("\"country\"", "\"a.b\""));
        assert_eq!(key, "chain.registries[0].tld");
        let (key, value, reason) =
            invalid_key(&ok.replace("enabled = true", "enabled = true\nmax_clock_skew = \"2d\""));
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("chain.max_clock_skew", "2d")
        );
        assert!(reason.contains("at most 1d"), "{reason}");
        assert_eq!(c.chain.max_clock_skew.0.as_secs(), 600);
    }

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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// A domain (from RCPT, the admin API) is governed exactly when it
        /// is a registry's TLD or ends in `.` and that TLD, in any case, with
        /// at most one trailing dot; never with the chain off. Total on any
        /// text.
        #[test]
        fn governing_tld_is_exact(
            domain in "[a-zA-Z.]{0,12}(country|COUNTRY|xcountry|countr)?\\.?",
            any in "\\PC{0,40}",
        ) {
            let mut c = ChainConfig {
                enabled: true,
                ..ChainConfig::default()
            };
            c.registries = vec![RegistryConfig {
                tld: "country".into(),
                eas: String::new(),
                dc: String::new(),
                eas_events: true,
                log_addresses: Vec::new(),
            }];
            let d = domain.strip_suffix('.').unwrap_or(&domain).to_ascii_lowercase();
            let expected = d == "country" || d.ends_with(".country");
            proptest::prop_assert_eq!(c.governing_tld(&domain).is_some(), expected);
            let _ = c.governing_tld(&any);
            c.enabled = false;
            proptest::prop_assert!(c.governing_tld(&domain).is_none());
        }

        /// Fuzz: any text is either a valid config or a precise error.
        #[test]
        fn parsing_is_total(text in "\\PC{0,200}") {
            let _ = Config::parse(&text, Path::new("fuzz.toml"), Vec::new());
        }

        /// Mutated known-good files: errors always name a key or the syntax.
        #[test]
        fn mutated_example_errors_are_precise(cut in 0usize..4000, junk in "[a-z0-9=\\[\\]\" .]{0,12}") {
            let example = include_str!("../config.example.toml");
            let cut = cut.min(example.len());
            let cut = (0..=cut).rev().find(|i| example.is_char_boundary(*i)).unwrap_or(0);
            let text = format!("{}{}{}", &example[..cut], junk, &example[cut..]);
            match Config::parse(&text, Path::new("fuzz.toml"), Vec::new()) {
                Ok(_) | Err(ConfigError::Syntax { .. }) => {}
                Err(ConfigError::Invalid { key, reason, .. }) => {
                    proptest::prop_assert!(!key.is_empty() && !reason.is_empty());
                }
                Err(e) => proptest::prop_assert!(false, "unexpected error kind: {e}"),
            }
        }
    }
}
