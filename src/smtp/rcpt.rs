//! RCPT TO: refuse relay tricks and foreign domains (never an open relay),
//! resolve the alias, and reject unknown ones before any data is sent.

use super::reply::Reply;
use super::session::{AcceptedRecipient, Flow, Io, Session};
use crate::address::{Mailbox, RelayTrick, check_relay_tricks, raw_path};
use crate::resolve::{self, Resolution};
use smtp_proto::RcptTo;
use std::borrow::Cow;

impl<T: Io> Session<T> {
    pub(super) fn rcpt_to(&mut self, to: RcptTo<Cow<'_, str>>, line: &[u8]) -> Flow {
        let Some(txn) = &self.txn else {
            return self.error(Reply::new(503, [5, 5, 1], "Error: need MAIL command"));
        };
        if txn.recipients.len() >= self.ctx.config.smtp.max_recipients {
            // Not a client error: RFC 5321 §4.5.3.1.10 has the client send
            // the rest later. Counting it would end, with 421, the session
            // of a pipelining client with many recipients, and with it a
            // transaction that would fail the same way on every retry.
            metrics::counter!("eas_messages_rejected_total", "reason" => "too_many_recipients")
                .increment(1);
            self.reply(&Reply::new(452, [4, 5, 3], "Error: too many recipients"));
            return Flow::Continue;
        }
        let smtputf8 = txn.smtputf8;
        // smtp-proto strips source routes and quotes; judge what was sent
        // (lossily decoded: an invalid byte must not skip the check).
        let text = String::from_utf8_lossy(line);
        let raw = raw_path(&text);
        match raw.map(check_relay_tricks) {
            Some(Err(RelayTrick::Malformed)) if !to.address.is_empty() => {
                return self.reject(bad_syntax("malformed address"), "bad_address");
            }
            Some(Err(trick)) if !to.address.is_empty() => {
                let text = format!("Error: relay access denied: {}", trick.describe());
                return self.reject(Reply::owned(550, [5, 7, 1], text), "relay_denied");
            }
            _ => {}
        }
        if std::str::from_utf8(line).is_err() {
            // smtp-proto decoded it lossily; a catch-all would take it.
            return self.error(Reply::new(
                501,
                [5, 1, 3],
                "Error: bad recipient address syntax (not UTF-8)",
            ));
        }
        let address = to.address.as_ref();
        if !address.is_ascii() && !smtputf8 {
            return self.error(Reply::new(
                553,
                [5, 6, 7],
                "Error: SMTPUTF8 is required for a non-ASCII address",
            ));
        }
        let postmaster = &self.ctx.config.aliases.postmaster;
        let bare_postmaster =
            address.is_empty() && raw.is_some_and(|r| r.eq_ignore_ascii_case(resolve::POSTMASTER));
        if bare_postmaster && !postmaster.is_empty() {
            // The bare `<postmaster>` of RFC 5321 §4.5.1.
            let txn = self.txn.as_mut().expect("checked above");
            txn.recipients.push(AcceptedRecipient {
                rcpt: resolve::POSTMASTER.into(),
                alias: resolve::POSTMASTER.into(),
                destinations: vec![postmaster.clone()],
            });
            self.reply(&Reply::new(250, [2, 1, 5], "Recipient OK"));
            return Flow::Continue;
        }
        let mailbox = match Mailbox::check(address) {
            Ok(mailbox) => mailbox,
            Err(_) if bare_postmaster => {
                return self.reject(unknown_user(), "unknown_user");
            }
            Err(e) if e.is_disallowed_name() => {
                let text = format!("Error: recipient address not allowed: {e}");
                return self.reject(Reply::owned(553, [5, 1, 3], text), "bad_address");
            }
            Err(e) => return self.reject(bad_syntax(&e.to_string()), "bad_address"),
        };
        let resolution = match self
            .ctx
            .srs
            .as_ref()
            .and_then(|srs| resolve::srs_bounce(srs, &mailbox))
        {
            Some(bounce) => Ok(bounce),
            None => {
                let governed = self.ctx.config.chain.governing_tld(&mailbox.domain);
                resolve::recipient(&self.ctx.store, &mailbox, postmaster, governed.is_some())
            }
        };
        match resolution {
            Ok(Resolution::Forward {
                alias,
                destinations,
            }) => {
                let txn = self.txn.as_mut().expect("checked above");
                txn.recipients.push(AcceptedRecipient {
                    rcpt: mailbox.to_string(),
                    alias,
                    destinations,
                });
                self.reply(&Reply::new(250, [2, 1, 5], "Recipient OK"));
                Flow::Continue
            }
            Ok(Resolution::UnknownUser) => self.reject(unknown_user(), "unknown_user"),
            Ok(Resolution::BadBounceAddress) => self.reject(
                Reply::new(550, [5, 1, 1], "Error: invalid or expired bounce address"),
                "bad_bounce_address",
            ),
            Ok(Resolution::NotLocal) => self.reject(
                Reply::new(550, [5, 7, 1], "Error: relay access denied"),
                "relay_denied",
            ),
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                self.reply(&Reply::new(
                    451,
                    [4, 3, 0],
                    "Error: temporary lookup failure",
                ));
                Flow::Continue
            }
        }
    }

    /// An RCPT TO smtp-proto cannot parse. It refuses address literals
    /// (`u@[127.0.0.1]`), which are relay attempts like the other tricks
    /// and get the same `550 5.7.1`; anything else (`<@d>`, `<info@@d>`)
    /// is bad syntax, `501 5.1.3`.
    pub(super) fn rcpt_unparsed(&mut self, line: &[u8]) -> Flow {
        let text = String::from_utf8_lossy(line);
        match raw_path(&text).map(check_relay_tricks) {
            Some(Err(trick)) if trick != RelayTrick::Malformed => {
                let text = format!("Error: relay access denied: {}", trick.describe());
                self.reject(Reply::owned(550, [5, 7, 1], text), "relay_denied")
            }
            _ => self.reject(bad_syntax("malformed address"), "bad_address"),
        }
    }
}

/// The one answer to every address that does not forward: the same for a
/// name that is not registered, has no alias, has expired or is suspended,
/// so that RCPT tells nobody which names have aliases.
fn unknown_user() -> Reply {
    Reply::new(
        550,
        [5, 1, 1],
        "Error: recipient address rejected: user unknown",
    )
}

/// A recipient address that is not `local@domain` (`501 5.1.3`).
fn bad_syntax(why: &str) -> Reply {
    Reply::owned(
        501,
        [5, 1, 3],
        format!("Error: bad recipient address syntax: {why}"),
    )
}
