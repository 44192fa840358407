//! Session tests: command sequence.

use super::SENDER;
use super::harness::*;

#[tokio::test]
async fn command_sequence_is_enforced() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.mail_from(SENDER, "503 5.5.1").await; // before EHLO
    c.ehlo("client.test").await;
    c.rcpt_to("hello@d.country", "503 5.5.1").await; // before MAIL
    c.cmd("DATA", "503 5.5.1").await; // before MAIL
    c.mail_from(SENDER, "250 2.1.0").await;
    c.mail_from(SENDER, "503 5.5.1").await; // nested
    c.cmd("DATA", "554 5.5.1").await; // no recipient at all
    c.rcpt_to("nobody@d.country", "550 5.1.1").await;
    c.cmd("DATA", "554 5.5.1").await; // no valid recipient
    // the transaction survives and completes
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let reply = c
        .data(
            "Subject: seq\r\n\r\nbody\r\n.\r\n",
            "250 2.0.0 Ok: queued as ",
        )
        .await;
    let (entry, _) = h.queued(&reply);
    assert_eq!(entry.recipients.len(), 1);
    // after the message, a new transaction needs a new MAIL
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    c.quit().await;
    assert_eq!(h.queue_len(), 1);
}

#[tokio::test]
async fn rset_and_ehlo_clear_the_transaction() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.cmd("RSET", "250 2.0.0").await;
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    c.cmd("DATA", "503 5.5.1").await;
    c.mail_from(SENDER, "250 2.1.0").await; // not nested: RSET ended it
    c.rcpt_to("team@d.country", "250 2.1.5").await;
    c.ehlo("client.test").await;
    c.cmd("DATA", "503 5.5.1").await;
    c.mail_from(SENDER, "250 2.1.0").await; // not nested: EHLO ended it
    // RSET outside a transaction is fine too
    c.cmd("RSET", "250 2.0.0").await;
    c.cmd("RSET", "250 2.0.0").await;
    c.quit().await;
    assert_eq!(h.queue_len(), 0);
}
