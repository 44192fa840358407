//! Typed configuration: embedded defaults, the TOML file, environment
//! overrides, and validation that names the bad key, its value and why.
//!
//! Precedence: built-in default < config file < `EAS_RELAY_*` environment
//! variable. An environment variable names a key path with `__` between
//! sections, e.g. `EAS_RELAY_SMTP__MAX_CONNECTIONS=200` sets
//! `smtp.max_connections`. Every key is documented in `config.example.toml`.
//!
//! Each section (`[smtp]`, `[queue]`, …) lives in its own file with its
//! own validation; [`Config::validate`] runs them all. Sections import
//! only `error.rs` (the error and shared checks) and `units.rs` (durations
//! and sizes, one [`Unit`] type), never this file. The tests here run the
//! whole pipeline (file, environment, serde, validation naming the key);
//! a piece's own tests sit beside it.

mod aliases;
mod auth;
mod chain;
mod cluster;
mod dkim;
mod dns_provisioning;
mod env;
mod error;
mod http;
mod log;
mod outbound;
mod queue;
mod rewrite;
mod scan;
mod screen;
mod smtp;
mod srs;
mod store;
mod submission;
mod tls;
mod units;

pub use aliases::AliasConfig;
pub use auth::AuthConfig;
pub use chain::{ChainConfig, RegistryConfig};
pub use cluster::{ClusterConfig, SslMode, check_database_url, valid_node_id};
pub use dkim::{ArcConfig, DkimConfig, DkimKeyConfig, KeyAlgorithm};
pub use dns_provisioning::DnsProvisioningConfig;
pub(crate) use env::ENV_CONFIG_FILE;
pub use error::ConfigError;
pub(crate) use error::redacted;
pub use http::{HttpConfig, RateLimitConfig};
pub use log::LogConfig;
pub(crate) use outbound::parse_host_port;
pub use outbound::{OutboundConfig, TlsPolicy};
pub use queue::QueueConfig;
pub use rewrite::RewriteConfig;
pub use scan::{ScanConfig, ScanFailMode, SpamHeaders};
pub(crate) use screen::DnsblSite;
pub use screen::ScreenConfig;
pub use smtp::SmtpConfig;
pub use srs::SrsConfig;
pub(crate) use store::DEFAULT_CACHE_SIZE;
pub use store::{DeliveryLogConfig, StoreConfig};
pub use submission::SubmissionConfig;
pub use tls::TlsConfig;
pub use units::{ByteSize, HumanDuration, Unit};

use crate::address::is_hostname;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    pub screen: ScreenConfig,
    pub scan: ScanConfig,
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
    pub dns_provisioning: DnsProvisioningConfig,
    pub cluster: ClusterConfig,
    pub submission: SubmissionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: default_hostname(),
            data_dir: PathBuf::from("./data"),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            smtp: SmtpConfig::default(),
            screen: ScreenConfig::default(),
            scan: ScanConfig::default(),
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
            dns_provisioning: DnsProvisioningConfig::default(),
            cluster: ClusterConfig::default(),
            submission: SubmissionConfig::default(),
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

impl Config {
    /// The embedded defaults with environment overrides applied.
    pub(crate) fn from_env() -> Result<Config, ConfigError> {
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
    pub(crate) fn parse(
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
        let origins = env::apply_env(&mut table, env)?;
        let value = toml::Value::Table(table.clone());
        let config: Config = serde_path_to_error::deserialize(value)
            .map_err(|err| {
                let key = err.path().to_string();
                let shown = lookup(&table, &key)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "(missing)".into());
                ConfigError::invalid(&key, shown, err.into_inner().message().to_string())
            })
            .map_err(|e| env::attribute(e, &origins))?;
        config.validate().map_err(|e| env::attribute(e, &origins))?;
        Ok(config)
    }

