//! Which IP addresses outbound delivery may connect to. Whoever controls a
//! forwarding domain's DNS chooses the MX hosts and their addresses; without
//! this check they could point them at loopback or the relay's own network
//! and make the relay talk SMTP to internal services. Addresses that are not
//! public unicast are refused unless an operator allows their network: the
//! IANA special-purpose registries (RFC 6890) for IPv4; for IPv6 anything
//! outside global unicast 2000::/3, the special blocks inside it, and the
//! NAT64 and 6to4 forms whose embedded IPv4 address is not public.

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

/// Special-purpose blocks inside global unicast 2000::/3 that are not
/// globally reachable (IANA IPv6 Special-Purpose Address Registry), as
/// (network, prefix length).
const NOT_GLOBAL_V6: [(u128, u8); 3] = [
    // IETF protocol assignments 2001::/23: Teredo 2001::/32, benchmarking
    // 2001:2::/48, ORCHID. The few anycast services IANA marks reachable in
    // there (PCP, TURN, AMT, AS112, ORCHIDv2, DETs) are no mail servers.
    (0x2001 << 112, 23),
    (0x2001_0db8 << 96, 32), // documentation (RFC 3849)
    (0x3fff << 112, 20),     // documentation (RFC 9637)
];

/// True when `bits` lies in `net`/`prefix`.
fn in_v6(bits: u128, net: u128, prefix: u8) -> bool {
    u128::from(mask_v6(Ipv6Addr::from(bits), prefix)) == net
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // The NAT64 well-known prefix 64:ff9b::/96 (RFC 6052) is globally
    // reachable: judged by the IPv4 address it carries. (The local-use
    // 64:ff9b:1::/48 of RFC 8215 is not, and lies outside 2000::/3.)
    if in_v6(bits, 0x0064_ff9b << 96, 96) {
        return is_public_v4(Ipv4Addr::from(bits as u32));
    }
    // Only global unicast 2000::/3 (RFC 4291) is public. Everything else of
    // the registry is outside it: unspecified, loopback, IPv4-mapped
    // ::ffff:0:0/96 and IPv4-translated ::ffff:0:0:0/96 (an AAAA record has
    // no business carrying either; the A record serves), IPv4-compatible,
    // discard-only 100::/64, 5f00::/16 (SRv6 SIDs), unique local, link-local,
    // site-local, multicast, and all that is not allocated.
    if !in_v6(bits, 0x2000 << 112, 3) {
        return false;
    }
    // 6to4 (2002::/16): judged by the IPv4 address of the tunnel end.
    if in_v6(bits, 0x2002 << 112, 16) {
        return is_public_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    !NOT_GLOBAL_V6
        .iter()
        .any(|&(net, prefix)| in_v6(bits, net, prefix))
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
            "::ffff:8.8.8.8",
            "::ffff:0:808:808",
            "::ffff:0:7f00:1",
            "::808:808",
            "64:ff9b::10.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:1::1",
            "2001:2::25",
            "2001:10::1",
            "2001:1ff:ffff::1",
            "2002::1",
            "3fff::1",
            "3fff:fff:ffff::1",
            "5f00::1",
            "100:0:0:1::1",
            "4000::1",
            "1::1",
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
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "3ffe:1000::1",
            "3fff:1000::1",
            "2620:4f:8000::1",
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
        /// in its NAT64 and 6to4 forms, and none is public IPv4-mapped.
        #[test]
        fn networks_round_trip_and_mapped_forms_agree(raw in any::<u32>(), prefix in 0u8..=32) {
            let v4 = Ipv4Addr::from(raw);
            let net = Network::parse(&format!("{}/{prefix}", mask_v4(v4, prefix))).unwrap();
            prop_assert_eq!(Network::parse(&net.to_string()).unwrap(), net);
            prop_assert!(net.contains(IpAddr::V4(v4)));
            prop_assert!(net.contains(IpAddr::V6(v4.to_ipv6_mapped())));
            let public = is_public(IpAddr::V4(v4));
            prop_assert!(!is_public(IpAddr::V6(v4.to_ipv6_mapped())));
            let [a, b, c, d] = v4.octets();
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            prop_assert_eq!(is_public(IpAddr::V6(nat64)), public);
            let six_to_four = Ipv6Addr::new(0x2002, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 0, 0, 0, 0, 1);
            prop_assert_eq!(is_public(IpAddr::V6(six_to_four)), public);
        }

        /// Checked against the registry written out another way: what is
        /// public is in 2000::/3 or NAT64, and in none of the blocks that
        /// are not globally reachable.
        #[test]
        fn public_ipv6_is_global_unicast(raw in any::<u128>(), top in 0u16..16) {
            // Half the cases start in 2000::/3, where the exceptions are.
            let raw = if top < 8 { raw } else { (raw & (u128::MAX >> 4)) | (u128::from(top & 3) + 2) << 124 };
            let ip = Ipv6Addr::from(raw);
            let s = ip.segments();
            let v4 = |hi: u16, lo: u16| is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
            let expected = match s[0] {
                0x64 if s[1..6] == [0xff9b, 0, 0, 0, 0] => v4(s[6], s[7]),
                0x2001 if s[1] < 0x200 || s[1] == 0xdb8 => false,
                0x2002 => v4(s[1], s[2]),
                0x3fff if s[1] < 0x1000 => false,
                first => (0x2000..0x4000).contains(&first),
            };
            prop_assert_eq!(is_public(IpAddr::V6(ip)), expected, "{}", ip);
        }

        #[test]
        fn ipv6_networks_contain_their_addresses(raw in any::<u128>(), prefix in 0u8..=128) {
            let v6 = Ipv6Addr::from(raw);
            let net = Network::parse(&format!("{}/{prefix}", mask_v6(v6, prefix))).unwrap();
            prop_assert!(net.contains(IpAddr::V6(v6)));
        }
    }
}
