//! Attacks on SMTP slots: a session kept alive forever with NOOPs or
//! drip-fed commands, and one client network taking every slot so that no
//! other sender gets in.

use crate::common::relay::TestRelay;
use crate::common::sink::TestSink;
use crate::common::smtp::{Client, message};
use eas_relay::config::HumanDuration;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

async fn relay_with_hello(tweak: impl FnOnce(&mut eas_relay::Config)) -> (TestRelay, TestSink) {
    let sink = TestSink::start().await;
    let dest = sink.addr.to_string();
    let relay = TestRelay::start(|c| {
        c.outbound.routes.insert("dest.test".into(), dest);
        tweak(c);
    })
    .await;
    relay.alias("hello", "example.org", "op@dest.test").await;
    (relay, sink)
}

/// Ordinary mail from `source` still arrives at `hello@example.org`.
async fn ordinary_mail_flows_from(relay: &TestRelay, sink: &TestSink, source: &str) {
    let before = sink.messages().len();
    let (mut c, greeting) = Client::connect_from(relay.smtp, source.parse().unwrap()).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    c.ehlo("client.test").await;
    c.send_mail(
        "alice@sender.test",
        &["hello@example.org"],
        &message("alice@sender.test", "hello@example.org", "ordinary", "hi"),
    )
    .await;
    c.quit().await;
    let got = sink.wait_for(before + 1, WAIT).await;
    assert_eq!(got[before].rcpt_to, vec!["op@dest.test".to_string()]);
}

#[tokio::test]
async fn noop_forever_is_closed() {
    let (relay, sink) = relay_with_hello(|_| {}).await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await; // counts: HELO/EHLO make no progress
    let max = relay.config.smtp.max_junk_commands;
    assert_eq!(max, 50, "the default");
    for i in 1..max {
        let verb = ["NOOP", "RSET", "VRFY postmaster", "HELP"][i % 4];
        let reply = c.cmd(verb, "2").await;
        assert!(!reply.starts_with("421"), "{verb}: {reply}");
    }
    c.cmd("NOOP", "421 4.7.0").await;
    assert_eq!(c.line().await, None, "the session is closed");

    // An accepted message is progress: a client that sends mail between its
    // NOOPs is never cut off.
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    for round in 0..3 {
        for _ in 0..max - 1 {
            c.cmd("NOOP", "250").await;
        }
        c.send_mail(
            "alice@sender.test",
            &["hello@example.org"],
            &message(
                "alice@sender.test",
                "hello@example.org",
                "busy",
                &format!("{round}"),
            ),
        )
        .await;
    }
    c.quit().await;
    sink.wait_for(3, WAIT).await;
    ordinary_mail_flows_from(&relay, &sink, "127.0.0.1").await;
}

#[tokio::test]
async fn a_session_cannot_outlive_its_time_limit() {
    let (relay, sink) = relay_with_hello(|c| {
        c.smtp.max_session_time = HumanDuration::parse("2s").unwrap();
    })
    .await;
    let mut c = Client::connect(relay.smtp).await;
    let started = Instant::now();
    c.ehlo("client.test").await;
    c.mail_from("alice@sender.test", "250").await;
    // Always in time for the command timeout, never done: drip-fed
    // recipients, then a message body one line at a time.
    c.rcpt_to("hello@example.org", "250").await;
    c.cmd("DATA", "354").await;
    let mut reply = None;
    for _ in 0..60 {
        c.send_raw(b"X-Drip: one more line\r\n").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(2) {
            reply = Some(c.reply().await);
            break;
        }
    }
    let reply = reply.expect("the limit ended the session");
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(c.line().await, None, "the session is closed");
    assert_eq!(sink.messages().len(), 0, "nothing half-sent was queued");
    ordinary_mail_flows_from(&relay, &sink, "127.0.0.1").await;
}

#[tokio::test]
async fn one_network_cannot_take_all_slots() {
    let (relay, sink) = relay_with_hello(|c| {
        c.smtp.max_connections = 10;
        // The per-network cap alone would let this network in everywhere:
        // the reserve keeps the last 2 slots for networks holding none.
        c.smtp.max_connections_per_network = 10;
        c.smtp.reserved_percent = 20;
    })
    .await;
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        let (c, greeting) = Client::connect_from(relay.smtp, attacker).await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        held.push(c);
    }
    let (_, refused) = Client::connect_from(relay.smtp, attacker).await;
    assert!(refused.starts_with("421 4.7.0"), "{refused}");
    // Another network still gets in, and its mail flows, while the
    // attacker holds everything it may.
    ordinary_mail_flows_from(&relay, &sink, "127.0.0.2").await;
    let (other, greeting) = Client::connect_from(relay.smtp, "127.0.0.3".parse().unwrap()).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    drop(other);
    drop(held);
    // Slots come back when the attacker leaves.
    let deadline = Instant::now() + WAIT;
    loop {
        let (c, greeting) = Client::connect_from(relay.smtp, attacker).await;
        if greeting.starts_with("220 ") {
            drop(c);
            break;
        }
        assert!(Instant::now() < deadline, "slots never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ordinary_mail_flows_from(&relay, &sink, "127.0.0.1").await;
}

#[tokio::test]
async fn never_reading_replies_does_not_outlive_the_session_limit() {
    let (relay, sink) = relay_with_hello(|c| {
        c.smtp.max_session_time = HumanDuration::parse("2s").unwrap();
        c.smtp.command_timeout = HumanDuration::parse("120s").unwrap();
        c.smtp.max_connections_per_network = 1;
    })
    .await;
    let attacker: IpAddr = "127.0.0.3".parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(std::net::SocketAddr::new(attacker, 0)).unwrap();
    let mut stream = socket.connect(relay.smtp).await.unwrap();
    let started = Instant::now();
    // Pipelined recipients past max_recipients each get a 452, which is no
    // client error: replies pile up in a socket nobody reads, and the
    // relay's writes block.
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stream
            .write_all(b"EHLO client.test\r\nMAIL FROM:<alice@sender.test>\r\n")
            .await;
        let chunk = b"RCPT TO:<hello@example.org>\r\n".repeat(1000);
        while stream.write_all(&chunk).await.is_ok() {}
        stream // kept open (and never read) until the relay closes it
    });
    // The network's only seat comes back when the session ends.
    let deadline = started + Duration::from_secs(30);
    loop {
        let (c, greeting) = Client::connect_from(relay.smtp, attacker).await;
        if greeting.starts_with("220 ") {
            drop(c);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session outlived its 2 s limit by far"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    writer.abort();
    ordinary_mail_flows_from(&relay, &sink, "127.0.0.3").await;
}