    /// Semantic checks that types alone cannot express: the top-level keys
    /// here, each section in its own file.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !is_hostname(&self.hostname) {
            return Err(ConfigError::invalid(
                "hostname",
                &self.hostname,
                "must be a DNS host name (letters, digits, '-', '.')",
            ));
        }
        self.smtp.validate()?;
        self.submission.validate()?;
        self.screen.validate()?;
        self.scan.validate(self.smtp.max_header_size.0)?;
        self.http.validate()?;
        self.store.validate()?;
        self.auth.validate()?;
        self.tls.validate()?;
        self.aliases.validate()?;
        self.queue.validate()?;
        self.outbound.validate()?;
        self.srs.validate()?;
        self.dkim.validate()?;
        self.arc.validate(&self.dkim)?;
        self.rewrite.validate()?;
        self.chain.validate()?;
        self.dns_provisioning.validate()?;
        self.cluster.validate(&self.hostname)?;
        Ok(())
    }

    /// Shortest SRS hash a bounce may carry.
    pub(crate) fn srs_hash_min_length(&self) -> usize {
        self.srs.hash_min_length.unwrap_or(self.srs.hash_length)
    }

    /// Name this node sends in outbound EHLO.
    pub(crate) fn helo_name(&self) -> &str {
        if self.outbound.helo_name.is_empty() {
            &self.hostname
        } else {
            &self.outbound.helo_name
        }
    }

    /// Domain of SRS addresses.
    pub(crate) fn srs_domain(&self) -> &str {
        if self.srs.domain.is_empty() {
            &self.hostname
        } else {
            &self.srs.domain
        }
    }

    /// The relay's own domains (its host name and SRS domain): never a
    /// forwarding address's, since mail there would come back.
    pub(crate) fn own_domains(&self) -> Vec<String> {
        vec![
            self.hostname.to_ascii_lowercase(),
            self.srs_domain().to_ascii_lowercase(),
        ]
    }

    /// d= of the relay's DKIM signatures.
    pub(crate) fn dkim_domain(&self) -> &str {
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
    pub(crate) fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    /// The config as TOML with its inline secrets hidden, for `config
    /// show`, whose output ends up in tickets and chat: admin keys, SRS
    /// secrets and the activation secret as `***`, the password of the
    /// database and Redis URLs as `***`. An empty value stays empty, so the
    /// output still says which are unset (and the defaults print as they
    /// are).
    pub(crate) fn to_toml_shown(&self) -> String {
        let mut shown = self.clone();
        let hide = |v: &mut String| {
            if !v.is_empty() {
                *v = "***".into();
            }
        };
        shown.http.admin_keys.iter_mut().for_each(hide);
        shown.srs.secrets.iter_mut().for_each(hide);
        hide(&mut shown.chain.activation_secret);
        shown.cluster.database_url = error::redacted(&shown.cluster.database_url);
        shown.dns_provisioning.redis_url = error::redacted(&shown.dns_provisioning.redis_url);
        shown.to_toml()
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
        let text = include_str!("../../config.example.toml");
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
        let example = include_str!("../../config.example.toml");
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
    fn screen_lists_and_thresholds_are_checked() {
        let c = parse("[screen]\nenabled = true\ndnsbl = [\"zen.spamhaus.org*2\", \"list.dnswl.org=127.0.[0..255].[1..3]*-5\"]\n").unwrap();
        assert_eq!(c.screen.sites().len(), 2);
        let (key, value, reason) =
            invalid_key("[screen]\ndnsbl = [\"ok.example\", \"zen.spamhaus.org*two\"]\n");
        assert_eq!(key, "screen.dnsbl[1]");
        assert!(value.contains("zen.spamhaus.org*two"), "{value}");
        assert!(reason.contains("bad weight"), "{reason}");
        let (key, _, reason) = invalid_key("[screen]\ndnsbl = [\"b.example=127.0.0.300\"]\n");
        assert_eq!(key, "screen.dnsbl[0]");
        assert!(reason.contains("bad filter"), "{reason}");
        let (key, _, _) = invalid_key("[screen]\nthreshold = 0\n");
        assert_eq!(key, "screen.threshold");
        let (key, _, _) = invalid_key("[screen]\nthreshold = 2\nallowlist_threshold = 2\n");
        assert_eq!(key, "screen.allowlist_threshold");
        let (key, _, _) = invalid_key("[screen]\ncache_ttl = \"2h\"\n");
        assert_eq!(key, "screen.cache_ttl");
        let (key, _, _) = invalid_key("[screen]\ntimeout = \"0s\"\n");
        assert_eq!(key, "screen.timeout");
        let (key, _, reason) = invalid_key("[screen]\ngreet_delay = \"2m\"\n");
        assert_eq!(key, "screen.greet_delay");
        assert!(reason.contains("at most 30s"), "{reason}");
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Fuzz: any text is either a valid config or a precise error.
        #[test]
        fn parsing_is_total(text in "\\PC{0,200}") {
            let _ = Config::parse(&text, Path::new("fuzz.toml"), Vec::new());
        }

        /// Mutated known-good files: errors always name a key or the syntax.
        #[test]
        fn mutated_example_errors_are_precise(cut in 0usize..4000, junk in "[a-z0-9=\\[\\]\" .]{0,12}") {
            let example = include_str!("../../config.example.toml");
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
