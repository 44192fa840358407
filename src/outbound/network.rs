//! Which IP addresses outbound delivery may connect to. Whoever controls a
//! forwarding domain's DNS chooses the MX hosts and their addresses; without
//! this check they could point them at loopback or the relay's own network
//! and make the relay talk SMTP to internal services. Addresses that are not
//! public unicast are refused unless an operator allows their network: the
//! IANA special-purpose registries (RFC 6890) for IPv4; for IPv6 anything
//! outside global unicast 2000::/3, the special blocks inside it, and the
//! NAT64 and 6to4 forms whose embedded IPv4 address is not public.

use crate::net::{Network, mask_v6};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    use crate::net::mask_v4;
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

    }
}
