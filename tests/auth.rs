//! The forwarding pipeline end to end (`Forwarding::prepare`): inbound SPF,
//! DKIM, DMARC and ARC verdicts against an in-process DNS server, the
//! refusals they lead to, the From rewrite for DMARC-strict senders, and the
//! relay's DKIM signatures and ARC seal, checked independently with
//! python3-dkim (tests/tools/verify.py).

mod common;

use common::dns::TestDns;
use common::pyverify;
use eas_relay::config::{Config, KeyAlgorithm};
use eas_relay::reply::Reply;
use eas_relay::rewrite::keys;
use eas_relay::rewrite::pipeline::{Forwarding, Inbound, Prepared};
use eas_relay::rewrite::sign::header_fields;
use mail_auth::arc::ArcSealer;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, SpfOutput, SpfResult};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

const HOST: &str = "mx.relay.test";
const RELAY_DOMAIN: &str = "relay.test";
/// The client that delivers to the relay (the sender's outbound server).
const CLIENT: &str = "192.0.2.10";
const HELO: &str = "out.sender.example";

/// A DNS server, a config pointing at it, and the TXT records published so
/// far (python-dkim gets the same records).
struct World {
    dns: TestDns,
    config: Config,
    records: BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let dns = TestDns::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            hostname: HOST.into(),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.outbound.nameservers = vec![dns.addr()];
        config.dkim.domain = RELAY_DOMAIN.into();
        World {
            dns,
            config,
            records: BTreeMap::new(),
            _dir: dir,
        }
    }

    fn txt(&mut self, name: &str, value: &str) {
        self.dns.add_txt(name, value);
        self.records.insert(name.to_string(), value.to_string());
    }

    /// The sender domain `domain`: SPF allowing CLIENT (`spf` = "-all" etc.
    /// is the rest of the record), and a DMARC record when `dmarc` is given.
    fn sender(&mut self, domain: &str, spf: Option<&str>, dmarc: Option<&str>) {
        if let Some(spf) = spf {
            self.txt(domain, &format!("v=spf1 {spf}"));
        }
        if let Some(p) = dmarc {
            self.txt(&format!("_dmarc.{domain}"), &format!("v=DMARC1; p={p}"));
        }
    }

    /// Builds the pipeline (generating the relay's keys) and publishes its keys.
    fn forwarding(&mut self) -> Forwarding {
        let forwarding = Forwarding::new(&self.config).expect("forwarding");
        for (selector, txt) in forwarding.dkim_records() {
            self.txt(&format!("{selector}._domainkey.{RELAY_DOMAIN}"), &txt);
        }
        forwarding
    }

    fn verify(&self, message: &[u8]) -> pyverify::Report {
        pyverify::verify(&self.records, message)
    }

    /// Signs `original` as `domain` would; publishes the key.
    fn sign(&mut self, domain: &str, canon: &str, original: &[u8]) -> Vec<u8> {
        let sig = pyverify::sign(domain, "s2026", canon, original);
        self.txt(&sig.name, &sig.txt);
        let mut out = sig.header.into_bytes();
        out.extend_from_slice(original);
        out
    }
}

/// A message as the sender wrote it (trailing spaces and blank lines at the
/// end, which only relaxed body canonicalization forgives).
fn original(from: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: hello@d.country\r\nSubject: Quarterly numbers\r\n\
         Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <q4@sender.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello,\r\n  the numbers   are in.  \r\n\r\n\r\n"
    )
    .into_bytes()
}

/// What the session hands to prepare(): its Received header, then the message.
fn arrived(message: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "Received: from {HELO} ({HELO} [{CLIENT}])\r\n\tby {HOST} (eas-relay) with ESMTPS id 0A1B\r\n\
         \tfor <hello@d.country>; Sat, 21 Nov 2026 10:00:01 +0000\r\n"
    )
    .into_bytes();
    out.extend_from_slice(message);
    out
}

fn inbound<'a>(mail_from: &'a str) -> Inbound<'a> {
    Inbound {
        client_ip: CLIENT.parse().unwrap(),
        helo: HELO,
        mail_from,
        scan: None,
    }
}

async fn prepare(f: &Forwarding, message: &[u8], mail_from: &str) -> Result<Prepared, Reply> {
    f.prepare(message.to_vec(), &inbound(mail_from)).await
}

async fn accepted(f: &Forwarding, message: &[u8], mail_from: &str) -> Prepared {
    prepare(f, message, mail_from)
        .await
        .unwrap_or_else(|reply| panic!("refused: {reply}"))
}

/// Names of the header fields, top to bottom.
fn names(message: &[u8]) -> Vec<String> {
    header_fields(message)
        .0
        .iter()
        .map(|f| String::from_utf8_lossy(f.name).to_ascii_lowercase())
        .collect()
}

