//! Session tests: DATA.

use super::harness::*;
use super::{HOST, SENDER};

#[tokio::test]
async fn message_is_durable_before_250() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    let body = b"Subject: durable\r\nMessage-ID: <m1@origin.test>\r\n\r\nhello\r\n";
    let reply = c.transaction("hello@d.country", body).await;
    // read as soon as the 250 is seen
    let (entry, message) = h.queued(&reply);
    let id = queue_id(&reply).unwrap();
    assert_eq!(entry.sender, SENDER);
    assert_eq!(entry.client_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(entry.helo.as_deref(), Some("client.test"));
    assert_eq!(entry.subject.as_deref(), Some("durable"));
    assert_eq!(entry.message_id.as_deref(), Some("<m1@origin.test>"));
    assert!(!entry.smtputf8 && !entry.body_8bit && !entry.is_dsn);
    assert_eq!(entry.recipients.len(), 1);
    assert_eq!(entry.recipients[0].address, "a@dest.test");
    assert!(entry.due.is_some(), "the entry is in the due index");
    let (received, rest) = split_trace(&message);
    assert_eq!(rest, body);
    let expected = format!(
        "Received: from client.test ([192.0.2.7])\r\n\tby {HOST} (eas-relay)\r\n\twith ESMTP id {}\r\n\tfor <hello@d.country>; ",
        crate::store::format_queue_id(id)
    );
    assert!(received.starts_with(&expected), "{received:?}");
    c.quit().await;
}

#[tokio::test]
async fn dots_on_the_first_line_and_empty_messages() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    for (sent, stored) in [
        (&b"..x\r\n.\r\n"[..], &b".x\r\n"[..]),
        (b"..\r\n.\r\n", b".\r\n"),
        (b".\r\n", b""),
        (b"\r\n.\r\n", b"\r\n"),
        (b"a\r\n...\r\n..b\r\n.\r\n", b"a\r\n..\r\n.b\r\n"),
    ] {
        c.mail_from(SENDER, "250 2.1.0").await;
        c.rcpt_to("hello@d.country", "250 2.1.5").await;
        let reply = c.data(sent, "250 2.0.0 Ok: queued as ").await;
        let (_, message) = h.queued(&reply);
        assert_eq!(
            split_trace(&message).1,
            stored,
            "sent {:?}",
            String::from_utf8_lossy(sent)
        );
    }
    c.quit().await;
}

#[tokio::test]
async fn bare_lf_or_cr_dot_does_not_end_data() {
    // SMTP smuggling: only CRLF.CRLF ends the data; a bare CR or LF is
    // normalized to CRLF, so it is content and stays content downstream
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    for ending in ["\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r\r\n"] {
        c.mail_from(SENDER, "250 2.1.0").await;
        c.rcpt_to("hello@d.country", "250 2.1.5").await;
        let smuggled = format!(
            "Subject: s\r\n\r\na{ending}MAIL FROM:<admin@d.country>\r\nRCPT TO:<team@d.country>\r\nDATA\r\nsmuggled\r\n.\r\n"
        );
        let reply = c.data(&smuggled, "250 2.0.0 Ok: queued as ").await;
        let (entry, message) = h.queued(&reply);
        assert_eq!(entry.sender, SENDER, "ending {ending:?}");
        let body = String::from_utf8(split_trace(&message).1).unwrap();
        assert!(
            body.contains(
                "MAIL FROM:<admin@d.country>\r\nRCPT TO:<team@d.country>\r\nDATA\r\nsmuggled\r\n"
            ),
            "ending {ending:?}: {body:?}"
        );
        // nothing was executed: the next MAIL is not nested, no other reply
        c.mail_from(SENDER, "250 2.1.0").await;
        c.cmd("RSET", "250 2.0.0").await;
    }
    c.quit().await;
    assert_eq!(h.queue_len(), 5);
}

#[tokio::test]
async fn mail_loops_are_refused_at_end_of_data() {
    let h = Harness::new(|c| c.smtp.max_received_headers = 3);
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    let hops = |n: usize| {
        let mut m = String::new();
        for i in 0..n {
            m.push_str(&format!("Received: from h{i}.test\r\n\tby x; date\r\n"));
        }
        m.push_str("Subject: loop\r\n\r\nReceived: in the body does not count\r\n.\r\n");
        m
    };
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.data(hops(3), "554 5.4.6").await;
    c.mail_from(SENDER, "250 2.1.0").await; // the refused transaction ended
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let reply = c.data(hops(2), "250 2.0.0 Ok: queued as ").await;
    h.queued(&reply);
    c.quit().await;
    assert_eq!(h.queue_len(), 1);
}
