//! MAIL FROM: starts a transaction after checking sequence, declared size,
//! body type and sender syntax.

use super::reply::Reply;
use super::session::{Flow, Io, Session, Transaction, oversize_reply};
use crate::address::Mailbox;
use smtp_proto::{MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, MailFrom};
use std::borrow::Cow;

impl<T: Io> Session<T> {
    pub(super) fn mail_from(&mut self, from: MailFrom<Cow<'_, str>>) -> Flow {
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
        if from.size as u64 > self.ctx.config.smtp.max_message_size.0 {
            return self.reject(oversize_reply(), "too_big");
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let sender = from.address.as_ref();
        if !sender.is_empty() {
            if !sender.is_ascii() && !smtputf8 {
                return self.error(Reply::new(
                    553,
                    [5, 6, 7],
                    "Error: SMTPUTF8 is required for a non-ASCII address",
                ));
            }
            if Mailbox::parse(sender).is_none() {
                return self.error(Reply::new(
                    501,
                    [5, 1, 7],
                    "Error: bad sender address syntax",
                ));
            }
        }
        self.txn = Some(Transaction {
            sender: sender.to_string(),
            smtputf8,
            recipients: Vec::new(),
            body: Vec::new(),
            failed: None,
        });
        self.reply(&Reply::new(250, [2, 1, 0], "Sender OK"));
        Flow::Continue
    }
}
