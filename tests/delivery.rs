//! Outbound delivery and the queue, end to end on loopback: MX preference
//! and failover, implicit and null MX, retries with backoff, bounces with
//! DSNs to the sender (naming the alias, never the forward), expiry,
//! connection reuse, STARTTLS policy, the delivery log and metrics.

mod common;

use common::dns::TestDns;
use common::relay::TestRelay;
use common::sink::{SinkOptions, TestSink};
use common::smtp::{Client, message};
use eas_relay::config::{Config, HumanDuration, TlsPolicy};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// A sink on `ip` at the same port as `like` (MX hosts share one port).
async fn sink_at(ip: [u8; 4], port: u16) -> TestSink {
    TestSink::with(SinkOptions {
        pipelining: true,
        bind: Some(SocketAddr::from((ip, port))),
        ..SinkOptions::default()
    })
    .await
}

/// Relay using `dns`, MX port `port`, and a route for the senders' domain
/// `example.org` to `bounces` (where DSNs arrive).
async fn relay(
    dns: &TestDns,
    port: u16,
    bounces: Option<&TestSink>,
    tweak: impl FnOnce(&mut Config),
) -> TestRelay {
    let dns_addr = dns.addr();
    let bounce_addr = bounces.map(|b| b.addr);
    TestRelay::start(move |c| {
        c.outbound.nameservers = vec![dns_addr];
        c.outbound.port = port;
        if let Some(b) = bounce_addr {
            c.outbound
                .routes
                .insert("example.org".into(), b.to_string());
        }
        tweak(c);
    })
    .await
}

async fn send(relay: &TestRelay, from: &str, to: &[&str], subject: &str) -> String {
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    let msg = message(from, to[0], subject, "hello");
    let reply = c.send_mail(from, to, &msg).await;
    c.quit().await;
    reply
}

async fn queue_len(relay: &TestRelay) -> usize {
    let (status, body) = relay.api("GET", "/v3/queue", None).await;
    assert_eq!(status, 200, "{body}");
    body["total"].as_u64().unwrap() as usize
}

