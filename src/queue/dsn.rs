//! Delivery status notifications (RFC 3464 multipart/report) for accepted
//! mail that then failed. They name the alias the sender wrote to, never the
//! private forwarding address behind it (also scrubbed from remote replies).

use crate::message::{has_8bit, header_len, rfc2822_now};
use crate::store::{QueueEntry, QueuedRecipient, RcptStatus, format_queue_id};

/// Most bytes of the original header returned in the report: enough for
/// the sender to recognise its message, too little to make the relay a
/// reflector of someone's bulk headers.
pub const MAX_ORIGINAL_HEADER: usize = 4 * 1024;

/// Builds the DSN entry (null sender, to the original sender) and message.
pub fn build(
    entry: &QueueEntry,
    failed: &[&QueuedRecipient],
    original: &[u8],
    hostname: &str,
    id: u64,
    now: u64,
) -> (QueueEntry, Vec<u8>) {
    let boundary = format!("{}.{}/{hostname}", format_queue_id(id), now);
    let date = rfc2822_now();
    let mut human = String::new();
    let mut status_part = format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        format_queue_id(entry.id),
        date_of(entry.created)
    );
    for rcpt in failed {
        let shown = shown_address(rcpt);
        let reply = redact(rcpt.last_reply.as_deref().unwrap_or("unknown error"), rcpt);
        let status = status_of(&reply);
        human.push_str(&format!("<{shown}>: {reply}\r\n"));
        status_part.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {shown}\r\nOriginal-Recipient: rfc822; {shown}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {reply}\r\n"
        ));
    }
    let headers = original_headers(original, MAX_ORIGINAL_HEADER);

    let mut msg = Vec::with_capacity(2048 + headers.len());
    msg.extend_from_slice(
        format!(
            "Date: {date}\r\n\
             From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
             To: <{sender}>\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             Message-ID: <{id}.dsn@{hostname}>\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"{boundary}\"\r\n\
             \r\n\
             This is a MIME-encapsulated message.\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Description: Notification\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n\
             This is the mail system at host {hostname}.\r\n\
             \r\n\
             Your message could not be delivered to one or more recipients.\r\n\
             It is attached below.\r\n\
             \r\n\
             {human}\
             \r\n\
             --{boundary}\r\n\
             Content-Description: Delivery report\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             {status_part}\
             \r\n\
             --{boundary}\r\n\
             Content-Description: Undelivered Message Headers\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n",
            sender = entry.sender,
            id = format_queue_id(id),
        )
        .as_bytes(),
    );
    msg.extend_from_slice(headers);
    if !headers.ends_with(b"\n") {
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    let dsn = QueueEntry {
        id,
        sender: String::new(),
        envelope_from: None,
        created: now,
        size: msg.len() as u64,
        client_ip: None,
        helo: None,
        message_id: Some(format!("<{}.dsn@{hostname}>", format_queue_id(id))),
        subject: Some("Undelivered Mail Returned to Sender".into()),
        smtputf8: !entry.sender.is_ascii(),
        body_8bit: has_8bit(&msg),
        is_dsn: true,
        sender_authenticated: false,
        recipients: vec![QueuedRecipient {
            address: entry.sender.clone(),
            rcpt: entry.sender.clone(),
            alias: failed.first().map(|r| r.alias.clone()).unwrap_or_default(),
            status: RcptStatus::Pending,
            attempts: 0,
            next_attempt: now,
            last_reply: None,
        }],
        due: None,
        spam: None,
    };
    (dsn, msg)
}

/// The whole header fields of `original` that fit in `max` bytes (a field
/// with its continuation lines is kept whole or not at all).
fn original_headers(original: &[u8], max: usize) -> &[u8] {
    let all = original
        .get(..header_len(original).min(original.len()))
        .unwrap_or_default();
    if all.len() <= max {
        return all;
    }
    let mut end = 0;
    let mut pos = 0;
    while pos < all.len() && pos <= max {
        // A field ends before a line that does not start with white space.
        let line_end = all
            .get(pos..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(all.len(), |i| pos + i + 1);
        if line_end > max {
            break;
        }
        let next = all.get(line_end).copied();
        if !matches!(next, Some(b' ' | b'\t')) {
            end = line_end;
        }
        pos = line_end;
    }
    all.get(..end).unwrap_or_default()
}

/// The address the sender knows: the one it wrote to.
pub(super) fn shown_address(rcpt: &QueuedRecipient) -> &str {
    [&rcpt.rcpt, &rcpt.alias, &rcpt.address]
        .into_iter()
        .find(|a| !a.is_empty())
        .map(String::as_str)
        .unwrap_or("")
}

/// Replaces the private forwarding address with the alias, the forwarding
/// domain with "the destination", and keeps the text to one printable
/// ASCII line (see [`super::redact`]).
fn redact(reply: &str, rcpt: &QueuedRecipient) -> String {
    super::redact::redact(
        reply,
        &super::redact::Private {
            address: &rcpt.address,
            shown: shown_address(rcpt),
            server: None,
        },
    )
}

/// The RFC 3463 status of a stored reply like "550 5.1.1 ...".
fn status_of(reply: &str) -> String {
    if reply.starts_with("delivery time expired") {
        return "4.4.7".into();
    }
    let mut words = reply.split_whitespace();
    let code = words.next().unwrap_or("");
    match words.next() {
        Some(esc)
            if esc.split('.').count() == 3
                && esc
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            esc.to_string()
        }
        _ if code.starts_with('4') => "4.0.0".into(),
        _ => "5.0.0".into(),
    }
}

