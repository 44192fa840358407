//! Attacks content scanning defends against (issue 12): spam and malware
//! sent through the relay to be forwarded, DKIM-signed, under its name; a
//! scanner knocked out so that mail slips through unscanned or sessions
//! pile up behind it. And what must not go wrong: clean mail flows with the
//! verdict in its header, a domain's own thresholds apply, every refusal
//! is in the domain's delivery log with its score and symbols.
//!
//! rspamd and clamd are real, started by `tests/common/{rspamd,clamd}.rs`
//! on loopback with configurations made for the tests.

use crate::common::clamd::{TestClamd, eicar};
use crate::common::dns::TestDns;
use crate::common::relay::TestRelay;
use crate::common::rspamd::{RspamdOptions, TestRspamd};
use crate::common::sink::TestSink;
use crate::common::smtp::{Client, message};
use eas_relay::config::{Config, HumanDuration, ScanFailMode, SpamHeaders};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// The GTUBE test string: rspamd rejects a message holding it. Built at
/// run time so that no filter flags this source file.
fn gtube() -> String {
    [
        "XJS*C4JDBQADN1.NSBN3*2IDNEN*",
        "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X",
    ]
    .concat()
}

async fn relay(url: &str, tweak: impl FnOnce(&mut Config)) -> (TestRelay, TestSink) {
    let sink = TestSink::start().await;
    let dest = sink.addr.to_string();
    let url = url.to_string();
    let relay = TestRelay::start(move |c| {
        c.outbound.routes.insert("dest.test".into(), dest);
        c.scan.enabled = true;
        c.scan.url = url;
        c.scan.timeout = HumanDuration::parse("5s").unwrap();
        tweak(c);
    })
    .await;
    relay.alias("hello", "example.org", "op@dest.test").await;
    (relay, sink)
}

/// Sends `body` to hello@example.org; returns the reply to the end of DATA.
async fn send(relay: &TestRelay, subject: &str, body: &str, expect: &str) -> String {
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.mail_from("alice@sender.test", "250").await;
    c.rcpt_to("hello@example.org", "250").await;
    let reply = c
        .data(
            &message("alice@sender.test", "hello@example.org", subject, body),
            expect,
        )
        .await;
    c.quit().await;
    reply
}

/// A message with `file` attached under `name`.
fn with_attachment(name: &str, file: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(file);
    format!(
        "From: <alice@sender.test>\r\nTo: <hello@example.org>\r\nSubject: invoice\r\n\
         Message-ID: <eicar@client.test>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nPlease find the invoice attached.\r\n\
         --b1\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b1--\r\n"
    )
    .into_bytes()
}

/// The domain's delivery log through the admin API.
async fn logs(relay: &TestRelay) -> Vec<serde_json::Value> {
    let (status, body) = relay.api("GET", "/v3/domains/example.org/logs", None).await;
    assert_eq!(status, 200, "{body}");
    body["logs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_spammer_sending_gtube_is_refused_at_end_of_data_and_nothing_is_forwarded() {
    let rspamd = TestRspamd::start(RspamdOptions::default()).await;
    let (relay, sink) = relay(&rspamd.url(), |_| {}).await;
    let reply = send(&relay, "offer", &gtube(), "550 5.7.1").await;
    assert!(!reply.contains("rspamd"), "no internals: {reply}");
    // Ordinary mail still flows, and only it reaches the destination.
    send(&relay, "lunch", "See you at noon.", "250").await;
    let got = sink.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 1, "the spam was not forwarded");
    assert!(got[0].text().contains("Subject: lunch"));
    // The refusal is in the domain's log: status, code, score, symbols.
    let logs = logs(&relay).await;
    let refused: Vec<_> = logs
        .iter()
        .filter(|l| l["events"][0]["status"] == "REFUSED")
        .collect();
    assert_eq!(refused.len(), 1, "{logs:?}");
    let event = &refused[0]["events"][0];
    assert_eq!(event["code"], 550);
    assert_eq!(refused[0]["subject"], "offer");
    assert_eq!(event["spam"]["action"], "reject");
    assert!(event["spam"]["score"].is_number(), "{event}");
    assert!(event["spam"]["symbols"].is_string(), "{event}");
    relay.stop().await;
}

