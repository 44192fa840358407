//! The local replica of what the cluster's database says (issue 13): the
//! replica (`crate::replica`) turns each change row into a [`ReplicaOp`]
//! and applies a batch of them here in one transaction together with the
//! id of the last change applied, so that a crash never skips a change nor
//! keeps half a batch. Every op is a state, not a delta: applying one twice
//! leaves one state.

use super::Activated;
use super::aliases::domain_remove_in;
use super::chain::activate_in;
use super::codec::{decode_compact, encode_compact, get_compact};
use super::db::{Store, StoreError, decode, encode, get_decoded};
use super::records::{AliasRecord, DomainRecord, Source};
use super::tables::{
    ALIASES, CHAIN_DEACTIVATING, CHAIN_MAINTAINERS, CHAIN_REVEALS, DOMAINS, META,
    REPLICA_SUSPENDED, alias_key, maintainer_key, split_alias_key,
};
use redb::{ReadableDatabase, ReadableTable};
use std::collections::HashSet;

/// META key of the last change id applied (absent: never synced).
const APPLIED: &str = "replica_applied";

/// A chain reveal the node verified against its own view of the chain.
#[derive(Debug, Clone)]
pub struct ReplicaReveal {
    /// The database's alias id.
    pub id: u64,
    pub activated: Activated,
    /// The signer, when it signed as a maintainer (not the owner).
    pub maintainer: Option<String>,
}

/// One state the database holds, as the replica writes it.
#[derive(Debug, Clone)]
pub enum ReplicaOp {
    /// A domain's record; None: removed (with its aliases).
    Domain {
        domain: String,
        record: Option<DomainRecord>,
    },
    /// A static alias (the database's id, forwards, created); None: removed.
    Static {
        domain: String,
        local: String,
        alias: Option<(u64, Vec<String>, u64)>,
    },
    /// A verified reveal; None: the chain alias at that key is removed
    /// (deleted in the database, or refused by the chain check).
    Reveal {
        domain: String,
        local: String,
        reveal: Option<Box<ReplicaReveal>>,
    },
    /// An alias suspended (true) or not.
    Suspension {
        domain: String,
        local: String,
        suspended: bool,
    },
}

/// Writes `op` in `txn`.
fn apply_in(txn: &redb::WriteTransaction, op: &ReplicaOp) -> Result<(), StoreError> {
    match op {
        ReplicaOp::Domain {
            domain,
            record: Some(record),
        } => {
            txn.open_table(DOMAINS)?
                .insert(domain.as_str(), encode(record).as_slice())?;
        }
        ReplicaOp::Domain {
            domain,
            record: None,
        } => {
            domain_remove_in(txn, domain)?;
        }
        ReplicaOp::Static {
            domain,
            local,
            alias,
        } => {
            let key = alias_key(domain, local);
            let mut aliases = txn.open_table(ALIASES)?;
            match alias {
                Some((id, forwards, created)) => {
                    let suspended = txn
                        .open_table(REPLICA_SUSPENDED)?
                        .get(key.as_str())?
                        .is_some();
                    let record = AliasRecord {
                        id: *id,
                        forwards: forwards.clone(),
                        created: *created,
                        active: !suspended,
                        source: Source::Static,
                        chain: None,
                    };
                    aliases.insert(key.as_str(), encode_compact(&key, &record).as_slice())?;
                    bump_alias_id(txn, *id)?;
                }
                None => {
                    let current: Option<AliasRecord> = get_compact(&aliases, "aliases", &key)?;
                    if current.is_some_and(|r| r.source == Source::Static) {
                        aliases.remove(key.as_str())?;
                    }
                }
            }
        }
        ReplicaOp::Reveal {
            domain,
            local,
            reveal: Some(reveal),
        } => {
            let key = alias_key(domain, local);
            let mut record = activate_in(txn, &reveal.activated, false)?;
            record.id = reveal.id;
            record.active = txn
                .open_table(REPLICA_SUSPENDED)?
                .get(key.as_str())?
                .is_none();
            txn.open_table(ALIASES)?
                .insert(key.as_str(), encode_compact(&key, &record).as_slice())?;
            bump_alias_id(txn, reveal.id)?;
            if let Some(signer) = &reveal.maintainer {
                let mkey = maintainer_key(&reveal.activated.binding.tld, signer);
                txn.open_table(CHAIN_MAINTAINERS)?
                    .insert(mkey.as_str(), ())?;
            }
        }
        ReplicaOp::Reveal {
            domain,
            local,
            reveal: None,
        } => {
            remove_chain_alias_in(txn, &alias_key(domain, local))?;
        }
        ReplicaOp::Suspension {
            domain,
            local,
            suspended,
        } => {
            let key = alias_key(domain, local);
            if *suspended {
                txn.open_table(REPLICA_SUSPENDED)?
                    .insert(key.as_str(), ())?;
            } else {
                txn.open_table(REPLICA_SUSPENDED)?.remove(key.as_str())?;
            }
            let mut aliases = txn.open_table(ALIASES)?;
            let current: Option<AliasRecord> = get_compact(&aliases, "aliases", &key)?;
            if let Some(mut record) = current
                && record.active == *suspended
            {
                record.active = !*suspended;
                aliases.insert(key.as_str(), encode_compact(&key, &record).as_slice())?;
            }
        }
    }
    Ok(())
}

