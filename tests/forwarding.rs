//! End to end on loopback: a client sends to an alias, the relay looks up
//! the destination's MX in a real DNS server and delivers to a real SMTP
//! server, which must receive exactly the original message.

mod common;

use common::dns::TestDns;
use common::relay::TestRelay;
use common::sink::TestSink;
use common::smtp::{Client, message};
use std::net::Ipv4Addr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// DNS that sends `dest.test` mail to 127.0.0.1.
async fn dns_for_dest() -> TestDns {
    let dns = TestDns::start().await;
    dns.add_mx("dest.test", 10, "mx.dest.test");
    dns.add_a("mx.dest.test", Ipv4Addr::LOCALHOST);
    dns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_forwards_the_exact_message_via_mx() {
    let dns = dns_for_dest().await;
    let sink = TestSink::start().await;
    let relay = TestRelay::start(|c| {
        c.outbound.nameservers = vec![dns.addr()];
        c.outbound.port = sink.addr.port();
        // Plain forwarding: SRS and signing off, only the trace header is added.
        c.srs.enabled = false;
        c.dkim.enabled = false;
    })
    .await;
    relay
        .alias("hello", "fsociety.country", "mr.robot@dest.test")
        .await;

    let original = message(
        "sender@example.org",
        "hello@fsociety.country",
        "hi there",
        "Body line\r\n.leading dot\r\nend",
    );
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    let reply = c
        .send_mail("sender@example.org", &["hello@fsociety.country"], &original)
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    c.quit().await;

    let got = sink.wait_for(1, WAIT).await;
    let m = &got[0];
    assert_eq!(m.mail_from, "sender@example.org");
    assert_eq!(m.rcpt_to, vec!["mr.robot@dest.test".to_string()]);
    assert_eq!(m.helo, "relay.test");
    let text = m.text();
    assert!(
        text.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby relay.test (eas-relay)"),
        "{text}"
    );
    assert!(text.contains("for <hello@fsociety.country>;"), "{text}");
    assert!(
        !text.contains("mr.robot@dest.test"),
        "the forward address must not leak into headers"
    );
    assert!(
        m.data.ends_with(&original),
        "original bytes must arrive unchanged:\n{text}"
    );
    let header_end = text.find("\r\nFrom: ").unwrap();
    assert_eq!(&m.data[header_end + 2..], &original[..]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_node_waits_for_a_command_holding_the_store() {
    let dir = tempfile::tempdir().unwrap();
    // An offline management command holds the store (redb's file lock)...
    let held = eas_relay::store::Store::open(&dir.path().join("eas-relay.redb")).unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(held);
    });
    // ...while the node starts: it waits instead of failing.
    let relay = TestRelay::start_in(dir.path(), |_| {}).await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.quit().await;
    release.await.unwrap();
    relay.stop().await;
}

/// The TXT records of the relay's DKIM keys (generated on its first start
/// in its data dir), as published at `<selector>._domainkey.<domain>`.
fn relay_key_records(relay: &TestRelay) -> Vec<(String, String)> {
    let forwarding = eas_relay::rewrite::pipeline::Forwarding::new(&relay.config).unwrap();
    forwarding
        .dkim_records()
        .into_iter()
        .map(|(selector, txt)| (format!("{selector}._domainkey.relay.test"), txt))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_mail_passes_dkim_and_arc_downstream() {
    let dns = dns_for_dest().await;
    let sink = TestSink::start().await;
    // The sender's domain: SPF for its server (the test client), a strict
    // DMARC policy, and a DKIM key; the original is signed by python-dkim.
    dns.add_txt("origin.test", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt("_dmarc.origin.test", "v=DMARC1; p=reject");
    let original = message(
        "alice@origin.test",
        "hello@fsociety.country",
        "signed at the source",
        "Hello\r\n.dot line\r\nworld",
    );
    let signature = common::pyverify::sign("origin.test", "s2026", "relaxed/simple", &original);
    dns.add_txt(&signature.name, &signature.txt);
    let signed = [signature.header.as_bytes(), &original].concat();
    let relay = TestRelay::start(|c| {
        c.outbound.nameservers = vec![dns.addr()];
        c.outbound.port = sink.addr.port();
        c.auth.enabled = true;
    })
    .await;
    relay
        .alias("hello", "fsociety.country", "mr.robot@dest.test")
        .await;
    let mut records = std::collections::BTreeMap::new();
    records.insert(signature.name.clone(), signature.txt.clone());
    for (name, txt) in relay_key_records(&relay) {
        dns.add_txt(&name, &txt);
        records.insert(name, txt);
    }

    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("mail.origin.test").await;
    c.send_mail("alice@origin.test", &["hello@fsociety.country"], &signed)
        .await;
    c.quit().await;
    let got = sink.wait_for(1, WAIT).await;
    let m = &got[0];

    // SRS: the envelope sender is ours and reverses to the original.
    assert!(
        m.mail_from.starts_with("SRS0=") && m.mail_from.ends_with("@relay.test"),
        "{}",
        m.mail_from
    );
    let srs = eas_relay::rewrite::srs::Srs::from_config(&relay.config).unwrap();
    assert_eq!(srs.reverse(&m.mail_from).unwrap(), "alice@origin.test");
    // Inbound verdicts, recorded once, by this relay.
    let text = m.text();
    let results = text
        .split("\r\n")
        .find(|l| l.starts_with("Authentication-Results: relay.test;"))
        .unwrap_or_else(|| panic!("no Authentication-Results:\n{text}"));
    let all = &text[text.find(results).unwrap()..text.find("Received: from").unwrap()];
    for verdict in ["spf=pass", "dkim=pass", "dmarc=pass"] {
        assert!(all.contains(verdict), "{verdict} missing in {all}");
    }
    // The original arrives byte for byte below the relay's headers.
    assert!(
        m.data.ends_with(&signed),
        "the original must not change:\n{text}"
    );

    // An independent verifier (python3-dkim) agrees downstream.
    let report = common::pyverify::verify(&records, &m.data);
    for selector in ["eas-ed25519", "eas-rsa"] {
        let check = report.dkim("relay.test", selector);
        assert!(check.valid, "relay signature {selector}: {check:?}");
    }
    let own = report.dkim("origin.test", "s2026");
    assert!(
        own.valid,
        "the sender's own signature must survive: {own:?}"
    );
    assert_eq!(report.arc_cv.as_deref(), Some("pass"), "{report:?}");
    assert_eq!(report.arc.len(), 1, "{report:?}");
    assert!(
        report.arc[0].ams_valid && report.arc[0].as_valid,
        "{report:?}"
    );
    assert_eq!(report.arc[0].instance, 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_return_to_the_original_sender_through_srs() {
    let dest = TestSink::start().await;
    let port = dest.addr.port();
    let origin = common::sink::TestSink::with(common::sink::SinkOptions {
        pipelining: true,
        bind: Some(std::net::SocketAddr::from(([127, 0, 0, 4], port))),
        ..Default::default()
    })
    .await;
    let dns = dns_for_dest().await;
    dns.add_mx("origin.test", 10, "mx.origin.test");
    dns.add_a("mx.origin.test", std::net::Ipv4Addr::new(127, 0, 0, 4));
    let relay = TestRelay::start(|c| {
        c.outbound.nameservers = vec![dns.addr()];
        c.outbound.port = port;
        // Sender checks are off here: DSNs to unverified senders on.
        c.queue.dsn_authenticated_only = false;
    })
    .await;
    relay
        .alias("hello", "fsociety.country", "someone@dest.test")
        .await;
    relay
        .alias("gone", "fsociety.country", "gone@dest.test")
        .await;
    dest.rule("gone@dest.test", "550 5.1.1 <gone@dest.test>: no such user");

    let msg = message(
        "alice@origin.test",
        "hello@fsociety.country",
        "to be bounced",
        "hi",
    );
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("mail.origin.test").await;
    c.send_mail("alice@origin.test", &["hello@fsociety.country"], &msg)
        .await;
    let srs_sender = dest.wait_for(1, WAIT).await[0].mail_from.clone();
    assert!(srs_sender.starts_with("SRS0="), "{srs_sender}");

    // Later, the destination bounces to the envelope sender it saw: the
    // relay takes it at the SRS address and forwards it to the original.
    c.mail_from("", "250").await;
    c.rcpt_to(&srs_sender, "250 2.1.5").await;
    // A forged or mangled SRS address is refused at RCPT.
    let forged = format!("SRS0=AAAA{}", &srs_sender[9..]);
    c.rcpt_to(&forged, "550 5.1.1").await;
    c.rcpt_to("SRS0=abcd=AB=origin.test=alice@relay.test", "550 5.1.1")
        .await;
    c.data(
        b"Subject: Undelivered Mail\r\n\r\nyour mail bounced\r\n",
        "250",
    )
    .await;
    let returned = origin.wait_for(1, WAIT).await;
    assert_eq!(returned[0].mail_from, "", "bounces keep the null sender");
    assert_eq!(returned[0].rcpt_to, vec!["alice@origin.test"]);
    assert!(returned[0].text().contains("your mail bounced"));

    // A refusal at the destination: the relay's own DSN goes to the
    // original sender (not to the SRS address), naming the alias.
    c.send_mail("alice@origin.test", &["gone@fsociety.country"], &msg)
        .await;
    c.quit().await;
    let got = origin.wait_for(2, WAIT).await;
    let dsn = &got[1];
    assert_eq!(dsn.mail_from, "");
    assert_eq!(dsn.rcpt_to, vec!["alice@origin.test"]);
    let text = dsn.text();
    assert!(
        text.contains("Final-Recipient: rfc822; gone@fsociety.country"),
        "{text}"
    );
    assert!(
        !text.contains("gone@dest.test"),
        "the forward must not leak:\n{text}"
    );
    relay.stop().await;
}