#[tokio::test]
async fn a_clean_message_is_forwarded_with_the_verdict_in_its_header() {
    let rspamd = TestRspamd::start(RspamdOptions::default()).await;
    // Sender checks on (against a DNS server of our own), so that the
    // relay writes its Authentication-Results and the verdict in it.
    let dns = TestDns::start().await;
    dns.add_txt("sender.test", "v=spf1 ip4:127.0.0.1 -all");
    let (relay, sink) = relay(&rspamd.url(), |c| {
        c.scan.headers = SpamHeaders::All;
        c.auth.enabled = true;
        c.outbound.nameservers = vec![dns.addr()];
    })
    .await;
    send(&relay, "lunch", "See you at noon.", "250").await;
    let got = sink.wait_for(1, WAIT).await;
    let text = got[0].text();
    assert!(text.contains("X-Spam-Flag: NO\r\n"), "{text}");
    assert!(text.contains("X-Spam-Action: no action\r\n"), "{text}");
    assert!(text.contains("X-Spam-Status: No, score="), "{text}");
    assert!(
        text.contains("Authentication-Results: relay.test (rspamd: no action, score="),
        "{text}"
    );
    assert!(text.contains("spf=pass"), "{text}");
    // The verdict is in the delivery log of the forwarded message too.
    let deadline = Instant::now() + WAIT;
    let delivered = loop {
        let logs = logs(&relay).await;
        if let Some(l) = logs
            .iter()
            .find(|l| l["events"][0]["status"] == "DELIVERED")
        {
            break l.clone();
        }
        assert!(Instant::now() < deadline, "no delivery logged: {logs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        delivered["events"][0]["spam"]["action"], "no action",
        "{delivered}"
    );
    // Below our Received field, above the message's own.
    let received = text.find("Received: from client.test").unwrap();
    let flag = text.find("X-Spam-Flag").unwrap();
    let from = text.find("From: <alice@sender.test>").unwrap();
    assert!(received < flag && flag < from, "{text}");
    relay.stop().await;
}

#[tokio::test]
async fn a_virus_attachment_is_refused_with_554_naming_the_virus() {
    let clamd = TestClamd::start().await;
    let rspamd = TestRspamd::start(RspamdOptions {
        clamd: Some(clamd.addr()),
    })
    .await;
    let (relay, sink) = relay(&rspamd.url(), |_| {}).await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.mail_from("alice@sender.test", "250").await;
    c.rcpt_to("hello@example.org", "250").await;
    let reply = c
        .data(&with_attachment("invoice.pdf", &eicar()), "554 5.7.1")
        .await;
    assert!(reply.contains("Eicar"), "{reply}");
    // The same attachment without the virus goes through.
    c.mail_from("alice@sender.test", "250").await;
    c.rcpt_to("hello@example.org", "250").await;
    c.data(&with_attachment("notes.txt", b"just a file\r\n"), "250")
        .await;
    c.quit().await;
    sink.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 1);
    let logs = logs(&relay).await;
    assert!(
        logs.iter()
            .any(|l| l["events"][0]["code"] == 554 && l["events"][0]["spam"]["action"] == "virus"),
        "{logs:?}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn spam_cannot_slip_through_while_the_scanner_is_down() {
    let mut rspamd = TestRspamd::start(RspamdOptions::default()).await;
    let (relay, sink) = relay(&rspamd.url(), |c| {
        c.scan.breaker_failures = 2;
        c.scan.breaker_cooldown = HumanDuration::parse("1s").unwrap();
    })
    .await;
    rspamd.stop();
    // Deferred, not accepted unscanned and not refused for good.
    send(&relay, "offer", &gtube(), "451 4.7.1").await;
    send(&relay, "lunch", "See you at noon.", "451 4.7.1").await;
    let (status, health) = relay.api("GET", "/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["scan"], "failing", "{health}");
    assert!(sink.messages().is_empty());
    // Back: after the cool-down one probe closes the circuit.
    rspamd.restart().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send(&relay, "offer", &gtube(), "550 5.7.1").await;
    send(&relay, "lunch", "See you at noon.", "250").await;
    sink.wait_for(1, WAIT).await;
    let (_, health) = relay.api("GET", "/health", None).await;
    assert_eq!(health["scan"], "ok", "{health}");
    relay.stop().await;
}

#[tokio::test]
async fn a_scanner_that_never_answers_does_not_hold_every_session() {
    // A black hole: accepts connections, reads, never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hole.accept().await {
            held.push(stream);
        }
    });
    let (relay, sink) = relay(&url, |c| {
        c.scan.timeout = HumanDuration::parse("1s").unwrap();
        c.scan.breaker_failures = 2;
        c.scan.breaker_cooldown = HumanDuration::parse("60s").unwrap();
        c.scan.fail = ScanFailMode::Accept;
    })
    .await;
    for _ in 0..2 {
        let started = Instant::now();
        send(&relay, "lunch", "See you at noon.", "250").await;
        assert!(started.elapsed() >= Duration::from_millis(900));
    }
    // The circuit is open: no more waiting for the timeout.
    let started = Instant::now();
    send(&relay, "lunch", "See you at noon.", "250").await;
    let took = started.elapsed();
    eprintln!("with the circuit open, a message took {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    // Accept mode: forwarded, marked unscanned.
    let got = sink.wait_for(3, WAIT).await;
    assert!(got.iter().all(|m| {
        m.text()
            .contains("X-Spam-Status: Unknown (content scan unavailable)")
    }),);
    relay.stop().await;
}

