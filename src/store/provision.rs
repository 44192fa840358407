//! Domains whose DNS records are still to be written into the zone (or,
//! with `remove_on_deactivate_all`, removed from it): queued with the first
//! activation of a name, with the last alias of a `/deactivate-all`, or
//! with a static domain's creation (each in that change's transaction), or
//! by an operator; drained by the provisioning worker, which records each
//! failure and when to try again, and removes a row once its operation is
//! done. One row per domain: a later operation flips the row's kind. An
//! index by next attempt time lets a pass read only the due rows.

use super::db::{Store, StoreError, encode, get_decoded, now_ms};
use super::records::{
    AliasRecord, DomainRecord, NameState, PendingProvision, ProvisionKind, Source,
};
use super::tables::{
    ALIASES, CHAIN_NAMES, DNS_FAILING, DNS_PENDING, DNS_PENDING_DUE, DOMAINS, alias_key,
};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::sync::atomic::Ordering;

/// Writes `row` for `domain` in `txn`, moving its entry in the due index
/// from `old` (the row it replaces, if any) and keeping the failing set true.
fn put_in(
    txn: &redb::WriteTransaction,
    domain: &str,
    old: Option<&PendingProvision>,
    row: &PendingProvision,
) -> Result<(), StoreError> {
    let mut due = txn.open_table(DNS_PENDING_DUE)?;
    if let Some(old) = old {
        due.remove((old.next_ms, domain))?;
    }
    due.insert((row.next_ms, domain), ())?;
    txn.open_table(DNS_PENDING)?
        .insert(domain, encode(row).as_slice())?;
    let mut failing = txn.open_table(DNS_FAILING)?;
    if row.permanent {
        failing.insert(domain, ())?;
    } else {
        failing.remove(domain)?;
    }
    Ok(())
}

/// Takes `domain`'s row (`row`) off the queue, its index and the failing set.
fn remove_in(
    txn: &redb::WriteTransaction,
    domain: &str,
    row: &PendingProvision,
) -> Result<(), StoreError> {
    txn.open_table(DNS_PENDING)?.remove(domain)?;
    txn.open_table(DNS_PENDING_DUE)?
        .remove((row.next_ms, domain))?;
    txn.open_table(DNS_FAILING)?.remove(domain)?;
    Ok(())
}

/// Builds the due index when it does not match the queue (a store written
/// before the index existed); called when the store opens.
pub(super) fn index_in(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let pending = txn.open_table(DNS_PENDING)?;
    let mut due = txn.open_table(DNS_PENDING_DUE)?;
    if pending.len()? == due.len()? {
        return Ok(());
    }
    due.retain(|_, _| false)?;
    for row in pending.iter()? {
        let (k, v) = row?;
        // A row that does not decode is left out of the index (it would
        // fail every pass); it stays visible to `provision_pending`.
        if let Ok(p) = serde_json::from_slice::<PendingProvision>(v.value()) {
            due.insert((p.next_ms, k.value()), ())?;
        }
    }
    Ok(())
}

/// Queues `kind` for `domain` in `txn`. A row of the same kind keeps its
/// attempts and backoff; a row of the other kind becomes a new operation
/// (due now): only the latest wish about a name counts.
pub(super) fn enqueue_in(
    txn: &redb::WriteTransaction,
    domain: &str,
    kind: ProvisionKind,
) -> Result<(), StoreError> {
    let current: Option<PendingProvision> =
        get_decoded(&txn.open_table(DNS_PENDING)?, "dns_pending", domain)?;
    if current.as_ref().is_none_or(|row| row.kind != kind) {
        let now = now_ms();
        let row = PendingProvision {
            kind,
            since_ms: now,
            next_ms: now,
            ..Default::default()
        };
        put_in(txn, domain, current.as_ref(), &row)?;
    }
    Ok(())
}

