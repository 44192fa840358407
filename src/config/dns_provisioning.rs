//! `[dns_provisioning]`: writing a chain name's MX, SPF and DMARC into the
//! zone that CoreDNS serves from Redis (the EAS server's job, done here on
//! the first activation of a name), and how failed writes are retried.

use super::error::{ConfigError, nonzero_duration, redacted};
use super::units::HumanDuration;
use crate::address::is_hostname;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The largest TTL accepted (one week): a typo should not pin a record in
/// caches for years.
const MAX_TTL: u32 = 604_800;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsProvisioningConfig {
    /// Write the zone records of a name on its first activation.
    pub enabled: bool,
    /// `redis://host:port/db` or `rediss://` (TLS).
    pub redis_url: String,
    /// A file holding the Redis password (keeps it out of the URL).
    pub redis_password_file: Option<PathBuf>,
    /// PEM certificates trusted (instead of the system's roots) for a
    /// `rediss://` Redis with a private CA.
    pub redis_ca_file: Option<PathBuf>,
    /// Prepended to `<sld>.<tld>.` to form the zone's hash key.
    pub key_prefix: String,
    /// Appended to `<sld>.<tld>.` to form the zone's hash key.
    pub key_suffix: String,
    /// TLDs whose names are provisioned; empty: the chain registries' TLDs.
    pub tld_zones: Vec<String>,
    /// The relay cluster's MX hosts, written with preference 10, 20, ….
    pub mx: Vec<String>,
    /// MX hosts the operator keeps beside the relay's (never removed).
    pub keep_mx: Vec<String>,
    /// TTL of the records written, in seconds.
    pub ttl: u32,
    /// Write the SPF record `eas-relay dns records` recommends (replacing
    /// an earlier `v=spf1` record).
    pub spf: bool,
    /// Write the suggested DMARC record when the name has none.
    pub dmarc: bool,
    /// Also provision static domains on `POST /v3/domains` / `domain add`.
    pub static_domains: bool,
    /// When `/deactivate-all` removes a name's last alias, take the records
    /// the relay wrote out of the zone again.
    pub remove_on_deactivate_all: bool,
    /// Delay before the first retry of a failed write; doubles each time.
    pub retry_initial: HumanDuration,
    /// Upper bound of the retry delay.
    pub retry_max: HumanDuration,
    /// Deadline of connecting to Redis and of each command.
    pub timeout: HumanDuration,
}

impl Default for DnsProvisioningConfig {
    fn default() -> Self {
        DnsProvisioningConfig {
            enabled: false,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_password_file: None,
            redis_ca_file: None,
            key_prefix: String::new(),
            key_suffix: String::new(),
            tld_zones: Vec::new(),
            mx: Vec::new(),
            keep_mx: Vec::new(),
            ttl: 300,
            spf: true,
            dmarc: true,
            static_domains: false,
            remove_on_deactivate_all: false,
            retry_initial: HumanDuration::secs(10),
            retry_max: HumanDuration::secs(3600),
            timeout: HumanDuration::secs(5),
        }
    }
}

