//! Session tests: shutdown.

use super::SENDER;
use super::harness::*;

/// Gives the session task every chance to act on what it has seen.
async fn let_session_run() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn shutdown_closes_idle_sessions() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    h.shut_down();
    c.expect("421 4.3.0").await;
    c.closed().await;
    // a session that starts after the shutdown is told at once
    let mut late = h.connect().await;
    late.expect("421 4.3.0").await;
    late.closed().await;
}

#[tokio::test]
async fn shutdown_lets_a_message_in_data_finish() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    c.send("Subject: last one\r\n\r\nfirst half\r\n").await;
    h.shut_down();
    let_session_run().await;
    c.send("second half\r\n.\r\n").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    let (_, message) = h.queued(&reply);
    assert_eq!(
        split_trace(&message).1,
        b"Subject: last one\r\n\r\nfirst half\r\nsecond half\r\n"
    );
    c.expect("421 4.3.0").await;
    c.closed().await;
}

#[tokio::test]
async fn shutdown_lets_a_bdat_message_finish() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.send("BDAT 6\r\nfirst ").await;
    c.expect("250 2.0.0 6 octets received").await;
    h.shut_down();
    let_session_run().await;
    c.send("BDAT 6 LAST\r\nsecond").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    assert_eq!(split_trace(&h.queued(&reply).1).1, b"first second");
    c.expect("421 4.3.0").await;
    c.closed().await;
}
