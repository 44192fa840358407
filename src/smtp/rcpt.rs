//! RCPT TO: refuse relay tricks and foreign domains (never an open relay),
//! resolve the alias, and reject unknown ones before any data is sent.

use super::session::{Flow, Io, Session};
use crate::address::{Mailbox, RelayTrick, check_relay_tricks, raw_path};
use crate::net::NetKey;
use crate::queue::AcceptedRecipient;
use crate::recipients::{self, Resolution};
use crate::reply::Reply;
use crate::rewrite::srs::{Srs, SrsError};
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
        let bare_postmaster = address.is_empty()
            && raw.is_some_and(|r| r.eq_ignore_ascii_case(recipients::POSTMASTER));
        if bare_postmaster && !postmaster.is_empty() {
            // The bare `<postmaster>` of RFC 5321 §4.5.1, but not in a
            // bounce, which travels alone.
            if self.txn.as_ref().is_some_and(|t| t.bounce_to.is_some()) {
                return self.one_bounce_recipient();
            }
            let txn = self.txn.as_mut().expect("checked above");
            txn.recipients.push(AcceptedRecipient {
                rcpt: recipients::POSTMASTER.into(),
                alias: recipients::POSTMASTER.into(),
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
        if let Some(srs) = &self.ctx.srs
            && mailbox.domain.eq_ignore_ascii_case(srs.domain())
        {
            let srs = srs.clone();
            return self.rcpt_bounce(&srs, &mailbox);
        }
        let governed = self.ctx.config.chain.governing_tld(&mailbox.domain);
        let resolution =
            recipients::recipient(&self.ctx.store, &mailbox, postmaster, governed.is_some());
        match resolution {
            Ok(Resolution::Forward { .. })
                if self.txn.as_ref().is_some_and(|t| t.bounce_to.is_some()) =>
            {
                self.one_bounce_recipient()
            }
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

    /// RCPT TO an address at the SRS domain: a bounce coming back. Only
    /// what a bounce path carries is accepted (by default the null sender,
    /// alone in its transaction, within its address's daily budget), and
    /// failed reversals count against the client's network, so that RCPT
    /// is no oracle for guessing hashes.
    fn rcpt_bounce(&mut self, srs: &Srs, mailbox: &Mailbox) -> Flow {
        let net = NetKey::of(self.peer.ip());
        if self.ctx.guards.srs_failures.blocked(net) {
            return self.srs_guessing();
        }
        let original = match srs.reverse(&mailbox.to_string()) {
            Ok(original) => original,
            Err(e) => {
                let guess = matches!(e, SrsError::BadHash | SrsError::Expired);
                if guess && self.ctx.guards.srs_failures.record(net) {
                    tracing::info!(client = %self.peer.ip(), network = %net, "SRS reversal failures over the limit");
                    return self.srs_guessing();
                }
                return self.reject(
                    Reply::new(550, [5, 1, 1], "Error: invalid or expired bounce address"),
                    "bad_bounce_address",
                );
            }
        };
        let srs_config = &self.ctx.config.srs;
        let Some(txn) = &self.txn else {
            return self.error(Reply::new(503, [5, 5, 1], "Error: need MAIL command"));
        };
        if !txn.sender.is_empty() && !srs_config.allow_non_null_senders {
            return self.reject(
                Reply::new(
                    550,
                    [5, 7, 1],
                    "Error: this bounce address accepts only delivery reports and auto-replies (null sender <>)",
                ),
                "srs_not_bounce",
            );
        }
        if !txn.recipients.is_empty() {
            return self.one_bounce_recipient();
        }
        if !self.ctx.guards.bounces.has_room(&original) {
            return self.reject(bounce_cap_reply(), "srs_bounce_cap");
        }
        let Some(txn) = self.txn.as_mut() else {
            return self.error(Reply::new(503, [5, 5, 1], "Error: need MAIL command"));
        };
        txn.bounce_to = Some(original.clone());
        txn.recipients.push(AcceptedRecipient {
            rcpt: mailbox.to_string(),
            alias: mailbox.to_string(),
            destinations: vec![original],
        });
        self.reply(&Reply::new(250, [2, 1, 5], "Recipient OK"));
        Flow::Continue
    }

    /// A bounce travels alone: the other recipients are for a later
    /// transaction (RFC 5321 §4.5.3.1.10), so this is not a client error.
    fn one_bounce_recipient(&mut self) -> Flow {
        metrics::counter!("eas_messages_rejected_total", "reason" => "srs_one_recipient")
            .increment(1);
        self.reply(&Reply::new(
            452,
            [4, 5, 3],
            "Error: a bounce takes one recipient per transaction",
        ));
        Flow::Continue
    }

    /// The client's network failed too many SRS reversals: tempfail, close.
    fn srs_guessing(&mut self) -> Flow {
        metrics::counter!("eas_messages_rejected_total", "reason" => "srs_guessing").increment(1);
        let text = format!(
            "{} Error: too many invalid bounce addresses from your network, try again later",
            self.ctx.config.hostname
        );
        self.reply(&Reply::owned(451, [4, 7, 1], text));
        Flow::Close
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

/// An original sender's daily bounce budget is spent.
pub(super) fn bounce_cap_reply() -> Reply {
    Reply::new(
        450,
        [4, 7, 1],
        "Error: too many bounces to this address today, try again later",
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
