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