/// Unfolded values of every field named `name`.
fn values(message: &[u8], name: &str) -> Vec<String> {
    header_fields(message)
        .0
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| {
            String::from_utf8_lossy(f.value)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn auth_results(message: &[u8]) -> String {
    let ar = values(message, "Authentication-Results");
    assert_eq!(ar.len(), 1, "exactly one Authentication-Results: {ar:?}");
    ar.into_iter().next().unwrap()
}

/// The part of `out` after the relay's own fields is exactly `arrived`.
fn ends_with(out: &Prepared, arrived: &[u8]) {
    assert!(
        out.bytes().ends_with(arrived),
        "the original message was altered:\n{}",
        String::from_utf8_lossy(&out.bytes())
    );
}

#[tokio::test]
async fn aligned_sender_passes_and_gets_signed_and_sealed_verifiably() {
    let mut w = World::new().await;
    w.sender(
        "sender.example",
        Some(&format!("ip4:{CLIENT} -all")),
        Some("reject"),
    );
    let f = w.forwarding();
    let records = f.dkim_records();
    assert_eq!(
        records.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["eas-ed25519", "eas-rsa"]
    );
    // simple/simple: the original signature survives only if not one byte changes.
    let signed = w.sign(
        "sender.example",
        "simple/simple",
        &original("Alice <alice@sender.example>"),
    );
    let message = arrived(&signed);

    // The session's task is spawned: the future must be Send.
    fn send<T: Send>(t: T) -> T {
        t
    }
    let out = send(f.prepare(message.clone(), &inbound("alice@sender.example")))
        .await
        .expect("accepted");

    assert_eq!(
        out.verdicts,
        "spf=pass helo_spf=none dkim=pass:sender.example dmarc=pass dmarc_policy=reject \
         arc=none from_rewritten=no arc_sealed=yes"
    );
    ends_with(&out, &message);
    assert_eq!(
        names(&out.bytes())[..7],
        [
            "arc-seal",
            "arc-message-signature",
            "arc-authentication-results",
            "dkim-signature",
            "dkim-signature",
            "authentication-results",
            "received"
        ]
    );
    let ar = auth_results(&out.bytes());
    assert!(ar.starts_with(&format!("{HOST};")), "{ar}");
    for needle in [
        "spf=pass",
        "smtp.mailfrom=alice@sender.example",
        "dkim=pass header.i=@sender.example header.s=s2026",
        "arc=none",
        "dmarc=pass header.from=sender.example policy.dmarc=reject",
    ] {
        assert!(ar.contains(needle), "{needle:?} not in {ar}");
    }

    let report = w.verify(&out.bytes());
    let ed = report.dkim(RELAY_DOMAIN, "eas-ed25519");
    assert!(
        ed.valid && ed.a == "ed25519-sha256" && ed.error.is_none(),
        "{ed:?}"
    );
    let rsa = report.dkim(RELAY_DOMAIN, "eas-rsa");
    assert!(rsa.valid && rsa.a == "rsa-sha256", "{rsa:?}");
    let theirs = report.dkim("sender.example", "s2026");
    assert!(theirs.valid, "the sender's signature broke: {theirs:?}");
    assert_eq!(
        report.arc_cv.as_deref(),
        Some("pass"),
        "{}",
        report.arc_reason
    );
    assert_eq!(report.arc.len(), 1);
    let seal = &report.arc[0];
    assert_eq!((seal.instance, seal.cv.as_str()), (1, "none"));
    assert!(seal.ams_valid && seal.as_valid && seal.domain == RELAY_DOMAIN);
    // The AAR carries the same verdicts as the Authentication-Results.
    let aar = values(&out.bytes(), "ARC-Authentication-Results").remove(0);
    assert!(aar.starts_with(&format!("i=1; {HOST};")), "{aar}");
    assert!(aar.contains("dmarc=pass"), "{aar}");
}

#[tokio::test]
async fn oversigned_from_breaks_the_relay_signature_when_a_from_is_added() {
    let mut w = World::new().await;
    w.sender("sender.example", Some(&format!("ip4:{CLIENT} -all")), None);
    w.config.arc.enabled = false;
    let f = w.forwarding();
    let out = accepted(
        &f,
        &arrived(&original("a@sender.example")),
        "a@sender.example",
    )
    .await;
    let h = values(&out.bytes(), "DKIM-Signature")
        .into_iter()
        .map(|v| {
            let h = v.split("h=").nth(1).unwrap().split(';').next().unwrap();
            h.replace(' ', "").to_ascii_lowercase()
        })
        .collect::<Vec<_>>();
    // Only fields the message has, bottom-up, and From once more than present.
    assert_eq!(
        h[0],
        "content-type:mime-version:message-id:date:subject:to:from:from"
    );
    assert!(w.verify(&out.bytes()).dkim.iter().all(|c| c.valid));
    // A From added on top now breaks both relay signatures.
    let mut forged = b"From: ceo@relay.test\r\n".to_vec();
    forged.extend_from_slice(&out.bytes());
    let report = w.verify(&forged);
    assert!(report.dkim.iter().all(|c| !c.valid), "{report:?}");
}

#[tokio::test]
async fn spf_verdicts_and_temporary_errors() {
    let mut w = World::new().await;
    w.sender("pass.example", Some(&format!("ip4:{CLIENT} -all")), None);
    w.sender("fail.example", Some("ip4:203.0.113.1 -all"), None);
    w.sender("soft.example", Some("ip4:203.0.113.1 ~all"), None);
    w.sender("nospf.example", None, None);
    w.dns.add_txt("nospf.example", "some unrelated text record");
    w.dns.servfail("broken.example");
    let f = w.forwarding();
    for (domain, expected) in [
        ("pass.example", "pass"),
        ("fail.example", "fail"),
        ("soft.example", "softfail"),
        ("nospf.example", "none"),
        ("nothing.example", "none"),
    ] {
        let from = format!("a@{domain}");
        let out = accepted(&f, &arrived(&original(&from)), &from).await;
        assert!(
            out.verdicts.starts_with(&format!("spf={expected} ")),
            "{domain}: {}",
            out.verdicts
        );
        let ar = auth_results(&out.bytes());
        assert!(
            ar.contains(&format!("spf={expected} ("))
                && ar.contains(&format!("smtp.mailfrom={from}")),
            "{domain}: {ar}"
        );
        // Only a sender that passed may get a DSN (queue.dsn_authenticated_only).
        assert_eq!(out.sender_authenticated, expected == "pass", "{domain}");
    }
    // SERVFAIL: the sender is told to retry (RFC 7372 SPF validation error).
    let reply = prepare(
        &f,
        &arrived(&original("a@broken.example")),
        "a@broken.example",
    )
    .await
    .unwrap_err();
    assert_eq!((reply.code, reply.enhanced_str().as_str()), (451, "4.7.24"));
    assert!(reply.text.contains("spf"), "{reply}");

    // Without tempfail_on_dns_error the message goes through, marked.
    w.config.auth.tempfail_on_dns_error = false;
    let f = w.forwarding();
    let out = accepted(
        &f,
        &arrived(&original("a@broken.example")),
        "a@broken.example",
    )
    .await;
    assert!(auth_results(&out.bytes()).contains("spf=temperror"));
}

#[tokio::test]
async fn helo_identity_is_checked_and_used_for_the_null_sender() {
    let mut w = World::new().await;
    w.txt(HELO, &format!("v=spf1 ip4:{CLIENT} -all"));
    let f = w.forwarding();
    // A bounce (null sender): SPF of the HELO identity.
    let out = accepted(
        &f,
        &arrived(&original("MAILER-DAEMON@out.sender.example")),
        "",
    )
    .await;
    assert!(
        out.verdicts.starts_with("spf=pass helo_spf=pass "),
        "{}",
        out.verdicts
    );
    let ar = auth_results(&out.bytes());
    assert!(ar.contains(&format!("smtp.helo={HELO}")), "{ar}");
    assert!(!ar.contains("smtp.mailfrom"), "{ar}");

    // HELO SERVFAIL: defers a bounce (HELO is then the identity) ...
    w.dns.clear(HELO);
    w.dns.servfail(HELO);
    let f = w.forwarding();
    let reply = prepare(
        &f,
        &arrived(&original("MAILER-DAEMON@out.sender.example")),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!((reply.code, reply.enhanced_str().as_str()), (451, "4.7.24"));
    // ... but not mail with a sender, whose verdicts do not depend on it.
    let out = accepted(
        &f,
        &arrived(&original("a@nospf.example")),
        "a@nospf.example",
    )
    .await;
    assert!(
        out.verdicts.contains("helo_spf=temperror"),
        "{}",
        out.verdicts
    );
}

#[tokio::test]
async fn dkim_pass_fail_none_and_key_errors() {
    let mut w = World::new().await;
    let mut f = w.forwarding();
    let signed = w.sign(
        "sender.example",
        "relaxed/relaxed",
        &original("a@sender.example"),
    );
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            signed.clone(),
            "dkim=pass:sender.example",
            "dkim=pass header.i=@sender.example",
        ),
        (
            // A signed header changed after signing.
            String::from_utf8(signed.clone())
                .unwrap()
                .replace("Quarterly numbers", "Quarterly numbers (edited)")
                .into_bytes(),
            "dkim=fail:sender.example",
            "dkim=fail (verification failed)",
        ),
        (original("a@sender.example"), "dkim=none", "dkim=none"),
    ];
    for (message, verdict, ar) in cases {
        let out = accepted(&f, &arrived(&message), "a@sender.example").await;
        assert!(
            out.verdicts.contains(verdict),
            "{verdict}: {}",
            out.verdicts
        );
        // No SPF record: only the aligned, passing signature authenticates.
        assert_eq!(
            out.sender_authenticated,
            verdict == "dkim=pass:sender.example",
            "{verdict}"
        );
        let got = auth_results(&out.bytes());
        assert!(got.contains(ar), "{ar}: {got}");
    }

    // The key record vanished: a permanent error, accepted.
    let signed_other = w.sign(
        "other.example",
        "relaxed/relaxed",
        &original("a@other.example"),
    );
    w.dns.clear("s2026._domainkey.other.example");
    let out = accepted(&f, &arrived(&signed_other), "a@other.example").await;
    assert!(
        out.verdicts.contains("dkim=permerror:other.example"),
        "{}",
        out.verdicts
    );

    // The key lookup fails temporarily: 451.
    w.dns.servfail("s2026._domainkey.other.example");
    f = w.forwarding();
    let reply = prepare(&f, &arrived(&signed_other), "a@other.example")
        .await
        .unwrap_err();
    assert_eq!((reply.code, reply.enhanced_str().as_str()), (451, "4.7.1"));
    assert!(reply.text.contains("dkim"), "{reply}");
}

#[tokio::test]
async fn dmarc_reject_failure_is_refused_with_550() {
    let mut w = World::new().await;
    // The client is not allowed by SPF and nothing is signed.
    w.sender(
        "strict.example",
        Some("ip4:203.0.113.1 -all"),
        Some("reject"),
    );
    let f = w.forwarding();
    let message = arrived(&original("Boss <boss@strict.example>"));
    let reply = prepare(&f, &message, "boss@strict.example")
        .await
        .unwrap_err();
    assert_eq!((reply.code, reply.enhanced_str().as_str()), (550, "5.7.1"));
    assert!(reply.text.contains("DMARC policy reject"), "{reply}");
    assert!(reply.text.contains("strict.example"), "{reply}");

    // Not refused when so configured: forwarded with From rewritten instead.
    w.config.auth.reject_dmarc_failures = false;
    let f = w.forwarding();
    let out = accepted(&f, &message, "boss@strict.example").await;
    assert!(
        out.verdicts.contains("dmarc=fail dmarc_policy=reject"),
        "{}",
        out.verdicts
    );
    assert!(
        out.verdicts.contains("from_rewritten=yes"),
        "{}",
        out.verdicts
    );
    assert!(auth_results(&out.bytes()).contains("dmarc=fail"));
}

#[tokio::test]
async fn strict_sender_without_aligned_dkim_gets_from_rewritten() {
    let mut w = World::new().await;
    // SPF passes and aligns (so DMARC passes here), but forwarding breaks SPF:
    // without an aligned DKIM signature it would fail DMARC downstream.
    w.sender(
        "strict.example",
        Some(&format!("ip4:{CLIENT} -all")),
        Some("quarantine"),
    );
    let f = w.forwarding();
    // Signed by the sending service's own domain only: valid, not aligned.
    let signed = w.sign(
        "esp.example",
        "relaxed/relaxed",
        &original("Boss <boss@strict.example>"),
    );
    let message = arrived(&signed);
    let out = accepted(&f, &message, "boss@strict.example").await;
    assert!(
        out.verdicts
            .contains("dkim=pass:esp.example dmarc=pass dmarc_policy=quarantine"),
        "{}",
        out.verdicts
    );
    assert!(
        out.verdicts.contains("from_rewritten=yes"),
        "{}",
        out.verdicts
    );
    assert_eq!(
        values(&out.bytes(), "From"),
        [format!("\"Boss\" <forwarder@{RELAY_DOMAIN}>")]
    );
    assert_eq!(
        values(&out.bytes(), "Reply-To"),
        ["Boss <boss@strict.example>"]
    );
    assert_eq!(
        values(&out.bytes(), "X-Original-From"),
        ["Boss <boss@strict.example>"]
    );
    // Nothing else changed: the message minus the From field is the original.
    let text = String::from_utf8(out.bytes().clone()).unwrap();
    let tail = text
        .split_once("From: \"Boss\"")
        .unwrap()
        .1
        .split_once("X-Original-From: Boss <boss@strict.example>\r\n")
        .unwrap()
        .1;
    let original_tail = String::from_utf8(message.clone()).unwrap();
    let original_tail = original_tail
        .split_once("From: Boss <boss@strict.example>\r\n")
        .unwrap()
        .1;
    assert_eq!(tail, original_tail);
    // The relay's signatures cover the new From and verify; the seal too.
    let report = w.verify(&out.bytes());
    assert!(report.dkim(RELAY_DOMAIN, "eas-ed25519").valid);
    assert!(report.dkim(RELAY_DOMAIN, "eas-rsa").valid);
    assert_eq!(
        report.arc_cv.as_deref(),
        Some("pass"),
        "{}",
        report.arc_reason
    );
}

#[tokio::test]
async fn from_is_left_alone_unless_strict_and_unaligned() {
    let mut w = World::new().await;
    w.sender(
        "strict.example",
        Some(&format!("ip4:{CLIENT} -all")),
        Some("reject"),
    );
    w.sender(
        "relaxed.example",
        Some("ip4:203.0.113.1 -all"),
        Some("none"),
    );
    w.sender("nodmarc.example", Some("ip4:203.0.113.1 -all"), None);
    let f = w.forwarding();

    // Aligned DKIM: it survives forwarding, nothing to do.
    let signed = w.sign(
        "strict.example",
        "simple/simple",
        &original("a@strict.example"),
    );
    let out = accepted(&f, &arrived(&signed), "a@strict.example").await;
    assert!(
        out.verdicts.contains("from_rewritten=no"),
        "{}",
        out.verdicts
    );
    assert_eq!(values(&out.bytes(), "From"), ["a@strict.example"]);
    assert!(values(&out.bytes(), "Reply-To").is_empty());
    assert!(w.verify(&out.bytes()).dkim("strict.example", "s2026").valid);

    // p=none, or no DMARC record at all: forwarded as is even though it fails.
    for domain in ["relaxed.example", "nodmarc.example"] {
        let from = format!("a@{domain}");
        let out = accepted(&f, &arrived(&original(&from)), &from).await;
        assert!(
            out.verdicts.contains("from_rewritten=no"),
            "{}",
            out.verdicts
        );
        assert_eq!(values(&out.bytes(), "From"), [from]);
    }

    // Switched off: never rewritten.
    w.sender(
        "quarantine.example",
        Some(&format!("ip4:{CLIENT} -all")),
        Some("quarantine"),
    );
    w.config.rewrite.from_for_strict_dmarc = false;
    let f = w.forwarding();
    let out = accepted(
        &f,
        &arrived(&original("a@quarantine.example")),
        "a@quarantine.example",
    )
    .await;
    assert!(
        out.verdicts.contains("from_rewritten=no"),
        "{}",
        out.verdicts
    );
    assert_eq!(values(&out.bytes(), "From"), ["a@quarantine.example"]);
}

#[tokio::test]
async fn garbage_from_of_a_strict_sender_is_not_rewritten() {
    let mut w = World::new().await;
    w.sender(
        "strict.example",
        Some(&format!("ip4:{CLIENT} -all")),
        Some("quarantine"),
    );
    let f = w.forwarding();
    let two_froms = String::from_utf8(original("a@strict.example"))
        .unwrap()
        .replace("To: ", "From: b@strict.example\r\nTo: ");
    let message = arrived(two_froms.as_bytes());
    let out = accepted(&f, &message, "a@strict.example").await;
    assert!(
        out.verdicts.contains("from_rewritten=refused"),
        "{}",
        out.verdicts
    );
    ends_with(&out, &message);
}

#[tokio::test]
async fn missing_records_never_refuse() {
    let mut w = World::new().await;
    let f = w.forwarding();
    // No SPF, no DMARC, a DKIM signature whose key is not published, a HELO
    // name that does not exist: every lookup is NXDOMAIN or NODATA.
    let signed = w.sign(
        "gone.example",
        "relaxed/relaxed",
        &original("a@gone.example"),
    );
    w.dns.clear("s2026._domainkey.gone.example");
    let out = accepted(&f, &arrived(&signed), "a@gone.example").await;
    assert_eq!(
        out.verdicts,
        "spf=none helo_spf=none dkim=permerror:gone.example dmarc=none dmarc_policy=none \
         arc=none from_rewritten=no arc_sealed=yes"
    );
    // A domain with a DMARC record but no SPF and no signature: fails, p=none.
    w.sender("lax.example", None, Some("none"));
    let out = accepted(&f, &arrived(&original("a@lax.example")), "a@lax.example").await;
    assert!(
        out.verdicts.contains("dmarc=fail dmarc_policy=none"),
        "{}",
        out.verdicts
    );
}

#[tokio::test]
async fn dmarc_lookup_servfail_defers() {
    let mut w = World::new().await;
    w.sender("strict.example", Some("ip4:203.0.113.1 -all"), None);
    w.dns.servfail("_dmarc.strict.example");
    let f = w.forwarding();
    let reply = prepare(
        &f,
        &arrived(&original("a@strict.example")),
        "a@strict.example",
    )
    .await
    .unwrap_err();
    assert_eq!((reply.code, reply.enhanced_str().as_str()), (451, "4.7.1"));
    assert!(reply.text.contains("dmarc"), "{reply}");
}

/// Seals `message` as another forwarder ("fwd.example") would, with i=1.
fn sealed_elsewhere(w: &mut World, message: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let pair = keys::generate(KeyAlgorithm::Rsa, &dir.path().join("fwd.pem")).unwrap();
    w.txt("arc._domainkey.fwd.example", &keys::txt_record(&pair));
    let parsed = AuthenticatedMessage::parse(message).unwrap();
    let spf = SpfOutput::new("sender.example".into()).with_result(SpfResult::Pass);
    let results = AuthenticationResults::new("mx.fwd.example")
        .with_spf_mailfrom_result(
            &spf,
            "192.0.2.99".parse::<IpAddr>().unwrap(),
            "a@sender.example",
            "x",
        )
        .with_arc_result(&ArcOutput::default(), "192.0.2.99".parse().unwrap());
    let set = ArcSealer::from_key(pair.signing_key().unwrap())
        .domain("fwd.example")
        .selector("arc")
        .headers([
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "DKIM-Signature",
        ])
        .seal(&parsed, &results, &ArcOutput::default())
        .expect("seal");
    let mut out = set.to_header().into_bytes();
    out.extend_from_slice(message);
    out
}

#[tokio::test]
async fn existing_arc_chain_is_continued_with_instance_2() {
    let mut w = World::new().await;
    w.sender(
        "sender.example",
        Some("ip4:198.51.100.1 -all"),
        Some("none"),
    );
    let f = w.forwarding();
    let signed = w.sign(
        "sender.example",
        "relaxed/relaxed",
        &original("a@sender.example"),
    );
    let message = arrived(&sealed_elsewhere(&mut w, &signed));
    let out = accepted(&f, &message, "srs0=x=y=sender.example=a@fwd.example").await;
    assert!(out.verdicts.contains("arc=pass"), "{}", out.verdicts);
    assert!(out.verdicts.ends_with("arc_sealed=yes"), "{}", out.verdicts);
    ends_with(&out, &message);

    let report = w.verify(&out.bytes());
    assert_eq!(
        report.arc_cv.as_deref(),
        Some("pass"),
        "{}",
        report.arc_reason
    );
    let instances: Vec<_> = report
        .arc
        .iter()
        .map(|i| (i.instance, i.cv.as_str(), i.domain.as_str()))
        .collect();
    assert_eq!(
        instances,
        [(2, "pass", RELAY_DOMAIN), (1, "none", "fwd.example")]
    );
    assert!(report.arc[0].ams_valid && report.arc[0].as_valid);
    assert!(report.dkim("sender.example", "s2026").valid);
    assert!(report.dkim(RELAY_DOMAIN, "eas-rsa").valid);
}

#[tokio::test]
async fn broken_arc_chain_is_not_sealed() {
    let mut w = World::new().await;
    let f = w.forwarding();
    let sealed = sealed_elsewhere(&mut w, &original("a@sender.example"));
    // A signed header changed after the other forwarder sealed it.
    let broken = String::from_utf8(sealed)
        .unwrap()
        .replace("Subject: Quarterly numbers", "Subject: Quarterly numbers!!")
        .into_bytes();
    let message = arrived(&broken);
    let out = accepted(&f, &message, "a@sender.example").await;
    assert!(out.verdicts.contains("arc=fail"), "{}", out.verdicts);
    assert!(out.verdicts.ends_with("arc_sealed=no"), "{}", out.verdicts);
    assert!(auth_results(&out.bytes()).contains("arc=fail"));
    // Only the other forwarder's ARC fields: no set of ours.
    assert_eq!(values(&out.bytes(), "ARC-Seal").len(), 1);
    ends_with(&out, &message);
    // The DKIM signatures are still there and valid.
    let report = w.verify(&out.bytes());
    assert!(report.dkim(RELAY_DOMAIN, "eas-ed25519").valid);
}

#[tokio::test]
async fn switches_turn_each_part_off() {
    let mut w = World::new().await;
    w.sender(
        "strict.example",
        Some("ip4:203.0.113.1 -all"),
        Some("reject"),
    );
    let message = arrived(&original("a@strict.example"));

    // auth off: no checks, no Authentication-Results, no seal, no refusal,
    // but still signed.
    w.config.auth.enabled = false;
    let f = w.forwarding();
    let out = accepted(&f, &message, "a@strict.example").await;
    assert_eq!(out.verdicts, "auth=off from_rewritten=no");
    assert_eq!(
        names(&out.bytes())[..3],
        ["dkim-signature", "dkim-signature", "received"]
    );
    ends_with(&out, &message);
    assert!(w.verify(&out.bytes()).dkim.iter().all(|c| c.valid));

    // dkim and arc off: only the verdicts are added.
    w.config.auth.enabled = true;
    w.config.auth.reject_dmarc_failures = false;
    w.config.dkim.enabled = false;
    w.config.arc.enabled = false;
    let f = w.forwarding();
    let out = accepted(&f, &message, "a@strict.example").await;
    assert_eq!(
        names(&out.bytes())[..2],
        ["authentication-results", "received"]
    );

    // Ed25519 only, ARC explicitly sealed with it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ed.pem");
    keys::generate(KeyAlgorithm::Ed25519, &path).unwrap();
    w.config.dkim.enabled = true;
    w.config.arc.enabled = true;
    w.config.dkim.keys = vec![eas_relay::config::DkimKeyConfig {
        selector: "ed1".into(),
        algorithm: KeyAlgorithm::Ed25519,
        key: path,
        dkim: true,
    }];
    w.config.arc.selector = "ed1".into();
    let f = w.forwarding();
    assert_eq!(f.dkim_records().len(), 1);
    let out = accepted(&f, &message, "a@strict.example").await;
    let report = w.verify(&out.bytes());
    assert_eq!(report.dkim.len(), 1);
    assert!(report.dkim(RELAY_DOMAIN, "ed1").valid);
    assert!(values(&out.bytes(), "ARC-Seal")[0].contains("a=ed25519-sha256"));
}

#[tokio::test]
async fn dns_answers_are_cached_for_their_ttl() {
    let mut w = World::new().await;
    w.dns.set_ttl(2);
    w.sender(
        "sender.example",
        Some(&format!("ip4:{CLIENT} -all")),
        Some("quarantine"),
    );
    let f = w.forwarding();
    let message = arrived(&w.sign(
        "sender.example",
        "relaxed/relaxed",
        &original("a@sender.example"),
    ));
    let q0 = w.dns.queries();
    accepted(&f, &message, "a@sender.example").await;
    let first = w.dns.queries() - q0;
    let q1 = w.dns.queries();
    accepted(&f, &message, "a@sender.example").await;
    let second = w.dns.queries() - q1;
    // Everything comes from the caches: SPF, DKIM key and DMARC record, and
    // the names without records (the HELO name, the DMARC tree walk).
    assert!(first >= 5, "first {first}");
    assert_eq!(second, 0, "first {first}, second {second}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let q2 = w.dns.queries();
    accepted(&f, &message, "a@sender.example").await;
    let third = w.dns.queries() - q2;
    assert!(
        third >= 3,
        "expired records must be asked again: first {first}, second {second}, third {third}"
    );
}

/// Per-message cost of prepare() (run by hand, in release mode):
/// `cargo test --release --test auth -- --ignored --nocapture prepare_cost`.
/// Prints timings; asserts only that every variant signs as configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore]
async fn prepare_cost() {
    let mut w = World::new().await;
    w.sender(
        "sender.example",
        Some(&format!("ip4:{CLIENT} -all")),
        Some("reject"),
    );
    let body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(80);
    let mut msg = String::from_utf8(original("a@sender.example")).unwrap();
    msg.push_str(&body);
    let signed = w.sign("sender.example", "relaxed/relaxed", msg.as_bytes());
    let message = arrived(&signed);
    let dir = tempfile::tempdir().unwrap();
    let ed = dir.path().join("ed.pem");
    let rsa = dir.path().join("rsa.pem");
    keys::generate(KeyAlgorithm::Ed25519, &ed).unwrap();
    keys::generate(KeyAlgorithm::Rsa, &rsa).unwrap();
    let key = |s: &str, a, p: &std::path::Path| eas_relay::config::DkimKeyConfig {
        selector: s.into(),
        algorithm: a,
        key: p.to_path_buf(),
        dkim: true,
    };
    let variants: Vec<(&str, Vec<_>, &str)> = vec![
        ("verify only (no signing)", vec![], ""),
        (
            "Ed25519 DKIM",
            vec![key("ed", KeyAlgorithm::Ed25519, &ed)],
            "",
        ),
        ("RSA DKIM", vec![key("rsa", KeyAlgorithm::Rsa, &rsa)], ""),
        (
            "Ed25519 + RSA DKIM",
            vec![
                key("ed", KeyAlgorithm::Ed25519, &ed),
                key("rsa", KeyAlgorithm::Rsa, &rsa),
            ],
            "",
        ),
        (
            "Ed25519 DKIM + ARC (Ed25519)",
            vec![key("ed", KeyAlgorithm::Ed25519, &ed)],
            "ed",
        ),
        (
            "RSA DKIM + ARC (RSA)",
            vec![key("rsa", KeyAlgorithm::Rsa, &rsa)],
            "rsa",
        ),
        (
            "Ed25519 + RSA DKIM + ARC (RSA)",
            vec![
                key("ed", KeyAlgorithm::Ed25519, &ed),
                key("rsa", KeyAlgorithm::Rsa, &rsa),
            ],
            "rsa",
        ),
    ];
    println!("message: {} bytes", message.len());
    for (label, keys, arc) in variants {
        let signatures = keys.len();
        w.config.dkim.enabled = !keys.is_empty();
        w.config.dkim.keys = keys;
        w.config.arc.enabled = !arc.is_empty();
        w.config.arc.selector = arc.into();
        let f = w.forwarding();
        let out = accepted(&f, &message, "a@sender.example").await; // warm the caches
        assert_eq!(
            values(&out.bytes(), "ARC-Seal").len(),
            usize::from(!arc.is_empty())
        );
        assert_eq!(
            values(&out.bytes(), "DKIM-Signature").len(),
            signatures + 1,
            "{label}"
        );
        let n = 300;
        let start = std::time::Instant::now();
        for _ in 0..n {
            accepted(&f, &message, "a@sender.example").await;
        }
        let per = start.elapsed() / n;
        println!("{label:32} {:>8.1} µs/message", per.as_secs_f64() * 1e6);
    }
}

/// The relay's signatures verify whatever the lengths of its domain and
/// selector and of the covered header list: where a signature's fields end
/// on a line decides how it is folded, and a fold that differs between
/// signing and writing broke some configurations every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_for_every_field_length() {
    let keys_dir = tempfile::tempdir().unwrap();
    let ed = keys_dir.path().join("ed.pem");
    let rsa = keys_dir.path().join("rsa.pem");
    keys::generate(KeyAlgorithm::Ed25519, &ed).unwrap();
    keys::generate(KeyAlgorithm::Rsa, &rsa).unwrap();
    for n in [1usize, 7, 13, 20, 26, 33, 40, 47, 55, 62] {
        let mut w = World::new().await;
        let domain = format!("{}.example", "d".repeat(n));
        let selector = format!("s{}", "x".repeat(n % 23));
        w.config.dkim.domain = domain.clone();
        w.config.dkim.keys = vec![
            eas_relay::config::DkimKeyConfig {
                selector: format!("{selector}e"),
                algorithm: KeyAlgorithm::Ed25519,
                key: ed.clone(),
                dkim: true,
            },
            eas_relay::config::DkimKeyConfig {
                selector: format!("{selector}r"),
                algorithm: KeyAlgorithm::Rsa,
                key: rsa.clone(),
                dkim: true,
            },
        ];
        w.sender("sender.example", Some("ip4:192.0.2.10 -all"), Some("none"));
        let forwarding = Forwarding::new(&w.config).expect("forwarding");
        for (sel, txt) in forwarding.dkim_records() {
            w.txt(&format!("{sel}._domainkey.{domain}"), &txt);
        }
        // Vary the covered headers too: a longer Subject and a Cc per round.
        let mut message = original("a@sender.example");
        for _ in 0..(n % 4) {
            message = [b"Cc: someone@else.example\r\n".as_slice(), &message].concat();
        }
        let signed = w.sign("sender.example", "relaxed/relaxed", &message);
        let prepared = prepare(&forwarding, &arrived(&signed), "a@sender.example")
            .await
            .expect("accepted");
        let report = w.verify(&prepared.bytes());
        for sel in [format!("{selector}e"), format!("{selector}r")] {
            let check = report.dkim(&domain, &sel);
            assert!(check.valid, "d={domain} s={sel}: {check:?}");
        }
        assert_eq!(
            report.arc_cv.as_deref(),
            Some("pass"),
            "d={domain}: {report:?}"
        );
        assert!(
            report.arc[0].ams_valid && report.arc[0].as_valid,
            "{report:?}"
        );
    }
}

/// A key with `dkim = false` only seals: DKIM is signed by the other keys,
/// ARC by it (Ed25519 DKIM with an RSA seal, as ARC verifiers expect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arc_only_key_seals_without_signing_dkim() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (ed, rsa) = (dir.path().join("ed.pem"), dir.path().join("rsa.pem"));
    keys::generate(KeyAlgorithm::Ed25519, &ed).unwrap();
    keys::generate(KeyAlgorithm::Rsa, &rsa).unwrap();
    w.config.dkim.keys = vec![
        eas_relay::config::DkimKeyConfig {
            selector: "ed".into(),
            algorithm: KeyAlgorithm::Ed25519,
            key: ed,
            dkim: true,
        },
        eas_relay::config::DkimKeyConfig {
            selector: "seal".into(),
            algorithm: KeyAlgorithm::Rsa,
            key: rsa,
            dkim: false,
        },
    ];
    w.config.arc.selector = "seal".into();
    w.sender("sender.example", Some("ip4:192.0.2.10 -all"), Some("none"));
    let f = w.forwarding();
    let prepared = prepare(
        &f,
        &arrived(&original("a@sender.example")),
        "a@sender.example",
    )
    .await
    .expect("accepted");
    let report = w.verify(&prepared.bytes());
    assert_eq!(
        report.dkim.len(),
        1,
        "only the Ed25519 key signs DKIM: {report:?}"
    );
    assert!(report.dkim(RELAY_DOMAIN, "ed").valid, "{report:?}");
    assert_eq!(report.arc_cv.as_deref(), Some("pass"), "{report:?}");
    let bytes = prepared.bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("ARC-Seal: i=1; a=rsa-sha256;"), "{text}");
}
