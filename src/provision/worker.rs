//! The provisioning worker: drains the store's queue of names waiting for
//! their DNS records to be written (or removed), one batch of due names at
//! a time; a success removes the name, a failure is logged with its reason and tried again after a
//! doubling delay. It keeps `eas_dns_provision_pending` up to date.

use super::{Outcome, ProvisionError, Provisioner, ZoneWriter};
use crate::config::DnsProvisioningConfig;
use crate::store::{Store, now_ms};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the queue is looked at for due names.
const POLL: Duration = Duration::from_millis(250);
/// Names tried per pass (one bad name never holds up the others: each is
/// tried on its own and fails on its own).
const BATCH: usize = 64;

/// Runs until `stop` turns true. A pass in progress is dropped at stop (a
/// name whose write was under way stays queued: writing it again is
/// harmless, the edit is idempotent).
pub(crate) async fn run<Z: ZoneWriter + 'static>(
    provisioner: Arc<Provisioner<Z>>,
    store: Arc<Store>,
    config: DnsProvisioningConfig,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let more = tokio::select! {
            more = pass(&provisioner, &store, &config) => more,
            _ = stop.wait_for(|s| *s) => break,
        };
        if more {
            // A full batch went through: the next is due at once.
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// One pass over the due names; true when a whole batch was written (more
/// may be due). An unreachable zone ends the pass at its first failure:
/// the other names keep their turn instead of each waiting out a timeout.
pub(crate) async fn pass<Z: ZoneWriter>(
    provisioner: &Provisioner<Z>,
    store: &Arc<Store>,
    config: &DnsProvisioningConfig,
) -> bool {
    let due = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.provision_due(now_ms(), BATCH)).await
    };
    let due = match due {
        Ok(Ok(due)) => due,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the DNS provisioning queue");
            return false;
        }
        Err(_) => return false,
    };
    let full = due.len() >= BATCH;
    let mut done = 0;
    let mut unreachable = false;
    for (domain, pending) in due {
        let kind = pending.kind;
        let result = provisioner.run(&domain, kind, false).await;
        let store = store.clone();
        let outcome = match result {
            Ok(outcome) => {
                match &outcome {
                    Outcome::Written(changes) => tracing::info!(
                        %domain,
                        ?kind,
                        labels = %changes.iter().map(|c| c.label).collect::<Vec<_>>().join(","),
                        "DNS records written into the zone"
                    ),
                    Outcome::Unchanged => {
                        tracing::debug!(%domain, "zone already holds the DNS records")
                    }
                    Outcome::NotOurZone => {
                        tracing::info!(%domain, "not under a provisioned TLD: nothing to write")
                    }
                }
                done += 1;
                tokio::task::spawn_blocking(move || store.provision_done(&domain, kind)).await
            }
            Err(e) => {
                unreachable = matches!(
                    e,
                    ProvisionError::Unreachable(_) | ProvisionError::Timeout(_)
                );
                let delay = config.backoff(pending.attempts);
                let next = now_ms().saturating_add(delay.as_millis() as u64);
                tracing::warn!(
                    %domain,
                    error = %e,
                    attempts = pending.attempts.saturating_add(1),
                    retry_in_s = delay.as_secs(),
                    "DNS provisioning failed; will retry"
                );
                let reason = e.to_string();
                tokio::task::spawn_blocking(move || {
                    store
                        .provision_failed(&domain, kind, next, &reason)
                        .map(|_| ())
                })
                .await
            }
        };
        if let Ok(Err(e)) = outcome {
            tracing::warn!(error = %e, "cannot update the DNS provisioning queue");
        }
        if unreachable {
            break;
        }
    }
    let store = store.clone();
    if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || store.provision_pending_count()).await {
        metrics::gauge!("eas_dns_provision_pending").set(n as f64);
    }
    full && done == BATCH
}
