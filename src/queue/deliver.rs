//! The one thing the scheduler needs from delivery: hand a domain's
//! recipients of one message to the next hop and hear one outcome per
//! recipient. A trait so the scheduler can be tested with a scripted target.

use crate::outbound::{Attempt, Envelope, Outbound, Payload};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so the trait stays object safe (`Arc<dyn Deliver>`).
pub(crate) type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Vec<Attempt>> + Send + 'a>>;

/// Where the scheduler sends due recipients.
pub(crate) trait Deliver: Send + Sync + 'static {
    /// Delivers `payload` to `rcpts` (all at `domain`); one [`Attempt`]
    /// per recipient, in order.
    fn deliver<'a>(
        &'a self,
        domain: &'a str,
        envelope: &'a Envelope,
        rcpts: &'a [String],
        payload: &'a Payload,
    ) -> DeliverFuture<'a>;
}

impl Deliver for Outbound {
    fn deliver<'a>(
        &'a self,
        domain: &'a str,
        envelope: &'a Envelope,
        rcpts: &'a [String],
        payload: &'a Payload,
    ) -> DeliverFuture<'a> {
        Box::pin(Outbound::deliver(self, domain, envelope, rcpts, payload))
    }
}
