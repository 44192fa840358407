//! VRFY and EXPN: a forwarder never confirms or lists addresses (that
//! would let anyone harvest aliases); VRFY gets the RFC 5321 §3.5.3 `252`.

use super::session::{Flow, Io, Session};
use crate::reply::Reply;

impl<T: Io> Session<T> {
    pub(super) fn vrfy(&mut self) -> Flow {
        self.reply(&Reply::new(
            252,
            [2, 5, 2],
            "Cannot VRFY user, but will accept message and attempt delivery",
        ));
        Flow::Continue
    }

    pub(super) fn expn(&mut self) -> Flow {
        self.error(Reply::new(502, [5, 5, 1], "Error: command not implemented"))
    }
}
