//! Attacks on the queue and the bounce path: a destination reply crafted to
//! crash the committer (and with it all mail, across restarts), bounces
//! aimed at forged senders (backscatter) carrying the attacker's headers,
//! and relay errors that would tell a sender where an alias forwards.

use crate::common::dns::TestDns;
use crate::common::relay::TestRelay;
use crate::common::sink::TestSink;
use crate::common::smtp::{Client, message};
use crate::outbound::wait_outcomes;
use eas_relay::config::Config;
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Routes the forwarding domain `dest.test` to `dest` and every sender
/// domain in `senders` to `bounces` (where DSNs arrive).
fn routes(c: &mut Config, dest: SocketAddr, bounces: SocketAddr, senders: &[&str]) {
    c.outbound
        .routes
        .insert("dest.test".into(), dest.to_string());
    for s in senders {
        c.outbound.routes.insert((*s).into(), bounces.to_string());
    }
}

/// Sends one message and returns the reply to its end of data.
async fn send(relay: &TestRelay, from: &str, to: &str, subject: &str, body: &str) -> String {
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    let reply = c
        .send_mail(from, &[to], &message(from, to, subject, body))
        .await;
    c.quit().await;
    reply
}

/// `/health`: (HTTP status, JSON).
async fn health(relay: &TestRelay) -> (u16, serde_json::Value) {
    crate::common::http::request(relay.http, "GET", "/health", None, None).await
}