/// Removes the chain alias at `key` with its reveal and removal mark (a
/// static alias there is left); true when there was one.
fn remove_chain_alias_in(txn: &redb::WriteTransaction, key: &str) -> Result<bool, StoreError> {
    let mut aliases = txn.open_table(ALIASES)?;
    let current: Option<AliasRecord> = get_compact(&aliases, "aliases", key)?;
    if !current.is_some_and(|r| r.source == Source::Chain) {
        return Ok(false);
    }
    aliases.remove(key)?;
    txn.open_table(CHAIN_REVEALS)?.remove(key)?;
    txn.open_table(CHAIN_DEACTIVATING)?.remove(key)?;
    Ok(true)
}

/// Keeps the local id counter above the database's ids (a write made
/// while not in cluster mode must not reuse one).
fn bump_alias_id(txn: &redb::WriteTransaction, id: u64) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    let current = meta.get("alias_id")?.map(|v| v.value()).unwrap_or(0);
    if id > current {
        meta.insert("alias_id", id)?;
    }
    Ok(())
}

impl Store {
    /// The id of the last change applied; None: the replica was never
    /// synced (no snapshot completed).
    pub fn replica_applied(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(txn.open_table(META)?.get(APPLIED)?.map(|v| v.value()))
    }

    /// Applies `ops` in order and, when given, records `applied` as the
    /// last change applied: one transaction.
    pub fn replica_apply(&self, ops: &[ReplicaOp], applied: Option<u64>) -> Result<(), StoreError> {
        self.replica_apply_with(ops, applied, true)
    }