fn date_of(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_else(rfc2822_now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_rcpt() -> QueuedRecipient {
        QueuedRecipient {
            address: "Mr.Robot@dest.test".into(),
            rcpt: "hello+news@fsociety.country".into(),
            alias: "hello@fsociety.country".into(),
            status: RcptStatus::Failed,
            attempts: 1,
            next_attempt: 0,
            last_reply: Some("550 5.1.1 <mr.robot@dest.test>: user unknown".into()),
        }
    }

    fn entry(sender: &str) -> QueueEntry {
        QueueEntry {
            sender: sender.into(),
            created: 1_700_000_000_000,
            recipients: vec![failed_rcpt()],
            ..crate::store::sample_entry(1, 0)
        }
    }

    #[test]
    fn dsn_names_the_alias_never_the_forward() {
        let rcpt = failed_rcpt();
        let original = b"Subject: hi\r\nFrom: a@example.org\r\n\r\nsecret body\r\n";
        let (dsn, msg) = build(
            &entry("a@example.org"),
            &[&rcpt],
            original,
            "relay.test",
            99,
            1,
        );
        let text = String::from_utf8(msg).unwrap();
        assert!(
            !text.to_lowercase().contains("mr.robot@dest.test"),
            "{text}"
        );
        assert!(text.contains("Final-Recipient: rfc822; hello+news@fsociety.country"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains(
            "Diagnostic-Code: smtp; 550 5.1.1 <hello+news@fsociety.country>: user unknown"
        ));
        assert!(text.contains("report-type=delivery-status"));
        assert!(
            text.contains("Subject: hi\r\n"),
            "original headers are attached"
        );
        assert!(!text.contains("secret body"), "the body is not returned");
        assert_eq!(dsn.sender, "");
        assert!(dsn.is_dsn);
        assert_eq!(dsn.recipients[0].address, "a@example.org");
    }

    #[test]
    fn original_headers_are_cut_at_a_field_boundary() {
        let mut original = b"Subject: hi\r\nX-Long: a\r\n b\r\n".to_vec();
        for i in 0..500 {
            original.extend_from_slice(format!("X-Junk-{i}: {}\r\n", "j".repeat(40)).as_bytes());
        }
        original.extend_from_slice(b"\r\nbody\r\n");
        let cut = original_headers(&original, MAX_ORIGINAL_HEADER);
        assert!(cut.len() <= MAX_ORIGINAL_HEADER && cut.len() > MAX_ORIGINAL_HEADER - 100);
        assert!(cut.starts_with(b"Subject: hi\r\nX-Long: a\r\n b\r\n"));
        assert!(cut.ends_with(b"\r\n"));
        let next = original.get(cut.len()..cut.len() + 6).unwrap();
        assert_eq!(next, b"X-Junk", "the cut falls before a field");
        // A folded field that does not fit is left out whole.
        let folded = b"A: 1\r\nB: 2\r\n 3\r\n 4\r\n\r\n";
        assert_eq!(original_headers(folded, 12), b"A: 1\r\n");
        assert_eq!(original_headers(folded, 100), folded);
    }

    proptest::proptest! {
        /// Any reply and forwarding address: the DSN builds, its text parts
        /// are ASCII and never name the forwarding address.
        #[test]
        fn dsn_of_any_reply_never_names_the_forward(
            reply in "\\PC{0,80}",
            local in "[a-zA-Z0-9.\u{212A}\u{130}\u{e9}]{1,10}",
            domain in "[a-zA-Z0-9\u{212A}.-]{1,10}",
        ) {
            let address = format!("{local}@{domain}");
            let rcpt = QueuedRecipient {
                address: address.clone(),
                last_reply: Some(format!("550 {reply} <{address}> {reply}")),
                ..failed_rcpt()
            };
            let original = b"Subject: hi\r\n\r\nbody";
            let (_, msg) = build(&entry("a@example.org"), &[&rcpt], original, "relay.test", 2, 1);
            let text = String::from_utf8(msg).unwrap();
            proptest::prop_assert!(text.is_ascii());
            proptest::prop_assert!(
                super::super::redact::find_ci(&text, &address).is_none(),
                "{text}"
            );
        }
    }

    #[test]
    fn status_parsing() {
        assert_eq!(status_of("550 5.1.1 x"), "5.1.1");
        assert_eq!(status_of("554 no code"), "5.0.0");
        assert_eq!(status_of("451 greylisted"), "4.0.0");
        assert_eq!(
            status_of("delivery time expired after 5d, last error: 451 x"),
            "4.4.7"
        );
    }
}