/// Waits until the relay's queue is empty.
async fn wait_queue_empty(relay: &TestRelay) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = relay.api("GET", "/v3/queue", None).await;
        assert_eq!(status, 200, "{body}");
        if body["total"].as_u64() == Some(0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue did not drain: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the delivery log of d.country holds `n` hard bounces.
async fn wait_bounces(relay: &TestRelay, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, logs) = relay.api("GET", "/v3/domains/d.country/logs", None).await;
        assert_eq!(status, 200, "{logs}");
        let bounced = logs["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["events"][0]["status"] == "HARD-BOUNCE")
            .count();
        if bounced >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} bounces: {logs:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ordinary mail to `ok@d.country` reaches the destination, and `/health`
/// says all is well.
async fn mail_still_flows(relay: &TestRelay, dest: &TestSink, subject: &str) {
    let before = dest.messages().len();
    let reply = send(relay, "friend@example.org", "ok@d.country", subject, "hi").await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = dest.wait_for(before + 1, WAIT).await;
    assert!(
        got.iter()
            .any(|m| m.text().contains(&format!("Subject: {subject}"))),
        "{got:#?}"
    );
    let (status, body) = health(relay).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["components"]["committer"], "ok", "{body}");
    assert_eq!(body["components"]["scheduler"], "ok", "{body}");
}

// ------------------------------------------------------- hostile replies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kelvin_sign_in_reply_does_not_stop_the_queue() {
    let dest = TestSink::start().await;
    let bounces = TestSink::start().await;
    let data = tempfile::tempdir().unwrap();
    let (d, b) = (dest.addr, bounces.addr);
    let tweak = move |c: &mut Config| {
        routes(c, d, b, &["example.org"]);
        // Sender checks are off in this test: DSNs go to any sender.
        c.queue.dsn_authenticated_only = false;
    };
    let relay = TestRelay::start_in(data.path(), tweak).await;
    relay
        .alias("victim", "d.country", "Kelvin.Victim@dest.test")
        .await;
    relay.alias("ok", "d.country", "ok@dest.test").await;
    // U+212A KELVIN SIGN (3 bytes) lower-cases to the one-byte 'k': offsets
    // found in the lower-cased text fall inside a character of the original
    // (two of them put the address's offset inside the second one).
    dest.rule(
        "Victim",
        "550 5.1.1 \u{212A}\u{212A} <kelvin.victim@DEST.test>: no such user",
    );

    let reply = send(
        &relay,
        "sender@example.org",
        "victim@d.country",
        "kelvin",
        "x",
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    // The bounce is built and sent: the committer survived the reply.
    let dsn = bounces.wait_for(1, WAIT).await;
    let text = dsn[0].text();
    assert!(
        text.contains("Final-Recipient: rfc822; victim@d.country"),
        "{text}"
    );
    assert!(text.contains("<victim@d.country>: no such user"), "{text}");
    assert!(
        !text.to_lowercase().contains("kelvin.victim@dest.test"),
        "the DSN names the forward:\n{text}"
    );
    mail_still_flows(&relay, &dest, "after the attack").await;
    wait_queue_empty(&relay).await;
    relay.stop().await;

    // Nothing poisoned is left for the next start.
    let relay = TestRelay::start_in(data.path(), tweak).await;
    mail_still_flows(&relay, &dest, "after a restart").await;
    relay.stop().await;
}

// ---------------------------------------------------------- backscatter

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sender_gets_no_dsn() {
    let dest = TestSink::start().await;
    let bounces = TestSink::start().await;
    let dns = TestDns::start().await;
    // The attacker forges a sender whose SPF does not allow the client;
    // a genuine sender's SPF allows it.
    dns.add_txt("forged.example", "v=spf1 ip4:192.0.2.1 -all");
    dns.add_txt("genuine.example", "v=spf1 ip4:127.0.0.1 -all");
    let (d, b, dns_addr) = (dest.addr, bounces.addr, dns.addr());
    let relay = TestRelay::start(move |c| {
        routes(
            c,
            d,
            b,
            &["forged.example", "genuine.example", "example.org"],
        );
        c.auth.enabled = true;
        c.outbound.nameservers = vec![dns_addr];
        // queue.dsn_authenticated_only: the default (true).
    })
    .await;
    relay.alias("gone", "d.country", "gone@dest.test").await;
    relay.alias("ok", "d.country", "ok@dest.test").await;
    dest.rule("gone@", "550 5.1.1 no such user");

    let reply = send(
        &relay,
        "victim@forged.example",
        "gone@d.country",
        "spam",
        "x",
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let reply = send(
        &relay,
        "alice@genuine.example",
        "gone@d.country",
        "real",
        "x",
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    wait_bounces(&relay, 2).await;
    // The genuine sender hears of the failure...
    let dsn = bounces.wait_for(1, WAIT).await;
    assert_eq!(dsn[0].rcpt_to, vec!["alice@genuine.example"]);
    wait_queue_empty(&relay).await;
    // ...the forged one never does.
    let got = bounces.messages();
    assert_eq!(got.len(), 1, "a DSN went to a forged sender: {got:#?}");
    let (_, metrics) = crate::common::http::raw(relay.http, "GET", "/metrics", None, "").await;
    let withheld = metrics
        .lines()
        .find(|l| l.starts_with("eas_dsn_withheld_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(withheld >= 1.0, "{metrics}");

    mail_still_flows(&relay, &dest, "after the backscatter attempt").await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounce_reflects_at_most_4kib_of_the_attackers_headers() {
    let dest = TestSink::start().await;
    let bounces = TestSink::start().await;
    let (d, b) = (dest.addr, bounces.addr);
    let relay = TestRelay::start(move |c| {
        routes(c, d, b, &["example.org"]);
        c.queue.dsn_authenticated_only = false;
    })
    .await;
    relay.alias("gone", "d.country", "gone@dest.test").await;
    relay.alias("ok", "d.country", "ok@dest.test").await;
    dest.rule("gone@", "550 5.1.1 no such user");

    // 60 KiB of headers for the relay to reflect at the "sender".
    let mut msg = String::from("From: <sender@example.org>\r\nSubject: reflect me\r\n");
    for i in 0..600 {
        msg.push_str(&format!("X-Payload-{i:03}: {}\r\n", "p".repeat(90)));
    }
    msg.push_str("\r\nbody\r\n");
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    let reply = c
        .send_mail("sender@example.org", &["gone@d.country"], msg.as_bytes())
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    c.quit().await;

    let dsn = bounces.wait_for(1, WAIT).await;
    let text = dsn[0].text();
    assert!(text.len() < 8 * 1024, "DSN of {} bytes", text.len());
    let attached = text
        .split("Content-Type: text/rfc822-headers\r\n\r\n")
        .nth(1)
        .unwrap_or_default();
    let attached = attached.split("\r\n--").next().unwrap_or_default();
    assert!(attached.len() <= 4096, "{} bytes attached", attached.len());
    assert!(attached.contains("Subject: reflect me"), "{text}");
    // Cut at a field boundary: every attached payload field is whole.
    for line in attached.lines().filter(|l| l.starts_with("X-Payload")) {
        assert_eq!(line.len(), "X-Payload-000: ".len() + 90, "{line}");
    }
    mail_still_flows(&relay, &dest, "after the reflection attempt").await;
    relay.stop().await;
}

// ------------------------------------------------ where an alias forwards

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_errors_do_not_tell_the_sender_where_an_alias_forwards() {
    let dest = TestSink::start().await;
    let bounces = TestSink::start().await;
    let dns = TestDns::start().await;
    dns.null_mx("private-nullmx.test");
    // private-gone.test: NXDOMAIN
    let (d, b, dns_addr) = (dest.addr, bounces.addr, dns.addr());
    let relay = TestRelay::start(move |c| {
        routes(c, d, b, &["example.org"]);
        c.outbound.nameservers = vec![dns_addr];
        c.queue.dsn_authenticated_only = false;
    })
    .await;
    relay
        .alias("null", "d.country", "owner@private-nullmx.test")
        .await;
    relay
        .alias("gone", "d.country", "owner@private-gone.test")
        .await;
    relay.alias("ok", "d.country", "ok@dest.test").await;

    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    let to = ["null@d.country", "gone@d.country"];
    let reply = c
        .send_mail(
            "probe@example.org",
            &to,
            &message("probe@example.org", to[0], "where", "x"),
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    c.quit().await;

    let logged = wait_outcomes(&relay, "d.country", &to, "HARD-BOUNCE").await;
    let dsn = bounces.wait_for(1, WAIT).await;
    let text = dsn[0].text();
    assert!(text.contains("Status: 5.1.10"), "{text}");
    assert!(text.contains("Status: 5.1.2"), "{text}");
    assert!(text.contains("the destination"), "{text}");
    let log_text: Vec<String> = logged
        .values()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    for secret in ["private-nullmx", "private-gone", "owner@"] {
        assert!(!text.contains(secret), "the DSN names {secret}:\n{text}");
        for message in &log_text {
            assert!(
                !message.contains(secret),
                "the log names {secret}: {message}"
            );
        }
    }
    mail_still_flows(&relay, &dest, "after the probe").await;
    relay.stop().await;
}
