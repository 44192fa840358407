//! STARTTLS (RFC 3207): agree, then the session hands the stream to the
//! TLS acceptor; input pipelined after the command is thrown away.

use super::session::{Flow, Io, Session};
use crate::reply::Reply;

impl<T: Io> Session<T> {
    pub(super) fn starttls(&mut self) -> Flow {
        if self.tls.is_some() {
            return self.error(Reply::new(503, [5, 5, 1], "Error: TLS already active"));
        }
        if self.ctx.tls.is_none() {
            return self.error(Reply::new(502, [5, 5, 1], "Error: command not implemented"));
        }
        self.reply(&Reply::new(220, [2, 0, 0], "Ready to start TLS"));
        Flow::StartTls
    }
}
