//! Attacks a connection screen defends against (Postfix postscreen's
//! model): a client on DNS blocklists sending spam through the relay, a bot
//! that talks before the greeting, a bulk sender that pipelines commands
//! before EHLO; and what must not go wrong: lists that fail or never answer
//! do not stop mail, allowlisted and known clients are not delayed, a
//! cached verdict spares the lists.
//!
//! The DNS lists are the in-process server of `tests/common/dns.rs`; other
//! loopback addresses (127.0.0.2, …) stand for other clients.

use crate::common::dns::TestDns;
use crate::common::relay::TestRelay;
use crate::common::sink::TestSink;
use crate::common::smtp::{Client, message};
use eas_relay::config::{Config, HumanDuration};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);
/// The greeting delay of the tests that measure it.
const DELAY: Duration = Duration::from_millis(1500);

async fn relay(dns: SocketAddr, tweak: impl FnOnce(&mut Config)) -> (TestRelay, TestSink) {
    let sink = TestSink::start().await;
    let dest = sink.addr.to_string();
    let relay = TestRelay::start(|c| {
        c.outbound.routes.insert("dest.test".into(), dest);
        c.outbound.nameservers = vec![dns];
        c.screen.enabled = true;
        c.screen.greet_delay = HumanDuration::parse("0s").unwrap();
        tweak(c);
    })
    .await;
    relay.alias("hello", "example.org", "op@dest.test").await;
    (relay, sink)
}

/// Connects from `source`; returns the client and its first reply.
async fn connect(relay: &TestRelay, source: &str) -> (Client, String) {
    Client::connect_from(relay.smtp, source.parse().unwrap()).await
}

/// A whole message from `source` reaches the destination.
async fn mail_flows_from(relay: &TestRelay, sink: &TestSink, source: &str) {
    let before = sink.messages().len();
    let (mut c, greeting) = connect(relay, source).await;
    assert!(greeting.ends_with("ESMTP eas-relay"), "{greeting}");
    assert!(
        greeting.lines().last().unwrap().starts_with("220 "),
        "{greeting}"
    );
    c.ehlo("client.test").await;
    c.send_mail(
        "alice@sender.test",
        &["hello@example.org"],
        &message("alice@sender.test", "hello@example.org", "screened", "hi"),
    )
    .await;
    c.quit().await;
    let got = sink.wait_for(before + 1, WAIT).await;
    assert_eq!(got[before].rcpt_to, vec!["op@dest.test".to_string()]);
}

/// How long the whole greeting of a client from `source` takes.
async fn greeting_time(relay: &TestRelay, source: &str) -> (Duration, String) {
    let started = Instant::now();
    let (c, greeting) = connect(relay, source).await;
    let took = started.elapsed();
    eprintln!("greeting of {source}: {took:?}");
    c.quit().await;
    (took, greeting)
}

