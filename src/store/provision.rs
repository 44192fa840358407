//! Domains whose DNS records are still to be written into the zone (or,
//! with `remove_on_deactivate_all`, removed from it): queued with the first
//! activation of a name, with the last alias of a `/deactivate-all`, or
//! with a static domain's creation (each in that change's transaction), or
//! by an operator; drained by the provisioning worker, which records each
//! failure and when to try again, and removes a row once its operation is
//! done. One row per domain: a later operation flips the row's kind.

use super::db::{Store, StoreError, decode, encode, get_decoded, now_ms};
use super::records::{PendingProvision, ProvisionKind};
use super::tables::DNS_PENDING;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::sync::atomic::Ordering;

/// Queues `kind` for `domain` in `txn`. A row of the same kind keeps its
/// attempts and backoff; a row of the other kind becomes a new operation
/// (due now): only the latest wish about a name counts.
pub(super) fn enqueue_in(
    txn: &redb::WriteTransaction,
    domain: &str,
    kind: ProvisionKind,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(DNS_PENDING)?;
    let current: Option<PendingProvision> = get_decoded(&table, "dns_pending", domain)?;
    if current.is_none_or(|row| row.kind != kind) {
        let now = now_ms();
        let row = PendingProvision {
            kind,
            since_ms: now,
            next_ms: now,
            ..Default::default()
        };
        table.insert(domain, encode(&row).as_slice())?;
    }
    Ok(())
}

impl Store {
    /// Whether the first activation of a chain name queues its DNS
    /// provisioning (set by the node from `dns_provisioning.enabled`).
    pub fn set_provision_on_activation(&self, on: bool) {
        self.provision_on_activation.store(on, Ordering::Relaxed);
    }

    /// Whether the last alias of a name going through `/deactivate-all`
    /// queues the removal of its records (`remove_on_deactivate_all`).
    pub fn set_remove_on_deactivate_all(&self, on: bool) {
        self.remove_on_deactivate_all.store(on, Ordering::Relaxed);
    }

    /// Queues `domain` for provisioning (an operator's request); a domain
    /// already queued for it keeps its place.
    pub fn provision_enqueue(&self, domain: &str) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        enqueue_in(&txn, domain, ProvisionKind::Provision)?;
        txn.commit()?;
        Ok(())
    }

    /// Up to `limit` queued domains due at `now` (Unix ms), earliest first.
    pub fn provision_due(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<(String, PendingProvision)>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(DNS_PENDING)?;
        let mut due = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let pending: PendingProvision = decode("dns_pending", k.value(), v.value())?;
            if pending.next_ms <= now {
                due.push((k.value().to_string(), pending));
            }
        }
        due.sort_by_key(|(_, p)| p.next_ms);
        due.truncate(limit);
        Ok(due)
    }

    /// Every queued domain (the CLI and tests).
    pub fn provision_pending(&self) -> Result<Vec<(String, PendingProvision)>, StoreError> {
        self.read_all("dns_pending", DNS_PENDING)
    }

    /// How many domains wait for provisioning.
    pub fn provision_pending_count(&self) -> Result<u64, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(txn.open_table(DNS_PENDING)?.len()?)
    }

    /// `kind` is done for `domain`: off the queue, unless the row flipped
    /// to the other kind meanwhile (that operation is still to do).
    pub fn provision_done(&self, domain: &str, kind: ProvisionKind) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            let mut table = txn.open_table(DNS_PENDING)?;
            let current: Option<PendingProvision> = get_decoded(&table, "dns_pending", domain)?;
            if current.is_some_and(|row| row.kind == kind) {
                table.remove(domain)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// A failed `kind` of `domain`: counted, with its reason, and tried
    /// again at `next_ms` (a domain no longer queued, or queued for the
    /// other kind meanwhile, is left as it is).
    pub fn provision_failed(
        &self,
        domain: &str,
        kind: ProvisionKind,
        next_ms: u64,
        error: &str,
    ) -> Result<PendingProvision, StoreError> {
        let txn = self.db().begin_write()?;
        let row = {
            let mut table = txn.open_table(DNS_PENDING)?;
            let mut row: PendingProvision =
                match get_decoded::<PendingProvision>(&table, "dns_pending", domain)? {
                    Some(row) if row.kind == kind => row,
                    Some(row) => return Ok(row),
                    None => return Ok(PendingProvision::default()),
                };
            row.attempts = row.attempts.saturating_add(1);
            row.next_ms = next_ms;
            row.last_error = error.chars().take(500).collect();
            table.insert(domain, encode(&row).as_slice())?;
            row
        };
        txn.commit()?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProvisionKind = ProvisionKind::Provision;
    const R: ProvisionKind = ProvisionKind::Remove;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn queued_domains_come_due_fail_with_backoff_and_leave_when_done() {
        let (_dir, store) = store();
        store.provision_enqueue("a.country").unwrap();
        store.provision_enqueue("b.country").unwrap();
        assert_eq!(store.provision_pending_count().unwrap(), 2);
        let due = store.provision_due(u64::MAX, 10).unwrap();
        assert_eq!(due.len(), 2);
        let later = now_ms() + 60_000;
        let row = store
            .provision_failed("a.country", P, later, "redis: connection refused")
            .unwrap();
        assert_eq!(row.attempts, 1);
        assert_eq!(row.last_error, "redis: connection refused");
        let due: Vec<String> = store
            .provision_due(now_ms(), 10)
            .unwrap()
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        assert_eq!(due, vec!["b.country".to_string()]);
        // Queuing again keeps the backoff of a failing domain.
        store.provision_enqueue("a.country").unwrap();
        assert_eq!(store.provision_pending().unwrap()[0].1.attempts, 1);
        store.provision_done("b.country", P).unwrap();
        store.provision_done("a.country", P).unwrap();
        assert_eq!(store.provision_pending_count().unwrap(), 0);
        // A failure reported for a domain no longer queued does not queue it.
        store.provision_failed("a.country", P, later, "x").unwrap();
        assert_eq!(store.provision_pending_count().unwrap(), 0);
    }

    #[test]
    fn a_later_wish_flips_the_row_and_an_earlier_operation_cannot_end_it() {
        let (_dir, store) = store();
        let queue = |kind| {
            let txn = store.db().begin_write().unwrap();
            enqueue_in(&txn, "a.country", kind).unwrap();
            txn.commit().unwrap();
        };
        queue(P);
        let later = now_ms() + 60_000;
        store
            .provision_failed("a.country", P, later, "down")
            .unwrap();
        // The removal is a new operation: due now, no failures yet.
        queue(R);
        let row = &store.provision_pending().unwrap()[0].1;
        assert_eq!((row.kind, row.attempts), (R, 0));
        assert!(row.next_ms <= now_ms());
        // The provisioning that was under way ends: the removal stays, and
        // a failure of that provisioning does not count against it.
        store.provision_done("a.country", P).unwrap();
        store.provision_failed("a.country", P, later, "x").unwrap();
        let row = &store.provision_pending().unwrap()[0].1;
        assert_eq!((row.kind, row.attempts), (R, 0));
        // A re-activation flips it back.
        queue(P);
        assert_eq!(store.provision_pending().unwrap()[0].1.kind, P);
        store.provision_done("a.country", P).unwrap();
        assert_eq!(store.provision_pending_count().unwrap(), 0);
    }
}
