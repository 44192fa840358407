//! Inbound SMTP: the accept loop with its limits, and the session state
//! machine (one file per verb) over smtp-proto's sans-IO parser. Nothing
//! here decides where mail goes; it asks `recipients` and hands accepted
//! messages to the `queue`.
//!
//! `listener` accepts connections and starts a `session`; the session frames
//! command lines and dispatches to the verb files (`ehlo`, `mail`, `rcpt`,
//! `data`, `starttls`, `vrfy`). Message bytes go through `receiver` (where
//! DATA ends, BDAT sizes) into `incoming` (limits, body streamed to the
//! spool); `data` then checks, has `scan` ask rspamd, prepares and queues
//! the message. `guard` holds the budgets all sessions share; `prescreen`
//! acts on the verdict of `crate::screen` before the greeting. Imports run one way: the verb files
//! use `session`, `session` uses `receiver` and `incoming`, never back.

mod data;
mod ehlo;
pub(crate) mod guard;
mod incoming;
pub(crate) mod listener;
mod mail;
mod prescreen;
mod rcpt;
mod receiver;
mod scan;
mod session;
mod starttls;
mod vrfy;

#[cfg(test)]
mod tests;

use crate::config::Config;
use crate::queue::Queue;
use crate::rewrite::pipeline::Forwarding;
use crate::rewrite::srs::Srs;
use crate::store::Store;
use std::sync::Arc;

/// What every session shares.
pub(crate) struct SmtpContext {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<Store>,
    pub(crate) queue: Queue,
    /// None when STARTTLS is off.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// None when SRS is off.
    pub(crate) srs: Option<Srs>,
    /// Verdicts, From rewrite, signatures: every accepted message goes through it.
    pub(crate) forwarding: Arc<Forwarding>,
    /// Budgets shared by all sessions (bounces per address, SRS failures).
    pub(crate) guards: guard::Guards,
    /// Connection screening; None when `screen.enabled` is off.
    pub(crate) screen: Option<Arc<crate::screen::Screen>>,
    /// Content scanning at the end of DATA; None when `scan.enabled` is off.
    pub(crate) scanner: Option<Arc<crate::scan::Scanner>>,
}
