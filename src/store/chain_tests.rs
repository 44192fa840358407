//! Tests of the chain tables: activation, indexes, updates, chain time.

use super::*;
use crate::store::tables::split_alias_key;

fn binding(commitment: &str) -> ChainBinding {
    ChainBinding {
        tld: "country".into(),
        sld: "fsociety".into(),
        alias: "Hello".into(),
        commitment: commitment.into(),
        observed: commitment.into(),
        signer: "0xaa".into(),
        checked_block: 10,
    }
}

fn name(owner: &str, block: u64) -> NameState {
    NameState {
        tld: "country".into(),
        sld: "fsociety".into(),
        owner: owner.into(),
        expires: 2_000_000_000,
        maintainer_allowed: true,
        checked_block: block,
    }
}

#[test]
fn chain_time_is_bounded_by_the_clock_and_follows_reorgs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let s = Store::open(&path).unwrap();
    s.set_chain_clock_skew(600);
    let now = unix_now();
    let far = now + 10 * 365 * 86_400;
    // Far ahead: not believed, and "now" stays the wall clock.
    assert!(!s.note_chain_time(far));
    assert_eq!(s.chain_time(), 0);
    assert!(s.expiry_now() <= unix_now());
    // Within the skew: believed; it may also go back (a reorg).
    assert!(s.note_chain_time(now + 300));
    assert!(s.expiry_now() >= now + 300);
    assert!(s.note_chain_time(now - 60));
    assert_eq!(s.chain_time(), now - 60);
    assert!(s.expiry_now() >= now);
    // A far-future time stored by an earlier run (or version) is
    // dropped when the node starts, and never counts meanwhile.
    s.chain_set_status(&ChainStatus {
        chain_time: far,
        ..ChainStatus::default()
    })
    .unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert!(s.expiry_now() <= unix_now() + 600);
    s.set_chain_clock_skew(600);
    assert_eq!(s.chain_time(), 0);
}

#[test]
fn activation_indexes_and_updates() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.redb")).unwrap();
    let (node, alias) = ([1u8; 32], [2u8; 32]);
    let rec = s
        .chain_activate(&Activated {
            domain: "fsociety.country".into(),
            local: "hello".into(),
            node,
            alias_hash: alias,
            binding: binding("0xc1"),
            reveal: Reveal {
                forward: "mr.robot@gmail.com".into(),
                signature: format!("0x{}1b", "11".repeat(64)),
            },
            name: name("0xaa", 10),
        })
        .unwrap();
    assert_eq!(rec.forwards, vec!["mr.robot@gmail.com".to_string()]);
    let reveal = s
        .chain_reveal("fsociety.country", "hello")
        .unwrap()
        .unwrap();
    assert_eq!(reveal.forward, "mr.robot@gmail.com");
    assert_eq!(reveal.signature.len(), 132);
    assert_eq!(
        s.domain_get("fsociety.country").unwrap().unwrap().source,
        Source::Chain
    );
    assert_eq!(
        s.chain_domain_of(&node, "country").unwrap().as_deref(),
        Some("fsociety.country")
    );
    assert_eq!(s.chain_domain_of(&node, "other").unwrap(), None);
    let key = s.chain_alias_of(&node, &alias, "country").unwrap().unwrap();
    assert_eq!(split_alias_key(&key), ("fsociety.country", "hello"));

    // the chain moves on: commitment gone, name transferred
    s.chain_apply(&ChainUpdate {
        commitments: vec![(key.clone(), "0x00".into(), 12)],
        names: vec![("fsociety.country".into(), name("0xbb", 12))],
        maintainers: vec![("country".into(), "0xAA".into(), true)],
        cursor: Some((
            Cursor {
                number: 12,
                hash: [9; 32],
            },
            vec![(11, [8; 32]), (12, [9; 32])],
        )),
    })
    .unwrap();
    let b = s.chain_bindings().unwrap();
    assert!(!b[0].1.commitment_holds());
    assert_eq!(
        s.chain_name("fsociety.country").unwrap().unwrap().owner,
        "0xbb"
    );
    assert!(s.chain_is_maintainer("country", "0xaa").unwrap());
    assert_eq!(s.chain_cursor().unwrap().unwrap().number, 12);
    assert_eq!(
        s.chain_recent().unwrap(),
        vec![(11, [8; 32]), (12, [9; 32])]
    );

    // an older check never overwrites a newer one
    s.chain_apply(&ChainUpdate {
        commitments: vec![(key.clone(), "0xc1".into(), 11)],
        names: vec![("fsociety.country".into(), name("0xaa", 11))],
        ..ChainUpdate::default()
    })
    .unwrap();
    assert!(!s.chain_bindings().unwrap()[0].1.commitment_holds());
    assert_eq!(
        s.chain_name("fsociety.country").unwrap().unwrap().owner,
        "0xbb"
    );

    s.chain_rewind(Some(Cursor {
        number: 11,
        hash: [8; 32],
    }))
    .unwrap();
    assert_eq!(s.chain_recent().unwrap(), vec![(11, [8; 32])]);
    // Only the binding that was checked is forgotten: not another one
    // (a case variant, a newer activation), never a static alias.
    let other = ChainBinding {
        alias: "HELLO".into(),
        ..binding("0xc1")
    };
    assert!(
        !s.chain_forget_alias("fsociety.country", "hello", &other, &node, &alias)
            .unwrap()
    );
    s.alias_put(
        "fsociety.country",
        "static",
        vec!["u@dest.test".into()],
        Source::Static,
    )
    .unwrap();
    assert!(
        !s.chain_forget_alias(
            "fsociety.country",
            "static",
            &binding("0xc1"),
            &node,
            &alias
        )
        .unwrap()
    );
    assert!(s.alias_get("fsociety.country", "static").unwrap().is_some());
    assert!(
        s.chain_forget_alias("fsociety.country", "hello", &binding("0xC1"), &node, &alias)
            .unwrap()
    );
    assert!(
        s.chain_alias_of(&node, &alias, "country")
            .unwrap()
            .is_none()
    );
    assert_eq!(s.chain_reveal("fsociety.country", "hello").unwrap(), None);
}

