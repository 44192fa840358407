//! Attacks on the HTTP listener's connections: requests sent half (head or
//! body never finished), connections opened and left idle, and one client
//! network opening connections until nobody else gets one (and the process
//! runs out of file descriptors, which also breaks SMTP and the spool).

use crate::common::http;
use crate::common::relay::TestRelay;
use crate::common::sink::TestSink;
use crate::common::smtp::{Client, message};
use eas_relay::config::HumanDuration;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

async fn connect_from(addr: SocketAddr, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes the connection; returns what it said, or
/// None when it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut said = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => said.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&said).into_owned())
}

/// `/health` answers and ordinary mail flows.
async fn still_serving(relay: &TestRelay, sink: &TestSink) {
    let (status, body) = http::request(relay.http, "GET", "/health", None, None).await;
    assert_eq!(status, 200, "{body}");
    let before = sink.messages().len();
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.send_mail(
        "alice@sender.test",
        &["hello@example.org"],
        &message("alice@sender.test", "hello@example.org", "ordinary", "hi"),
    )
    .await;
    c.quit().await;
    sink.wait_for(before + 1, WAIT).await;
}

async fn relay(tweak: impl FnOnce(&mut eas_relay::Config)) -> (TestRelay, TestSink) {
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

#[tokio::test]
async fn half_sent_http_requests_are_closed() {
    let (relay, sink) = relay(|c| {
        c.http.header_timeout = HumanDuration::parse("1s").unwrap();
        c.http.body_timeout = HumanDuration::parse("1s").unwrap();
        c.http.idle_timeout = HumanDuration::parse("2s").unwrap();
        // All 120 come from 127.0.0.1: this test is about the timeouts.
        c.http.max_connections_per_ip = 200;
    })
    .await;
    let addr = relay.http;
    let started = Instant::now();
    // 30 of each: a head never finished, a body never finished, a
    // connection that never says anything, one kept alive after a request.
    let mut heads = Vec::new();
    let mut bodies = Vec::new();
    let mut silent = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..30 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: relay.test\r\nX-Slow: ")
            .await
            .unwrap();
        heads.push(s);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /check-alias HTTP/1.1\r\nHost: relay.test\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"sld\":",
        )
        .await
        .unwrap();
        bodies.push(s);
        silent.push(TcpStream::connect(addr).await.unwrap());
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: relay.test\r\n\r\n")
            .await
            .unwrap();
        kept.push(s);
    }
    for s in &mut heads {
        let said = closed_within(s, WAIT).await;
        assert!(said.is_some(), "a half-sent head is still open");
    }
    for s in &mut bodies {
        let said = closed_within(s, WAIT)
            .await
            .expect("a half-sent body is closed");
        assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    }
    for s in &mut silent {
        assert!(
            closed_within(s, WAIT).await.is_some(),
            "an idle connection is closed"
        );
    }
    for s in &mut kept {
        let said = closed_within(s, WAIT)
            .await
            .expect("a kept-alive connection is closed");
        assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    still_serving(&relay, &sink).await;
}

#[tokio::test]
async fn one_network_cannot_hold_every_http_connection() {
    let (relay, sink) = relay(|c| {
        c.http.max_connections_per_ip = 4;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from(relay.http, "127.0.0.2").await);
    }
    let mut refused = connect_from(relay.http, "127.0.0.2").await;
    refused
        .write_all(b"GET /health HTTP/1.1\r\nHost: relay.test\r\n\r\n")
        .await
        .unwrap();
    let said = closed_within(&mut refused, WAIT)
        .await
        .expect("refused and closed");
    assert!(said.starts_with("HTTP/1.1 503"), "{said}");
    // Other networks are served meanwhile, and mail flows.
    still_serving(&relay, &sink).await;
    drop(held);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = connect_from(relay.http, "127.0.0.2").await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let said = closed_within(&mut s, WAIT).await.unwrap_or_default();
        if said.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the network never got its seats back: {said}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
