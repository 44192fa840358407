//! RCPT TO: refuse relay tricks and foreign domains (never an open relay),
//! resolve the alias, and reject unknown ones before any data is sent.

use super::reply::Reply;
use super::session::{AcceptedRecipient, Flow, Io, Session};
use crate::address::{Mailbox, check_relay_tricks, raw_path};
use crate::resolve::{self, Resolution};
use smtp_proto::RcptTo;
use std::borrow::Cow;

impl<T: Io> Session<T> {
    pub(super) fn rcpt_to(&mut self, to: RcptTo<Cow<'_, str>>, line: &[u8]) -> Flow {
        let Some(txn) = &self.txn else {
            return self.error(Reply::new(503, [5, 5, 1], "Error: need MAIL command"));
        };
        if txn.recipients.len() >= self.ctx.config.smtp.max_recipients {
            return self.reject(
                Reply::new(452, [4, 5, 3], "Error: too many recipients"),
                "too_many_recipients",
            );
        }
        let smtputf8 = txn.smtputf8;
        // smtp-proto strips source routes and quotes; judge what was sent.
        let raw = std::str::from_utf8(line).ok().and_then(raw_path);
        if let Some(Err(trick)) = raw.map(check_relay_tricks)
            && !to.address.is_empty()
        {
            let text = format!("Error: relay access denied: {}", trick.describe());
            return self.reject(Reply::owned(550, [5, 7, 1], text), "relay_denied");
        }
        let address = to.address.as_ref();
        if !address.is_ascii() && !smtputf8 {
            return self.error(Reply::new(
                553,
                [5, 6, 7],
                "Error: SMTPUTF8 is required for a non-ASCII address",
            ));
        }
        let Some(mailbox) = Mailbox::parse(address) else {
            return self.reject(
                Reply::new(
                    550,
                    [5, 1, 1],
                    "Error: recipient address rejected: user unknown",
                ),
                "unknown_user",
            );
        };
        match resolve::recipient(&self.ctx.store, &mailbox) {
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
            Ok(Resolution::UnknownUser) => self.reject(
                Reply::new(
                    550,
                    [5, 1, 1],
                    "Error: recipient address rejected: user unknown",
                ),
                "unknown_user",
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
}
