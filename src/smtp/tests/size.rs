//! Session tests: message size.

use super::SENDER;
use super::harness::*;
use crate::config::ByteSize;

#[tokio::test]
async fn declared_size_over_the_limit_is_refused_at_mail() {
    let h = Harness::new(|c| c.smtp.max_message_size = ByteSize::new(1024));
    let mut c = h.connect().await;
    assert!(c.ehlo("client.test").await.contains(&"SIZE 1024".into()));
    c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=1025"), "552 5.3.4")
        .await;
    c.cmd(
        &format!("MAIL FROM:<{SENDER}> SIZE=99999999999999999999999"),
        "552 5.3.4",
    )
    .await;
    c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=1024"), "250 2.1.0")
        .await;
    c.quit().await;
}

#[tokio::test]
async fn oversize_data_is_drained_and_the_session_goes_on() {
    let h = Harness::new(|c| c.smtp.max_message_size = ByteSize::new(1024));
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // exactly at the limit: accepted
    let reply = c.transaction("hello@d.country", &message_of(1024)).await;
    let (_, message) = h.queued(&reply);
    assert_eq!(split_trace(&message).1, message_of(1024));
    // one byte over, with command lines in the body: one 552 at the end,
    // nothing in the body is executed
    let mut big = message_of(1025);
    big.extend_from_slice(b"MAIL FROM:<x@y.test>\r\nRCPT TO:<team@d.country>\r\nQUIT\r\n");
    big.extend_from_slice(&message_of(3000));
    big.extend_from_slice(b".\r\n");
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.data(&big, "552 5.3.4").await;
    // the refused transaction is over; a normal one completes
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    let reply = c
        .transaction("team@d.country", b"Subject: small\r\n\r\nok\r\n")
        .await;
    let (entry, _) = h.queued(&reply);
    assert_eq!(entry.recipients.len(), 2);
    c.quit().await;
    assert_eq!(h.queue_len(), 2);
}

#[tokio::test]
async fn message_at_the_limit_is_accepted_however_its_end_is_split() {
    let h = Harness::new(|c| c.smtp.max_message_size = ByteSize::new(1024));
    let head = b"EHLO c.test\r\nMAIL FROM:<s@o.test>\r\nRCPT TO:<hello@d.country>\r\nDATA\r\n";
    let mut all = head.to_vec();
    all.extend_from_slice(&message_of(1024));
    all.extend_from_slice(b".\r\nQUIT\r\n");
    let end = all.len() - b"QUIT\r\n".len();
    // split anywhere in the final "\r\n.\r\n" (the ".\r" then waits in the
    // receiver for its "\n")
    for split in end - 5..=end {
        let out = h
            .script([all[..split].to_vec(), all[split..].to_vec()])
            .await;
        let lines = lines_of(&out);
        assert_eq!(
            lines[lines.len() - 2..],
            ["250 2.0.0 Ok: queued as <ID>", "221 2.0.0 Bye"],
            "split at {split}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn oversize_bdat_is_drained_and_the_session_goes_on() {
    let h = Harness::new(|c| {
        c.smtp.max_message_size = ByteSize::new(1024);
        c.smtp.max_errors = 4;
    });
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // one chunk over the limit; its content looks like commands
    let mut chunk = b"NOOP\r\n".repeat(200);
    chunk.truncate(1100);
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.send(format!("BDAT {} LAST\r\n", chunk.len())).await;
    c.send(&chunk).await;
    c.expect("552 5.3.4").await;
    c.cmd("NOOP", "250 2.0.0").await;
    // over the limit over several chunks, pipelined: every chunk after the
    // limit is refused, and the refusal counts as one error only
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let part = vec![b'z'; 400];
    let mut batch = Vec::new();
    for i in 0..6 {
        let last = if i == 5 { " LAST" } else { "" };
        batch.extend_from_slice(format!("BDAT 400{last}\r\n").as_bytes());
        batch.extend_from_slice(&part);
    }
    c.send(&batch).await;
    c.expect("250 2.0.0 400 octets received").await;
    c.expect("250 2.0.0 400 octets received").await;
    for _ in 2..6 {
        c.expect("552 5.3.4").await;
    }
    c.cmd("DATA", "503 5.5.1").await; // the BDAT transaction ended at LAST
    // the same session completes a normal transaction
    let reply = c
        .transaction("hello@d.country", b"Subject: after\r\n\r\nok\r\n")
        .await;
    h.queued(&reply);
    c.quit().await;
    assert_eq!(h.queue_len(), 1);
}
