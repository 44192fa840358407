//! What the relay changes in a message it forwards: the envelope sender
//! (SRS), From for DMARC-strict senders, and the signatures it adds (DKIM
//! with its own domain, the ARC seal). The original headers and body are
//! never altered otherwise, so the sender's own DKIM still verifies, except
//! that `Authentication-Results` fields forged in the relay's name are
//! removed (RFC 8601 §5).

pub mod domain_keys;
pub(crate) mod envelope;
pub mod from;
pub mod keys;
pub mod pipeline;
pub mod results;
pub mod sign;
pub mod srs;
