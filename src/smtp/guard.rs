//! Budgets that outlive one SMTP session, shared by all of them: bounces
//! accepted per original sender a day (so the SRS bounce path cannot carry
//! a flood to one address), and failed SRS reversals per client network (so
//! RCPT is no free oracle for guessing hashes). Both live in memory, are
//! bounded in size, and start afresh when the node restarts.

use crate::config::Config;
use crate::net::NetKey;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most keys a table tracks; past it, expired entries are dropped, and if
/// none is, new keys are not tracked (memory stays bounded whatever an
/// attacker sends; each key tracked still holds its limit).
const MAX_KEYS: usize = 100_000;

/// The shared budgets of the SMTP listener.
pub struct Guards {
    pub bounces: BounceBudget,
    pub srs_failures: FailureCounter,
}

impl Guards {
    pub fn from_config(config: &Config) -> Guards {
        Guards {
            bounces: BounceBudget::new(config.srs.max_bounces_per_address),
            srs_failures: FailureCounter::new(config.srs.max_failures, config.srs.failure_window.0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is one step: a poisoned table is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Messages accepted per original sender (lowercased) on the current UTC day.
pub struct BounceBudget {
    /// 0: no cap.
    per_day: u32,
    table: Mutex<(u64, HashMap<String, u32>)>,
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

impl BounceBudget {
    pub fn new(per_day: u32) -> BounceBudget {
        BounceBudget {
            per_day,
            table: Mutex::new((today(), HashMap::new())),
        }
    }

    /// The table of today (yesterday's counts are dropped).
    fn current(&self) -> MutexGuard<'_, (u64, HashMap<String, u32>)> {
        let mut table = lock(&self.table);
        let day = today();
        if table.0 != day {
            *table = (day, HashMap::new());
        }
        table
    }

    /// True while `address` may receive one more bounce today.
    pub fn has_room(&self, address: &str) -> bool {
        if self.per_day == 0 {
            return true;
        }
        let table = self.current();
        table.1.get(&address.to_lowercase()).copied().unwrap_or(0) < self.per_day
    }

    /// Counts one bounce to `address`; false (and nothing counted) when
    /// today's budget is spent.
    pub fn take(&self, address: &str) -> bool {
        if self.per_day == 0 {
            return true;
        }
        let mut table = self.current();
        let key = address.to_lowercase();
        if !table.1.contains_key(&key) && table.1.len() >= MAX_KEYS {
            // Untracked: refused rather than let through uncounted.
            return false;
        }
        let n = table.1.entry(key).or_insert(0);
        if *n >= self.per_day {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back a bounce counted by [`BounceBudget::take`] whose message
    /// was not accepted after all.
    pub fn give_back(&self, address: &str) {
        if self.per_day == 0 {
            return;
        }
        let mut table = self.current();
        if let Some(n) = table.1.get_mut(&address.to_lowercase()) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Failures per client network within a fixed window (from its first
/// failure).
pub struct FailureCounter {
    max: u32,
    window: Duration,
    table: Mutex<HashMap<NetKey, (Instant, u32)>>,
}

impl FailureCounter {
    pub fn new(max: u32, window: Duration) -> FailureCounter {
        FailureCounter {
            max,
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// True when `net` has used up its failures in the current window.
    pub fn blocked(&self, net: NetKey) -> bool {
        let table = lock(&self.table);
        table
            .get(&net)
            .is_some_and(|(since, n)| since.elapsed() < self.window && *n >= self.max)
    }

    /// Counts one failure of `net`; true when it is now blocked.
    pub fn record(&self, net: NetKey) -> bool {
        let mut table = lock(&self.table);
        let window = self.window;
        if !table.contains_key(&net) && table.len() >= MAX_KEYS {
            table.retain(|_, (since, _)| since.elapsed() < window);
            if table.len() >= MAX_KEYS {
                return false;
            }
        }
        let entry = table.entry(net).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 >= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_budget_counts_per_address_any_case() {
        let b = BounceBudget::new(2);
        assert!(b.take("Alice@Example.org"));
        assert!(b.has_room("alice@example.org"));
        assert!(b.take("alice@example.org"));
        assert!(!b.has_room("ALICE@example.org"));
        assert!(!b.take("alice@example.org"));
        b.give_back("alice@example.org");
        assert!(b.take("alice@example.org"));
        assert!(b.take("bob@example.org"));
        let unlimited = BounceBudget::new(0);
        assert!((0..1000).all(|_| unlimited.take("x@y")));
    }

    #[test]
    fn failures_block_a_network_for_the_window() {
        let f = FailureCounter::new(3, Duration::from_millis(200));
        let net = NetKey::of("2001:db8::1".parse().unwrap());
        let same = NetKey::of("2001:db8::2".parse().unwrap());
        let other = NetKey::of("192.0.2.1".parse().unwrap());
        assert!(!f.record(net));
        assert!(!f.record(net));
        assert!(!f.blocked(same));
        assert!(f.record(same));
        assert!(f.blocked(net));
        assert!(!f.blocked(other));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!f.blocked(net));
        assert!(!f.record(net));
    }
}
