//! Budgets that outlive one SMTP session, shared by all of them: bounces
//! accepted per original sender a day (so the SRS bounce path cannot carry
//! a flood to one address), and failed SRS reversals per client network (so
//! RCPT is no free oracle for guessing hashes). Both live in memory, are
//! bounded in size, and start afresh when the node restarts.

use crate::config::Config;
use crate::net::NetKey;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most keys a table tracks; past it, expired entries are dropped, and if
/// none is, new keys are not tracked (memory stays bounded whatever an
/// attacker sends; each key tracked still holds its limit).
const MAX_KEYS: usize = 100_000;

/// The shared budgets of the SMTP listener.
pub(crate) struct Guards {
    pub(crate) bounces: BounceBudget,
    pub(crate) srs_failures: FailureCounter,
}

impl Guards {
    pub(crate) fn from_config(config: &Config) -> Guards {
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
/// Addresses past the table's capacity are counted in a small count-min
/// sketch: it never counts less than was sent (the cap still holds), so
/// filling the table with bounces to addresses of one's own refuses the
/// bounces of others only where their buckets are full, not all of them.
pub(crate) struct BounceBudget {
    /// 0: no cap.
    per_day: u32,
    capacity: usize,
    table: Mutex<Day>,
}

/// Rows and buckets a row of the sketch (allocated once the table is full).
const SKETCH_ROWS: usize = 2;
const SKETCH_BUCKETS: usize = 1 << 16;

struct Day {
    day: u64,
    exact: HashMap<String, u32>,
    /// `SKETCH_ROWS` rows of `SKETCH_BUCKETS` counts; empty until needed.
    sketch: Vec<u32>,
    /// One keyed hasher a row: nobody outside knows which addresses share
    /// a bucket.
    hashers: [RandomState; SKETCH_ROWS],
}

impl Day {
    fn new(day: u64) -> Day {
        Day {
            day,
            exact: HashMap::new(),
            sketch: Vec::new(),
            hashers: std::array::from_fn(|_| RandomState::new()),
        }
    }

    /// The sketch's buckets of `key`, one a row.
    fn buckets(&self, key: &str) -> [usize; SKETCH_ROWS] {
        std::array::from_fn(|row| {
            // The remainder is below SKETCH_BUCKETS: it fits a usize.
            let bucket = (self.hashers[row].hash_one(key) % SKETCH_BUCKETS as u64) as usize;
            row * SKETCH_BUCKETS + bucket
        })
    }

    /// What the sketch says of `key`: at least its count.
    fn estimate(&self, key: &str) -> u32 {
        if self.sketch.is_empty() {
            return 0;
        }
        self.buckets(key)
            .iter()
            .map(|&i| self.sketch.get(i).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    fn count(&self, key: &str) -> u32 {
        match self.exact.get(key) {
            Some(n) => *n,
            None => self.estimate(key),
        }
    }
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

impl BounceBudget {
    pub(crate) fn new(per_day: u32) -> BounceBudget {
        BounceBudget::with_capacity(per_day, MAX_KEYS)
    }

    fn with_capacity(per_day: u32, capacity: usize) -> BounceBudget {
        BounceBudget {
            per_day,
            capacity,
            table: Mutex::new(Day::new(today())),
        }
    }

    /// The table of today (yesterday's counts are dropped).
    fn current(&self) -> MutexGuard<'_, Day> {
        let mut table = lock(&self.table);
        let day = today();
        if table.day != day {
            *table = Day::new(day);
        }
        table
    }

    /// True while `address` may receive one more bounce today.
    pub(crate) fn has_room(&self, address: &str) -> bool {
        if self.per_day == 0 {
            return true;
        }
        self.current().count(&address.to_lowercase()) < self.per_day
    }

    /// Counts one bounce to `address`; false (and nothing counted) when
    /// today's budget is spent.
    pub(crate) fn take(&self, address: &str) -> bool {
        if self.per_day == 0 {
            return true;
        }
        let mut table = self.current();
        let key = address.to_lowercase();
        if table.count(&key) >= self.per_day {
            return false;
        }
        if let Some(n) = table.exact.get_mut(&key) {
            *n = n.saturating_add(1);
        } else if table.exact.len() < self.capacity && table.estimate(&key) == 0 {
            table.exact.insert(key, 1);
        } else {
            if table.sketch.is_empty() {
                table.sketch = vec![0; SKETCH_ROWS * SKETCH_BUCKETS];
            }
            for i in table.buckets(&key) {
                if let Some(n) = table.sketch.get_mut(i) {
                    *n = n.saturating_add(1);
                }
            }
        }
        true
    }

    /// Gives back a bounce counted by [`BounceBudget::take`] whose message
    /// was not accepted after all.
    pub(crate) fn give_back(&self, address: &str) {
        if self.per_day == 0 {
            return;
        }
        let mut table = self.current();
        let key = address.to_lowercase();
        if let Some(n) = table.exact.get_mut(&key) {
            *n = n.saturating_sub(1);
        } else if !table.sketch.is_empty() {
            // Every bucket of `key` holds its take: taking it back leaves
            // each at least the count of the others sharing it.
            for i in table.buckets(&key) {
                if let Some(n) = table.sketch.get_mut(i) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }
}

/// Failures per client network within a fixed window (from its first
/// failure). Networks past the table's capacity share one overflow count:
/// filling the table (many addresses, or IPv6 /64s) must not make the
/// failures of the next networks free.
pub(crate) struct FailureCounter {
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
    pub(crate) fn new(max: u32, window: Duration) -> FailureCounter {
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
    pub(crate) fn blocked(&self, net: NetKey) -> bool {
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
    pub(crate) fn record(&self, net: NetKey) -> bool {
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

    #[test]
    fn a_full_table_still_caps_and_still_admits_others() {
        let b = BounceBudget::with_capacity(3, 2);
        assert!(b.take("a@x"));
        assert!(b.take("b@x"));
        // Past the capacity: counted in the sketch, capped all the same.
        for _ in 0..3 {
            assert!(b.take("Victim@x"));
        }
        assert!(!b.has_room("victim@x"));
        assert!(!b.take("victim@x"));
        b.give_back("victim@x");
        assert!(b.take("victim@x"));
        // A flood of one bounce each to many other addresses leaves room for
        // a new address (its buckets are not all full).
        for i in 0..10_000 {
            b.take(&format!("filler{i}@x"));
        }
        assert!(b.take("newcomer@x"));
        assert!(b.take("a@x"));
    }
}