/// A domain removed in `txn`: its pending provisioning goes with it (the
/// name is no longer ours to write). A pending removal stays: it only
/// takes out what the relay wrote, which must not outlive the domain.
pub(super) fn forget_in(txn: &redb::WriteTransaction, domain: &str) -> Result<(), StoreError> {
    let current: Option<PendingProvision> =
        get_decoded(&txn.open_table(DNS_PENDING)?, "dns_pending", domain)?;
    if let Some(row) = current.filter(|row| row.kind == ProvisionKind::Provision) {
        remove_in(txn, domain, &row)?;
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

    /// Up to `limit` queued domains due at `now` (Unix ms), earliest first,
    /// read from the due index. A row due later than `latest` (written
    /// while the clock ran ahead) is first brought back to `latest`, so a
    /// clock jump cannot park a name for longer than the longest backoff.
    pub fn provision_due(
        &self,
        now: u64,
        latest: u64,
        limit: usize,
    ) -> Result<Vec<(String, PendingProvision)>, StoreError> {
        self.provision_cap(latest)?;
        let txn = self.db().begin_read()?;
        let index = txn.open_table(DNS_PENDING_DUE)?;
        let table = txn.open_table(DNS_PENDING)?;
        let mut due = Vec::new();
        for entry in index.range((0u64, "")..)? {
            if due.len() >= limit {
                break;
            }
            let (k, _) = entry?;
            let (next_ms, domain) = k.value();
            if next_ms > now {
                break;
            }
            // One row that does not decode is skipped, not the queue.
            if let Ok(Some(row)) = get_decoded::<PendingProvision>(&table, "dns_pending", domain) {
                due.push((domain.to_string(), row));
            }
        }
        Ok(due)
    }

    /// Re-times every row due after `latest` to `latest` (see
    /// [`Store::provision_due`]); reads only the index's last entry when
    /// there is none.
    fn provision_cap(&self, latest: u64) -> Result<(), StoreError> {
        {
            let txn = self.db().begin_read()?;
            let index = txn.open_table(DNS_PENDING_DUE)?;
            if index.last()?.is_none_or(|(k, _)| k.value().0 <= latest) {
                return Ok(());
            }
        }
        let txn = self.db().begin_write()?;
        let late: Vec<String> = {
            let index = txn.open_table(DNS_PENDING_DUE)?;
            let mut late = Vec::new();
            for entry in index.range((latest.saturating_add(1), "")..)? {
                late.push(entry?.0.value().1.to_string());
            }
            late
        };
        for domain in late {
            let old: Option<PendingProvision> =
                get_decoded(&txn.open_table(DNS_PENDING)?, "dns_pending", &domain)?;
            if let Some(old) = old {
                let row = PendingProvision {
                    next_ms: latest,
                    ..old.clone()
                };
                put_in(&txn, &domain, Some(&old), &row)?;
            }
        }
        txn.commit()?;
        Ok(())
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

    /// How many queued domains failed last on their labels' content
    /// (`eas_dns_provision_failing`).
    pub fn provision_failing_count(&self) -> Result<u64, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(txn.open_table(DNS_FAILING)?.len()?)
    }

    /// Whether `domain`'s records should still be written: it is still a
    /// domain here and either a chain name, unexpired, with an active alias
    /// (one that expired, was deactivated or changed owner has none), or a
    /// static domain while `static_domains` is on.
    pub fn provision_wanted(&self, domain: &str, static_domains: bool) -> Result<bool, StoreError> {
        let txn = self.db().begin_read()?;
        let record: Option<DomainRecord> =
            get_decoded(&txn.open_table(DOMAINS)?, "domains", domain)?;
        let Some(record) = record else {
            return Ok(false);
        };
        if record.source == Source::Static {
            return Ok(static_domains);
        }
        let name: Option<NameState> =
            super::codec::get_compact(&txn.open_table(CHAIN_NAMES)?, "chain_names", domain)?;
        if name.is_none_or(|n| n.expires <= self.expiry_now()) {
            return Ok(false);
        }
        let aliases = txn.open_table(ALIASES)?;
        let start = alias_key(domain, "");
        let end = format!("{domain}\u{1}");
        for entry in aliases.range(start.as_str()..end.as_str())? {
            let (k, v) = entry?;
            if super::codec::decode_compact::<AliasRecord>("aliases", k.value(), v.value())
                .is_ok_and(|a| a.active)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `kind` is done for `domain` (or dropped): off the queue, unless the
    /// row flipped to the other kind meanwhile (that operation is still to
    /// do).
    pub fn provision_done(&self, domain: &str, kind: ProvisionKind) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        let current: Option<PendingProvision> =
            get_decoded(&txn.open_table(DNS_PENDING)?, "dns_pending", domain)?;
        if let Some(row) = current.filter(|row| row.kind == kind) {
            remove_in(&txn, domain, &row)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// A failed `kind` of `domain`: counted, with its reason and whether it
    /// is `permanent` (the labels' content), and tried again at `next_ms`
    /// (a domain no longer queued, or queued for the other kind meanwhile,
    /// is left as it is).
    pub fn provision_failed(
        &self,
        domain: &str,
        kind: ProvisionKind,
        next_ms: u64,
        error: &str,
        permanent: bool,
    ) -> Result<PendingProvision, StoreError> {
        let txn = self.db().begin_write()?;
        let old = match get_decoded::<PendingProvision>(
            &txn.open_table(DNS_PENDING)?,
            "dns_pending",
            domain,
        )? {
            Some(row) if row.kind == kind => row,
            Some(row) => return Ok(row),
            None => return Ok(PendingProvision::default()),
        };
        let row = PendingProvision {
            attempts: old.attempts.saturating_add(1),
            next_ms,
            last_error: error.chars().take(500).collect(),
            permanent,
            ..old.clone()
        };
        put_in(&txn, domain, Some(&old), &row)?;
        txn.commit()?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Source;

    const P: ProvisionKind = ProvisionKind::Provision;
    const R: ProvisionKind = ProvisionKind::Remove;

    fn store() -> (tempfile::TempDir, Store) {
        super::super::db::temp_store()
    }

    #[test]
    fn queued_domains_come_due_fail_with_backoff_and_leave_when_done() {
        let (_dir, store) = store();
        store.provision_enqueue("a.country").unwrap();
        store.provision_enqueue("b.country").unwrap();
        assert_eq!(store.provision_pending_count().unwrap(), 2);
        let due = store.provision_due(u64::MAX, u64::MAX, 10).unwrap();
        assert_eq!(due.len(), 2);
        let later = now_ms() + 60_000;
        let row = store
            .provision_failed("a.country", P, later, "redis: connection refused", false)
            .unwrap();
        assert_eq!(row.attempts, 1);
        assert_eq!(row.last_error, "redis: connection refused");
        let due: Vec<String> = store
            .provision_due(now_ms(), u64::MAX, 10)
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
        store
            .provision_failed("a.country", P, later, "x", false)
            .unwrap();
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
            .provision_failed("a.country", P, later, "down", false)
            .unwrap();
        // The removal is a new operation: due now, no failures yet.
        queue(R);
        let row = &store.provision_pending().unwrap()[0].1;
        assert_eq!((row.kind, row.attempts), (R, 0));
        assert!(row.next_ms <= now_ms());
        // The provisioning that was under way ends: the removal stays, and
        // a failure of that provisioning does not count against it.
        store.provision_done("a.country", P).unwrap();
        store
            .provision_failed("a.country", P, later, "x", false)
            .unwrap();
        let row = &store.provision_pending().unwrap()[0].1;
        assert_eq!((row.kind, row.attempts), (R, 0));
        // A re-activation flips it back.
        queue(P);
        assert_eq!(store.provision_pending().unwrap()[0].1.kind, P);
        store.provision_done("a.country", P).unwrap();
        assert_eq!(store.provision_pending_count().unwrap(), 0);
    }

    fn due(store: &Store, now: u64, latest: u64, limit: usize) -> Vec<String> {
        store
            .provision_due(now, latest, limit)
            .unwrap()
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    }

    #[test]
    fn attacker_removes_a_static_domain_while_its_records_wait_for_redis() {
        let (_dir, store) = store();
        assert!(
            store
                .domain_add_provisioned("gone.country", Source::Static, true)
                .unwrap()
        );
        assert!(store.provision_wanted("gone.country", true).unwrap());
        // Provisioning of static domains turned off meanwhile: not wanted.
        assert!(!store.provision_wanted("gone.country", false).unwrap());
        assert!(store.domain_remove("gone.country").unwrap());
        // The pending write went with the domain, in its transaction.
        assert_eq!(store.provision_pending_count().unwrap(), 0);
        assert!(due(&store, u64::MAX, u64::MAX, 10).is_empty());
        assert!(!store.provision_wanted("gone.country", true).unwrap());
        // A pending removal outlives the domain: what the relay wrote into
        // the zone must go even when the domain is gone here.
        let txn = store.db().begin_write().unwrap();
        enqueue_in(&txn, "was.country", R).unwrap();
        txn.commit().unwrap();
        store.domain_remove("was.country").unwrap();
        assert_eq!(due(&store, u64::MAX, u64::MAX, 10), vec!["was.country"]);
        // A name that never was a domain here is never wanted.
        store.provision_enqueue("never.country").unwrap();
        assert!(!store.provision_wanted("never.country", true).unwrap());
    }

    #[test]
    fn attacker_fills_the_queue_and_a_pass_reads_only_the_due_batch_in_order() {
        let (_dir, store) = store();
        let now = now_ms();
        for i in 0..50 {
            let d = format!("n{i:02}.country");
            store.provision_enqueue(&d).unwrap();
            // n00 due at now-50 s … n49 due at now-1 s, then n25.. later.
            let next = if i < 25 {
                now - (50 - i) * 1000
            } else {
                now + i * 1000
            };
            store.provision_failed(&d, P, next, "down", false).unwrap();
        }
        assert_eq!(
            due(&store, now, u64::MAX, 3),
            vec!["n00.country", "n01.country", "n02.country"]
        );
        let all = due(&store, now, u64::MAX, 1000);
        assert_eq!(all.len(), 25, "only the due rows");
        assert_eq!(all.last().map(String::as_str), Some("n24.country"));
        // A row done leaves the index with it.
        store.provision_done("n00.country", P).unwrap();
        assert_eq!(due(&store, now, u64::MAX, 1), vec!["n01.country"]);
    }

    #[test]
    fn a_clock_jump_cannot_park_a_name_beyond_retry_max() {
        let (_dir, store) = store();
        store.provision_enqueue("a.country").unwrap();
        let now = now_ms();
        // Written while the clock ran ten years ahead.
        let far = now + 10 * 365 * 86_400_000;
        store
            .provision_failed("a.country", P, far, "down", false)
            .unwrap();
        assert!(due(&store, now, now + 60_000, 10).is_empty());
        assert_eq!(
            store.provision_pending().unwrap()[0].1.next_ms,
            now + 60_000
        );
        assert_eq!(
            due(&store, now + 60_000, now + 120_000, 10),
            vec!["a.country"]
        );
    }

    #[test]
    fn a_label_that_cannot_be_edited_is_counted_as_failing_until_it_can() {
        let (_dir, store) = store();
        store.provision_enqueue("a.country").unwrap();
        store.provision_enqueue("b.country").unwrap();
        let later = now_ms() + 60_000;
        store
            .provision_failed("a.country", P, later, "not a JSON object", true)
            .unwrap();
        store
            .provision_failed("b.country", P, later, "down", false)
            .unwrap();
        assert_eq!(store.provision_failing_count().unwrap(), 1);
        // The owner fixed the label; the zone is down now: temporary.
        store
            .provision_failed("a.country", P, later, "down", false)
            .unwrap();
        assert_eq!(store.provision_failing_count().unwrap(), 0);
        store
            .provision_failed("a.country", P, later, "CNAME at apex", true)
            .unwrap();
        store.provision_done("a.country", P).unwrap();
        assert_eq!(store.provision_failing_count().unwrap(), 0);
    }
}