#[tokio::test]
async fn a_domain_threshold_changes_what_its_spam_gets() {
    let rspamd = TestRspamd::start(RspamdOptions::default()).await;
    let (relay, sink) = relay(&rspamd.url(), |_| {}).await;
    let spammy = &crate::common::rspamd::score_marker(7.0);
    // rspamd's thresholds: 7 is above "add header" (6), below "reject" (15).
    send(&relay, "one", spammy, "250").await;
    let got = sink.wait_for(1, WAIT).await;
    assert!(
        got[0].text().contains("X-Spam-Flag: YES\r\n"),
        "{}",
        got[0].text()
    );
    // The domain tightens: reject from 5.
    let (status, body) = relay
        .api(
            "PUT",
            "/v3/domains/example.org",
            Some(serde_json::json!({ "spam": { "reject": 5.0 } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["domain"]["spam"]["reject"], 5.0);
    send(&relay, "two", spammy, "550 5.7.1").await;
    // It relaxes: nothing below 20.
    let (status, _) = relay
        .api(
            "PUT",
            "/v3/domains/example.org",
            Some(serde_json::json!({ "spam": { "reject": 30.0, "add_header": 20.0 } })),
        )
        .await;
    assert_eq!(status, 200);
    send(&relay, "three", spammy, "250").await;
    let got = sink.wait_for(2, WAIT).await;
    assert!(!got[1].text().contains("X-Spam-Flag"), "{}", got[1].text());
    // A GTUBE message is refused whatever the domain says.
    send(&relay, "four", &gtube(), "550 5.7.1").await;
    // Bad thresholds are refused, naming the field.
    let (status, body) = relay
        .api(
            "PUT",
            "/v3/domains/example.org",
            Some(serde_json::json!({ "spam": { "reject": 5.0, "add_header": 9.0 } })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("spam.add_header"), "{body}");
    relay.stop().await;
}

#[tokio::test]
async fn a_sender_cannot_forge_the_spam_verdict() {
    let rspamd = TestRspamd::start(RspamdOptions::default()).await;
    let (relay, sink) = relay(&rspamd.url(), |_| {}).await;
    let marker = crate::common::rspamd::score_marker(7.0);
    let forged = format!(
        "From: <alice@sender.test>\r\nTo: <hello@example.org>\r\nSubject: deal\r\n\
         X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-5.0\r\nX-Spamd-Result: default: False\r\n\
         Message-ID: <forged@client.test>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\r\n{marker}\r\n"
    );
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.send_mail(
        "alice@sender.test",
        &["hello@example.org"],
        forged.as_bytes(),
    )
    .await;
    c.quit().await;
    let got = sink.wait_for(1, WAIT).await;
    let text = got[0].text();
    assert!(text.contains("X-Spam-Flag: YES\r\n"), "{text}");
    assert!(!text.contains("X-Spam-Flag: NO"), "{text}");
    assert!(!text.contains("score=-5.0"), "{text}");
    assert!(!text.contains("X-Spamd-Result"), "{text}");
    relay.stop().await;
}
