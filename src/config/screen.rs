//! `[screen]`: connection screening at connect, Postfix postscreen's model:
//! DNS block- and allowlists with weights and a threshold, a greeting
//! delay that catches clients talking before the greeting, and a cache of
//! verdicts per client address. Also the grammar of one `dnsbl` entry
//! ([`DnsblSite`]), which the screen uses as parsed here.

use super::error::{ConfigError, nonzero_duration, positive};
use super::units::HumanDuration;
use crate::address::is_hostname;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Longest a verdict may be cached (the cache's own ceiling).
const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// Longest greeting delay (postscreen's default is 6s; a real MTA waits
/// minutes for a greeting, but every unknown client pays this).
const MAX_GREET_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScreenConfig {
    /// Screen connections before the greeting; off costs nothing at connect.
    pub enabled: bool,
    /// Lists in postscreen's syntax: `zone[=filter][*weight]`, e.g.
    /// `zen.spamhaus.org*2` or `list.dnswl.org=127.0.[0..255].[1..3]*-5`.
    pub dnsbl: Vec<String>,
    /// A client whose weights sum to this or more is refused (`554 5.7.1`).
    pub threshold: i32,
    /// A client whose weights sum below 0 and to this or less skips the
    /// greeting delay and the pipelining check (0: any negative sum).
    pub allowlist_threshold: i32,
    /// Wait this long after a `220-` first greeting line before the last
    /// one; a client that sends anything meanwhile is refused. 0: no wait.
    pub greet_delay: HumanDuration,
    /// Bound on all the lookups of one client; a list slower than this
    /// counts as not listing it.
    pub timeout: HumanDuration,
    /// How long a passing client's verdict is kept (at most 1h).
    pub cache_ttl: HumanDuration,
    /// How long a refused client's verdict is kept (at most 1h).
    pub blocked_cache_ttl: HumanDuration,
    /// Client addresses the cache holds at most.
    pub cache_size: usize,
}

impl Default for ScreenConfig {
    fn default() -> Self {
        ScreenConfig {
            enabled: false,
            dnsbl: Vec::new(),
            threshold: 1,
            allowlist_threshold: 0,
            greet_delay: HumanDuration::secs(2),
            timeout: HumanDuration::secs(5),
            cache_ttl: HumanDuration::secs(3600),
            blocked_cache_ttl: HumanDuration::secs(600),
            cache_size: 100_000,
        }
    }
}

impl ScreenConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (i, entry) in self.dnsbl.iter().enumerate() {
            DnsblSite::parse(entry).map_err(|reason| {
                ConfigError::invalid(&format!("screen.dnsbl[{i}]"), entry, reason)
            })?;
        }
        if self.threshold < 1 {
            return Err(ConfigError::invalid(
                "screen.threshold",
                self.threshold,
                "must be at least 1 (a client on no list scores 0)",
            ));
        }
        if self.allowlist_threshold >= self.threshold {
            return Err(ConfigError::invalid(
                "screen.allowlist_threshold",
                self.allowlist_threshold,
                format!("must be below screen.threshold ({})", self.threshold),
            ));
        }
        nonzero_duration("screen.timeout", self.timeout)?;
        // Every unknown client waits this long: a typo ("2m" for "2s")
        // would hold each connection for minutes and fill the seats.
        if self.greet_delay.0 > MAX_GREET_DELAY {
            return Err(ConfigError::invalid(
                "screen.greet_delay",
                self.greet_delay,
                "must be at most 30s",
            ));
        }
        for (key, ttl) in [
            ("screen.cache_ttl", self.cache_ttl),
            ("screen.blocked_cache_ttl", self.blocked_cache_ttl),
        ] {
            if ttl.0 > MAX_CACHE_TTL {
                return Err(ConfigError::invalid(key, ttl, "must be at most 1h"));
            }
        }
        positive("screen.cache_size", self.cache_size)?;
        Ok(())
    }

    /// The parsed lists (validation has checked every entry).
    pub(crate) fn sites(&self) -> Vec<DnsblSite> {
        self.dnsbl
            .iter()
            .filter_map(|entry| DnsblSite::parse(entry).ok())
            .collect()
    }
}

/// One DNS list: the zone asked, which answers count as a listing, and the
/// weight a listing adds (negative: an allowlist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnsblSite {
    /// Lower case, no trailing dot.
    pub(crate) zone: String,
    /// Per octet of the answer, the values that match; None: any answer.
    filter: Option<[Vec<(u8, u8)>; 4]>,
    pub(crate) weight: i32,
}

