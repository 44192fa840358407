//! Session tests: STARTTLS.

use super::client::*;
use super::harness::*;
use super::{HOST, SENDER, WAIT};
use tokio::io::DuplexStream;
use tokio::time::timeout;

async fn tls_handshake(
    c: Client<DuplexStream>,
) -> Client<tokio_rustls::client::TlsStream<DuplexStream>> {
    assert!(c.buf.is_empty(), "nothing after the 220");
    let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config());
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let tls = timeout(WAIT, connector.connect(name, c.io))
        .await
        .expect("handshake in time")
        .expect("handshake succeeds");
    Client {
        io: tls,
        buf: Vec::new(),
        session: c.session,
    }
}

#[tokio::test]
async fn starttls_upgrades_the_session() {
    let h = Harness::with_tls(|_| {});
    let mut c = h.connect().await;
    assert!(c.ehlo("client.test").await.contains(&"STARTTLS".into()));
    c.mail_from(SENDER, "250 2.1.0").await;
    c.cmd("STARTTLS", "220 2.0.0").await;
    let mut c = tls_handshake(c).await;
    // state is forgotten: EHLO first, and the old transaction is gone
    c.mail_from(SENDER, "503 5.5.1").await;
    let extensions = c.ehlo("client.test").await;
    assert!(!extensions.contains(&"STARTTLS".into()), "{extensions:?}");
    assert!(extensions.contains(&"CHUNKING".into()), "{extensions:?}");
    c.cmd("STARTTLS", "503 5.5.1").await;
    let reply = c
        .transaction("hello@d.country", b"Subject: tls\r\n\r\nsecret\r\n")
        .await;
    let (_, message) = h.queued(&reply);
    let (received, body) = split_trace(&message);
    assert!(received.contains("\twith ESMTPS id "), "{received}");
    assert!(received.contains("(using TLSv1."), "{received}");
    assert_eq!(body, b"Subject: tls\r\n\r\nsecret\r\n");
    c.quit().await;
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    let h = Harness::with_tls(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // injection: plaintext commands sent with STARTTLS must not run
    c.send(format!(
        "STARTTLS\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<hello@d.country>\r\n"
    ))
    .await;
    c.expect("220 2.0.0").await;
    let mut c = tls_handshake(c).await;
    // no plaintext reply was written before the handshake (it would have
    // broken it), and the injected MAIL did not start a transaction
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    c.ehlo("client.test").await;
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    c.quit().await;
    assert_eq!(h.queue_len(), 0);
}

#[tokio::test]
async fn starttls_when_not_configured() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    assert!(!c.ehlo("client.test").await.contains(&"STARTTLS".into()));
    c.cmd("STARTTLS", "502 5.5.1").await;
    c.cmd("NOOP", "250 2.0.0").await;
    c.quit().await;
}
