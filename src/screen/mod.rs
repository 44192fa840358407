//! Connection screening, Postfix postscreen's model: the client address is
//! looked up in the configured DNS block- and allowlists at once (each
//! bounded by `screen.timeout`), the weights of the lists that answer with a
//! matching address are summed, and the sum decides: refuse, pass, or pass
//! without the greeting delay. Verdicts are cached per client address in a
//! bounded cache. The session (`smtp/prescreen.rs`) acts on the verdict.
//!
//! A seam for later content scanning: this module judges the connection
//! only; a scanner of message content would sit beside it on this layer.

#[cfg(test)]
mod tests;

use crate::auth::cache::TtlCache;
use crate::config::{Config, DnsblSite};
use crate::dns::{self, Answer};
use hickory_resolver::TokioResolver;
use mail_auth::ResolverCache;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Why screening cannot start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScreenError {
    #[error("screen: {0}")]
    Resolver(String),
}

/// What screening decided about a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The weights reached `screen.threshold`: refused at connect.
    Block,
    /// Neither: greeted after the delay (unless it waited once before).
    Pass,
    /// Allowlisted: greeted at once, no pipelining check.
    Allow,
}

/// The verdict on one client address, as cached.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub(crate) decision: Decision,
    pub(crate) score: i32,
    /// The lists with a positive weight that list the client, for the
    /// refusal ("blocked using a, b"); names from the config only.
    pub(crate) blocked_by: Arc<str>,
    /// The client waited for a whole greeting once: no delay again.
    pub(crate) greeted: bool,
}

/// The screen all sessions share.
pub(crate) struct Screen {
    resolver: TokioResolver,
    sites: Arc<[DnsblSite]>,
    threshold: i32,
    allowlist_threshold: i32,
    timeout: Duration,
    greet_delay: Duration,
    cache_ttl: Duration,
    blocked_cache_ttl: Duration,
    cache: TtlCache<IpAddr, Verdict>,
}

impl Screen {
    /// The screen of `config`, None when screening is off (then the connect
    /// path does nothing more than before).
    pub(crate) fn from_config(config: &Config) -> Result<Option<Screen>, ScreenError> {
        let screen = &config.screen;
        if !screen.enabled {
            return Ok(None);
        }
        let resolver =
            dns::resolver(&config.outbound.nameservers).map_err(ScreenError::Resolver)?;
        Ok(Some(Screen {
            resolver,
            sites: screen.sites().into(),
            threshold: screen.threshold,
            allowlist_threshold: screen.allowlist_threshold,
            timeout: screen.timeout.0,
            greet_delay: screen.greet_delay.0,
            cache_ttl: screen.cache_ttl.0,
            blocked_cache_ttl: screen.blocked_cache_ttl.0,
            cache: TtlCache::new(screen.cache_size),
        }))
    }

    pub(crate) fn greet_delay(&self) -> Duration {
        self.greet_delay
    }

    /// The verdict on `ip`: from the cache, or from the lists (and cached).
    pub(crate) async fn check(&self, ip: IpAddr) -> Verdict {
        let ip = ip.to_canonical();
        if let Some(verdict) = self.cache.get(&ip) {
            metrics::counter!("eas_screen_cache_hits_total").increment(1);
            record(ip, &verdict, true);
            return verdict;
        }
        let verdict = self.look_up(ip).await;
        record(ip, &verdict, false);
        self.remember(ip, verdict.clone());
        verdict
    }

    /// The client waited for the whole greeting: later connections within
    /// `cache_ttl` skip the delay.
    pub(crate) fn greeted(&self, ip: IpAddr, verdict: &Verdict) {
        let verdict = Verdict {
            greeted: true,
            ..verdict.clone()
        };
        self.remember(ip.to_canonical(), verdict);
    }

    fn remember(&self, ip: IpAddr, verdict: Verdict) {
        let ttl = match verdict.decision {
            Decision::Block => self.blocked_cache_ttl,
            Decision::Pass | Decision::Allow => self.cache_ttl,
        };
        if let Some(until) = Instant::now().checked_add(ttl) {
            self.cache.insert(ip, verdict, until);
        }
    }

    /// Asks every list at once; a list that fails or is slower than
    /// `timeout` counts as not listing the client (and is logged).
    async fn look_up(&self, ip: IpAddr) -> Verdict {
        let reversed = reversed(ip);
        let mut lookups = JoinSet::new();
        for (i, site) in self.sites.iter().enumerate() {
            let resolver = self.resolver.clone();
            let name = format!("{reversed}.{}", site.zone);
            let timeout = self.timeout;
            lookups.spawn(async move {
                let answer = tokio::time::timeout(timeout, dns::lookup_a(&resolver, &name)).await;
                (
                    i,
                    answer.unwrap_or_else(|_| Answer::Failed("timed out".into())),
                )
            });
        }
        let mut listed = vec![false; self.sites.len()];
        let mut score: i32 = 0;
        while let Some(joined) = lookups.join_next().await {
            let Ok((i, answer)) = joined else { continue };
            let Some(site) = self.sites.get(i) else {
                continue;
            };
            match answer {
                Answer::Missing => {}
                Answer::Failed(why) => {
                    metrics::counter!("eas_screen_lookup_failures_total", "list" => site.zone.clone())
                        .increment(1);
                    tracing::warn!(list = %site.zone, client = %ip, error = %why,
                        "DNS list lookup failed: not counted");
                }
                Answer::Found(answers) => {
                    if answers.iter().any(|a| site.matches(*a)) {
                        metrics::counter!("eas_screen_listings_total", "list" => site.zone.clone())
                            .increment(1);
                        score = score.saturating_add(site.weight);
                        if let Some(slot) = listed.get_mut(i) {
                            *slot = true;
                        }
                    }
                }
            }
        }
        let mut blocked_by = String::new();
        for (site, _) in self
            .sites
            .iter()
            .zip(&listed)
            .filter(|(s, l)| **l && s.weight > 0)
        {
            if !blocked_by.is_empty() {
                blocked_by.push_str(", ");
            }
            blocked_by.push_str(&site.zone);
        }
        Verdict {
            decision: self.decide(score),
            score,
            blocked_by: blocked_by.into(),
            greeted: false,
        }
    }

    fn decide(&self, score: i32) -> Decision {
        if score >= self.threshold {
            Decision::Block
        } else if score < 0 && score <= self.allowlist_threshold {
            Decision::Allow
        } else {
            Decision::Pass
        }
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// A decision as a metric and a log line.
fn record(ip: IpAddr, verdict: &Verdict, cached: bool) {
    let decision = match verdict.decision {
        Decision::Block => "blocked",
        Decision::Pass => "passed",
        Decision::Allow => "allowlisted",
    };
    decided(decision);
    tracing::info!(client = %ip, decision, score = verdict.score, cached,
        lists = %verdict.blocked_by, "connection screened");
}

/// Counts one screening decision (bounded labels: fixed words).
pub(crate) fn decided(decision: &'static str) {
    metrics::counter!("eas_screen_decisions_total", "decision" => decision).increment(1);
}

/// The name a DNS list is asked under: IPv4 octets or IPv6 nibbles,
/// reversed (`2.0.0.127`).
pub(crate) fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64);
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
            name.pop();
            name
        }
    }
}