#[test]
fn deactivation_marks_follow_the_binding() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.redb")).unwrap();
    let (node, alias) = ([1u8; 32], [2u8; 32]);
    let activated = Activated {
        domain: "fsociety.country".into(),
        local: "hello".into(),
        node,
        alias_hash: alias,
        binding: binding("0xc1"),
        reveal: Reveal {
            forward: "mr.robot@gmail.com".into(),
            signature: "0x11".into(),
        },
        name: name("0xaa", 10),
    };
    s.chain_activate(&activated).unwrap();
    // Another binding (another case, another commitment) is not marked.
    let other = ChainBinding {
        alias: "HELLO".into(),
        ..binding("0xc1")
    };
    assert!(
        !s.chain_mark_deactivating("fsociety.country", "hello", &other, 20, false)
            .unwrap()
    );
    assert!(
        !s.chain_mark_deactivating("fsociety.country", "hello", &binding("0xc2"), 20, false)
            .unwrap()
    );
    assert!(s.chain_deactivating(10).unwrap().is_empty());
    // The binding itself is; a re-reveal clears the mark.
    assert!(
        s.chain_mark_deactivating("fsociety.country", "hello", &binding("0xC1"), 20, false)
            .unwrap()
    );
    let marks = s.chain_deactivating(10).unwrap();
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].1.from_block, 20);
    assert!(marks[0].1.marks(&binding("0xc1")));
    s.chain_activate(&activated).unwrap();
    assert!(s.chain_deactivating(10).unwrap().is_empty());
    // Forgetting the alias removes its mark; unmark is idempotent.
    assert!(
        s.chain_mark_deactivating("fsociety.country", "hello", &binding("0xc1"), 21, false)
            .unwrap()
    );
    assert!(
        s.chain_forget_alias("fsociety.country", "hello", &binding("0xc1"), &node, &alias)
            .unwrap()
    );
    assert!(s.chain_deactivating(10).unwrap().is_empty());
    s.chain_unmark("fsociety.country\0hello").unwrap();
}

#[test]
fn only_a_first_activation_queues_dns_provisioning_and_only_when_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.redb")).unwrap();
    let activated = |domain: &str, local: &str| Activated {
        domain: domain.into(),
        local: local.into(),
        node: [local.len() as u8; 32],
        alias_hash: [local.len() as u8 + 1; 32],
        binding: binding("0xc1"),
        reveal: Reveal {
            forward: "mr.robot@gmail.com".into(),
            signature: format!("0x{}1b", "11".repeat(64)),
        },
        name: name("0xaa", 10),
    };
    // Off: nothing is queued.
    s.chain_activate(&activated("off.country", "a")).unwrap();
    assert_eq!(s.provision_pending_count().unwrap(), 0);
    // On: the first activation of a name queues it (with the reveal),
    // later ones of the same name do not; a name already a chain domain
    // before provisioning was on is not queued either.
    s.set_provision_on_activation(true);
    s.chain_activate(&activated("fsociety.country", "hello"))
        .unwrap();
    assert_eq!(s.provision_pending().unwrap().len(), 1);
    s.provision_done("fsociety.country", crate::store::ProvisionKind::Provision)
        .unwrap();
    s.chain_activate(&activated("fsociety.country", "second"))
        .unwrap();
    s.chain_activate(&activated("off.country", "b")).unwrap();
    assert_eq!(s.provision_pending_count().unwrap(), 0);
    s.chain_activate_many(&[activated("new.country", "x"), activated("new.country", "y")])
        .unwrap();
    let pending: Vec<String> = s
        .provision_pending()
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(pending, vec!["new.country".to_string()]);
}

