//! EHLO and HELO: remember the client's name, reset any transaction, and
//! announce the extensions (RFC 5321 §4.1.1.1; no enhanced code, RFC 2034).

use super::session::{Flow, Helo, Io, Session};
use crate::message::sanitize_header_text;
use crate::reply::Reply;

impl<T: Io> Session<T> {
    pub(super) fn ehlo(&mut self, host: &str, esmtp: bool) -> Flow {
        self.txn = None;
        self.helo = Some(Helo {
            name: sanitize_header_text(host),
            esmtp,
        });
        let config = &self.ctx.config;
        let mut text = config.hostname.clone();
        if esmtp {
            text.push_str("\nPIPELINING");
            text.push_str(&format!("\nSIZE {}", config.smtp.max_message_size.0));
            text.push_str("\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES");
            if self.tls.is_none() && self.ctx.tls.is_some() {
                text.push_str("\nSTARTTLS");
            }
            text.push_str("\nCHUNKING");
        }
        self.reply(&Reply {
            code: 250,
            enhanced: None,
            text: text.into(),
        });
        Flow::Continue
    }
}