impl DnsProvisioningConfig {
    /// The retry delay after `attempts` failed writes (`retry_initial`
    /// doubled per attempt, at most `retry_max`).
    pub(crate) fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(attempts.min(30)).unwrap_or(u32::MAX);
        self.retry_initial
            .0
            .saturating_mul(factor)
            .min(self.retry_max.0)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("dns_provisioning.{k}");
        let scheme = self.redis_url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("redis" | "rediss")) || self.redis_url.len() <= "redis://".len() {
            return Err(ConfigError::invalid(
                &key("redis_url"),
                format!("{:?}", redacted(&self.redis_url)),
                "must be a redis://host[:port][/db] or rediss:// URL",
            ));
        }
        // `#insecure` makes the redis crate skip certificate checks: TLS
        // that anyone on the path can intercept is refused, not warned of.
        if scheme == Some("rediss") && self.redis_url.contains("#insecure") {
            return Err(ConfigError::invalid(
                &key("redis_url"),
                format!("{:?}", redacted(&self.redis_url)),
                "rediss://…#insecure skips certificate checks: use a verified rediss:// URL",
            ));
        }
        if let Some(file) = &self.redis_ca_file
            && scheme != Some("rediss")
        {
            return Err(ConfigError::invalid(
                &key("redis_ca_file"),
                format!("\"{}\"", file.display()),
                "is used only with a rediss:// redis_url (no certificate is checked otherwise)",
            ));
        }
        for (name, hosts) in [("mx", &self.mx), ("keep_mx", &self.keep_mx)] {
            if let Some(bad) = hosts.iter().find(|h| !is_hostname(h.trim_end_matches('.'))) {
                return Err(ConfigError::invalid(
                    &key(name),
                    format!("{bad:?}"),
                    "must be DNS host names",
                ));
            }
        }
        if self.enabled && self.mx.is_empty() {
            return Err(ConfigError::invalid(
                &key("mx"),
                "[]",
                "dns_provisioning.enabled needs at least one MX host of the relay",
            ));
        }
        if let Some(bad) = self
            .tld_zones
            .iter()
            .find(|t| !is_hostname(t.trim_end_matches('.')))
        {
            return Err(ConfigError::invalid(
                &key("tld_zones"),
                format!("{bad:?}"),
                "must be DNS names (e.g. \"country\")",
            ));
        }
        if self.ttl == 0 || self.ttl > MAX_TTL {
            return Err(ConfigError::invalid(
                &key("ttl"),
                self.ttl,
                format!("must be 1 to {MAX_TTL} seconds"),
            ));
        }
        nonzero_duration(&key("retry_initial"), self.retry_initial)?;
        nonzero_duration(&key("timeout"), self.timeout)?;
        if self.retry_max.0 < self.retry_initial.0 {
            return Err(ConfigError::invalid(
                &key("retry_max"),
                self.retry_max,
                "must not be shorter than dns_provisioning.retry_initial",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> DnsProvisioningConfig {
        DnsProvisioningConfig {
            enabled: true,
            mx: vec!["mx1.relay.example".into()],
            ..Default::default()
        }
    }

    fn refused_key(c: &DnsProvisioningConfig) -> String {
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_an_enabled_section_are_valid() {
        DnsProvisioningConfig::default().validate().unwrap();
        enabled().validate().unwrap();
        let tls = DnsProvisioningConfig {
            redis_url: "rediss://zone.example:6380/2".into(),
            ..enabled()
        };
        tls.validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(DnsProvisioningConfig, &str)> = vec![
            (
                DnsProvisioningConfig {
                    mx: vec![],
                    ..enabled()
                },
                "dns_provisioning.mx",
            ),
            (
                DnsProvisioningConfig {
                    redis_url: "http://127.0.0.1:6379".into(),
                    ..enabled()
                },
                "dns_provisioning.redis_url",
            ),
            (
                DnsProvisioningConfig {
                    redis_url: "redis://".into(),
                    ..enabled()
                },
                "dns_provisioning.redis_url",
            ),
            (
                DnsProvisioningConfig {
                    redis_ca_file: Some("/etc/ca.pem".into()),
                    ..enabled()
                },
                "dns_provisioning.redis_ca_file",
            ),
            (
                DnsProvisioningConfig {
                    mx: vec!["not a host".into()],
                    ..enabled()
                },
                "dns_provisioning.mx",
            ),
            (
                DnsProvisioningConfig {
                    keep_mx: vec!["".into()],
                    ..enabled()
                },
                "dns_provisioning.keep_mx",
            ),
            (
                DnsProvisioningConfig {
                    ttl: 0,
                    ..enabled()
                },
                "dns_provisioning.ttl",
            ),
            (
                DnsProvisioningConfig {
                    tld_zones: vec!["co untry".into()],
                    ..enabled()
                },
                "dns_provisioning.tld_zones",
            ),
            (
                DnsProvisioningConfig {
                    retry_max: HumanDuration::secs(1),
                    ..enabled()
                },
                "dns_provisioning.retry_max",
            ),
        ];
        for (config, key) in cases {
            assert_eq!(refused_key(&config), key, "{config:?}");
        }
    }

    #[test]
    fn attacker_reads_the_redis_password_from_a_config_error() {
        let c = DnsProvisioningConfig {
            redis_url: "rediss://user:s3cret@zone.example:6380/2#insecure".into(),
            ..enabled()
        };
        let Err(ConfigError::Invalid { key, value, reason }) = c.validate() else {
            panic!("#insecure accepted");
        };
        assert_eq!(key, "dns_provisioning.redis_url");
        assert!(reason.contains("#insecure"), "{reason}");
        assert!(
            !value.contains("s3cret") && value.contains("***@zone.example"),
            "{value}"
        );
        let c = DnsProvisioningConfig {
            redis_url: "redis:/:s3cret@zone.example".into(),
            ..enabled()
        };
        let Err(ConfigError::Invalid { value, .. }) = c.validate() else {
            panic!("a URL without :// accepted");
        };
        assert!(!value.contains("s3cret"), "{value}");
        assert_eq!(redacted("redis://:pw@h/0"), "redis://***@h/0");
        assert_eq!(redacted("redis://h:6379/0?x=a@b"), "redis://h:6379/0?x=a@b");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = enabled();
        assert_eq!(c.backoff(0), Duration::from_secs(10));
        assert_eq!(c.backoff(1), Duration::from_secs(20));
        assert_eq!(c.backoff(3), Duration::from_secs(80));
        assert_eq!(c.backoff(40), Duration::from_secs(3600));
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(3600));
    }
}
