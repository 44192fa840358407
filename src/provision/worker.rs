//! The provisioning worker: drains the store's queue of names waiting for
//! their DNS records to be written (or removed), one batch of due names at
//! a time; a success removes the name, a failure is logged with its reason
//! and tried again after a doubling delay (a failure in the labels'
//! content: after `retry_max`). A name no longer ours is dropped before
//! its write. It keeps `eas_dns_provision_pending` and
//! `eas_dns_provision_failing` up to date.

use super::{Outcome, ProvisionError, Provisioner, ZoneWriter};
use crate::config::DnsProvisioningConfig;
use crate::store::{PendingProvision, ProvisionKind, Store, now_ms};
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

/// One pass over the due names; true when a whole batch was handled and
/// recorded (more may be due). An unreachable zone ends the pass at its
/// first failure: the other names keep their turn instead of each waiting
/// out a timeout. A store that cannot record an outcome ends it too (the
/// caller then sleeps: repeating the same batch at once would spin).
pub(crate) async fn pass<Z: ZoneWriter>(
    provisioner: &Provisioner<Z>,
    store: &Arc<Store>,
    config: &DnsProvisioningConfig,
) -> bool {
    let retry_max = u64::try_from(config.retry_max.0.as_millis()).unwrap_or(u64::MAX);
    let due = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let now = now_ms();
            store.provision_due(now, now.saturating_add(retry_max), BATCH)
        })
        .await
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
    let mut recorded = 0;
    for (domain, pending) in due {
        let (outcome, unreachable) = handle(provisioner, store, config, domain, pending).await;
        match outcome {
            Ok(Ok(())) => recorded += 1,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot update the DNS provisioning queue");
                break;
            }
            Err(_) => break,
        }
        if unreachable {
            break;
        }
    }
    let store = store.clone();
    if let Ok(Ok((pending, failing))) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((
            store.provision_pending_count()?,
            store.provision_failing_count()?,
        ))
    })
    .await
    {
        metrics::gauge!("eas_dns_provision_pending").set(pending as f64);
        metrics::gauge!("eas_dns_provision_failing").set(failing as f64);
    }
    full && recorded == BATCH
}

/// Does one due name's operation and records its outcome in the store;
/// also says whether the zone looked unreachable.
async fn handle<Z: ZoneWriter>(
    provisioner: &Provisioner<Z>,
    store: &Arc<Store>,
    config: &DnsProvisioningConfig,
    domain: String,
    pending: PendingProvision,
) -> (
    Result<Result<(), crate::store::StoreError>, tokio::task::JoinError>,
    bool,
) {
    let kind = pending.kind;
    if kind == ProvisionKind::Provision {
        // The name may have been removed, expired or changed hands while
        // its write waited: only a name still ours gets records.
        let wanted = {
            let (store, domain) = (store.clone(), domain.clone());
            let static_on = config.static_domains;
            tokio::task::spawn_blocking(move || store.provision_wanted(&domain, static_on)).await
        };
        match wanted {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::info!(%domain, "no longer a name of ours: its DNS provisioning is dropped");
                let store = store.clone();
                let done =
                    tokio::task::spawn_blocking(move || store.provision_done(&domain, kind)).await;
                return (done, false);
            }
            Ok(Err(e)) => return (Ok(Err(e)), false),
            Err(e) => return (Err(e), false),
        }
    }
    let mut result = provisioner.run(&domain, kind, false).await;
    if kind == ProvisionKind::Provision && matches!(result, Ok(Outcome::Written(_))) {
        // The name may have gone while the write waited on the zone (Redis
        // slow, or down and back): what was written for it is taken back.
        let gone = {
            let (store, domain) = (store.clone(), domain.clone());
            let static_on = config.static_domains;
            tokio::task::spawn_blocking(move || store.provision_wanted(&domain, static_on)).await
        };
        if matches!(gone, Ok(Ok(false))) {
            tracing::info!(%domain, "removed while its DNS records were written: taken back");
            result = provisioner.run(&domain, ProvisionKind::Remove, false).await;
        }
    }
    let store = store.clone();
    match result {
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
            let done =
                tokio::task::spawn_blocking(move || store.provision_done(&domain, kind)).await;
            (done, false)
        }
        Err(e) => {
            let unreachable = matches!(
                e,
                ProvisionError::Unreachable(_) | ProvisionError::Timeout(_)
            );
            let permanent = e.is_permanent();
            // Label content does not fix itself within seconds: try again
            // at the longest delay only (and count it as failing).
            let delay = if permanent {
                config.retry_max.0
            } else {
                config.backoff(pending.attempts)
            };
            let next =
                now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
            tracing::warn!(
                %domain,
                error = %e,
                permanent,
                attempts = pending.attempts.saturating_add(1),
                retry_in_s = delay.as_secs(),
                "DNS provisioning failed; will retry"
            );
            let reason = e.to_string();
            let failed = tokio::task::spawn_blocking(move || {
                store
                    .provision_failed(&domain, kind, next, &reason, permanent)
                    .map(|_| ())
            })
            .await;
            (failed, unreachable)
        }
    }
}
