//! Tests of the binary records: round trips (with and without what the
//! key says), JSON from older stores, damaged bytes.

use super::*;
use proptest::prelude::*;

const KEY: &str = "fsociety.country\0hello";
const COMMITMENT: &str = "0x5f16f4c7f149ac4f9510d9cf8cf384038ad348b3bcdc01915f95de12df9d1b02";
const SIGNER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

fn binding() -> ChainBinding {
    ChainBinding {
        tld: "country".into(),
        sld: "fsociety".into(),
        alias: "hello".into(),
        commitment: COMMITMENT.into(),
        observed: COMMITMENT.into(),
        signer: SIGNER.into(),
        checked_block: 19_000_123,
    }
}

fn chain_record() -> AliasRecord {
    AliasRecord {
        id: 123_456,
        forwards: vec!["user@dest.example".into()],
        created: 1_764_000_000,
        active: true,
        source: Source::Chain,
        chain: Some(binding()),
    }
}

fn round_trip<T: Compact + PartialEq + std::fmt::Debug + serde::Serialize>(key: &str, v: &T) {
    let bytes = encode_compact(key, v);
    assert_eq!(bytes.first(), Some(&BINARY_V1));
    let back: T = decode_compact("t", key, &bytes).unwrap();
    assert_eq!(&back, v);
    // The JSON an older store holds reads as the same record.
    let json = serde_json::to_vec(v).unwrap();
    assert_eq!(&decode_compact::<T>("t", key, &json).unwrap(), v);
}

#[test]
fn a_chain_alias_record_leaves_out_what_its_key_says_and_stores_hashes_raw() {
    let record = chain_record();
    round_trip(KEY, &record);
    let bytes = encode_compact(KEY, &record);
    let json = serde_json::to_vec(&record).unwrap();
    // version, flags, id (3), created (5), forwards (1 + 1 + 17), binding
    // flags, tld length, commitment (1 + 32), signer (1 + 20), block (4).
    assert_eq!(bytes.len(), 1 + 1 + 3 + 5 + 19 + 1 + 1 + 33 + 21 + 4);
    assert!(
        bytes.len() * 3 < json.len(),
        "{} vs {}",
        bytes.len(),
        json.len()
    );
    // Neither the sld, the tld nor the alias is in it.
    for word in [&b"fsociety"[..], b"country", b"hello"] {
        assert!(!bytes.windows(word.len()).any(|w| w == word));
    }
}

#[test]
fn what_the_key_does_not_say_is_kept() {
    // An alias activated in another case than its lookup key, a name
    // whose sld and tld are not the key's domain, an observed commitment
    // that differs, hex that is not the canonical form: all come back
    // exactly.
    let mut record = chain_record();
    let b = record.chain.as_mut().unwrap();
    b.alias = "Hello".into();
    b.sld = "other".into();
    b.observed = "0x00".into();
    b.commitment = COMMITMENT.to_ascii_uppercase().replacen("0X", "0x", 1);
    b.signer = "0xABC".into();
    record.active = false;
    round_trip(KEY, &record);
    // A static alias, several forwards, no binding.
    let record = AliasRecord {
        id: u64::MAX,
        forwards: vec!["a@b.example".into(), "c@d.example".into()],
        created: 0,
        active: true,
        source: Source::Static,
        chain: None,
    };
    round_trip("a.test\0x", &record);
    // A key without a local part or a domain without the tld.
    round_trip("weird", &chain_record());
    round_trip("country\0hello", &chain_record());
}

#[test]
fn reveals_and_name_states_round_trip() {
    let reveal = Reveal {
        forward: "user@dest.example".into(),
        signature: format!("0x{}1b", "ab".repeat(64)),
    };
    round_trip(KEY, &reveal);
    // version, forward (1 + 17), signature (2 + 65 raw bytes).
    assert_eq!(encode_compact(KEY, &reveal).len(), 1 + 18 + 2 + 65);
    let name = NameState {
        tld: "country".into(),
        sld: "fsociety".into(),
        owner: SIGNER.into(),
        expires: 4_000_000_000,
        maintainer_allowed: true,
        checked_block: 7,
    };
    round_trip("fsociety.country", &name);
    assert_eq!(
        encode_compact("fsociety.country", &name).len(),
        1 + 1 + 1 + 21 + 5 + 1
    );
    // Stored under a key that is not the name: sld and tld kept.
    round_trip("something.else", &name);
    round_trip("", &name);
}

