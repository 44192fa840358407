//! `[scan]`: content scanning with rspamd at the end of DATA/BDAT, decided
//! before the `250` (nothing is accepted and then dropped): where rspamd
//! listens, how long a scan may take, how much of a message it sees, what
//! happens while it is down (and the circuit breaker that keeps a dead
//! scanner from holding every session), and what a flagged message gets.

use super::error::{ConfigError, nonzero_duration, positive};
use super::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

/// Smallest prefix worth scanning: a header section and the start of the
/// body (and below it a truncated header would fool the scanner).
const MIN_MAX_SIZE: u64 = 64 * 1024;

/// What a message gets when the scanner cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanFailMode {
    /// `451 4.7.1`: the sender's server tries again later (nothing lost).
    Tempfail,
    /// Forward it unscanned, with an `X-Spam-Status: Unknown` field.
    Accept,
}

/// Which messages get `X-Spam-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpamHeaders {
    /// Only messages rspamd flags (`add header`, `rewrite subject`).
    Spam,
    /// Every scanned message (`X-Spam-Status: No, …` on clean ones too).
    All,
    /// None.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Scan every message at the end of DATA/BDAT.
    pub enabled: bool,
    /// rspamd's normal worker (`http://host:port`); the relay POSTs the
    /// message to `/checkv2` there.
    pub url: String,
    /// Longest wait for one scan (connect, send, verdict).
    pub timeout: HumanDuration,
    /// At most this much of a message is sent (header first, then the
    /// start of the body); the rest is forwarded unscanned, as rspamd's
    /// own `max_message` limit would do.
    pub max_size: ByteSize,
    /// When rspamd cannot be asked: `tempfail` (451 4.7.1) or `accept`.
    pub fail: ScanFailMode,
    /// This many scans failing in a row open the circuit: for
    /// `breaker_cooldown` no session waits for rspamd (the `fail` mode
    /// answers at once), then one scan probes it.
    pub breaker_failures: u32,
    pub breaker_cooldown: HumanDuration,
    /// Idle connections kept open to rspamd.
    pub max_idle_connections: usize,
    /// Messages shown to rspamd at once at most; a message waits for a
    /// slot within `timeout` (then `451 4.7.1`).
    pub concurrency: usize,
    /// `X-Spam-*` headers: `spam` (flagged only), `all`, `none`. rspamd's
    /// `rewrite subject` is forwarded with the headers too: a changed
    /// Subject would break the sender's DKIM signature, which forwarding
    /// otherwise keeps valid.
    pub headers: SpamHeaders,
    /// Symbols that mean a virus (rspamd's antivirus module): a message
    /// with any of them is refused `554 5.7.1` whatever its score.
    pub virus_symbols: Vec<String>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            enabled: false,
            url: "http://127.0.0.1:11333".into(),
            timeout: HumanDuration::secs(15),
            max_size: ByteSize::new(4 * 1024 * 1024),
            fail: ScanFailMode::Tempfail,
            breaker_failures: 3,
            breaker_cooldown: HumanDuration::secs(30),
            max_idle_connections: 32,
            concurrency: 64,
            headers: SpamHeaders::Spam,
            virus_symbols: vec!["CLAM_VIRUS".into(), "CLAMAV_VIRUS".into()],
        }
    }
}

impl ScanConfig {
    /// `max_header_size`: `smtp.max_header_size`; the scanned prefix must
    /// hold a whole header section and more.
    pub(super) fn validate(&self, max_header_size: u64) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        self.endpoint()
            .map_err(|reason| ConfigError::invalid("scan.url", &self.url, reason))?;
        nonzero_duration("scan.timeout", self.timeout)?;
        nonzero_duration("scan.breaker_cooldown", self.breaker_cooldown)?;
        if self.max_size.0 < MIN_MAX_SIZE {
            return Err(ConfigError::invalid(
                "scan.max_size",
                self.max_size,
                "must be at least 64KiB",
            ));
        }
        // Below it, a large header section would reach rspamd cut off and
        // with no body at all: a message built to be scanned blind.
        if self.max_size.0 <= max_header_size {
            return Err(ConfigError::invalid(
                "scan.max_size",
                self.max_size,
                format!(
                    "must be above smtp.max_header_size ({max_header_size} bytes): the scan must see a whole header and the start of the body"
                ),
            ));
        }
        if self.breaker_failures == 0 {
            return Err(ConfigError::invalid(
                "scan.breaker_failures",
                0,
                "must be at least 1",
            ));
        }
        positive("scan.max_idle_connections", self.max_idle_connections)?;
        positive("scan.concurrency", self.concurrency)?;
        Ok(())
    }

    /// `host:port` of rspamd from `url` (plain HTTP: rspamd's workers speak
    /// no TLS; put it on loopback or a private network).
    pub(crate) fn endpoint(&self) -> Result<String, String> {
        let rest = self.url.strip_prefix("http://").ok_or(
            "must be http://host:port (rspamd's workers speak plain HTTP; https is not supported)",
        )?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
            return Err("must be http://host:port with no path".into());
        }
        let port_ok = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err("must name a port, e.g. http://127.0.0.1:11333".into());
        }
        Ok(authority.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> ScanConfig {
        ScanConfig {
            enabled: true,
            url: url.into(),
            ..ScanConfig::default()
        }
    }

    #[test]
    fn the_scanned_prefix_must_hold_a_whole_header() {
        let mut c = with_url("http://127.0.0.1:11333");
        assert!(c.validate(256 * 1024).is_ok());
        c.max_size = ByteSize::new(256 * 1024);
        let err = c.validate(256 * 1024).unwrap_err().to_string();
        assert!(
            err.contains("scan.max_size") && err.contains("max_header_size"),
            "{err}"
        );
        c.max_size = ByteSize::new(1024);
        assert!(c.validate(1).unwrap_err().to_string().contains("64KiB"));
    }

    #[test]
    fn the_url_must_be_plain_http_with_a_port_and_no_path() {
        assert_eq!(
            with_url("http://127.0.0.1:11333/").endpoint().unwrap(),
            "127.0.0.1:11333"
        );
        assert_eq!(
            with_url("http://[::1]:11333").endpoint().unwrap(),
            "[::1]:11333"
        );
        for (url, words) in [
            ("https://rspamd:11333", "plain HTTP"),
            ("http://rspamd", "port"),
            ("http://rspamd:0", "port"),
            ("http://rspamd:11333/checkv2", "no path"),
            ("http://user@rspamd:11333", "no path"),
            ("rspamd:11333", "http://"),
        ] {
            let err = with_url(url).endpoint().unwrap_err();
            assert!(err.contains(words), "{url}: {err}");
        }
    }
}
