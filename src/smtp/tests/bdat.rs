//! Session tests: BDAT (CHUNKING).

use super::SENDER;
use super::harness::*;

#[tokio::test]
async fn bdat_chunks_make_the_message() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // chunks with and without LAST, ending with BDAT 0 LAST; chunk data is
    // taken verbatim (no dot-unstuffing, "." lines are content)
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let chunks: [&[u8]; 3] = [b"Subject: chunks\r\n", b"\r\n..dots\r\n.\r\n", b"end\r\n"];
    for chunk in chunks {
        c.send(format!("BDAT {}\r\n", chunk.len())).await;
        c.send(chunk).await;
        c.expect(&format!("250 2.0.0 {} octets received", chunk.len()))
            .await;
    }
    c.send("BDAT 0 LAST\r\n").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    let (_, message) = h.queued(&reply);
    assert_eq!(split_trace(&message).1, chunks.concat());

    // one LAST chunk, pipelined with the envelope and QUIT
    let body = b"Subject: one\r\n\r\nsingle chunk\r\n";
    let mut batch = format!(
        "MAIL FROM:<{SENDER}>\r\nRCPT TO:<team@d.country>\r\nBDAT {} LAST\r\n",
        body.len()
    )
    .into_bytes();
    batch.extend_from_slice(body);
    batch.extend_from_slice(b"NOOP\r\n");
    c.send(&batch).await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    c.expect("250 2.0.0").await;
    let (entry, message) = h.queued(&reply);
    assert_eq!(split_trace(&message).1, body);
    assert_eq!(entry.recipients.len(), 2);

    // BDAT 0 LAST alone: an empty message
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let reply = c.cmd("BDAT 0 LAST", "250 2.0.0 Ok: queued as ").await;
    let (_, message) = h.queued(&reply);
    assert_eq!(split_trace(&message).1, b"");
    c.quit().await;
    assert_eq!(h.queue_len(), 3);
}

#[tokio::test]
async fn bdat_out_of_sequence_is_drained() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // no MAIL: the chunk (which looks like commands) is read and refused
    c.send("BDAT 6\r\nNOOP\r\n").await;
    c.expect("503 5.5.1").await;
    c.send("BDAT 12 LAST\r\nMAIL FROM:<>").await;
    c.expect("503 5.5.1").await;
    c.cmd("NOOP", "250 2.0.0").await;
    // MAIL but no valid recipient
    c.mail_from(SENDER, "250 2.1.0").await;
    c.send("BDAT 6 LAST\r\nRSET\r\n").await;
    c.expect("554 5.5.1").await;
    // a BDAT transaction does not take DATA
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.send("BDAT 3\r\nabc").await;
    c.expect("250 2.0.0 3 octets received").await;
    c.cmd("DATA", "503 5.5.1").await;
    c.send("BDAT 3 LAST\r\ndef").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    assert_eq!(split_trace(&h.queued(&reply).1).1, b"abcdef");
    c.quit().await;
    assert_eq!(h.queue_len(), 1);
}
