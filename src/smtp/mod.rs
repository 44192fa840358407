//! Inbound SMTP: the accept loop with its limits, and the session state
//! machine (one file per verb) over smtp-proto's sans-IO parser. Nothing
//! here decides where mail goes; it asks `resolve` and hands accepted
//! messages to the `queue`.

mod data;
mod ehlo;
pub mod guard;
mod incoming;
pub mod listener;
mod mail;
mod rcpt;
mod receiver;
pub mod session;
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
pub struct SmtpContext {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub queue: Queue,
    /// None when STARTTLS is off.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// None when SRS is off.
    pub srs: Option<Srs>,
    /// Verdicts, From rewrite, signatures: every accepted message goes through it.
    pub forwarding: Arc<Forwarding>,
    /// Budgets shared by all sessions (bounces per address, SRS failures).
    pub guards: guard::Guards,
}
