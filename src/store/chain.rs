//! What the relay knows of the chain: for each chain-governed alias the
//! revealed plaintext with the commitment it must match, each name's owner
//! and expiry, the maintainers, and the watcher's cursor. The chain is the
//! truth; these tables are the cache RCPT answers from (DESIGN §3).

use super::aliases::put_alias;
use super::codec::{decode_compact, encode_compact, get_compact};
use super::db::{Store, StoreError, decode, encode, get_decoded};
use super::records::{
    AliasRecord, BlockSeen, ChainBinding, ChainStatus, Cursor, Deactivating, DomainRecord,
    NameState, ProvisionKind, Reveal, Source,
};
use super::tables::{
    ALIASES, CHAIN_ALIAS_INDEX, CHAIN_DEACTIVATING, CHAIN_MAINTAINERS, CHAIN_META, CHAIN_NAMES,
    CHAIN_NODES, CHAIN_REVEALS, DOMAINS, alias_index_key, alias_key, maintainer_key, node_key,
};
use redb::{ReadableDatabase, ReadableTable};
use std::sync::atomic::Ordering;

fn unix_now() -> u64 {
    super::db::now_ms() / 1000
}

/// How many recent block hashes are kept to find where a reorg forked.
pub(crate) const RECENT_BLOCKS: usize = 256;

/// Changes the watcher (or a sweep) found, applied in one transaction.
#[derive(Debug, Default)]
pub(crate) struct ChainUpdate {
    /// (alias key, commitment on chain now, block).
    pub commitments: Vec<(String, String, u64)>,
    pub names: Vec<(String, NameState)>,
    /// (tld, account, holds MAINTAINER_ROLE).
    pub maintainers: Vec<(String, String, bool)>,
    /// New cursor, with the hashes of the blocks processed.
    pub cursor: Option<(Cursor, Vec<BlockSeen>)>,
}

/// One verified activation, as [`Store::chain_activate`] records it.
#[derive(Debug, Clone)]
pub struct Activated {
    /// `sld.tld`.
    pub domain: String,
    /// The alias in lower case (the lookup key).
    pub local: String,
    /// keccak256(sld).
    pub node: [u8; 32],
    /// keccak256(alias as activated).
    pub alias_hash: [u8; 32],
    pub binding: ChainBinding,
    pub reveal: Reveal,
    pub name: NameState,
}

/// Whether `domain` holds any alias in `aliases`.
pub(super) fn has_aliases(
    aliases: &impl ReadableTable<&'static str, &'static [u8]>,
    domain: &str,
) -> Result<bool, StoreError> {
    let first = alias_key(domain, "");
    let end = format!("{domain}\u{1}");
    Ok(aliases
        .range(first.as_str()..end.as_str())?
        .next()
        .is_some())
}

/// Records `a` in `txn`; a name activated for the first time (not yet a
/// chain domain here), or again after its last alias went (its records
/// may have been removed from the zone), is also queued for DNS
/// provisioning when `provision` is on, in the same transaction: a crash
/// cannot keep one without the other.
pub(super) fn activate_in(
    txn: &redb::WriteTransaction,
    a: &Activated,
    provision: bool,
) -> Result<AliasRecord, StoreError> {
    let domain = a.domain.as_str();
    let mut domains = txn.open_table(DOMAINS)?;
    let existing: Option<DomainRecord> = get_decoded(&domains, "domains", domain)?;
    let (record, first) = match existing {
        Some(d) if d.source == Source::Chain => {
            let empty = !has_aliases(&txn.open_table(ALIASES)?, domain)?;
            (d, empty)
        }
        // A static domain of the same name becomes chain-governed: the
        // chain is the authority for names it rents.
        _ => (
            DomainRecord::new(super::db::now_ms() / 1000, Source::Chain),
            true,
        ),
    };
    if provision && first {
        super::provision::enqueue_in(txn, domain, ProvisionKind::Provision)?;
    }
    domains.insert(domain, encode(&record).as_slice())?;
    txn.open_table(CHAIN_NAMES)?
        .insert(domain, encode_compact(domain, &a.name).as_slice())?;
    txn.open_table(CHAIN_NODES)?
        .insert(node_key(&a.node, &a.binding.tld).as_slice(), domain)?;
    let key = alias_key(domain, &a.local);
    // The index names the local part only: the domain is CHAIN_NODES's
    // entry of the same node and tld, written just above.
    txn.open_table(CHAIN_ALIAS_INDEX)?.insert(
        alias_index_key(&a.node, &a.alias_hash, &a.binding.tld).as_slice(),
        a.local.as_str(),
    )?;
    txn.open_table(CHAIN_REVEALS)?
        .insert(key.as_str(), encode_compact(&key, &a.reveal).as_slice())?;
    // A (re-)reveal verified against the chain ends any pending removal.
    txn.open_table(CHAIN_DEACTIVATING)?.remove(key.as_str())?;
    put_alias(
        txn,
        domain,
        &a.local,
        vec![a.reveal.forward.clone()],
        Source::Chain,
        Some(a.binding.clone()),
    )
}

