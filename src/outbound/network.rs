//! Which IP addresses outbound delivery may connect to. Whoever controls a
//! forwarding domain's DNS chooses the MX hosts and their addresses; without
//! this check they could point them at loopback or the relay's own network
//! and make the relay talk SMTP to internal services. Addresses that are not
//! public unicast (RFC 6890 special-purpose ranges, and IPv6 forms that embed
//! such an IPv4 address) are refused unless an operator allows their network.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    pub fn parse(s: &str) -> Result<Network, String> {
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
    pub fn contains(&self, ip: IpAddr) -> bool {
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

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(ip) & mask)
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
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

/// True for a public unicast address: one the relay may deliver to without
/// an operator's say-so.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                     // "this network", unspecified (RFC 1122)
        || a == 10                               // private (RFC 1918)
        || a == 127                              // loopback
        || (a == 100 && (64..128).contains(&b))  // shared address space, CGNAT (RFC 6598)
        || (a == 169 && b == 254)                // link-local
        || (a == 172 && (16..32).contains(&b))   // private
        || (a == 192 && b == 0 && c == 0)        // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)        // documentation
        || (a == 192 && b == 88 && c == 99)      // 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168)                // private
        || (a == 198 && (18..20).contains(&b))   // benchmarking (RFC 2544)
        || (a == 198 && b == 51 && c == 100)     // documentation
        || (a == 203 && b == 0 && c == 113)      // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // Forms that carry an IPv4 address are judged by it: mapped
    // (::ffff:0:0/96), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let low32 = |s: &[u16; 8]| Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(low32(&segments));
    }
    if segments[0] == 0x2002 {
        let v4 = Ipv4Addr::from((u32::from(segments[1]) << 16) | u32::from(segments[2]));
        return is_public_v4(v4);
    }
    let first = segments[0];
    !(segments[..6] == [0; 6]                      // ::/96: unspecified, loopback, IPv4-compatible
        || segments[..4] == [0x100, 0, 0, 0]       // discard-only (RFC 6666)
        || (first & 0xfe00) == 0xfc00              // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80              // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0              // site-local fec0::/10 (deprecated)
        || (first & 0xff00) == 0xff00              // multicast
        || (first == 0x2001 && segments[1] == 0xdb8)) // documentation
}

/// True when outbound delivery may connect to `ip`: it is public, or inside
/// one of the networks the operator allowed.
pub fn may_connect(ip: IpAddr, allowed: &[Network]) -> bool {
    is_public(ip) || allowed.iter().any(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_and_reserved_addresses_are_not_public() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "64:ff9b::10.0.0.1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "2001:db8::25",
        ] {
            assert!(!is_public(ip(s)), "{s} must not be public");
        }
    }

    #[test]
    fn ordinary_internet_addresses_are_public() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.254",
            "2a00:1450:4001:80b::201a",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip(s)), "{s} must be public");
        }
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

    #[test]
    fn allowed_networks_open_only_themselves() {
        let allowed = [Network::parse("127.0.0.0/8").unwrap()];
        assert!(may_connect(ip("127.0.0.1"), &allowed));
        assert!(may_connect(ip("::ffff:127.0.0.1"), &allowed));
        assert!(!may_connect(ip("10.0.0.1"), &allowed));
        assert!(!may_connect(ip("::1"), &allowed));
        assert!(may_connect(ip("8.8.8.8"), &[]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text parses to a network or a reason; never panics.
        #[test]
        fn parsing_is_total(text in "\\PC{0,60}") {
            let _ = Network::parse(&text);
        }

        /// A parsed network prints as text that parses back to it, and
        /// contains its own address; every IPv4 address has the same verdict
        /// in its IPv4-mapped, NAT64 and 6to4 forms.
        #[test]
        fn networks_round_trip_and_mapped_forms_agree(raw in any::<u32>(), prefix in 0u8..=32) {
            let v4 = Ipv4Addr::from(raw);
            let net = Network::parse(&format!("{}/{prefix}", mask_v4(v4, prefix))).unwrap();
            prop_assert_eq!(Network::parse(&net.to_string()).unwrap(), net);
            prop_assert!(net.contains(IpAddr::V4(v4)));
            prop_assert!(net.contains(IpAddr::V6(v4.to_ipv6_mapped())));
            let public = is_public(IpAddr::V4(v4));
            prop_assert_eq!(is_public(IpAddr::V6(v4.to_ipv6_mapped())), public);
            let [a, b, c, d] = v4.octets();
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            prop_assert_eq!(is_public(IpAddr::V6(nat64)), public);
            let six_to_four = Ipv6Addr::new(0x2002, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 0, 0, 0, 0, 1);
            prop_assert_eq!(is_public(IpAddr::V6(six_to_four)), public);
        }

        #[test]
        fn ipv6_networks_contain_their_addresses(raw in any::<u128>(), prefix in 0u8..=128) {
            let v6 = Ipv6Addr::from(raw);
            let net = Network::parse(&format!("{}/{prefix}", mask_v6(v6, prefix))).unwrap();
            prop_assert!(net.contains(IpAddr::V6(v6)));
        }
    }
}
