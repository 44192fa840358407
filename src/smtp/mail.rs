//! MAIL FROM: starts a transaction after checking sequence, declared size,
//! body type and sender syntax (no quoted local parts: they would carry
//! spaces and `>` into the SRS address the relay writes downstream).

use super::incoming::oversize_reply;
use super::session::{Flow, Io, Session, Transaction};
use crate::address::Mailbox;
use crate::outbound::path::has_only_atom_chars;
use crate::reply::Reply;
use smtp_proto::{MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, MailFrom};
use std::borrow::Cow;

impl<T: Io> Session<T> {
    pub(super) fn mail_from(&mut self, from: MailFrom<Cow<'_, str>>, line: &[u8]) -> Flow {
        if self.helo.is_none() {
            return self.error(Reply::new(503, [5, 5, 1], "Error: send HELO/EHLO first"));
        }
        if self.txn.is_some() {
            return self.error(Reply::new(503, [5, 5, 1], "Error: nested MAIL command"));
        }
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            return self.error(Reply::new(
                504,
                [5, 5, 4],
                "Error: BODY=BINARYMIME is not supported",
            ));
        }
        let declared = declared_size(line).unwrap_or(0).max(from.size as u64);
        if declared > self.ctx.config.smtp.max_message_size.0 {
            return self.reject(oversize_reply(), "too_big");
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let sender = from.address.as_ref();
        // smtp-proto decodes invalid UTF-8 lossily: refuse it rather than
        // keep (and later bounce to) a sender nobody sent.
        if std::str::from_utf8(line).is_err() {
            return self.error(Reply::new(
                501,
                [5, 1, 7],
                "Error: bad sender address syntax (not UTF-8)",
            ));
        }
        if !sender.is_empty() {
            if !sender.is_ascii() && !smtputf8 {
                return self.error(Reply::new(
                    553,
                    [5, 6, 7],
                    "Error: SMTPUTF8 is required for a non-ASCII address",
                ));
            }
            // Malformed: 501; a domain with code points IDNA2008 does not
            // allow is well formed but not allowed: 553 (as at RCPT).
            match Mailbox::check(sender) {
                // A local part that arrived quoted (`"a> RET=FULL"@d`) is
                // copied into the SRS address and the logs: refused, since
                // only a dot-atom stays one token wherever it is copied,
                // and no bounce could come back to it (RCPT refuses quotes).
                Ok(m) if !has_only_atom_chars(&m.local) => {
                    return self.error(Reply::new(
                        553,
                        [5, 1, 7],
                        "Error: quoted local parts are not accepted in the sender address",
                    ));
                }
                Ok(_) => {}
                Err(e) if e.is_disallowed_name() => {
                    let text = format!("Error: sender address not allowed: {e}");
                    return self.error(Reply::owned(553, [5, 1, 7], text));
                }
                Err(e) => {
                    let text = format!("Error: bad sender address syntax: {e}");
                    return self.error(Reply::owned(501, [5, 1, 7], text));
                }
            }
        }
        self.txn = Some(Transaction {
            sender: sender.to_string(),
            smtputf8,
            recipients: Vec::new(),
            body: Vec::new(),
            incoming: super::incoming::Incoming::new(self.ctx.queue.spool().clone(), self.limits()),
            failed: None,
            chunking: false,
            bounce_to: None,
        });
        self.reply(&Reply::new(250, [2, 1, 0], "Sender OK"));
        Flow::Continue
    }
}

/// The `SIZE=` a client declared, read from the command line itself:
/// smtp-proto 0.2.5 turns a value of 21 digits or more into a small number
/// (its saturating parse restarts from the next digit), so that
/// `SIZE=100000000000000000000000` would pass the check. Saturates.
fn declared_size(line: &[u8]) -> Option<u64> {
    let params = &line[memchr::memrchr(b'>', line)? + 1..];
    params
        .split(|b| b.is_ascii_whitespace())
        .find_map(|word| {
            let value = word
                .get(..5)?
                .eq_ignore_ascii_case(b"SIZE=")
                .then(|| &word[5..])?;
            (!value.is_empty() && value.iter().all(u8::is_ascii_digit)).then_some(value)
        })
        .map(|digits| {
            digits.iter().fold(0u64, |n, d| {
                n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::declared_size;

    #[test]
    fn declared_size_saturates() {
        assert_eq!(declared_size(b"MAIL FROM:<a@b> SIZE=1025\r\n"), Some(1025));
        assert_eq!(
            declared_size(b"MAIL FROM:<a@b> body=8bitmime size=7\r\n"),
            Some(7)
        );
        assert_eq!(
            declared_size(b"MAIL FROM:<a@b> SIZE=100000000000000000000000\r\n"),
            Some(u64::MAX)
        );
        assert_eq!(declared_size(b"MAIL FROM:<a@b>\r\n"), None);
        assert_eq!(declared_size(b"MAIL FROM:<a@b> SIZE=\r\n"), None);
    }
}