    /// [`Store::replica_apply`]; not `durable`: committed without an fsync
    /// (a snapshot's pages: until its last write records the applied id,
    /// durably, a crash only means the snapshot is taken again).
    pub fn replica_apply_with(
        &self,
        ops: &[ReplicaOp],
        applied: Option<u64>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut txn = self.db().begin_write()?;
        if !durable && applied.is_none() {
            let _ = txn.set_durability(redb::Durability::None);
        }
        for op in ops {
            apply_in(&txn, op)?;
        }
        if let Some(id) = applied {
            txn.open_table(META)?.insert(APPLIED, id)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes every domain not in `domains` and every alias (static or
    /// chain) not in `aliases` (alias keys `local@domain`), with the
    /// suspensions not in `suspended`: what a snapshot or a reconciliation
    /// found the database no longer holds. Returns how many records went.
    pub fn replica_sweep(
        &self,
        domains: &HashSet<String>,
        aliases: &HashSet<String>,
        suspended: &HashSet<String>,
    ) -> Result<usize, StoreError> {
        let txn = self.db().begin_write()?;
        let mut removed = 0;
        let gone_domains: Vec<String> = {
            let table = txn.open_table(DOMAINS)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (k, _) = item?;
                if !domains.contains(k.value()) {
                    out.push(k.value().to_string());
                }
            }
            out
        };
        for domain in &gone_domains {
            domain_remove_in(&txn, domain)?;
            removed += 1;
        }
        let gone_aliases: Vec<String> = {
            let table = txn.open_table(ALIASES)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (k, _) = item?;
                let (domain, local) = split_alias_key(k.value());
                if !aliases.contains(&format!("{local}@{domain}")) {
                    out.push(k.value().to_string());
                }
            }
            out
        };
        for key in &gone_aliases {
            txn.open_table(ALIASES)?.remove(key.as_str())?;
            txn.open_table(CHAIN_REVEALS)?.remove(key.as_str())?;
            txn.open_table(CHAIN_DEACTIVATING)?.remove(key.as_str())?;
            removed += 1;
        }
        let lifted: Vec<(String, String)> = {
            let table = txn.open_table(REPLICA_SUSPENDED)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (k, _) = item?;
                let (domain, local) = split_alias_key(k.value());
                if !suspended.contains(&format!("{local}@{domain}")) {
                    out.push((domain.to_string(), local.to_string()));
                }
            }
            out
        };
        for (domain, local) in lifted {
            apply_in(
                &txn,
                &ReplicaOp::Suspension {
                    domain,
                    local,
                    suspended: false,
                },
            )?;
        }
        txn.commit()?;
        Ok(removed)
    }

    /// Calls `visit` with every domain of the replica, its record and its
    /// aliases in key order (one domain's aliases in memory at a time):
    /// the reconciliation's digests.
    pub fn replica_visit(
        &self,
        mut visit: impl FnMut(&str, &DomainRecord, &[(String, AliasRecord)]),
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_read()?;
        let domains = txn.open_table(DOMAINS)?;
        let aliases = txn.open_table(ALIASES)?;
        for item in domains.iter()? {
            let (k, v) = item?;
            let domain = k.value();
            let record: DomainRecord = decode("domains", domain, v.value())?;
            let start = alias_key(domain, "");
            let end = format!("{domain}\u{1}");
            let mut list = Vec::new();
            for item in aliases.range(start.as_str()..end.as_str())? {
                let (k, v) = item?;
                let (_, local) = split_alias_key(k.value());
                list.push((
                    local.to_string(),
                    decode_compact("aliases", k.value(), v.value())?,
                ));
            }
            visit(domain, &record, &list);
        }
        Ok(())
    }

