//! The envelope sender towards the next hop: the SRS form of a forwarded
//! sender, so that SPF at the destination checks this relay rather than
//! failing for the original sender's domain.

use super::srs::Srs;
use crate::address::Mailbox;
use crate::store::Store;

/// The SRS form of `sender` for the next hop, when it needs one: not when
/// SRS is off (`srs` None), not for the null sender, and not for senders
/// at a domain this relay serves.
pub(crate) fn srs_sender(srs: Option<&Srs>, store: &Store, sender: &str) -> Option<String> {
    let srs = srs?;
    let mailbox = Mailbox::parse(sender)?;
    match store.domain_get(&mailbox.domain) {
        Ok(None) => Some(srs.forward(sender)),
        Ok(Some(_)) => None,
        Err(e) => {
            // Rewriting is the safe default: it only costs the sender's
            // SPF alignment, never delivery.
            tracing::warn!(error = %e, "domain lookup failed; rewriting the sender");
            Some(srs.forward(sender))
        }
    }
}
