//! The records, their zone-file form, key generation and the verdicts,
//! checked without a DNS server.

use super::keygen::*;
use super::lookup::*;
use super::plan::*;
use super::render::*;
use super::report::*;
use crate::config::{Config, KeyAlgorithm};
use crate::dns::Answer;
use crate::rewrite::keys::DkimKeyError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::SpfResult;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 25));

/// Reads zone-file character-strings back (the inverse of `zone_txt`).
fn unquote(zone: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let bytes = zone.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' {
            i += 1;
            continue;
        }
        assert_eq!(bytes[i], b'"', "{zone}");
        i += 1;
        let mut s = Vec::new();
        while bytes[i] != b'"' {
            if bytes[i] == b'\\' {
                if bytes[i + 1].is_ascii_digit() {
                    let n: u8 = zone[i + 1..i + 4].parse().unwrap();
                    s.push(n);
                    i += 4;
                } else {
                    s.push(bytes[i + 1]);
                    i += 2;
                }
            } else {
                s.push(bytes[i]);
                i += 1;
            }
        }
        i += 1;
        out.push(s);
    }
    out
}

#[test]
fn zone_txt_splits_at_255_bytes_and_escapes() {
    assert_eq!(zone_txt(""), "\"\"");
    assert_eq!(zone_txt("v=spf1 -all"), "\"v=spf1 -all\"");
    assert_eq!(zone_txt("a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_eq!(zone_txt("é"), "\"\\195\\169\"");
    for len in [1usize, 254, 255, 256, 510, 511, 1000] {
        let value: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let strings = unquote(&zone_txt(&value));
        assert_eq!(strings.len(), len.div_ceil(255), "{len}");
        assert!(strings.iter().all(|s| s.len() <= 255 && !s.is_empty()));
        assert_eq!(strings.concat(), value.as_bytes());
    }
    // Escapes never straddle a split: 255 bytes of quotes, then one more.
    let quotes = "\"".repeat(256);
    let strings = unquote(&zone_txt(&quotes));
    assert_eq!(strings.iter().map(Vec::len).collect::<Vec<_>>(), [255, 1]);
}

fn config() -> Config {
    let mut config = Config {
        hostname: "mx.relay.test".into(),
        ..Config::default()
    };
    config.srs.domain = "bounce.relay.test".into();
    config.dkim.domain = "relay.test".into();
    config
}

fn key(selector: &str, algorithm: KeyAlgorithm, public: &[u8]) -> PlanKey {
    PlanKey {
        selector: selector.into(),
        algorithm,
        bits: 256,
        public: public.to_vec(),
        record: format!(
            "v=DKIM1; k={}; p={}",
            algorithm_name(algorithm),
            BASE64.encode(public)
        ),
        path: PathBuf::from(format!("/keys/{selector}.pem")),
        dkim: true,
    }
}

fn plan() -> Plan {
    Plan::new(
        &config(),
        "alias.test",
        vec![key("ed", KeyAlgorithm::Ed25519, &[7; 32])],
    )
}

#[test]
fn records_name_the_right_places() {
    let plan = plan();
    let got: Vec<(String, &str, String)> = records(&plan)
        .into_iter()
        .filter(|r| !r.placeholder)
        .map(|r| (r.name, r.kind, r.value))
        .collect();
    let want = [
        ("alias.test.", "MX", "10 mx.relay.test."),
        ("alias.test.", "TXT", "v=spf1 -all"),
        ("_dmarc.alias.test.", "TXT", "v=DMARC1; p=reject"),
        ("bounce.relay.test.", "MX", "10 mx.relay.test."),
        ("bounce.relay.test.", "TXT", "v=spf1 a:mx.relay.test -all"),
        ("mx.relay.test.", "TXT", "v=spf1 a:mx.relay.test -all"),
        (
            "ed._domainkey.relay.test.",
            "TXT",
            &plan.keys[0].record.clone(),
        ),
        ("_dmarc.relay.test.", "TXT", "v=DMARC1; p=quarantine"),
    ];
    let want: Vec<(String, &str, String)> = want
        .iter()
        .map(|(n, k, v)| (n.to_string(), *k, v.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn default_names_merge_records_of_one_domain() {
    // srs domain = helo = dkim domain = hostname: one SPF for all.
    let config = Config {
        hostname: "relay.test".into(),
        ..Config::default()
    };
    let plan = Plan::new(&config, "relay.test", Vec::new());
    let got: Vec<(String, &str)> = records(&plan)
        .into_iter()
        .filter(|r| !r.placeholder)
        .map(|r| (r.name, r.kind))
        .collect();
    // The alias domain is the relay's own: no "-all", one DMARC.
    assert_eq!(
        got,
        [
            ("relay.test.".to_string(), "MX"),
            ("relay.test.".into(), "TXT"),
            ("_dmarc.relay.test.".into(), "TXT")
        ]
    );
    let checks = evaluate(&plan, &observed_ok(&plan));
    let names: Vec<_> = checks.iter().map(|c| (c.check, c.name.as_str())).collect();
    assert_eq!(
        names,
        [
            ("MX", "relay.test"),
            ("A/AAAA", "relay.test"),
            ("SPF", "relay.test"),
            ("DMARC", "_dmarc.relay.test"),
            ("PTR", "192.0.2.25")
        ]
    );
}

#[test]
fn zone_groups_and_comments_records() {
    let plan = plan();
    let text = zone(&plan, &records(&plan));
    assert!(
        text.contains("\n; ---- alias.test (for each alias domain) ----\n"),
        "{text}"
    );
    // Names are padded to the longest one (the DKIM name here).
    let width = "ed._domainkey.relay.test.".len();
    let mx = format!("\n{:<width$} IN MX    10 mx.relay.test.\n", "alias.test.");
    assert!(text.contains(&mx), "{text}");
    let spf = format!("\n{:<width$} IN TXT   \"v=spf1 -all\"\n", "alias.test.");
    assert!(text.contains(&spf), "{text}");
    // Placeholders are commented out.
    assert!(text.contains("\n; mx.relay.test."), "{text}");
    assert!(text.contains("IN PTR   mx.relay.test.\n"), "{text}");
    // Each record follows the comment saying why.
    let before_mx = &text[..text.find(&mx).unwrap()];
    assert!(before_mx.ends_with("forwards it."), "{text}");
    for line in text
        .lines()
        .filter(|l| l.starts_with(';') && !l.contains(" IN "))
    {
        assert!(line.len() <= 80, "{line}");
    }
}

fn observed_ok(plan: &Plan) -> Observed {
    let mut obs = Observed {
        mx: HashMap::new(),
        txt: HashMap::new(),
        addresses: Answer::Found(vec![IP]),
        spf: HashMap::new(),
        ptr: HashMap::from([(IP, Answer::Found(vec![plan.hostname.clone()]))]),
    };
    for name in mx_names(plan) {
        obs.mx
            .insert(name, Answer::Found(vec![(10, plan.hostname.clone())]));
    }
    for name in txt_names(plan) {
        obs.txt.insert(name, Answer::Missing);
    }
    for (domain, _) in spf_domains(plan) {
        obs.txt.insert(
            domain.clone(),
            Answer::Found(vec![relay_spf(&plan.hostname)]),
        );
        obs.spf.insert((domain, IP), SpfResult::Pass);
    }
    for key in &plan.keys {
        obs.txt
            .insert(plan.dkim_name(key), Answer::Found(vec![key.record.clone()]));
    }
    obs.txt.insert(
        format!("_dmarc.{}", plan.domain),
        Answer::Found(vec![ALIAS_DMARC.into()]),
    );
    obs.txt.insert(
        format!("_dmarc.{}", plan.dkim_domain),
        Answer::Found(vec![RELAY_DMARC.into()]),
    );
    obs
}

#[test]
fn a_correct_zone_passes_every_check() {
    let plan = plan();
    let checks = evaluate(&plan, &observed_ok(&plan));
    let lines: Vec<String> = checks.iter().map(Check::line).collect();
    assert_eq!(
        lines,
        [
            "ok        MX alias.test: 10 mx.relay.test",
            "ok        MX bounce.relay.test: 10 mx.relay.test",
            "ok        A/AAAA mx.relay.test: 192.0.2.25",
            "ok        SPF bounce.relay.test: pass for 192.0.2.25 (\"v=spf1 a:mx.relay.test -all\")",
            "ok        SPF mx.relay.test: pass for 192.0.2.25 (\"v=spf1 a:mx.relay.test -all\")",
            "ok        DKIM ed._domainkey.relay.test: k=ed25519 with the key of /keys/ed.pem",
            "ok        DMARC _dmarc.alias.test: \"v=DMARC1; p=reject\"",
            "ok        DMARC _dmarc.relay.test: \"v=DMARC1; p=quarantine\"",
            "ok        PTR 192.0.2.25: mx.relay.test",
        ]
    );
    assert!(passed(&checks));
    assert!(report(&checks).ends_with("\nall 5 required checks ok\n"));
}

#[test]
fn failures_say_what_was_expected_and_found() {
    let plan = plan();
    let mut obs = observed_ok(&plan);
    obs.mx.insert("alias.test".into(), Answer::Missing);
    obs.mx.insert(
        "bounce.relay.test".into(),
        Answer::Found(vec![(0, String::new())]),
    );
    obs.txt.insert(
        "bounce.relay.test".into(),
        Answer::Found(vec!["v=spf1 -all".into()]),
    );
    obs.spf
        .insert(("bounce.relay.test".into(), IP), SpfResult::Fail);
    obs.spf
        .insert(("mx.relay.test".into(), IP), SpfResult::TempError);
    obs.txt.insert(
        "ed._domainkey.relay.test".into(),
        Answer::Failed("SERVFAIL".into()),
    );
    obs.txt.insert("_dmarc.alias.test".into(), Answer::Missing);
    obs.ptr
        .insert(IP, Answer::Found(vec!["dyn-192-0-2-25.isp.test".into()]));
    let checks = evaluate(&plan, &obs);
    let lines: Vec<String> = checks.iter().map(Check::line).collect();
    assert_eq!(
        lines,
        [
            "MISSING   MX alias.test: expected an MX naming mx.relay.test (\"10 mx.relay.test.\"); found no MX record",
            "WRONG     MX bounce.relay.test: expected an MX naming mx.relay.test (\"10 mx.relay.test.\"); found 0 . (null MX: the domain takes no mail)",
            "ok        A/AAAA mx.relay.test: 192.0.2.25",
            "WRONG     SPF bounce.relay.test: expected pass for 192.0.2.25 (\"v=spf1 a:mx.relay.test -all\"); found fail (\"v=spf1 -all\")",
            "warn      SPF mx.relay.test: lookup failed: temperror: a DNS lookup failed while evaluating SPF (\"v=spf1 a:mx.relay.test -all\"); expected pass for 192.0.2.25 (\"v=spf1 a:mx.relay.test -all\") (suggestion)",
            "DNS ERROR DKIM ed._domainkey.relay.test: lookup failed: SERVFAIL; expected \"v=DKIM1; k=ed25519; p=<the public key of /keys/ed.pem>\" (`eas-relay dns records` prints it)",
            "warn      DMARC _dmarc.alias.test: expected a DMARC record, e.g. \"v=DMARC1; p=reject\"; found no DMARC record (suggestion)",
            "ok        DMARC _dmarc.relay.test: \"v=DMARC1; p=quarantine\"",
            "warn      PTR 192.0.2.25: expected mx.relay.test; found dyn-192-0-2-25.isp.test (suggestion)",
        ]
    );
    assert!(!passed(&checks));
    assert!(report(&checks).ends_with("\n4 of 5 required checks failed, 3 warnings\n"));
    let json = serde_json::to_value(&checks[0]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "check": "MX", "name": "alias.test", "status": "missing", "required": true,
            "expected": "an MX naming mx.relay.test (\"10 mx.relay.test.\")",
            "found": "no MX record"
        })
    );
    assert_eq!(serde_json::to_value(checks[5].status).unwrap(), "dns_error");
}

#[test]
fn no_address_means_spf_cannot_be_evaluated() {
    let plan = plan();
    let mut obs = observed_ok(&plan);
    obs.addresses = Answer::Missing;
    let checks = evaluate(&plan, &obs);
    let spf: Vec<_> = checks.iter().filter(|c| c.check == "SPF").collect();
    assert_eq!(spf.len(), 2);
    assert_eq!(spf[0].status, Status::Missing);
    assert!(
        spf[0].found.contains("no address of mx.relay.test"),
        "{:?}",
        spf[0]
    );
    assert!(!checks.iter().any(|c| c.check == "PTR"));
    obs.addresses = Answer::Failed("REFUSED".into());
    let checks = evaluate(&plan, &obs);
    assert_eq!(
        checks[2].line(),
        "DNS ERROR A/AAAA mx.relay.test: lookup failed: REFUSED; expected the relay's public address(es)"
    );
    assert_eq!(checks[3].status, Status::DnsError);
}

#[test]
fn several_spf_records_are_a_permerror() {
    let plan = plan();
    let mut obs = observed_ok(&plan);
    obs.txt.insert(
        "bounce.relay.test".into(),
        Answer::Found(vec![
            "v=spf1 a:mx.relay.test -all".into(),
            "google-site-verification=x".into(),
            "v=spf1 -all".into(),
        ]),
    );
    let c = &check_spf(&plan, &obs, "bounce.relay.test", true)[0];
    assert_eq!(c.status, Status::Wrong);
    assert_eq!(
        c.found,
        "permerror (2 SPF records: \"v=spf1 a:mx.relay.test -all\", \"v=spf1 -all\")"
    );
}

#[test]
fn spf_results_map_to_statuses() {
    let plan = plan();
    for (result, status, text) in [
        (SpfResult::Pass, Status::Ok, "pass for 192.0.2.25"),
        (SpfResult::None, Status::Missing, "no SPF record"),
        (SpfResult::SoftFail, Status::Wrong, "softfail"),
        (SpfResult::Neutral, Status::Wrong, "neutral"),
        (SpfResult::PermError, Status::Wrong, "permerror"),
        (SpfResult::TempError, Status::DnsError, "temperror"),
    ] {
        let mut obs = observed_ok(&plan);
        obs.spf.insert(("bounce.relay.test".into(), IP), result);
        let c = &check_spf(&plan, &obs, "bounce.relay.test", true)[0];
        assert_eq!(c.status, status, "{result:?}");
        assert!(c.found.starts_with(text), "{result:?}: {c:?}");
    }
}

#[test]
fn dkim_record_comparison() {
    let ed = [7u8; 32];
    let p = BASE64.encode(ed);
    let ok = |r: &str| compare_dkim(r, KeyAlgorithm::Ed25519, &ed);
    assert_eq!(ok(&format!("v=DKIM1; k=ed25519; p={p}")), Ok(()));
    // Case of tag names, spacing and a folded p= do not matter.
    let folded = format!("{} {}", &p[..20], &p[20..]);
    assert_eq!(ok(&format!(" v=DKIM1 ;K=ED25519;  p= {folded} ;")), Ok(()));
    assert_eq!(ok(&format!("k=ed25519; t=s; p={p}")), Ok(()));
    // k= defaults to rsa.
    assert_eq!(
        ok(&format!("v=DKIM1; p={p}")),
        Err("k=rsa, not k=ed25519".into())
    );
    assert_eq!(
        ok("v=DKIM1; k=ed25519; p="),
        Err("an empty p= (the key is revoked)".into())
    );
    assert_eq!(ok("v=DKIM1; k=ed25519"), Err("no p= tag".into()));
    assert_eq!(
        ok("v=DKIM1; k=ed25519; p=!!"),
        Err("a p= that is not valid base64".into())
    );
    let other = BASE64.encode([8u8; 32]);
    assert_eq!(
        ok(&format!("v=DKIM1; k=ed25519; p={other}")),
        Err(format!(
            "a different public key (p=...{})",
            &other[other.len() - 12..]
        ))
    );
    assert!(
        ok(&format!("k=ed25519; v=DKIM1; p={p}"))
            .unwrap_err()
            .contains("first tag")
    );
    assert!(ok(&format!("v=DKIM2; k=ed25519; p={p}")).is_err());

    // RSA: the SubjectPublicKeyInfo, or its RSAPublicKey part.
    let spki: Vec<u8> = (0..294).map(|i| i as u8).collect();
    let rsa = |r: &str| compare_dkim(r, KeyAlgorithm::Rsa, &spki);
    assert_eq!(rsa(&format!("v=DKIM1; p={}", BASE64.encode(&spki))), Ok(()));
    assert_eq!(
        rsa(&format!("v=DKIM1; k=rsa; p={}", BASE64.encode(&spki[24..]))),
        Ok(())
    );
    assert!(
        rsa(&format!(
            "v=DKIM1; k=rsa; p={}",
            BASE64.encode(&spki[280..])
        ))
        .is_err()
    );
}

#[test]
fn dkim_check_finds_the_key_record_among_txt_records() {
    let plan = plan();
    let key = &plan.keys[0];
    let check = |txts: Vec<String>| check_dkim(&plan, key, Some(&Answer::Found(txts)));
    assert!(check(vec!["hello".into(), key.record.clone()]).is_ok());
    let c = check(vec!["hello".into()]);
    assert_eq!(
        (c.status, c.found.as_str()),
        (Status::Wrong, "no DKIM key record, only \"hello\"")
    );
    let c = check(vec![
        key.record.clone(),
        key.record.replace("ed25519", "rsa"),
    ]);
    assert_eq!(c.status, Status::Wrong);
    assert!(c.found.starts_with("2 DKIM key records"), "{c:?}");
    let c = check_dkim(&plan, key, None);
    assert_eq!(c.status, Status::DnsError);
}

#[test]
fn dmarc_walks_up_to_the_organizational_domain() {
    assert_eq!(
        dmarc_names("a.b.example"),
        ["_dmarc.a.b.example", "_dmarc.b.example"]
    );
    assert_eq!(dmarc_names("example.country"), ["_dmarc.example.country"]);
    assert!(dmarc_names("localhost").is_empty());
    let mut obs = observed_ok(&plan());
    obs.txt.insert(
        "_dmarc.a.b.example".into(),
        Answer::Found(vec!["v=spf1 -all".into()]),
    );
    obs.txt.insert(
        "_dmarc.b.example".into(),
        Answer::Found(vec!["v=DMARC1;p=none".into()]),
    );
    let c = check_dmarc(&obs, "a.b.example", ALIAS_DMARC);
    assert_eq!(c.status, Status::Ok);
    assert_eq!(c.name, "_dmarc.a.b.example");
    assert_eq!(
        c.found,
        "\"v=DMARC1;p=none\" at _dmarc.b.example (inherited by subdomains)"
    );
    obs.txt.insert(
        "_dmarc.a.b.example".into(),
        Answer::Found(vec!["v=DMARC1; p=none".into(), "v=DMARC1; p=reject".into()]),
    );
    assert_eq!(
        check_dmarc(&obs, "a.b.example", ALIAS_DMARC).status,
        Status::Wrong
    );
    obs.txt.insert(
        "_dmarc.a.b.example".into(),
        Answer::Failed("SERVFAIL".into()),
    );
    let c = check_dmarc(&obs, "a.b.example", ALIAS_DMARC);
    assert_eq!(c.status, Status::DnsError);
    assert_eq!(c.label(), "warn");
    assert!(!is_dmarc_record("v=DMARC10; p=none"));
    assert!(is_dmarc_record("V=dmarc1"));
}

#[test]
fn default_selector_has_algorithm_and_date() {
    let day = time::macros::date!(2026 - 03 - 07);
    assert_eq!(
        default_selector(KeyAlgorithm::Ed25519, day),
        "eas-ed25519-20260307"
    );
    assert_eq!(default_selector(KeyAlgorithm::Rsa, day), "eas-rsa-20260307");
}

#[test]
fn keygen_refuses_taken_and_bad_selectors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.data_dir = dir.path().to_path_buf();
    let day = time::macros::date!(2026 - 03 - 07);
    let err = keygen(
        &config,
        KeyAlgorithm::Rsa,
        Some("eas-rsa".into()),
        None,
        day,
    );
    assert!(matches!(err, Err(KeygenError::SelectorTaken(_))), "{err:?}");
    let err = keygen(&config, KeyAlgorithm::Rsa, Some("a b".into()), None, day);
    assert!(matches!(err, Err(KeygenError::BadSelector(_))), "{err:?}");
    let key = keygen(&config, KeyAlgorithm::Ed25519, None, None, day).unwrap();
    assert_eq!(key.selector, "eas-ed25519-20260307");
    assert_eq!(key.key, dir.path().join("dkim/eas-ed25519-20260307.pem"));
    assert_eq!(
        key.record.name,
        "eas-ed25519-20260307._domainkey.relay.test."
    );
    assert_eq!(key.keep, "", "no generated keys to keep");
    let parsed: toml::Table = key.config.parse().unwrap();
    let entry = &parsed["dkim"]["keys"][0];
    assert_eq!(entry["algorithm"].as_str(), Some("ed25519"));
    assert_eq!(entry["key"].as_str(), Some(key.key.to_str().unwrap()));
    let err = keygen(&config, KeyAlgorithm::Ed25519, None, None, day);
    assert!(
        matches!(err, Err(KeygenError::Key(DkimKeyError::Exists(_)))),
        "{err:?}"
    );
    // Once dkim.keys is in use, its selectors are the taken ones.
    config.dkim.keys = vec![crate::config::DkimKeyConfig {
        selector: "mine".into(),
        algorithm: KeyAlgorithm::Ed25519,
        key: key.key.clone(),
        dkim: true,
    }];
    let err = keygen(&config, KeyAlgorithm::Rsa, Some("MINE".into()), None, day);
    assert!(matches!(err, Err(KeygenError::SelectorTaken(_))), "{err:?}");
}