    /// Domains of the store not in `domains`: (how many, the first few).
    pub fn replica_unknown_domains(
        &self,
        domains: &HashSet<String>,
    ) -> Result<(usize, Vec<String>), StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(DOMAINS)?;
        let (mut count, mut first) = (0, Vec::new());
        for item in table.iter()? {
            let (k, _) = item?;
            if !domains.contains(k.value()) {
                count += 1;
                if first.len() < 5 {
                    first.push(k.value().to_string());
                }
            }
        }
        Ok((count, first))
    }

    /// The suspended alias keys (`local@domain`) of the replica.
    pub fn replica_suspended(&self) -> Result<HashSet<String>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(REPLICA_SUSPENDED)?;
        let mut out = HashSet::new();
        for item in table.iter()? {
            let (k, _) = item?;
            let (domain, local) = split_alias_key(k.value());
            out.insert(format!("{local}@{domain}"));
        }
        Ok(out)
    }

    /// The domain record of `domain` (for the replica's tests and checks).
    pub fn replica_domain(&self, domain: &str) -> Result<Option<DomainRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        get_decoded(&txn.open_table(DOMAINS)?, "domains", domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        super::super::db::temp_store()
    }

    fn domain(active: bool) -> ReplicaOp {
        let mut record = DomainRecord::new(7, Source::Static);
        record.active = active;
        ReplicaOp::Domain {
            domain: "shop.example".into(),
            record: Some(record),
        }
    }

    fn alias(local: &str, id: u64) -> ReplicaOp {
        ReplicaOp::Static {
            domain: "shop.example".into(),
            local: local.into(),
            alias: Some((id, vec![format!("{local}@dest.test")], 9)),
        }
    }

    fn suspend(local: &str, suspended: bool) -> ReplicaOp {
        ReplicaOp::Suspension {
            domain: "shop.example".into(),
            local: local.into(),
            suspended,
        }
    }

    #[test]
    fn ops_are_states_applied_twice_they_are_one_state() {
        let (_d, s) = store();
        assert_eq!(s.replica_applied().unwrap(), None);
        // A suspension that arrives before its alias still holds.
        let batch = [
            suspend("b", true),
            domain(true),
            alias("a", 40),
            alias("b", 41),
        ];
        s.replica_apply(&batch, Some(3)).unwrap();
        let once = (
            s.alias_get("shop.example", "a").unwrap(),
            s.alias_get("shop.example", "b").unwrap(),
        );
        s.replica_apply(&batch, Some(3)).unwrap();
        let twice = (
            s.alias_get("shop.example", "a").unwrap(),
            s.alias_get("shop.example", "b").unwrap(),
        );
        assert_eq!(once, twice);
        let (a, b) = twice;
        assert_eq!(a.as_ref().map(|r| (r.id, r.active)), Some((40, true)));
        assert_eq!(b.as_ref().map(|r| (r.id, r.active)), Some((41, false)));
        assert_eq!(s.replica_applied().unwrap(), Some(3));
        // The local id counter stays above the database's ids.
        let local = s
            .alias_put(
                "shop.example",
                "new",
                vec!["n@dest.test".into()],
                Source::Static,
            )
            .unwrap();
        assert!(local.id > 41);
        // Lifted, then the domain removed: its aliases and suspensions go.
        s.replica_apply(&[suspend("b", false)], Some(4)).unwrap();
        assert!(s.alias_get("shop.example", "b").unwrap().unwrap().active);
        s.replica_apply(&[suspend("a", true)], None).unwrap();
        let gone = ReplicaOp::Domain {
            domain: "shop.example".into(),
            record: None,
        };
        s.replica_apply(&[gone.clone(), gone], Some(5)).unwrap();
        assert!(s.alias_get("shop.example", "a").unwrap().is_none());
        assert!(s.replica_suspended().unwrap().is_empty());
        // A removal of another source leaves an alias alone: a reveal's
        // removal does not remove a static alias at the same key.
        s.replica_apply(&[domain(true), alias("a", 40)], None)
            .unwrap();
        let reveal_gone = ReplicaOp::Reveal {
            domain: "shop.example".into(),
            local: "a".into(),
            reveal: None,
        };
        s.replica_apply(&[reveal_gone], None).unwrap();
        assert!(s.alias_get("shop.example", "a").unwrap().is_some());
        assert_eq!(s.replica_applied().unwrap(), Some(5));
    }

    #[test]
    fn a_sweep_removes_what_the_database_no_longer_holds() {
        let (_d, s) = store();
        s.replica_apply(
            &[
                domain(true),
                alias("a", 1),
                alias("b", 2),
                suspend("a", true),
            ],
            Some(1),
        )
        .unwrap();
        let domains = HashSet::from(["shop.example".to_string()]);
        let aliases = HashSet::from(["a@shop.example".to_string()]);
        assert_eq!(
            s.replica_sweep(&domains, &aliases, &HashSet::new())
                .unwrap(),
            1
        );
        assert!(s.alias_get("shop.example", "b").unwrap().is_none());
        assert!(s.alias_get("shop.example", "a").unwrap().unwrap().active);
        assert_eq!(
            s.replica_sweep(&HashSet::new(), &aliases, &HashSet::new())
                .unwrap(),
            1
        );
        assert!(s.replica_domain("shop.example").unwrap().is_none());
        assert!(s.alias_get("shop.example", "a").unwrap().is_none());
    }
}
