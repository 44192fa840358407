//! Client networks and connection seats, shared by the SMTP and HTTP
//! listeners. A client network is what one party can cheaply hold many
//! addresses of: an IPv4 address, or an IPv6 /64 (one customer's subnet, in
//! which every address is free to use). [`Seats`] counts the connections
//! each network holds, caps them per network, and keeps a reserve of the
//! last seats for networks that hold none, so that no single network can
//! take every slot of a listener.
//!
//! [`Network`] is the CIDR block an operator writes in the config
//! (`outbound.allow_networks`); the outbound client checks MX addresses
//! against it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// The network a client address belongs to: the IPv4 address itself (an
/// IPv4-mapped IPv6 address counts as its IPv4 address), or the IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl NetKey {
    pub fn of(ip: IpAddr) -> NetKey {
        match ip {
            IpAddr::V4(v4) => NetKey::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => NetKey::V4(v4),
                None => NetKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }

    /// The network as an address (an IPv6 /64 with its host bits zero), for
    /// keyed limiters that take an address.
    pub fn as_ip(self) -> IpAddr {
        match self {
            NetKey::V4(v4) => IpAddr::V4(v4),
            NetKey::V6(prefix) => IpAddr::V6(Ipv6Addr::from(u128::from(prefix) << 64)),
        }
    }
}

impl std::fmt::Display for NetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetKey::V4(v4) => write!(f, "{v4}"),
            NetKey::V6(_) => write!(f, "{}/64", self.as_ip()),
        }
    }
}

/// Why a seat was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SeatRefused {
    #[error("every seat is taken")]
    Full,
    #[error("this network holds its maximum of connections")]
    NetworkFull,
    /// Only the reserve is left, and it is kept for networks holding none.
    #[error("the remaining seats are reserved for other networks")]
    Reserved,
}

/// Connection seats of one listener: at most `total`, at most
/// `per_network` per [`NetKey`], and the last `reserved` only for networks
/// that hold none yet. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Seats {
    inner: Arc<Inner>,
}

struct Inner {
    total: usize,
    per_network: usize,
    reserved: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    held: usize,
    by_network: HashMap<NetKey, usize>,
}

/// One connection's seat; given back when dropped.
pub(crate) struct Seat {
    seats: Seats,
    key: NetKey,
}

impl Seats {
    /// `reserved_percent` of `total` (rounded up) is the reserve; it never
    /// takes the first seat, so a listener always admits someone.
    pub fn new(total: usize, per_network: usize, reserved_percent: u8) -> Seats {
        let reserved = (total.saturating_mul(usize::from(reserved_percent.min(100))))
            .div_ceil(100)
            .min(total.saturating_sub(1));
        Seats {
            inner: Arc::new(Inner {
                total,
                per_network,
                reserved,
                table: Mutex::new(Table::default()),
            }),
        }
    }

    /// The reserve, in seats.
    #[cfg(test)]
    pub fn reserved(&self) -> usize {
        self.inner.reserved
    }

    /// Seats held now (all networks).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.lock().held
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table stays consistent across a panic elsewhere (every update
        // is a single step), so a poisoned lock is still usable.
        self.inner
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a seat for a client at `ip`.
    pub fn take(&self, ip: IpAddr) -> Result<Seat, SeatRefused> {
        let key = NetKey::of(ip);
        let inner = &self.inner;
        let mut table = self.lock();
        if table.held >= inner.total {
            return Err(SeatRefused::Full);
        }
        let mine = table.by_network.get(&key).copied().unwrap_or(0);
        if mine >= inner.per_network {
            return Err(SeatRefused::NetworkFull);
        }
        if mine > 0 && table.held >= inner.total - inner.reserved {
            return Err(SeatRefused::Reserved);
        }
        table.held += 1;
        *table.by_network.entry(key).or_insert(0) += 1;
        Ok(Seat {
            seats: self.clone(),
            key,
        })
    }
}

impl Seat {
    /// The client network holding this seat.
    #[cfg(test)]
    pub fn network(&self) -> NetKey {
        self.key
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut table = self.seats.lock();
        table.held = table.held.saturating_sub(1);
        if let Some(n) = table.by_network.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.by_network.remove(&self.key);
            }
        }
    }
}

/// The open-file limit of this process (soft, hard), when it can be read.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere
fn nofile_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Raises the soft open-file limit towards `needed` (up to the hard limit)
/// and warns when it stays lower: running out of descriptors would break
/// SMTP `accept` and spool writes, which the connection caps exist to
/// prevent. `needed` counts the configured connection caps plus a margin
/// for the store, spool, DNS and outbound connections.
#[cfg(unix)]
pub(crate) fn check_fd_limit(needed: u64) {
    let Some((soft, hard)) = nofile_limit() else {
        return;
    };
    let mut soft = soft;
    if soft < needed && hard > soft {
        let target = needed.min(hard);
        #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere
        let limit = libc::rlimit {
            rlim_cur: target as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit reads one rlimit we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
            tracing::info!(from = soft, to = target, "raised the open-file limit");
            soft = target;
        }
    }
    if soft < needed {
        tracing::warn!(
            limit = soft,
            needed,
            "the open-file limit (RLIMIT_NOFILE) is lower than the connection caps \
             (smtp.max_connections + http.max_connections + outbound.max_connections) need; \
             lower the caps or raise the limit (ulimit -n, LimitNOFILE=)"
        );
    }
}

#[cfg(not(unix))]
pub(crate) fn check_fd_limit(_needed: u64) {}