impl DnsblSite {
    /// Parses `zone[=filter][*weight]`; the error says what is wrong.
    pub(crate) fn parse(entry: &str) -> Result<DnsblSite, String> {
        let (rest, weight) = match entry.rsplit_once('*') {
            Some((rest, weight)) => (
                rest,
                weight
                    .parse::<i32>()
                    .map_err(|_| format!("bad weight {weight:?}: must be an integer"))?,
            ),
            None => (entry, 1),
        };
        if weight == 0 {
            return Err("bad weight 0: a list must count for or against".into());
        }
        let (zone, filter) = match rest.split_once('=') {
            Some((zone, filter)) => (zone, Some(parse_filter(filter)?)),
            None => (rest, None),
        };
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        if !is_hostname(&zone) || !zone.contains('.') {
            return Err(format!(
                "bad zone {zone:?}: must be a DNS name like zen.spamhaus.org"
            ));
        }
        Ok(DnsblSite {
            zone,
            filter,
            weight,
        })
    }

    /// Whether an answer `127.0.0.x` of this list counts as a listing.
    pub(crate) fn matches(&self, answer: Ipv4Addr) -> bool {
        let Some(filter) = &self.filter else {
            return true;
        };
        answer
            .octets()
            .iter()
            .zip(filter)
            .all(|(octet, ranges)| ranges.iter().any(|(lo, hi)| (lo..=hi).contains(&octet)))
    }
}

/// `127.0.0.2`, `127.0.[0..255].[1..3]`, `127.0.0.[2;4;10..11]`.
fn parse_filter(filter: &str) -> Result<[Vec<(u8, u8)>; 4], String> {
    let bad = |why: &str| format!("bad filter {filter:?}: {why}");
    let mut octets = Vec::new();
    let mut rest = filter;
    loop {
        let (octet, tail) = if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').ok_or_else(|| bad("a '[' is not closed"))?;
            let ranges = inner[..end]
                .split(';')
                .map(parse_range)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("a bracket holds numbers 0-255 or ranges a..b"))?;
            (ranges, &inner[end + 1..])
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let value: u8 = rest[..end]
                .parse()
                .map_err(|_| bad("each octet is a number 0-255 or [a..b]"))?;
            (vec![(value, value)], &rest[end..])
        };
        octets.push(octet);
        if tail.is_empty() {
            break;
        }
        rest = tail
            .strip_prefix('.')
            .ok_or_else(|| bad("octets are separated by '.'"))?;
    }
    octets
        .try_into()
        .map_err(|_| bad("an address filter has four octets"))
}

/// `7` or `1..3` (lower bound first).
fn parse_range(range: &str) -> Option<(u8, u8)> {
    match range.split_once("..") {
        Some((lo, hi)) => {
            let (lo, hi) = (lo.parse().ok()?, hi.parse().ok()?);
            (lo <= hi).then_some((lo, hi))
        }
        None => range.parse().ok().map(|v| (v, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_parse_in_postscreen_syntax() {
        let s = DnsblSite::parse("zen.spamhaus.org*2").unwrap();
        assert_eq!((s.zone.as_str(), s.weight), ("zen.spamhaus.org", 2));
        assert!(s.matches(Ipv4Addr::new(127, 0, 0, 4)));
        let s = DnsblSite::parse("list.dnswl.org=127.0.[0..255].[1..3]*-5").unwrap();
        assert_eq!(s.weight, -5);
        assert!(s.matches(Ipv4Addr::new(127, 0, 9, 3)));
        assert!(!s.matches(Ipv4Addr::new(127, 0, 9, 4)));
        assert!(!s.matches(Ipv4Addr::new(127, 1, 9, 1)));
        let s = DnsblSite::parse("B.Example.ORG.=127.0.0.[2;10..11]").unwrap();
        assert_eq!((s.zone.as_str(), s.weight), ("b.example.org", 1));
        assert!(s.matches(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(s.matches(Ipv4Addr::new(127, 0, 0, 11)));
        assert!(!s.matches(Ipv4Addr::new(127, 0, 0, 3)));
    }

    #[test]
    fn bad_sites_are_named() {
        for (entry, words) in [
            ("zen.spamhaus.org*x", "bad weight"),
            ("zen.spamhaus.org*0", "bad weight 0"),
            ("bad_zone!*2", "bad zone"),
            ("localhost", "bad zone"),
            ("z.example=127.0.0", "four octets"),
            ("z.example=127.0.0.256", "0-255"),
            ("z.example=127.0.0.[3..1]", "ranges a..b"),
            ("z.example=127.0.0.[1..3", "not closed"),
            ("z.example=127.0.0.[1]x", "separated by"),
        ] {
            let err = DnsblSite::parse(entry).unwrap_err();
            assert!(err.contains(words), "{entry}: {err}");
        }
    }
}
