//! The DNS records a served domain should publish, and whether it does.
//! What an operator publishes for an alias domain and for the relay (MX,
//! SPF, DKIM, DMARC, each with the reason), printed in zone-file form
//! (`eas-relay dns records`); a live check of those records (`eas-relay dns
//! check`, the API's DNS check); and a new DKIM key with its config block
//! and record (`eas-relay dkim keygen`).
//!
//! The [`Plan`] (what should be published) comes from the config and the
//! DKIM keys. A check first looks everything up ([`lookup`], the only part
//! that asks DNS), then judges the answers ([`report`], pure), so every
//! verdict is testable without a DNS server.

mod keygen;
mod lookup;
mod plan;
mod render;
mod report;
#[cfg(test)]
mod tests;

pub(crate) use keygen::{KeygenError, keygen};
pub(crate) use plan::{Plan, records};
pub(crate) use render::zone;
pub(crate) use report::{Check, passed, report};

use hickory_resolver::TokioResolver;
use lookup::observe;
use report::evaluate;

/// Looks up and judges every record of `plan`.
pub(crate) async fn check(plan: &Plan, resolver: &TokioResolver) -> Vec<Check> {
    let observed = observe(plan, resolver).await;
    evaluate(plan, &observed)
}
