//! Attacks through the message itself: a message whose DKIM signatures and
//! header fields make the relay's checks arbitrarily expensive, headers
//! larger than any mail needs, large bodies that would have to be held in
//! memory, and `Authentication-Results` forged in the relay's name so that
//! the destination takes the attacker's verdicts for the relay's.

use crate::common::dns::TestDns;
use crate::common::relay::TestRelay;
use crate::common::sink::TestSink;
use crate::common::smtp::{Client, message};
use eas_relay::config::ByteSize;
use mail_auth::common::crypto::HashAlgorithm;
use mail_auth::dkim::Canonicalization;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// DNS for the destination (`dest.test` on loopback) and the sending
/// domain `origin.test` (SPF for the test client, no DMARC policy).
async fn dns() -> TestDns {
    let dns = TestDns::start().await;
    dns.add_mx("dest.test", 10, "mx.dest.test");
    dns.add_a("mx.dest.test", Ipv4Addr::LOCALHOST);
    dns.add_txt("origin.test", "v=spf1 ip4:127.0.0.1 -all");
    dns
}

async fn relay_with_auth(
    dns: &TestDns,
    sink: &TestSink,
    tweak: impl FnOnce(&mut eas_relay::config::Config),
) -> TestRelay {
    let relay = TestRelay::start(|c| {
        c.outbound.nameservers = vec![dns.addr()];
        c.outbound.port = sink.addr.port();
        c.auth.enabled = true;
        tweak(c);
    })
    .await;
    relay
        .alias("hello", "fsociety.country", "mr.robot@dest.test")
        .await;
    relay
}