#[test]
fn only_the_last_alias_leaving_through_deactivate_all_queues_a_removal() {
    use crate::store::ProvisionKind::{Provision, Remove};
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.redb")).unwrap();
    s.set_provision_on_activation(true);
    s.set_remove_on_deactivate_all(true);
    const D: &str = "fsociety.country";
    let activated = |local: &str| Activated {
        domain: D.into(),
        local: local.into(),
        node: [1; 32],
        alias_hash: [local.len() as u8; 32],
        binding: binding("0xc1"),
        reveal: Reveal {
            forward: "mr.robot@gmail.com".into(),
            signature: format!("0x{}1b", "11".repeat(64)),
        },
        name: name("0xaa", 10),
    };
    let gone = |local: &str, all: bool| {
        assert!(
            s.chain_mark_deactivating(D, local, &binding("0xc1"), 20, all)
                .unwrap()
        );
        assert!(
            s.chain_forget_alias(
                D,
                local,
                &binding("0xc1"),
                &[1; 32],
                &[local.len() as u8; 32]
            )
            .unwrap()
        );
    };
    let pending = || -> Vec<(String, ProvisionKind)> {
        s.provision_pending()
            .unwrap()
            .into_iter()
            .map(|(d, p)| (d, p.kind))
            .collect()
    };
    s.chain_activate(&activated("hello")).unwrap();
    s.chain_activate(&activated("second")).unwrap();
    s.provision_done(D, Provision).unwrap();
    // Not the last alias: nothing.
    gone("hello", true);
    assert!(pending().is_empty());
    // The last alias, but through `/deactivate`: nothing either.
    gone("second", false);
    assert!(pending().is_empty());
    // A re-activation of the emptied name provisions again.
    s.chain_activate(&activated("third")).unwrap();
    assert_eq!(pending(), vec![(D.to_string(), Provision)]);
    s.provision_done(D, Provision).unwrap();
    // The last alias through `/deactivate-all`: the removal, in the same
    // write as the alias's removal.
    gone("third", true);
    assert_eq!(pending(), vec![(D.to_string(), Remove)]);
    // Activated again before the removal ran: the row flips back.
    s.chain_activate(&activated("fourth")).unwrap();
    assert_eq!(pending(), vec![(D.to_string(), Provision)]);
}

#[test]
fn attacker_lets_a_name_expire_or_lapse_while_its_records_wait() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.redb")).unwrap();
    s.set_provision_on_activation(true);
    let activated = |domain: &str, expires: u64| Activated {
        domain: domain.into(),
        local: "hello".into(),
        node: [domain.len() as u8; 32],
        alias_hash: [7; 32],
        binding: binding("0xc1"),
        reveal: Reveal {
            forward: "mr.robot@gmail.com".into(),
            signature: format!("0x{}1b", "11".repeat(64)),
        },
        name: NameState {
            expires,
            ..name("0xaa", 10)
        },
    };
    // Unexpired with an active alias: still ours, whatever static_domains.
    s.chain_activate(&activated("fsociety.country", 2_000_000_000))
        .unwrap();
    assert!(s.provision_wanted("fsociety.country", false).unwrap());
    // The name's expiry, as the chain last said, has passed.
    s.chain_activate(&activated("fsociety.country", 1_000))
        .unwrap();
    assert!(!s.provision_wanted("fsociety.country", false).unwrap());
    // Its alias went (deactivated, or the name changed hands): none active.
    s.chain_activate(&activated("whiterose.country", 2_000_000_000))
        .unwrap();
    assert!(s.provision_wanted("whiterose.country", false).unwrap());
    assert!(
        s.chain_forget_alias(
            "whiterose.country",
            "hello",
            &binding("0xc1"),
            &["whiterose.country".len() as u8; 32],
            &[7; 32],
        )
        .unwrap()
    );
    assert!(!s.provision_wanted("whiterose.country", false).unwrap());
}
