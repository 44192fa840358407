//! Rate limits of the HTTP API (GCRA, governor): per client IP address on
//! the admin API and the EAS endpoints, per API key on the admin API. Every
//! limited answer says the budget left (`X-RateLimit-Limit`, `-Remaining`,
//! `-Reset`); a refused one is `429` with `Retry-After`.

use crate::config::RateLimitConfig;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

pub(crate) const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub(crate) const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub(crate) const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Keys kept before idle ones (with a full budget again) are forgotten.
const RETAIN_AFTER: usize = 10_000;

/// What one request left of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    /// Unix seconds when the budget is full again.
    pub(crate) reset: u64,
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed(Budget),
    /// Over the limit: the budget (nothing left) and how long to wait.
    Refused(Budget, Duration),
}

/// One keyed limiter: `per_minute` requests a minute, bursts up to as many.
pub(crate) struct Limiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K, StateInformationMiddleware>,
    quota: Quota,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// None when `per_minute` is 0 (no limit).
    pub(crate) fn per_minute(per_minute: u32) -> Option<Limiter<K>> {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute)?);
        Some(Limiter {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            quota,
        })
    }

    pub(crate) fn check(&self, key: &K) -> Verdict {
        if self.limiter.len() > RETAIN_AFTER {
            self.limiter.retain_recent();
        }
        let limit = self.quota.burst_size().get();
        let now = unix_now();
        match self.limiter.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let refill = self.quota.replenish_interval() * (limit - remaining);
                Verdict::Allowed(Budget {
                    limit,
                    remaining,
                    reset: now + refill.as_secs_f64().ceil() as u64,
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let full = self.quota.burst_size_replenished_in();
                Verdict::Refused(
                    Budget {
                        limit,
                        remaining: 0,
                        reset: now + full.as_secs_f64().ceil() as u64,
                    },
                    wait,
                )
            }
        }
    }
}

/// The limits of one HTTP server.
pub(crate) struct RateLimits {
    pub(crate) per_ip: Option<Limiter<IpAddr>>,
    pub(crate) per_key: Option<Limiter<String>>,
}

impl RateLimits {
    pub(crate) fn new(config: &RateLimitConfig) -> RateLimits {
        RateLimits {
            per_ip: Limiter::per_minute(config.per_ip),
            per_key: Limiter::per_minute(config.per_key),
        }
    }
}

/// Writes the budget into `headers`, unless they already show a tighter
/// one (a request can be under two limits: the answer shows the nearer).
pub(crate) fn write_budget(headers: &mut HeaderMap, budget: Budget) {
    let shown = headers
        .get(&REMAINING)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if shown.is_some_and(|shown| shown <= budget.remaining) {
        return;
    }
    headers.insert(LIMIT, HeaderValue::from(budget.limit));
    headers.insert(REMAINING, HeaderValue::from(budget.remaining));
    headers.insert(RESET, HeaderValue::from(budget.reset));
}

fn unix_now() -> u64 {
    crate::store::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal_with_a_wait() {
        let limiter: Limiter<u8> = Limiter::per_minute(3).unwrap();
        let remaining: Vec<u32> = (0..3)
            .map(|_| match limiter.check(&1) {
                Verdict::Allowed(b) => b.remaining,
                refused => panic!("{refused:?}"),
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        match limiter.check(&1) {
            Verdict::Refused(budget, wait) => {
                assert_eq!((budget.limit, budget.remaining), (3, 0));
                // One request comes back every 20 s.
                assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20));
                assert!(budget.reset >= unix_now() + 59);
            }
            allowed => panic!("{allowed:?}"),
        }
        // Other keys have their own budget.
        assert!(matches!(limiter.check(&2), Verdict::Allowed(_)));
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(Limiter::<u8>::per_minute(0).is_none());
    }

    #[test]
    fn the_tighter_budget_is_shown() {
        let mut headers = HeaderMap::new();
        let loose = Budget {
            limit: 100,
            remaining: 90,
            reset: 5,
        };
        let tight = Budget {
            limit: 10,
            remaining: 2,
            reset: 7,
        };
        write_budget(&mut headers, tight);
        write_budget(&mut headers, loose);
        assert_eq!(headers[&REMAINING], "2");
        assert_eq!(headers[&LIMIT], "10");
        let mut headers = HeaderMap::new();
        write_budget(&mut headers, loose);
        write_budget(&mut headers, tight);
        assert_eq!(headers[&RESET], "7");
    }
}