/// Ordinary mail still goes through: sends one and waits for the sink to
/// have `total` messages.
async fn ordinary_mail_flows(relay: &TestRelay, sink: &TestSink, total: usize) {
    let original = message(
        "alice@origin.test",
        "hello@fsociety.country",
        "ordinary",
        "still flowing",
    );
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("mail.origin.test").await;
    let reply = c
        .send_mail("alice@origin.test", &["hello@fsociety.country"], &original)
        .await;
    assert!(reply.starts_with("250 "), "{reply}");
    c.quit().await;
    let got = sink.wait_for(total, WAIT).await;
    assert!(
        got.iter().any(|m| m.text().contains("Subject: ordinary")),
        "the ordinary message arrived"
    );
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A message with `signatures` DKIM-Signature fields that each make the
/// verifier hash `pads` padding fields (correct body hash, a key in DNS,
/// a wrong signature), so each costs a lookup, a header hash and a
/// public-key verification.
fn signature_flood(signatures: usize, pads: usize, subject: &str) -> Vec<u8> {
    let body = b"hello\r\n";
    let bh = base64(
        HashAlgorithm::Sha256
            .hash(Canonicalization::Relaxed.canonical_body(body, 0))
            .as_ref(),
    );
    let h = vec!["x-pad"; pads].join(":");
    let bogus = base64(&[7u8; 64]);
    let mut msg = String::new();
    for i in 0..signatures {
        msg.push_str(&format!(
            "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=origin.test; s=s1;\r\n\
             \tt={i}; h=from:{h};\r\n\tbh={bh};\r\n\tb={bogus}\r\n"
        ));
    }
    let pad = "p".repeat(400);
    for i in 0..pads {
        msg.push_str(&format!("X-Pad: {i} {pad}\r\n"));
    }
    msg.push_str(&format!(
        "From: <alice@origin.test>\r\nTo: <hello@fsociety.country>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@origin.test>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\r\n"
    ));
    let mut bytes = msg.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Longest time a fresh session waited for its greeting and EHLO answer
/// while `busy` is not done.
async fn probe_latency(addr: SocketAddr, busy: &tokio::sync::watch::Receiver<bool>) -> Duration {
    let mut worst = Duration::ZERO;
    while !*busy.borrow() {
        let start = Instant::now();
        let mut c = Client::connect(addr).await;
        c.ehlo("probe.test").await;
        worst = worst.max(start.elapsed());
        c.quit().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_dkim_signatures_do_not_stall_other_sessions() {
    let dns = dns().await;
    let sink = TestSink::start().await;
    // A real key for origin.test/s1 (python3-dkim makes it): the forged
    // signatures get as far as the header hash and the signature check.
    let sample = message("alice@origin.test", "hello@fsociety.country", "s", "x");
    let real = crate::common::pyverify::sign("origin.test", "s1", "relaxed/relaxed", &sample);
    dns.add_txt(&real.name, &real.txt);
    let relay = relay_with_auth(&dns, &sink, |c| {
        // Room for the flood (the header limits are tested on their own):
        // here the signature cap and the check pool must hold.
        c.smtp.max_header_size = ByteSize::new(4 << 20);
        c.smtp.max_header_fields = 5000;
    })
    .await;

    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let probe = tokio::spawn({
        let addr = relay.smtp;
        let done = done_rx.clone();
        async move { probe_latency(addr, &done).await }
    });
    // One per thread that serves sessions (the test runtime has two).
    let mut floods = Vec::new();
    for n in 0..2 {
        let addr = relay.smtp;
        floods.push(tokio::spawn(async move {
            let msg = signature_flood(500, 500, &format!("flood{n}"));
            let mut c = Client::connect(addr).await;
            c.ehlo("mail.origin.test").await;
            let reply = c
                .send_mail("alice@origin.test", &["hello@fsociety.country"], &msg)
                .await;
            c.quit().await;
            reply
        }));
    }
    for flood in floods {
        let reply = flood.await.unwrap();
        assert!(reply.starts_with("250 "), "{reply}");
    }
    done_tx.send(true).unwrap();
    let worst = probe.await.unwrap();
    eprintln!("slowest greeting and EHLO during the floods: {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "a session waited {worst:?} for its greeting and EHLO while the floods were checked"
    );

    // Only the topmost signatures were checked and reported.
    let got = sink.wait_for(2, WAIT).await;
    let text = got[0].text();
    // The relay's Authentication-Results field (unfolded to its end).
    let at = text
        .find("\r\nAuthentication-Results: relay.test;")
        .expect("the relay's results");
    let rest = &text[at + 2..];
    let end = rest
        .match_indices("\r\n")
        .find(|(i, _)| !rest[i + 2..].starts_with('\t'))
        .map_or(rest.len(), |(i, _)| i);
    let results = &rest[..end];
    let checked = results.matches("dkim=").count();
    assert!(
        (1..=5).contains(&checked),
        "{checked} DKIM results reported:\n{results}"
    );
    ordinary_mail_flows(&relay, &sink, 3).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_overcrowded_headers_are_refused_precisely() {
    let dns = dns().await;
    let sink = TestSink::start().await;
    let relay = relay_with_auth(&dns, &sink, |_| {}).await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("mail.origin.test").await;

    // 300 KiB of header (the limit is 256 KiB), body after it.
    let big = [
        format!("X-Big: {}\r\n", "b".repeat(300 * 1024)).into_bytes(),
        message("alice@origin.test", "hello@fsociety.country", "big", "x"),
    ]
    .concat();
    c.mail_from("alice@origin.test", "250").await;
    c.rcpt_to("hello@fsociety.country", "250").await;
    let reply = c.data(&big, "552 5.3.4").await;
    assert!(reply.contains("header"), "{reply}");

    // 1001 fields (the limit is 1000).
    let crowded = [
        "X-F: 1\r\n".repeat(1001).into_bytes(),
        message(
            "alice@origin.test",
            "hello@fsociety.country",
            "crowded",
            "x",
        ),
    ]
    .concat();
    c.mail_from("alice@origin.test", "250").await;
    c.rcpt_to("hello@fsociety.country", "250").await;
    let reply = c.data(&crowded, "554 5.6.0").await;
    assert!(reply.contains("header fields"), "{reply}");
    c.quit().await;

    let leftovers = std::fs::read_dir(relay.data_dir().join("incoming"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "no partial body is left behind");
    ordinary_mail_flows(&relay, &sink, 1).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_results_forged_in_the_relays_name_are_removed() {
    let dns = dns().await;
    let sink = TestSink::start().await;
    let relay = relay_with_auth(&dns, &sink, |_| {}).await;
    let mut records = std::collections::BTreeMap::new();
    let forwarding = eas_relay::rewrite::pipeline::Forwarding::new(&relay.config).unwrap();
    for (selector, txt) in forwarding.dkim_records() {
        let name = format!("{selector}._domainkey.relay.test");
        dns.add_txt(&name, &txt);
        records.insert(name, txt);
    }

    // The attacker claims the relay already found everything in order.
    let forged = [
        &b"Authentication-Results: relay.test; dkim=pass header.d=bank.example;\r\n\
           \tspf=pass smtp.mailfrom=bank.example; dmarc=pass header.from=bank.example\r\n\
           Authentication-Results: (comment) RELAY.TEST ; arc=pass\r\n\
           Authentication-Results: other.example; spf=pass smtp.mailfrom=origin.test\r\n"[..],
        &message(
            "alice@origin.test",
            "hello@fsociety.country",
            "forged",
            "trust me",
        ),
    ]
    .concat();
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("mail.origin.test").await;
    let reply = c
        .send_mail("alice@origin.test", &["hello@fsociety.country"], &forged)
        .await;
    assert!(reply.starts_with("250 "), "{reply}");
    c.quit().await;

    let got = sink.wait_for(1, WAIT).await;
    let text = got[0].text();
    let ours: Vec<&str> = text
        .split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("authentication-results:") && l.contains("relay.test")
        })
        .collect();
    assert_eq!(ours.len(), 1, "only the relay's own results:\n{text}");
    assert!(
        !text.contains("bank.example"),
        "the forged verdicts are gone:\n{text}"
    );
    assert!(
        text.contains("Authentication-Results: other.example;"),
        "other services' results stay:\n{text}"
    );
    // The relay signed what it sent (after the removal).
    let report = crate::common::pyverify::verify(&records, &got[0].data);
    for selector in ["eas-ed25519", "eas-rsa"] {
        let check = report.dkim("relay.test", selector);
        assert!(check.valid, "relay signature {selector}: {check:?}");
    }
    ordinary_mail_flows(&relay, &sink, 2).await;
    relay.stop().await;
}
