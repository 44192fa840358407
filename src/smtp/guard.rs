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
/// failure). Networks past the table's capacity share one overflow count:
/// filling the table (many addresses, or IPv6 /64s) must not make the
/// failures of the next networks free.
pub struct FailureCounter {
    max: u32,
    window: Duration,
    capacity: usize,
    table: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    by_network: HashMap<NetKey, (Instant, u32)>,
    /// The networks not in `by_network` because it was full, together.
    overflow: Option<(Instant, u32)>,
    /// When expired entries were last dropped: a full table is swept at
    /// most once a [`SWEEP_EVERY`], not on every failure (a sweep holds the
    /// lock for the whole table).
    swept: Option<Instant>,
}

/// Least time between two sweeps of a full table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// True while a count that began at `since` is in `window` and has reached `max`.
fn over(entry: Option<&(Instant, u32)>, window: Duration, max: u32) -> bool {
    entry.is_some_and(|(since, n)| since.elapsed() < window && *n >= max)
}

/// Counts one failure in `entry` (restarting an expired window); the count.
fn count(entry: &mut (Instant, u32), window: Duration) -> u32 {
    if entry.0.elapsed() >= window {
        *entry = (Instant::now(), 0);
    }
    entry.1 = entry.1.saturating_add(1);
    entry.1
}

impl FailureCounter {
    pub fn new(max: u32, window: Duration) -> FailureCounter {
        FailureCounter::with_capacity(max, window, MAX_KEYS)
    }

    fn with_capacity(max: u32, window: Duration, capacity: usize) -> FailureCounter {
        FailureCounter {
            max,
            window,
            capacity,
            table: Mutex::new(Failures::default()),
        }
    }

    /// True when `net` has used up its failures in the current window.
    pub fn blocked(&self, net: NetKey) -> bool {
        let table = lock(&self.table);
        match table.by_network.get(&net) {
            Some(entry) => over(Some(entry), self.window, self.max),
            None if table.by_network.len() >= self.capacity => {
                over(table.overflow.as_ref(), self.window, self.max)
            }
            None => false,
        }
    }

    /// Counts one failure of `net`; true when it is now blocked.
    pub fn record(&self, net: NetKey) -> bool {
        let mut table = lock(&self.table);
        let window = self.window;
        let full = |t: &Failures| t.by_network.len() >= self.capacity;
        if !table.by_network.contains_key(&net) && full(&table) {
            if table.swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
                table.swept = Some(Instant::now());
                table
                    .by_network
                    .retain(|_, (since, _)| since.elapsed() < window);
            }
            if full(&table) {
                let entry = table.overflow.get_or_insert((Instant::now(), 0));
                return count(entry, window) >= self.max;
            }
        }
        let entry = table.by_network.entry(net).or_insert((Instant::now(), 0));
        count(entry, window) >= self.max
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

    #[test]
    fn networks_past_the_capacity_share_one_count() {
        let f = FailureCounter::with_capacity(2, Duration::from_secs(3600), 3);
        let net = |i: u8| NetKey::of(std::net::IpAddr::from([192, 0, 2, i]));
        for i in 0..3 {
            assert!(!f.record(net(i)));
        }
        // The table is full: the next networks are counted together, and
        // are not free to guess.
        assert!(!f.record(net(10)));
        assert!(f.record(net(11)));
        assert!(f.blocked(net(12)));
        assert!(!f.blocked(net(0)), "tracked networks keep their own count");
        assert!(f.record(net(0)));
        assert!(f.blocked(net(0)));
    }
}