fn counter(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_blocklisted_client_is_refused_at_connect_with_the_list_named() {
    let dns = TestDns::start().await;
    dns.add_a("2.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2));
    dns.add_a("2.0.0.127.other.test", Ipv4Addr::new(127, 0, 0, 4));
    let (relay, sink) = relay(dns.addr(), |c| {
        c.screen.dnsbl = vec!["bl.test*2".into(), "other.test".into(), "quiet.test".into()];
    })
    .await;

    let (mut c, first) = connect(&relay, "127.0.0.2").await;
    assert_eq!(
        first,
        "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test, other.test"
    );
    assert_eq!(c.line().await, None, "closed at once");

    let (_, metrics) = crate::common::http::raw(relay.http, "GET", "/metrics", None, "").await;
    let blocked = r#"eas_screen_decisions_total{decision="blocked"}"#;
    assert!(counter(&metrics, blocked) >= 1.0, "{metrics}");
    assert!(
        counter(&metrics, r#"eas_screen_listings_total{list="bl.test"}"#) >= 1.0,
        "{metrics}"
    );

    // A client on no list sends mail as before.
    mail_flows_from(&relay, &sink, "127.0.0.1").await;
    assert_eq!(sink.messages().len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn a_client_whose_listings_weigh_less_than_the_threshold_is_let_in() {
    let dns = TestDns::start().await;
    dns.add_a("3.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2));
    dns.add_a("3.0.0.127.other.test", Ipv4Addr::new(127, 0, 0, 2));
    // A reply outside the filter is no listing.
    dns.add_a("3.0.0.127.filtered.test", Ipv4Addr::new(127, 0, 0, 9));
    let (relay, sink) = relay(dns.addr(), |c| {
        c.screen.dnsbl = vec![
            "bl.test".into(),
            "other.test".into(),
            "filtered.test=127.0.0.[2..4]*5".into(),
        ];
        c.screen.threshold = 3;
    })
    .await;
    mail_flows_from(&relay, &sink, "127.0.0.3").await;

    // The same listings with a third one reach it.
    dns.add_a("4.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2));
    dns.add_a("4.0.0.127.filtered.test", Ipv4Addr::new(127, 0, 0, 3));
    let (_, first) = connect(&relay, "127.0.0.4").await;
    assert!(first.starts_with("554 5.7.1 "), "{first}");
    assert!(
        first.ends_with("blocked using bl.test, filtered.test"),
        "{first}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn an_allowlisted_client_skips_the_greeting_delay() {
    let dns = TestDns::start().await;
    dns.add_a("5.0.0.127.wl.test", Ipv4Addr::new(127, 0, 10, 2));
    // Listed, but with an answer the filter does not take.
    dns.add_a("6.0.0.127.wl.test", Ipv4Addr::new(127, 0, 10, 9));
    let (relay, sink) = relay(dns.addr(), |c| {
        c.screen.dnsbl = vec!["wl.test=127.0.[0..255].[1..3]*-5".into()];
        c.screen.greet_delay = HumanDuration::new(DELAY);
    })
    .await;

    let (took, greeting) = greeting_time(&relay, "127.0.0.5").await;
    assert!(took < DELAY / 2, "allowlisted, yet greeted after {took:?}");
    assert!(greeting.starts_with("220 "), "one line: {greeting}");

    let (took, greeting) = greeting_time(&relay, "127.0.0.6").await;
    assert!(took >= DELAY, "not allowlisted, yet greeted after {took:?}");
    assert!(greeting.starts_with("220-"), "{greeting}");

    // A client that waited once is not delayed again while cached.
    let (took, _) = greeting_time(&relay, "127.0.0.6").await;
    assert!(took < DELAY / 2, "known client delayed again: {took:?}");

    mail_flows_from(&relay, &sink, "127.0.0.5").await;
    relay.stop().await;
}

/// Connects over a plain socket from `source` (the greeting read line by
/// line, so that a client can talk in the middle of it).
async fn raw_connect(relay: &TestRelay, source: Ipv4Addr) -> BufReader<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
    BufReader::new(socket.connect(relay.smtp).await.unwrap())
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    tokio::time::timeout(WAIT, stream.read_line(&mut line))
        .await
        .expect("a line in time")
        .expect("read");
    line.trim_end().to_string()
}

/// The server closed the connection (end of stream, or a reset).
async fn closed(stream: &mut BufReader<TcpStream>) -> bool {
    let mut line = String::new();
    match tokio::time::timeout(WAIT, stream.read_line(&mut line)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("more after the refusal: {line:?}"),
        Err(_) => panic!("not closed"),
    }
}

#[tokio::test]
async fn a_client_that_talks_before_the_greeting_is_refused() {
    let dns = TestDns::start().await;
    let (relay, sink) = relay(dns.addr(), |c| {
        c.screen.greet_delay = HumanDuration::new(DELAY);
    })
    .await;

    let mut bot = raw_connect(&relay, Ipv4Addr::new(127, 0, 0, 7)).await;
    assert_eq!(read_line(&mut bot).await, "220-relay.test ESMTP eas-relay");
    bot.get_mut()
        .write_all(b"EHLO bot.test\r\nMAIL FROM:<spam@bot.test>\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_line(&mut bot).await,
        "554 5.5.1 Error: protocol error: talked before the greeting"
    );
    assert!(closed(&mut bot).await);

    // A client that waits for the greeting sends mail.
    mail_flows_from(&relay, &sink, "127.0.0.8").await;
    assert_eq!(sink.messages().len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn a_client_that_pipelines_before_ehlo_is_refused() {
    let dns = TestDns::start().await;
    let (relay, sink) = relay(dns.addr(), |_| {}).await;

    let mut bot = raw_connect(&relay, Ipv4Addr::new(127, 0, 0, 9)).await;
    assert_eq!(read_line(&mut bot).await, "220 relay.test ESMTP eas-relay");
    bot.get_mut()
        .write_all(b"EHLO bot.test\r\nMAIL FROM:<spam@bot.test>\r\nRCPT TO:<hello@example.org>\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_line(&mut bot).await,
        "554 5.5.1 Error: command pipelining before EHLO/HELO"
    );
    assert!(closed(&mut bot).await);

    // After EHLO, PIPELINING is offered and a pipelined transaction is fine.
    let mut c = raw_connect(&relay, Ipv4Addr::new(127, 0, 0, 10)).await;
    read_line(&mut c).await;
    c.get_mut()
        .write_all(b"EHLO client.test\r\n")
        .await
        .unwrap();
    while read_line(&mut c).await.starts_with("250-") {}
    c.get_mut()
        .write_all(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<hello@example.org>\r\nDATA\r\n")
        .await
        .unwrap();
    assert!(read_line(&mut c).await.starts_with("250 "));
    assert!(read_line(&mut c).await.starts_with("250 "));
    assert!(read_line(&mut c).await.starts_with("354 "));
    c.get_mut()
        .write_all(b"Subject: pipelined\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        .await
        .unwrap();
    assert!(read_line(&mut c).await.starts_with("250 "));
    sink.wait_for(1, WAIT).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_list_that_fails_does_not_block_mail() {
    let dns = TestDns::start().await;
    dns.add_a("11.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2));
    dns.servfail("11.0.0.127.bl.test");
    let (relay, sink) = relay(dns.addr(), |c| {
        c.screen.dnsbl = vec!["bl.test".into()];
    })
    .await;
    mail_flows_from(&relay, &sink, "127.0.0.11").await;
    relay.stop().await;
}

#[tokio::test]
async fn a_list_that_never_answers_does_not_hold_the_connection() {
    // A DNS "server" that reads queries and never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (relay, sink) = relay(silent.local_addr().unwrap(), |c| {
        c.screen.dnsbl = vec!["bl.test".into(), "other.test*3".into()];
        c.screen.timeout = HumanDuration::parse("300ms").unwrap();
    })
    .await;
    let (took, greeting) = greeting_time(&relay, "127.0.0.12").await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    // The resolver's own timeouts are seconds long.
    assert!(took < Duration::from_millis(1500), "greeted after {took:?}");
    mail_flows_from(&relay, &sink, "127.0.0.12").await;
    drop(silent);
    relay.stop().await;
}

#[tokio::test]
async fn a_cached_verdict_spares_the_lists() {
    let dns = TestDns::start().await;
    // No caching in the resolver: every query it sends reaches the server.
    dns.set_ttl(0);
    dns.add_a("13.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2));
    let (relay, _sink) = relay(dns.addr(), |c| {
        c.screen.dnsbl = vec!["bl.test".into()];
    })
    .await;
    let (_, first) = connect(&relay, "127.0.0.13").await;
    assert!(first.starts_with("554 5.7.1"), "{first}");
    let asked = dns.queries();
    assert!(asked >= 1);
    let (_, again) = connect(&relay, "127.0.0.13").await;
    assert_eq!(again, first, "the cached verdict");
    assert_eq!(dns.queries(), asked, "the list was asked again");
    relay.stop().await;
}
