//! Session tests: SMTPUTF8.

use super::SENDER;
use super::harness::*;

#[tokio::test]
async fn non_ascii_addresses_need_smtputf8() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from("üser@bücher.test", "553 5.6.7").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hellö@d.country", "553 5.6.7").await;
    c.cmd("RSET", "250 2.0.0").await;
    c.send(b"MAIL FROM:<\xfcser@b.test> SMTPUTF8\r\n").await;
    c.expect("501 5.1.7").await;
    c.cmd("MAIL FROM:<üser@bücher.test> SMTPUTF8", "250 2.1.0")
        .await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.rcpt_to("hellö@d.country", "550 5.1.1").await; // allowed, but unknown
    // invalid UTF-8 is not an address (smtp-proto would decode it lossily,
    // and the catch-all would take it)
    h.catch_all();
    c.send(b"RCPT TO:<hell\xff@d.country>\r\n").await;
    c.expect("501 5.1.3").await;
    let body = "Subject: grüße\r\n\r\nÄ\r\n".as_bytes();
    let mut data = body.to_vec();
    data.extend_from_slice(b".\r\n");
    let reply = c.data(data, "250 2.0.0 Ok: queued as ").await;
    let (entry, message) = h.queued(&reply);
    assert_eq!(entry.sender, "üser@bücher.test");
    assert!(entry.smtputf8 && entry.body_8bit);
    let (received, rest) = split_trace(&message);
    assert!(received.contains("\twith UTF8SMTP id "), "{received}");
    assert_eq!(rest, body);
    c.quit().await;
}