impl Store {
    /// Records an activation checked against the chain: the domain (as
    /// chain-governed), the alias with its binding, the name's state, and the
    /// indexes from the chain's hashes back to them. Replaces an earlier
    /// binding of the same alias.
    pub fn chain_activate(&self, activation: &Activated) -> Result<AliasRecord, StoreError> {
        let txn = self.db().begin_write()?;
        let provision = self.provision_on_activation.load(Ordering::Relaxed);
        let record = activate_in(&txn, activation, provision)?;
        txn.commit()?;
        Ok(record)
    }

    /// Many activations in one transaction (imports, benchmarks, reveals
    /// pushed by a peer): all or none.
    pub fn chain_activate_many(&self, activations: &[Activated]) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        let provision = self.provision_on_activation.load(Ordering::Relaxed);
        for a in activations {
            activate_in(&txn, a, provision)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The reveal an alias was activated with (read by the tests only).
    #[cfg(test)]
    pub(crate) fn chain_reveal(
        &self,
        domain: &str,
        local: &str,
    ) -> Result<Option<Reveal>, StoreError> {
        let txn = self.db().begin_read()?;
        get_compact(
            &txn.open_table(CHAIN_REVEALS)?,
            "chain_reveals",
            &alias_key(domain, local),
        )
    }

    /// The state of a name (by domain).
    pub(crate) fn chain_name(&self, domain: &str) -> Result<Option<NameState>, StoreError> {
        let txn = self.db().begin_read()?;
        get_compact(&txn.open_table(CHAIN_NAMES)?, "chain_names", domain)
    }

    /// The domain a (node, tld) belongs to, when it has aliases here.
    pub(crate) fn chain_domain_of(
        &self,
        node: &[u8; 32],
        tld: &str,
    ) -> Result<Option<String>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CHAIN_NODES)?;
        Ok(table
            .get(node_key(node, tld).as_slice())?
            .map(|v| v.value().to_string()))
    }

    /// The alias key of a (node, alias hash, tld), when it was revealed here.
    pub(crate) fn chain_alias_of(
        &self,
        node: &[u8; 32],
        alias_hash: &[u8; 32],
        tld: &str,
    ) -> Result<Option<String>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CHAIN_ALIAS_INDEX)?;
        let Some(entry) = table.get(alias_index_key(node, alias_hash, tld).as_slice())? else {
            return Ok(None);
        };
        let entry = entry.value();
        // Stores written before the compact records hold the whole alias
        // key (`domain NUL local`); since, the local part alone (a local
        // part has no NUL), its domain being the node's.
        if entry.contains('\0') {
            return Ok(Some(entry.to_string()));
        }
        let nodes = txn.open_table(CHAIN_NODES)?;
        Ok(nodes
            .get(node_key(node, tld).as_slice())?
            .map(|domain| alias_key(domain.value(), entry)))
    }

    /// Every chain-governed alias: (alias key, binding).
    pub fn chain_bindings(&self) -> Result<Vec<(String, ChainBinding)>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(ALIASES)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let record: AliasRecord = decode_compact("aliases", k.value(), v.value())?;
            if let Some(binding) = record.chain {
                out.push((k.value().to_string(), binding));
            }
        }
        Ok(out)
    }

    /// Every name with chain-governed aliases: (domain, state).
    pub fn chain_names(&self) -> Result<Vec<(String, NameState)>, StoreError> {
        self.read_all("chain_names", CHAIN_NAMES)
    }

    /// Forgets the chain-governed alias `local@domain` whose binding is
    /// still `expected` (once the watcher read that binding's own on-chain
    /// key as zero at a confirmed block), with its reveal, its removal mark
    /// and the index entry of its on-chain
    /// key (`node`, `alias_hash` of the exact alias, `tld`). A static
    /// alias, or a binding that changed since (a new activation), is left
    /// alone: false.
    pub(crate) fn chain_forget_alias(
        &self,
        domain: &str,
        local: &str,
        expected: &ChainBinding,
        node: &[u8; 32],
        alias_hash: &[u8; 32],
    ) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let key = alias_key(domain, local);
        let forgotten = {
            let mut aliases = txn.open_table(ALIASES)?;
            let current: Option<AliasRecord> = get_compact(&aliases, "aliases", &key)?;
            let same = current.and_then(|r| r.chain).is_some_and(|b| {
                b.tld == expected.tld
                    && b.sld == expected.sld
                    && b.alias == expected.alias
                    && b.commitment.eq_ignore_ascii_case(&expected.commitment)
            });
            if same {
                aliases.remove(key.as_str())?;
                txn.open_table(CHAIN_REVEALS)?.remove(key.as_str())?;
                let mark: Option<Deactivating> = txn
                    .open_table(CHAIN_DEACTIVATING)?
                    .remove(key.as_str())?
                    .map(|v| decode("chain_deactivating", &key, v.value()))
                    .transpose()?;
                txn.open_table(CHAIN_ALIAS_INDEX)?
                    .remove(alias_index_key(node, alias_hash, &expected.tld).as_slice())?;
                // The name's last alias leaving through `/deactivate-all`
                // takes the relay's records out of the zone, in this same
                // transaction (and only then: not on `/deactivate`).
                if mark.is_some_and(|m| m.all)
                    && self.remove_on_deactivate_all.load(Ordering::Relaxed)
                    && !has_aliases(&aliases, domain)?
                {
                    super::provision::enqueue_in(&txn, domain, ProvisionKind::Remove)?;
                }
            }
            same
        };
        txn.commit()?;
        Ok(forgotten)
    }

    /// Whether `account` holds MAINTAINER_ROLE on the EAS of `tld` (the
    /// RCPT lookup reads the table itself, in its own transaction).
    pub(crate) fn chain_is_maintainer(&self, tld: &str, account: &str) -> Result<bool, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CHAIN_MAINTAINERS)?;
        Ok(table.get(maintainer_key(tld, account).as_str())?.is_some())
    }

    /// Applies what the watcher found, and moves its cursor, atomically.
    pub(crate) fn chain_apply(&self, update: &ChainUpdate) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            let mut aliases = txn.open_table(ALIASES)?;
            for (key, observed, block) in &update.commitments {
                let Some(mut record) = get_compact::<AliasRecord>(&aliases, "aliases", key)? else {
                    continue;
                };
                let Some(binding) = record.chain.as_mut() else {
                    continue;
                };
                // A newer check (the activation itself) wins over an older one.
                if binding.checked_block > *block {
                    continue;
                }
                binding.observed = observed.to_ascii_lowercase();
                binding.checked_block = *block;
                aliases.insert(key.as_str(), encode_compact(key, &record).as_slice())?;
            }
            let mut names = txn.open_table(CHAIN_NAMES)?;
            for (domain, state) in &update.names {
                let newer = match names.get(domain.as_str())? {
                    Some(v) => {
                        let old: NameState = decode_compact("chain_names", domain, v.value())?;
                        old.checked_block <= state.checked_block
                    }
                    None => false, // only names with aliases are kept
                };
                if newer {
                    names.insert(domain.as_str(), encode_compact(domain, state).as_slice())?;
                }
            }
            let mut maintainers = txn.open_table(CHAIN_MAINTAINERS)?;
            for (tld, account, holds) in &update.maintainers {
                let key = maintainer_key(tld, account);
                if *holds {
                    maintainers.insert(key.as_str(), ())?;
                } else {
                    maintainers.remove(key.as_str())?;
                }
            }
            if let Some((cursor, hashes)) = &update.cursor {
                let mut meta = txn.open_table(CHAIN_META)?;
                let mut recent: Vec<(u64, [u8; 32])> = match meta.get("recent")? {
                    Some(v) => decode("chain_meta", "recent", v.value())?,
                    None => Vec::new(),
                };
                recent.retain(|(n, _)| *n <= cursor.number);
                recent.extend(hashes.iter().filter(|(n, _)| *n <= cursor.number));
                recent.sort_by_key(|(n, _)| *n);
                recent.dedup_by_key(|(n, _)| *n);
                let excess = recent.len().saturating_sub(RECENT_BLOCKS);
                recent.drain(..excess);
                meta.insert("recent", encode(&recent).as_slice())?;
                meta.insert("cursor", encode(cursor).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub(crate) fn chain_cursor(&self) -> Result<Option<Cursor>, StoreError> {
        self.chain_meta("cursor")
    }

    /// Recent (block, hash) pairs, oldest first (to locate a fork).
    pub(crate) fn chain_recent(&self) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        Ok(self.chain_meta("recent")?.unwrap_or_default())
    }

    /// Moves the cursor back (a reorg, or a resync from an older block).
    pub(crate) fn chain_rewind(&self, cursor: Option<Cursor>) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            let mut meta = txn.open_table(CHAIN_META)?;
            match cursor {
                Some(c) => {
                    let mut recent: Vec<(u64, [u8; 32])> = match meta.get("recent")? {
                        Some(v) => decode("chain_meta", "recent", v.value())?,
                        None => Vec::new(),
                    };
                    recent.retain(|(n, _)| *n <= c.number);
                    meta.insert("recent", encode(&recent).as_slice())?;
                    meta.insert("cursor", encode(&c).as_slice())?;
                }
                None => {
                    meta.remove("cursor")?;
                    meta.remove("recent")?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// A reorg: the cursor goes back to `fork` (the newest block still on
    /// the chain), and every check made at a later block loses its standing
    /// (those blocks are gone): it counts as made before the fork, so the
    /// next read replaces it even when made at a lower block than the
    /// orphaned one.
    pub(crate) fn chain_reorg(&self, fork: Cursor) -> Result<(), StoreError> {
        // Below the fork: any read at the fork or later replaces them, and
        // no sweep takes them for already checked.
        let orphaned = fork.number.saturating_sub(1);
        let txn = self.db().begin_write()?;
        {
            let mut aliases = txn.open_table(ALIASES)?;
            let mut stale = Vec::new();
            for entry in aliases.iter()? {
                let (k, v) = entry?;
                let mut record: AliasRecord = decode_compact("aliases", k.value(), v.value())?;
                if let Some(binding) = record.chain.as_mut()
                    && binding.checked_block > fork.number
                {
                    binding.checked_block = orphaned;
                    stale.push((k.value().to_string(), record));
                }
            }
            for (key, record) in stale {
                aliases.insert(key.as_str(), encode_compact(&key, &record).as_slice())?;
            }
            let mut names = txn.open_table(CHAIN_NAMES)?;
            let mut stale = Vec::new();
            for entry in names.iter()? {
                let (k, v) = entry?;
                let mut state: NameState = decode_compact("chain_names", k.value(), v.value())?;
                if state.checked_block > fork.number {
                    state.checked_block = orphaned;
                    stale.push((k.value().to_string(), state));
                }
            }
            for (key, state) in stale {
                names.insert(key.as_str(), encode_compact(&key, &state).as_slice())?;
            }
        }
        txn.commit()?;
        self.chain_rewind(Some(fork))
    }

    pub fn chain_status(&self) -> Result<ChainStatus, StoreError> {
        Ok(self.chain_meta("status")?.unwrap_or_default())
    }

    /// The timestamp of the newest confirmed block processed (Unix s; 0
    /// before the first, and after a reorg until the next).
    pub(crate) fn chain_time(&self) -> u64 {
        self.chain_time.load(Ordering::Relaxed)
    }

    /// Sets how far ahead of the wall clock the chain's time is believed
    /// (`chain.max_clock_skew`, s); a stored chain time beyond that (from
    /// an earlier run, or an older version that took any head's time) is
    /// dropped at once.
    pub(crate) fn set_chain_clock_skew(&self, secs: u64) {
        self.chain_skew.store(secs, Ordering::Relaxed);
        let time = self.chain_time();
        if time > unix_now().saturating_add(secs) {
            tracing::warn!(
                chain_time = time,
                "the stored chain time is ahead of the clock by more than \
                 chain.max_clock_skew; not used"
            );
            self.chain_time.store(0, Ordering::Relaxed);
        }
    }

    /// The chain's time is now `timestamp`, the time of the newest
    /// confirmed block the watcher processed (it goes back after a reorg,
    /// or to 0 when unknown). A timestamp further ahead of the wall clock
    /// than the allowed skew is refused (false) and the time left as it
    /// was: one bad answer must not expire every alias.
    pub(crate) fn note_chain_time(&self, timestamp: u64) -> bool {
        let limit = unix_now().saturating_add(self.chain_skew.load(Ordering::Relaxed));
        if timestamp > limit {
            return false;
        }
        self.chain_time.store(timestamp, Ordering::Relaxed);
        true
    }

    /// "Now" for expiry: the later of the wall clock and the chain's time,
    /// so a name expires when either says so (a node whose clock lags the
    /// chain still stops forwarding an expired name). The chain's time
    /// counts only up to the allowed skew ahead of the wall clock.
    pub(crate) fn expiry_now(&self) -> u64 {
        let now = unix_now();
        let ahead = now.saturating_add(self.chain_skew.load(Ordering::Relaxed));
        now.max(self.chain_time().min(ahead))
    }

    /// Records the connection status (not fsynced: it is advice).
    pub(crate) fn chain_set_status(&self, status: &ChainStatus) -> Result<(), StoreError> {
        let mut txn = self.db().begin_write()?;
        let _ = txn.set_durability(redb::Durability::None);
        txn.open_table(CHAIN_META)?
            .insert("status", encode(status).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn chain_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db().begin_read()?;
        get_decoded(&txn.open_table(CHAIN_META)?, "chain_meta", key)
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