#[test]
fn damaged_records_are_errors_not_panics() {
    let bytes = encode_compact(KEY, &chain_record());
    // Every truncation fails (the record has no optional tail).
    for n in 0..bytes.len() {
        assert!(
            decode_compact::<AliasRecord>("aliases", KEY, &bytes[..n]).is_err(),
            "{n}"
        );
    }
    // Trailing bytes, an unknown form, an oversized varint, an absurd
    // count of forwards, bytes that are not UTF-8.
    let mut long = bytes.clone();
    long.push(0);
    let mut unknown = bytes.clone();
    unknown[0] = 2;
    let overflow = [
        BINARY_V1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F,
    ];
    let many = [BINARY_V1, 0, 1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
    let not_utf8 = [BINARY_V1, 0, 1, 1, 1, 2, 0xC3, 0x28];
    for bad in [
        &long[..],
        &unknown,
        &overflow,
        &many,
        &not_utf8,
        b"",
        b"[1]",
    ] {
        match decode_compact::<AliasRecord>("aliases", KEY, bad) {
            Err(StoreError::Corrupt { table, key, .. }) => {
                assert_eq!((table, key.as_str()), ("aliases", KEY));
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // The largest varint still decodes.
    let mut max = vec![BINARY_V1, 0];
    put_varint(&mut max, u64::MAX);
    max.extend([0, 0]);
    let r: AliasRecord = decode_compact("aliases", "a\0b", &max).unwrap();
    assert_eq!(r.id, u64::MAX);
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.]{0,12}",
        "0x[0-9a-f]{0,40}",
        "0x[0-9a-fA-F]{0,9}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn any_alias_record_round_trips(
        domain in text(), local in "[^\0]{0,8}",
        id: u64, created: u64, active: bool, chain_source: bool,
        forwards in prop::collection::vec(any::<String>(), 0..3),
        binding in prop::option::of((text(), text(), text(), text(), text(), text(), any::<u64>())),
    ) {
        let key = format!("{domain}\0{local}");
        let record = AliasRecord {
            id, forwards, created, active,
            source: if chain_source { Source::Chain } else { Source::Static },
            chain: binding.map(|(tld, sld, alias, commitment, observed, signer, checked_block)| {
                ChainBinding { tld, sld, alias, commitment, observed, signer, checked_block }
            }),
        };
        let back: AliasRecord = decode_compact("aliases", &key, &encode_compact(&key, &record)).unwrap();
        prop_assert_eq!(back, record);
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut record = vec![BINARY_V1];
        record.extend(bytes);
        let _ = decode_compact::<AliasRecord>("aliases", KEY, &record);
        let _ = decode_compact::<NameState>("chain_names", "a.b", &record);
        let _ = decode_compact::<Reveal>("chain_reveals", KEY, &record);
    }
}

/// A store written before the binary records: every record JSON, the
/// alias index naming whole alias keys. It is served as it is, and a
/// record rewritten is written in the new form next to the old ones.
#[test]
fn a_store_of_json_records_is_served_and_rewritten_record_by_record() {
    use crate::store::Store;
    use crate::store::chain::ChainUpdate;
    use crate::store::records::DomainRecord;
    use crate::store::tables::{
        ALIASES, CHAIN_ALIAS_INDEX, CHAIN_NAMES, CHAIN_NODES, CHAIN_REVEALS, DOMAINS,
        alias_index_key, node_key,
    };
    use redb::ReadableDatabase;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let (node, hash) = ([7u8; 32], [8u8; 32]);
    let name = NameState {
        tld: "country".into(),
        sld: "fsociety".into(),
        owner: SIGNER.into(),
        expires: 4_000_000_000,
        maintainer_allowed: true,
        checked_block: 7,
    };
    let reveal = Reveal {
        forward: "user@dest.example".into(),
        signature: format!("0x{}1b", "ab".repeat(64)),
    };
    let static_record = AliasRecord {
        id: 1,
        forwards: vec!["s@dest.example".into()],
        created: 1_700_000_000,
        active: true,
        source: Source::Static,
        chain: None,
    };
    {
        let s = Store::open(&path).unwrap();
        let txn = s.db().begin_write().unwrap();
        {
            let mut domains = txn.open_table(DOMAINS).unwrap();
            domains
                .insert(
                    "fsociety.country",
                    json(&DomainRecord::new(1, Source::Chain)).as_slice(),
                )
                .unwrap();
            domains
                .insert(
                    "a.test",
                    json(&DomainRecord::new(1, Source::Static)).as_slice(),
                )
                .unwrap();
            let mut aliases = txn.open_table(ALIASES).unwrap();
            aliases
                .insert(KEY, json(&chain_record()).as_slice())
                .unwrap();
            aliases
                .insert("a.test\0s", json(&static_record).as_slice())
                .unwrap();
            txn.open_table(CHAIN_REVEALS)
                .unwrap()
                .insert(KEY, json(&reveal).as_slice())
                .unwrap();
            txn.open_table(CHAIN_NAMES)
                .unwrap()
                .insert("fsociety.country", json(&name).as_slice())
                .unwrap();
            txn.open_table(CHAIN_NODES)
                .unwrap()
                .insert(node_key(&node, "country").as_slice(), "fsociety.country")
                .unwrap();
            txn.open_table(CHAIN_ALIAS_INDEX)
                .unwrap()
                .insert(alias_index_key(&node, &hash, "country").as_slice(), KEY)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let s = Store::open(&path).unwrap();
    // RCPT: both aliases resolve as before.
    // (A chain name is under a governed TLD, a static domain is not.)
    let forward = |local: &str, domain: &str, governed: bool| {
        let rcpt = crate::address::Mailbox::parse(&format!("{local}@{domain}")).unwrap();
        match crate::recipients::recipient(&s, &rcpt, "", governed).unwrap() {
            crate::recipients::Resolution::Forward { destinations, .. } => destinations,
            other => panic!("{local}@{domain}: {other:?}"),
        }
    };
    assert_eq!(
        forward("hello", "fsociety.country", true),
        vec!["user@dest.example"]
    );
    assert_eq!(forward("s", "a.test", false), vec!["s@dest.example"]);
    let found = s.lookup("fsociety.country", &["hello"]).unwrap();
    assert_eq!(found.hit, Some((0, chain_record())));
    assert_eq!(found.name.as_ref(), Some(&name));
    // The chain tables read the old forms too.
    assert_eq!(
        s.chain_alias_of(&node, &hash, "country")
            .unwrap()
            .as_deref(),
        Some(KEY)
    );
    assert_eq!(
        s.chain_reveal("fsociety.country", "hello").unwrap(),
        Some(reveal.clone())
    );
    assert_eq!(
        s.chain_bindings().unwrap(),
        vec![(KEY.to_string(), binding())]
    );
    assert_eq!(
        s.chain_names().unwrap(),
        vec![("fsociety.country".to_string(), name.clone())]
    );
    // A change rewrites that record alone, in the binary form.
    s.chain_apply(&ChainUpdate {
        commitments: vec![(KEY.into(), "0x00".into(), 19_000_200)],
        ..ChainUpdate::default()
    })
    .unwrap();
    let raw = |key: &str| -> Vec<u8> {
        let txn = s.db().begin_read().unwrap();
        let t = txn.open_table(ALIASES).unwrap();
        t.get(key).unwrap().unwrap().value().to_vec()
    };
    assert_eq!(raw(KEY).first(), Some(&BINARY_V1));
    assert_eq!(raw("a.test\0s").first(), Some(&b'{'));
    let updated = s.alias_get("fsociety.country", "hello").unwrap().unwrap();
    let updated_record = updated.clone();
    let b = updated.chain.unwrap();
    assert_eq!((b.observed.as_str(), b.checked_block), ("0x00", 19_000_200));
    assert!(!b.commitment_holds());
    assert!(s.alias_set_active("a.test", "s", false).unwrap());
    assert_eq!(raw("a.test\0s").first(), Some(&BINARY_V1));
    assert!(!s.alias_get("a.test", "s").unwrap().unwrap().active);
    // Store::compact rewrites the records still in JSON (the reveal, the
    // name) in the binary form, and everything reads the same after it.
    let mut s = s;
    s.compact().unwrap();
    let txn = s.db().begin_read().unwrap();
    let first = |table: redb::TableDefinition<&str, &[u8]>, key: &str| {
        let t = txn.open_table(table).unwrap();
        t.get(key).unwrap().unwrap().value().first().copied()
    };
    assert_eq!(first(CHAIN_REVEALS, KEY), Some(BINARY_V1));
    assert_eq!(first(CHAIN_NAMES, "fsociety.country"), Some(BINARY_V1));
    assert_eq!(first(ALIASES, "a.test\0s"), Some(BINARY_V1));
    assert_eq!(first(DOMAINS, "a.test"), Some(b'{'));
    drop(txn);
    assert_eq!(
        s.chain_reveal("fsociety.country", "hello").unwrap(),
        Some(reveal)
    );
    assert_eq!(
        s.chain_names().unwrap(),
        vec![("fsociety.country".to_string(), name)]
    );
    assert_eq!(
        s.chain_alias_of(&node, &hash, "country")
            .unwrap()
            .as_deref(),
        Some(KEY)
    );
    assert_eq!(
        s.alias_get("fsociety.country", "hello").unwrap().unwrap(),
        updated_record
    );
}

/// A record as an older store holds it.
fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn every_write_path_of_an_alias_writes_the_binary_form() {
    use crate::store::Store;
    use crate::store::tables::ALIASES;
    use redb::ReadableDatabase;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.redb")).unwrap();
    s.domain_add("a.test", Source::Static).unwrap();
    s.alias_put("a.test", "put", vec!["u@d.test".into()], Source::Static)
        .unwrap();
    s.alias_put_many(
        [("a.test".into(), "many".into(), vec!["u@d.test".into()])],
        Source::Static,
    )
    .unwrap();
    s.alias_put_claimed(
        [(
            "a.test".into(),
            "claimed".into(),
            vec!["u@d.test".into()],
            42,
        )],
        Source::Static,
    )
    .unwrap();
    s.alias_put(
        "a.test",
        "suspended",
        vec!["u@d.test".into()],
        Source::Static,
    )
    .unwrap();
    s.alias_set_active("a.test", "suspended", false).unwrap();
    let txn = s.db().begin_read().unwrap();
    let table = txn.open_table(ALIASES).unwrap();
    for local in ["put", "many", "claimed", "suspended"] {
        let key = format!("a.test\0{local}");
        let v = table.get(key.as_str()).unwrap().unwrap();
        assert_eq!(v.value().first(), Some(&BINARY_V1), "{local}");
    }
}