async fn wait_queue_empty(relay: &TestRelay) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while queue_len(relay).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue did not drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_preference_order_then_failover() {
    let primary = TestSink::start().await; // 127.0.0.1
    let port = primary.addr.port();
    let backup = sink_at([127, 0, 0, 2], port).await;
    let dns = TestDns::start().await;
    // Added out of order: the relay must sort by preference.
    dns.add_mx("dest.test", 20, "mx2.dest.test");
    dns.add_mx("dest.test", 10, "mx1.dest.test");
    dns.add_a("mx1.dest.test", Ipv4Addr::LOCALHOST);
    dns.add_a("mx2.dest.test", Ipv4Addr::new(127, 0, 0, 2));
    let relay = relay(&dns, port, None, |_| {}).await;
    relay.alias("a", "d.country", "u@dest.test").await;

    send(&relay, "s@example.org", &["a@d.country"], "first").await;
    let got = primary.wait_for(1, WAIT).await;
    assert_eq!(got[0].rcpt_to, vec!["u@dest.test"]);
    assert!(
        backup.messages().is_empty(),
        "the lower preference must be tried first"
    );

    primary.stop(); // MX 10 now refuses connections
    send(&relay, "s@example.org", &["a@d.country"], "second").await;
    let got = backup.wait_for(1, WAIT).await;
    assert!(got[0].text().contains("Subject: second"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_mx_and_fanout_to_several_domains() {
    let sink_a = TestSink::start().await;
    let port = sink_a.addr.port();
    let sink_b = sink_at([127, 0, 0, 3], port).await;
    let dns = TestDns::start().await;
    // one.test has no MX: its A record is the implicit MX (RFC 5321 §5.1)
    dns.add_a("one.test", Ipv4Addr::LOCALHOST);
    dns.add_mx("two.test", 5, "mx.two.test");
    dns.add_a("mx.two.test", Ipv4Addr::new(127, 0, 0, 3));
    let relay = relay(&dns, port, None, |_| {}).await;
    relay
        .alias("team", "d.country", "x@one.test, y@one.test, z@two.test")
        .await;

    send(&relay, "s@example.org", &["team@d.country"], "fanout").await;
    let a = sink_a.wait_for(1, WAIT).await;
    let b = sink_b.wait_for(1, WAIT).await;
    let mut rcpts_a = a[0].rcpt_to.clone();
    rcpts_a.sort();
    assert_eq!(
        rcpts_a,
        vec!["x@one.test", "y@one.test"],
        "one transaction per domain"
    );
    assert_eq!(b[0].rcpt_to, vec!["z@two.test"]);
    assert_eq!(
        a[0].data, b[0].data,
        "every destination gets the same bytes"
    );
    wait_queue_empty(&relay).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_bounce_to_the_sender_naming_the_alias() {
    let dest = TestSink::start().await;
    let bounces = TestSink::start().await;
    let dns = TestDns::start().await;
    dns.add_mx("dest.test", 10, "mx.dest.test");
    dns.add_a("mx.dest.test", Ipv4Addr::LOCALHOST);
    dns.null_mx("nullmx.test");
    // gone.test: NXDOMAIN
    // Sender checks are off in these tests: DSNs to unverified senders on.
    let relay = relay(&dns, dest.addr.port(), Some(&bounces), |c| {
        c.queue.dsn_authenticated_only = false;
    })
    .await;
    relay
        .alias("one", "d.country", "unknown.user@dest.test")
        .await;
    relay.alias("two", "d.country", "ok@dest.test").await;
    relay
        .alias("three", "d.country", "someone@nullmx.test")
        .await;
    relay.alias("four", "d.country", "someone@gone.test").await;
    dest.rule(
        "unknown.user",
        "550 5.1.1 <unknown.user@dest.test>: no such user here",
    );

    send(
        &relay,
        "sender@example.org",
        &[
            "one@d.country",
            "two@d.country",
            "three@d.country",
            "four@d.country",
        ],
        "mixed fate",
    )
    .await;
    let delivered = dest.wait_for(1, WAIT).await;
    assert_eq!(
        delivered[0].rcpt_to,
        vec!["ok@dest.test"],
        "the good recipient is delivered"
    );

    let dsn = bounces.wait_for(1, WAIT).await;
    let dsn = &dsn[0];
    assert_eq!(dsn.mail_from, "", "DSNs use the null sender");
    assert_eq!(dsn.rcpt_to, vec!["sender@example.org"]);
    let text = dsn.text();
    assert!(
        text.contains("multipart/report; report-type=delivery-status"),
        "{text}"
    );
    for (alias, status) in [
        ("one@d.country", "5.1.1"),
        ("three@d.country", "5.1.10"),
        ("four@d.country", "5.1.2"),
    ] {
        assert!(
            text.contains(&format!("Final-Recipient: rfc822; {alias}")),
            "{alias} missing:\n{text}"
        );
        assert!(
            text.contains(&format!("Status: {status}")),
            "{status} missing:\n{text}"
        );
    }
    assert!(
        !text.contains("two@d.country"),
        "delivered recipients are not reported"
    );
    for secret in [
        "unknown.user@dest.test",
        "someone@nullmx.test",
        "someone@gone.test",
    ] {
        assert!(
            !text.contains(secret),
            "DSN leaks the forward {secret}:\n{text}"
        );
    }
    assert!(
        text.contains("Subject: mixed fate"),
        "the original headers are attached"
    );
    wait_queue_empty(&relay).await;

    // The delivery log shows each outcome under the alias domain.
    let (status, logs) = relay.api("GET", "/v3/domains/d.country/logs", None).await;
    assert_eq!(status, 200);
    let statuses: Vec<(String, String)> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["recipient"]["email"].as_str().unwrap().to_string(),
                l["events"][0]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("two@d.country".into(), "DELIVERED".into())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("one@d.country".into(), "HARD-BOUNCE".into())),
        "{statuses:?}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_failures_retry_until_delivered() {
    let dest = TestSink::start().await;
    let dns = TestDns::start().await;
    dns.add_mx("dest.test", 10, "mx.dest.test");
    dns.add_a("mx.dest.test", Ipv4Addr::LOCALHOST);
    dns.servfail("flaky.test");
    let relay = relay(&dns, dest.addr.port(), None, |_| {}).await;
    relay.alias("grey", "d.country", "u@dest.test").await;
    relay.alias("dnsfail", "d.country", "v@flaky.test").await;
    dest.rule("u@dest.test", "451 4.7.1 greylisted, try again");

    send(
        &relay,
        "s@example.org",
        &["grey@d.country", "dnsfail@d.country"],
        "later",
    )
    .await;
    // Both recipients are deferred and stay queued with their reason.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, q) = relay.api("GET", "/v3/queue", None).await;
        let rcpts = q["queue"][0]["recipients"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let replies: Vec<String> = rcpts
            .iter()
            .filter_map(|r| r["last_reply"].as_str().map(str::to_string))
            .collect();
        if replies.len() == 2 {
            assert!(
                replies.iter().any(|r| r.starts_with("451 4.7.1")),
                "{replies:?}"
            );
            assert!(replies.iter().any(|r| r.contains("4.4.3")), "{replies:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deferral recorded: {q}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dest.messages().is_empty());
    // The destinations recover; the next retries deliver.
    dest.clear_rules();
    dns.clear("flaky.test");
    dns.add_mx("flaky.test", 10, "mx.dest.test");
    let got = dest.wait_for(2, WAIT).await;
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, vec!["u@dest.test", "v@flaky.test"]);
    wait_queue_empty(&relay).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_mail_expires_with_a_dsn() {
    let dest = TestSink::start().await;
    let bounces = TestSink::start().await;
    let dns = TestDns::start().await;
    dns.add_mx("dest.test", 10, "mx.dest.test");
    dns.add_a("mx.dest.test", Ipv4Addr::LOCALHOST);
    let relay = relay(&dns, dest.addr.port(), Some(&bounces), |c| {
        c.queue.max_age = HumanDuration::parse("1s").unwrap();
        // Sender checks are off in these tests: DSNs to unverified senders on.
        c.queue.dsn_authenticated_only = false;
    })
    .await;
    relay.alias("a", "d.country", "u@dest.test").await;
    dest.rule("u@dest.test", "452 4.2.2 mailbox full");

    send(&relay, "sender@example.org", &["a@d.country"], "too late").await;
    let dsn = bounces.wait_for(1, WAIT).await;
    let text = dsn[0].text();
    assert!(text.contains("Status: 4.4.7"), "{text}");
    assert!(text.contains("delivery time expired"), "{text}");
    assert!(text.contains("452 4.2.2 mailbox full"), "{text}");
    assert!(dest.messages().is_empty());
    wait_queue_empty(&relay).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bounce_for_the_null_sender() {
    let dest = TestSink::start().await;
    let bounces = TestSink::start().await;
    let dns = TestDns::start().await;
    dns.add_mx("dest.test", 10, "mx.dest.test");
    dns.add_a("mx.dest.test", Ipv4Addr::LOCALHOST);
    let relay = relay(&dns, dest.addr.port(), Some(&bounces), |_| {}).await;
    relay.alias("a", "d.country", "gone@dest.test").await;
    relay.alias("b", "d.country", "ok@dest.test").await;
    dest.rule("gone@dest.test", "550 5.1.1 no such user");

    // A bounce arriving from elsewhere (null sender) that fails again...
    send(&relay, "", &["a@d.country"], "bounce of a bounce").await;
    // ...and a later normal message to the same sink, as a marker.
    send(&relay, "s@example.org", &["b@d.country"], "marker").await;
    dest.wait_for(1, WAIT).await;
    wait_queue_empty(&relay).await;
    assert!(
        bounces.messages().is_empty(),
        "no DSN may go to the null sender"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_and_tls_is_used_when_offered() {
    let dest = TestSink::with(SinkOptions {
        pipelining: true,
        starttls: true,
        ..SinkOptions::default()
    })
    .await;
    let dns = TestDns::start().await;
    dns.add_mx("dest.test", 10, "mx.dest.test");
    dns.add_a("mx.dest.test", Ipv4Addr::LOCALHOST);
    let relay = relay(&dns, dest.addr.port(), None, |_| {}).await;
    relay.alias("a", "d.country", "u@dest.test").await;

    for i in 0..5 {
        send(&relay, "s@example.org", &["a@d.country"], &format!("n{i}")).await;
        dest.wait_for(i + 1, WAIT).await;
    }
    let got = dest.messages();
    assert!(got.iter().all(|m| m.tls), "STARTTLS is used when offered");
    assert_eq!(
        dest.connections(),
        1,
        "one connection carries all five messages"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_never_sends_in_plain_text() {
    let dest = TestSink::start().await; // no STARTTLS
    let dns = TestDns::start().await;
    dns.add_mx("dest.test", 10, "mx.dest.test");
    dns.add_a("mx.dest.test", Ipv4Addr::LOCALHOST);
    let relay = relay(&dns, dest.addr.port(), None, |c| {
        c.outbound.tls = TlsPolicy::Required
    })
    .await;
    relay.alias("a", "d.country", "u@dest.test").await;

    send(&relay, "s@example.org", &["a@d.country"], "secret").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, q) = relay.api("GET", "/v3/queue", None).await;
        if let Some(reply) = q["queue"][0]["recipients"][0]["last_reply"].as_str() {
            assert!(reply.contains("4.7.4") && reply.contains("TLS"), "{reply}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no deferral: {q}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        dest.messages().is_empty(),
        "nothing may be sent without TLS"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_mail_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let route = |c: &mut Config| {
        c.outbound
            .routes
            .insert("dest.test".into(), closed.to_string());
    };
    let first = TestRelay::start_in(dir.path(), route).await;
    first.alias("a", "d.country", "u@dest.test").await;
    for i in 0..3 {
        send(
            &first,
            "s@example.org",
            &["a@d.country"],
            &format!("kept {i}"),
        )
        .await;
    }
    assert_eq!(queue_len(&first).await, 3);
    first.stop().await;

    let dest = TestSink::with(SinkOptions {
        pipelining: true,
        bind: Some(closed),
        ..SinkOptions::default()
    })
    .await;
    let second = TestRelay::start_in(dir.path(), route).await;
    let got = dest.wait_for(3, WAIT).await;
    let mut subjects: Vec<bool> = (0..3)
        .map(|i| {
            got.iter()
                .any(|m| m.text().contains(&format!("Subject: kept {i}")))
        })
        .collect();
    subjects.dedup();
    assert_eq!(subjects, vec![true]);
    wait_queue_empty(&second).await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    let dest = TestSink::start().await;
    let dns = TestDns::start().await;
    let relay = relay(&dns, dest.addr.port(), None, |c| {
        c.outbound
            .routes
            .insert("dest.test".into(), dest.addr.to_string());
    })
    .await;
    relay.alias("a", "d.country", "u@dest.test").await;
    send(&relay, "s@example.org", &["a@d.country"], "counted").await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.mail_from("s@example.org", "250").await;
    c.rcpt_to("nobody@d.country", "550 5.1.1").await;
    c.quit().await;
    dest.wait_for(1, WAIT).await;
    wait_queue_empty(&relay).await;

    let (status, text) = common::http::raw(relay.http, "GET", "/metrics", None, "").await;
    assert_eq!(status, 200);
    for metric in [
        "eas_smtp_connections_total",
        "eas_messages_accepted_total",
        "eas_messages_rejected_total{reason=\"unknown_user\"}",
        "eas_deliveries_total{outcome=\"delivered\"}",
        "eas_delivery_latency_seconds_count",
        "eas_queue_depth",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(metric))
            .unwrap_or_else(|| panic!("{metric} missing:\n{text}"));
        if !metric.contains("depth") {
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(value >= 1.0, "{line}");
        }
    }
    relay.stop().await;
}
