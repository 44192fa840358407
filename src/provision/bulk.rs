//! Provisioning many names at once (`eas-relay dns provision --all`):
//! a bounded number in flight on the one multiplexed connection, so that
//! their commands are pipelined; one failing name never stops the others.

use super::{Outcome, Provisioner, ZoneWriter};
use std::sync::Arc;
use tokio::task::JoinSet;

/// What a bulk run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Names whose labels were written (or, in a dry run, would be).
    pub written: usize,
    /// Names whose zone already held the records.
    pub unchanged: usize,
    /// Names under no provisioned TLD.
    pub not_our_zone: usize,
    /// (name, why) of every name that failed.
    pub failed: Vec<(String, String)>,
}

/// Provisions every name of `domains`, at most `in_flight` at a time;
/// `progress` is called once per name done.
pub async fn provision_many<Z: ZoneWriter + 'static>(
    provisioner: Arc<Provisioner<Z>>,
    domains: Vec<String>,
    dry_run: bool,
    in_flight: usize,
    mut progress: impl FnMut(&str, &Result<Outcome, super::ProvisionError>),
) -> Summary {
    let mut summary = Summary::default();
    let mut tasks = JoinSet::new();
    let mut names = domains.into_iter();
    loop {
        while tasks.len() < in_flight.max(1) {
            let Some(name) = names.next() else { break };
            let p = provisioner.clone();
            tasks.spawn(async move {
                let result = p.provision(&name, dry_run).await;
                (name, result)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (name, result) = match joined {
            Ok(done) => done,
            Err(e) => {
                summary
                    .failed
                    .push(("?".into(), format!("task failed: {e}")));
                continue;
            }
        };
        progress(&name, &result);
        match result {
            Ok(Outcome::Written(_)) => summary.written += 1,
            Ok(Outcome::Unchanged) => summary.unchanged += 1,
            Ok(Outcome::NotOurZone) => summary.not_our_zone += 1,
            Err(e) => summary.failed.push((name, e.to_string())),
        }
    }
    summary
}