/// An IP network in CIDR notation ("10.0.0.0/8", "fd00::/8"); a bare
/// address is a network of that one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses "addr/prefix" or "addr". Host bits must be zero, so that a
    /// typo like "10.1.2.3/8" does not silently allow all of 10/8.
    pub(crate) fn parse(s: &str) -> Result<Network, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("`{s}` is not a network such as \"10.0.0.0/8\" or \"fd00::/8\"")
        })?;
        let max = max_prefix(addr);
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        let network = Network { addr, prefix };
        let masked = network.network();
        if masked != addr {
            return Err(format!(
                "`{s}` has host bits set; the network is \"{masked}/{prefix}\""
            ));
        }
        Ok(network)
    }

    /// True when `ip` lies in this network (IPv4-mapped IPv6 addresses
    /// count as their IPv4 address).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.holds(ip) || self.holds(ip.to_canonical())
    }

    fn holds(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix) == net,
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix) == net,
            _ => false,
        }
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(mask_v4(a, self.prefix)),
            IpAddr::V6(a) => IpAddr::V6(mask_v6(a, self.prefix)),
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

pub(crate) fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(ip) & mask)
}

pub(crate) fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0);
    Ipv6Addr::from(u128::from(ip) & mask)
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Network, String> {
        Network::parse(s)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Network {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Network::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_of_one_64_are_one_network() {
        assert_eq!(
            NetKey::of(ip("2001:db8:1:2::1")),
            NetKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            NetKey::of(ip("2001:db8:1:2::1")),
            NetKey::of(ip("2001:db8:1:3::1"))
        );
        assert_ne!(NetKey::of(ip("192.0.2.1")), NetKey::of(ip("192.0.2.2")));
        assert_eq!(
            NetKey::of(ip("::ffff:192.0.2.1")),
            NetKey::of(ip("192.0.2.1"))
        );
        assert_eq!(
            NetKey::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn one_64_shares_its_cap() {
        let seats = Seats::new(100, 2, 0);
        let _a = seats.take(ip("2001:db8::1")).unwrap();
        let _b = seats.take(ip("2001:db8::2")).unwrap();
        assert_eq!(
            seats.take(ip("2001:db8::3")).err(),
            Some(SeatRefused::NetworkFull)
        );
        assert!(seats.take(ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn the_reserve_goes_to_networks_holding_none() {
        let seats = Seats::new(10, 10, 20);
        assert_eq!(seats.reserved(), 2);
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(seats.take(ip("192.0.2.1")).unwrap());
        }
        assert_eq!(
            seats.take(ip("192.0.2.1")).err(),
            Some(SeatRefused::Reserved)
        );
        held.push(seats.take(ip("192.0.2.2")).unwrap());
        held.push(seats.take(ip("2001:db8::1")).unwrap());
        assert_eq!(seats.take(ip("192.0.2.3")).err(), Some(SeatRefused::Full));
        held.clear();
        assert_eq!(seats.held(), 0);
        assert!(seats.take(ip("192.0.2.1")).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn the_network_of_any_address_is_stable(bits in proptest::num::u128::ANY, v4 in proptest::num::u32::ANY) {
            for ip in [IpAddr::V6(Ipv6Addr::from(bits)), IpAddr::V4(Ipv4Addr::from(v4))] {
                let key = NetKey::of(ip);
                proptest::prop_assert_eq!(NetKey::of(key.as_ip()), key);
                let _ = key.to_string();
            }
        }

        #[test]
        fn seats_never_exceed_their_caps(
            total in 1usize..20,
            per_network in 1usize..20,
            percent in 0u8..=100,
            clients in proptest::collection::vec(0u8..6, 0..60),
        ) {
            let seats = Seats::new(total, per_network, percent);
            let mut held = Vec::new();
            for c in clients {
                if let Ok(seat) = seats.take(IpAddr::V4(Ipv4Addr::new(192, 0, 2, c))) {
                    held.push(seat);
                }
                proptest::prop_assert!(seats.held() <= total);
                let mine = held.iter().filter(|s| s.network() == NetKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, c)))).count();
                proptest::prop_assert!(mine <= per_network);
            }
            drop(held);
            proptest::prop_assert_eq!(seats.held(), 0);
        }
    }

    #[test]
    fn a_tiny_listener_still_admits_someone() {
        let seats = Seats::new(1, 1, 100);
        assert_eq!(seats.reserved(), 0);
        assert!(seats.take(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn networks_parse_and_match() {
        let n = Network::parse("127.0.0.0/8").unwrap();
        assert!(n.contains(ip("127.0.0.1")));
        assert!(
            n.contains(ip("::ffff:127.9.9.9")),
            "mapped IPv6 counts as IPv4"
        );
        assert!(!n.contains(ip("128.0.0.1")));
        assert!(!n.contains(ip("::1")));
        let n = Network::parse("::1").unwrap();
        assert_eq!(n.to_string(), "::1/128");
        assert!(n.contains(ip("::1")) && !n.contains(ip("::2")));
        let n = Network::parse("fd00::/8").unwrap();
        assert!(n.contains(ip("fd12::1")) && !n.contains(ip("fe80::1")));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("10.0.0.1"))
        );
        assert!(Network::parse("::/0").unwrap().contains(ip("fe80::1")));
        let err = Network::parse("10.1.2.3/8").unwrap_err();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("::/129").is_err());
        assert!(Network::parse("mx.example.com").is_err());
        assert!(Network::parse("10.0.0.0/-1").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any text parses to a network or a reason; never panics.
        #[test]
        fn parsing_is_total(text in "\\PC{0,60}") {
            let _ = Network::parse(&text);
        }

        #[test]
        fn ipv6_networks_contain_their_addresses(raw in proptest::prelude::any::<u128>(), prefix in 0u8..=128) {
            let v6 = Ipv6Addr::from(raw);
            let net = Network::parse(&format!("{}/{prefix}", mask_v6(v6, prefix))).unwrap();
            proptest::prop_assert!(net.contains(IpAddr::V6(v6)));
        }
    }
}
