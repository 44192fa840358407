//! Session tests: pipelining (RFC 2920), where the same bytes give the same
//! answers however they are split.

use super::harness::*;

pub(super) const PIPELINED_DATA: &[u8] = b"EHLO client.test\r\n\
MAIL FROM:<sender@origin.test>\r\n\
RCPT TO:<hello@d.country>\r\n\
RCPT TO:<team@d.country>\r\n\
DATA\r\n\
Subject: pipelined\r\n\
\r\n\
line one\r\n\
..dot-stuffed line\r\n\
.\r\n\
RSET\r\n\
NOOP\r\n\
QUIT\r\n";

const PIPELINED_DATA_MESSAGE: &[u8] =
    b"Subject: pipelined\r\n\r\nline one\r\n.dot-stuffed line\r\n";

pub(super) const PIPELINED_BDAT: &[u8] = b"EHLO client.test\r\n\
MAIL FROM:<sender@origin.test>\r\n\
RCPT TO:<hello@d.country>\r\n\
RCPT TO:<team@d.country>\r\n\
BDAT 20\r\n\
Subject: chunked\r\n\r\n\
BDAT 14 LAST\r\n\
..x\r\n.\r\nbody\r\n\
RSET\r\n\
NOOP\r\n\
QUIT\r\n";

const PIPELINED_BDAT_MESSAGE: &[u8] = b"Subject: chunked\r\n\r\n..x\r\n.\r\nbody\r\n";

/// Runs `script` whole and split in two at every byte boundary; every run
/// must give the same replies and queue the same message.
async fn check_every_split(script: &[u8], expected_message: &[u8], expected_replies: &[&str]) {
    let h = Harness::new(|_| {});
    let whole = h.script([script.to_vec()]).await;
    let lines = lines_of(&whole);
    assert_eq!(lines, expected_replies);
    let mut all_ids = Vec::new();
    let transcript = String::from_utf8(whole.clone()).unwrap();
    all_ids.push(queue_id(&transcript).expect("queued"));
    for split in 1..script.len() {
        let out = h
            .script([script[..split].to_vec(), script[split..].to_vec()])
            .await;
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            normalize_ids(&text),
            normalize_ids(&transcript),
            "split at {split}: {:?} | {:?}",
            String::from_utf8_lossy(&script[..split]),
            String::from_utf8_lossy(&script[split..])
        );
        all_ids.push(queue_id(&text).expect("queued"));
    }
    assert_eq!(all_ids.len(), script.len());
    all_ids.sort_unstable();
    all_ids.dedup();
    assert_eq!(all_ids.len(), script.len(), "one message per run");
    assert_eq!(h.queue_len(), script.len());
    for id in all_ids {
        let reply = format!("queued as {}", crate::store::format_queue_id(id));
        let (entry, message) = h.queued(&reply);
        assert_eq!(entry.sender, "sender@origin.test");
        let dest: Vec<&str> = entry
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(dest, ["a@dest.test", "b@dest.test", "c@dest.test"]);
        assert_eq!(split_trace(&message).1, expected_message);
    }
}

fn ehlo_lines() -> Vec<&'static str> {
    vec![
        "250-relay.test",
        "250-PIPELINING",
        "250-SIZE 26214400",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
        "250 CHUNKING",
    ]
}

#[tokio::test]
async fn pipelined_data_transaction_gives_the_same_answers_for_every_split() {
    let mut expected = vec!["220 relay.test ESMTP eas-relay"];
    expected.extend(ehlo_lines());
    expected.extend([
        "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK",
        "250 2.1.5 Recipient OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Ok: queued as <ID>",
        "250 2.0.0 Ok",
        "250 2.0.0 Ok",
        "221 2.0.0 Bye",
    ]);
    check_every_split(PIPELINED_DATA, PIPELINED_DATA_MESSAGE, &expected).await;
}

#[tokio::test]
async fn pipelined_bdat_transaction_gives_the_same_answers_for_every_split() {
    let mut expected = vec!["220 relay.test ESMTP eas-relay"];
    expected.extend(ehlo_lines());
    expected.extend([
        "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK",
        "250 2.1.5 Recipient OK",
        "250 2.0.0 20 octets received",
        "250 2.0.0 Ok: queued as <ID>",
        "250 2.0.0 Ok",
        "250 2.0.0 Ok",
        "221 2.0.0 Bye",
    ]);
    check_every_split(PIPELINED_BDAT, PIPELINED_BDAT_MESSAGE, &expected).await;
}
