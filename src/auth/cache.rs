//! The caches of the inbound checks: small, bounded, TTL-respecting caches
//! of the records mail-auth parsed (its `ResolverCache`), one per record
//! kind. The resolver they sit in front of comes from [`crate::dns`].

use mail_auth::{MX, Parameters, RecordSet, ResolverCache, Txt};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest time a record is kept, whatever its TTL says.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// Entries per cache (TXT holds SPF, DKIM keys and DMARC records).
const TXT_ENTRIES: usize = 16_384;
const OTHER_ENTRIES: usize = 4_096;

/// A bounded map whose entries expire at the time the record's TTL gives
/// (capped at one hour). When full, expired entries go first, then an
/// arbitrary eighth of the rest (the map's hash order), so inserting stays
/// cheap under any load and memory stays bounded.
pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.lock();
        match entries.get(name) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        if valid_until <= now {
            return;
        }
        let until = valid_until.min(now + MAX_TTL);
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                let excess = entries.len() + 1 - self.capacity;
                let evict = excess.max(self.capacity / 8);
                let mut seen = 0;
                entries.retain(|_, _| {
                    seen += 1;
                    seen > evict
                });
            }
        }
        entries.insert(key, (value, until));
    }
}

/// One cache per record kind mail-auth looks up.
pub(crate) struct Caches {
    pub(crate) txt: TtlCache<Box<str>, Txt>,
    pub(crate) mx: TtlCache<Box<str>, RecordSet<MX>>,
    pub(crate) ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub(crate) ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub(crate) ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

/// mail-auth's parameters with all our caches attached.
pub(crate) type Cached<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Caches {
    pub(crate) fn new() -> Caches {
        Caches {
            txt: TtlCache::new(TXT_ENTRIES),
            mx: TtlCache::new(OTHER_ENTRIES),
            ipv4: TtlCache::new(OTHER_ENTRIES),
            ipv6: TtlCache::new(OTHER_ENTRIES),
            ptr: TtlCache::new(OTHER_ENTRIES),
        }
    }

    /// Wraps `params` for a mail-auth verification that uses these caches.
    pub(crate) fn with<'x, P>(&'x self, params: P) -> Cached<'x, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

impl Default for Caches {
    fn default() -> Self {
        Caches::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_at_their_ttl() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(10);
        let now = Instant::now();
        cache.insert("a.".into(), 1, now + Duration::from_millis(50));
        cache.insert("b.".into(), 2, now + Duration::from_secs(60));
        // Already expired: not stored at all.
        cache.insert("c.".into(), 3, now);
        assert_eq!(cache.get("a."), Some(1));
        assert_eq!(cache.get("b."), Some(2));
        assert_eq!(cache.get("c."), None);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(cache.get("a."), None, "served after its TTL");
        assert_eq!(cache.get("b."), Some(2));
        assert_eq!(cache.len(), 1, "expired entry not dropped on read");
    }

    #[test]
    fn ttl_is_capped() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(10);
        let far = Instant::now() + Duration::from_secs(30 * 86400);
        cache.insert("a.".into(), 1, far);
        let until = cache.lock().get("a.").unwrap().1;
        assert!(until <= Instant::now() + MAX_TTL);
    }

    #[test]
    fn stays_bounded_and_prefers_evicting_expired_entries() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(64);
        let soon = Instant::now() + Duration::from_millis(30);
        for i in 0..32 {
            cache.insert(format!("old{i}.").into(), i, soon);
        }
        let later = Instant::now() + Duration::from_secs(600);
        for i in 0..32 {
            cache.insert(format!("new{i}.").into(), i, later);
        }
        std::thread::sleep(Duration::from_millis(50));
        // Full: the next insert drops the 32 expired entries, none of the live ones.
        cache.insert("x.".into(), 0, later);
        assert_eq!(cache.len(), 33);
        assert!((0..32).all(|i| cache.get(format!("new{i}.").as_str()) == Some(i)));
        // Many more live entries than room: never above capacity.
        for i in 0..1000 {
            cache.insert(format!("n{i}.").into(), i, later);
            assert!(cache.len() <= 64);
        }
        assert_eq!(cache.get("n999."), Some(999), "the newest entry is kept");
    }
}
