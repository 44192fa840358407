//! Unit tests of the screen: reversed names, the decision rule, the cache's
//! bound. The lookups themselves run against a real DNS server in
//! tests/attacks/screen.rs.

use super::*;

fn screen(tweak: impl FnOnce(&mut Config)) -> Screen {
    let mut config = Config::default();
    config.screen.enabled = true;
    // Never asked here: these tests make no lookup.
    config.outbound.nameservers = vec!["127.0.0.1:9".parse().unwrap()];
    tweak(&mut config);
    config.validate().expect("valid config");
    Screen::from_config(&config).unwrap().expect("enabled")
}

#[test]
fn names_are_reversed_octets_and_nibbles() {
    assert_eq!(reversed("127.0.0.2".parse().unwrap()), "2.0.0.127");
    assert_eq!(
        reversed("2001:db8::1".parse().unwrap()),
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
    );
}

#[test]
fn the_sum_decides_against_both_thresholds() {
    let s = screen(|c| {
        c.screen.threshold = 3;
        c.screen.allowlist_threshold = -2;
    });
    assert_eq!(s.decide(3), Decision::Block);
    assert_eq!(s.decide(2), Decision::Pass);
    assert_eq!(s.decide(0), Decision::Pass);
    assert_eq!(s.decide(-1), Decision::Pass);
    assert_eq!(s.decide(-2), Decision::Allow);
    // The default allowlist threshold 0: any negative sum.
    assert_eq!(screen(|_| {}).decide(-1), Decision::Allow);
    assert_eq!(screen(|_| {}).decide(0), Decision::Pass);
}

#[tokio::test]
async fn an_attacker_with_many_addresses_cannot_grow_the_cache_past_its_cap() {
    let s = screen(|c| c.screen.cache_size = 100);
    let verdict = Verdict {
        decision: Decision::Block,
        score: 1,
        blocked_by: "bl.example".into(),
        greeted: false,
    };
    for i in 0..10_000u32 {
        s.remember(IpAddr::V4(i.into()), verdict.clone());
        assert!(s.cached() <= 100, "{} cached after {i}", s.cached());
    }
    // And the newest verdict is kept.
    assert!(s.cache.get(&IpAddr::V4(9_999u32.into())).is_some());
}
