//! Domains and aliases: the tables the recipient lookup reads on every RCPT.
//! Keys are lower case; an alias key is `domain\0local`.

use super::codec::{decode_compact, encode_compact, get_compact};
use super::db::{Store, StoreError, decode, encode, get_decoded};
use super::records::{AliasRecord, ChainBinding, DomainRecord, NameState, ProvisionKind, Source};
use super::tables::{
    ALIASES, CHAIN_MAINTAINERS, CHAIN_NAMES, CHAIN_REVEALS, DOMAINS, META, REPLICA_SUSPENDED,
    alias_key, maintainer_key,
};
use redb::{ReadableDatabase, ReadableTable};

/// Keeps an alias (local part, record) in a listing.
pub(crate) type AliasFilter<'a> = dyn Fn(&str, &AliasRecord) -> bool + 'a;

/// What one read tells about a recipient.
#[derive(Debug, Default)]
pub struct Lookup {
    pub domain: Option<DomainRecord>,
    /// The first candidate with an alias (index into the candidates).
    pub hit: Option<(usize, AliasRecord)>,
    /// For a chain-governed domain: the name's state on chain.
    pub name: Option<NameState>,
    /// For a chain-governed hit signed by someone other than the owner:
    /// whether the signer holds MAINTAINER_ROLE.
    pub signer_is_maintainer: bool,
}

fn unix_now() -> u64 {
    super::db::now_ms() / 1000
}

impl Store {
    pub(crate) fn domain_get(&self, domain: &str) -> Result<Option<DomainRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        get_decoded(&txn.open_table(DOMAINS)?, "domains", domain)
    }

    /// Adds a domain; returns false when it already existed (left unchanged).
    pub fn domain_add(&self, domain: &str, source: Source) -> Result<bool, StoreError> {
        self.domain_add_provisioned(domain, source, false)
    }

    /// Adds a domain and, with `provision`, queues its DNS provisioning in
    /// the same transaction (a crash cannot keep the domain and lose its
    /// records); false when it already existed (nothing written then).
    pub fn domain_add_provisioned(
        &self,
        domain: &str,
        source: Source,
        provision: bool,
    ) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        if !domain_add_in(&txn, domain, source, provision)? {
            return Ok(false);
        }
        txn.commit()?;
        Ok(true)
    }

    /// Replaces a domain's record (e.g. to deactivate it).
    pub(crate) fn domain_put(&self, domain: &str, record: &DomainRecord) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        txn.open_table(DOMAINS)?
            .insert(domain, encode(record).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Removes a domain and all its aliases; false when it did not exist.
    pub(crate) fn domain_remove(&self, domain: &str) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let existed = domain_remove_in(&txn, domain)?;
        txn.commit()?;
        Ok(existed)
    }

    /// How many domains there are (O(1)).
    pub(crate) fn domain_count(&self) -> Result<u64, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(redb::ReadableTableMetadata::len(&txn.open_table(DOMAINS)?)?)
    }

    pub(crate) fn domain_list(&self) -> Result<Vec<(String, DomainRecord)>, StoreError> {
        self.read_all("domains", DOMAINS)
    }

    /// Looks up one alias (exact key; the caller normalizes).
    pub fn alias_get(&self, domain: &str, local: &str) -> Result<Option<AliasRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        get_compact(
            &txn.open_table(ALIASES)?,
            "aliases",
            &alias_key(domain, local),
        )
    }

    /// One read for a recipient: the domain's record and the first of
    /// `candidates` (local parts, in priority order) that has an alias.
    pub fn lookup(&self, domain: &str, candidates: &[&str]) -> Result<Lookup, StoreError> {
        let txn = self.db().begin_read()?;
        let domains = txn.open_table(DOMAINS)?;
        let Some(record) = domains.get(domain)? else {
            return Ok(Lookup::default());
        };
        let record: DomainRecord = decode("domains", domain, record.value())?;
        let aliases = txn.open_table(ALIASES)?;
        let mut hit = None;
        for (i, local) in candidates.iter().enumerate() {
            let key = alias_key(domain, local);
            if let Some(v) = aliases.get(key.as_str())? {
                hit = Some((
                    i,
                    decode_compact::<AliasRecord>("aliases", &key, v.value())?,
                ));
                break;
            }
        }
        let mut lookup = Lookup {
            domain: Some(record),
            hit,
            ..Lookup::default()
        };
        if lookup
            .domain
            .as_ref()
            .is_some_and(|d| d.source == Source::Chain)
        {
            let names = txn.open_table(CHAIN_NAMES)?;
            lookup.name = get_compact(&names, "chain_names", domain)?;
            if let (Some((_, alias)), Some(name)) = (&lookup.hit, &lookup.name)
                && let Some(binding) = &alias.chain
                && !binding.signer.eq_ignore_ascii_case(&name.owner)
            {
                let maintainers = txn.open_table(CHAIN_MAINTAINERS)?;
                let key = maintainer_key(&binding.tld, &binding.signer);
                lookup.signer_is_maintainer = maintainers.get(key.as_str())?.is_some();
            }
        }
        Ok(lookup)
    }

    /// Creates or replaces an alias, keeping its id and creation time when it
    /// existed. Returns the stored record.
    pub fn alias_put(
        &self,
        domain: &str,
        local: &str,
        forwards: Vec<String>,
        source: Source,
    ) -> Result<AliasRecord, StoreError> {
        let txn = self.db().begin_write()?;
        let record = put_alias(&txn, domain, local, forwards, source, None)?;
        txn.commit()?;
        Ok(record)
    }

    /// Creates or replaces many aliases in one transaction; returns the
    /// stored records, in the order given.
    pub fn alias_put_many(
        &self,
        items: impl IntoIterator<Item = (String, String, Vec<String>)>,
        source: Source,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let txn = self.db().begin_write()?;
        let records = items
            .into_iter()
            .map(|(domain, local, forwards)| {
                put_alias(&txn, &domain, &local, forwards, source, None)
            })
            .collect::<Result<Vec<_>, _>>()?;
        txn.commit()?;
        Ok(records)
    }

    /// Suspends (false) or resumes (true) an alias; false when it does not exist.
    pub(crate) fn alias_set_active(
        &self,
        domain: &str,
        local: &str,
        active: bool,
    ) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let found = {
            let mut table = txn.open_table(ALIASES)?;
            let key = alias_key(domain, local);
            match get_compact::<AliasRecord>(&table, "aliases", &key)? {
                Some(mut record) => {
                    record.active = active;
                    table.insert(key.as_str(), encode_compact(&key, &record).as_slice())?;
                    true
                }
                None => false,
            }
        };
        txn.commit()?;
        Ok(found)
    }

    /// Removes an alias; false when it did not exist.
    pub(crate) fn alias_remove(&self, domain: &str, local: &str) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let existed = txn
            .open_table(ALIASES)?
            .remove(alias_key(domain, local).as_str())?
            .is_some();
        txn.commit()?;
        Ok(existed)
    }

    /// One page of a domain's aliases, ordered by local part: those whose
    /// local part `keep_key` accepts, and then (when given) whose record
    /// `keep` accepts; `offset` of them skipped, at most `limit` returned.
    /// Also returns how many match in all. Only the records a filter or the
    /// page needs are decoded, so an unfiltered page of a large domain
    /// costs a key scan and `limit` decodes.
    pub(crate) fn alias_page(
        &self,
        domain: &str,
        keep_key: impl Fn(&str) -> bool,
        keep: Option<&AliasFilter<'_>>,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<(String, AliasRecord)>), StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(ALIASES)?;
        let start = alias_key(domain, "");
        let end = format!("{domain}\u{1}");
        let mut total = 0;
        let mut out = Vec::new();
        for item in table.range(start.as_str()..end.as_str())? {
            let (k, v) = item?;
            let local = &k.value()[start.len()..];
            if !keep_key(local) {
                continue;
            }
            let in_page = total >= offset && out.len() < limit;
            if let Some(keep) = keep {
                let record: AliasRecord = decode_compact("aliases", k.value(), v.value())?;
                if !keep(local, &record) {
                    continue;
                }
                if in_page {
                    out.push((local.to_string(), record));
                }
            } else if in_page {
                out.push((
                    local.to_string(),
                    decode_compact("aliases", k.value(), v.value())?,
                ));
            }
            total += 1;
        }
        Ok((total, out))
    }

    /// All aliases of a domain, ordered by local part.
    pub(crate) fn alias_list(
        &self,
        domain: &str,
    ) -> Result<Vec<(String, AliasRecord)>, StoreError> {
        let (_, all) = self.alias_page(domain, |_| true, None, 0, usize::MAX)?;
        Ok(all)
    }
}

/// Removes `domain` in `txn` with its aliases, reveals, suspensions and
/// pending provisioning; false when it did not exist.
pub(crate) fn domain_remove_in(
    txn: &redb::WriteTransaction,
    domain: &str,
) -> Result<bool, StoreError> {
    let existed = txn.open_table(DOMAINS)?.remove(domain)?.is_some();
    let start = alias_key(domain, "");
    let end = format!("{domain}\u{1}");
    let range = start.as_str()..end.as_str();
    txn.open_table(ALIASES)?
        .retain_in(range.clone(), |_, _| false)?;
    txn.open_table(CHAIN_REVEALS)?
        .retain_in(range.clone(), |_, _| false)?;
    txn.open_table(REPLICA_SUSPENDED)?
        .retain_in(range, |_, _| false)?;
    super::provision::forget_in(txn, domain)?;
    super::credentials::domain_credentials_remove_in(txn, domain)?;
    Ok(existed)
}

/// Adds `domain` in `txn` (false, nothing written, when it exists), with
/// its pending provisioning when `provision`.
fn domain_add_in(
    txn: &redb::WriteTransaction,
    domain: &str,
    source: Source,
    provision: bool,
) -> Result<bool, StoreError> {
    let mut table = txn.open_table(DOMAINS)?;
    if table.get(domain)?.is_some() {
        return Ok(false);
    }
    let record = DomainRecord::new(unix_now(), source);
    table.insert(domain, encode(&record).as_slice())?;
    if provision {
        super::provision::enqueue_in(txn, domain, ProvisionKind::Provision)?;
    }
    Ok(true)
}

/// Writes an alias (new: next id, created now; existing: keeps id and
/// created, active again unless a suspended chain alias) with its source and, for chain-governed aliases,
/// the binding.
pub(crate) fn put_alias(
    txn: &redb::WriteTransaction,
    domain: &str,
    local: &str,
    forwards: Vec<String>,
    source: Source,
    chain: Option<ChainBinding>,
) -> Result<AliasRecord, StoreError> {
    let mut table = txn.open_table(ALIASES)?;
    let key = alias_key(domain, local);
    let existing: Option<AliasRecord> = get_compact(&table, "aliases", &key)?;
    let record = match existing {
        Some(old) => AliasRecord {
            forwards,
            // A chain alias suspended by the operator stays suspended when
            // its owner activates it again.
            active: source != Source::Chain || old.active,
            source,
            chain,
            ..old
        },
        None => {
            let mut meta = txn.open_table(META)?;
            let id = meta.get("alias_id")?.map(|v| v.value()).unwrap_or(0) + 1;
            meta.insert("alias_id", id)?;
            AliasRecord {
                id,
                forwards,
                created: unix_now(),
                active: true,
                source,
                chain,
            }
        }
    };
    table.insert(key.as_str(), encode_compact(&key, &record).as_slice())?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        super::super::db::temp_store()
    }

    #[test]
    fn a_static_domain_and_its_pending_provisioning_are_one_write() {
        let (_d, s) = store();
        let pending = |s: &Store| -> Vec<String> {
            s.provision_pending()
                .unwrap()
                .into_iter()
                .map(|(d, _)| d)
                .collect()
        };
        // Both are written by one transaction: dropped before its commit
        // (a crash), neither the domain nor its provisioning exists.
        {
            let txn = s.db().begin_write().unwrap();
            assert!(domain_add_in(&txn, "a.country", Source::Static, true).unwrap());
        }
        assert!(s.domain_get("a.country").unwrap().is_none());
        assert!(pending(&s).is_empty());
        // Committed: both.
        assert!(
            s.domain_add_provisioned("a.country", Source::Static, true)
                .unwrap()
        );
        assert!(s.domain_get("a.country").unwrap().is_some());
        assert_eq!(pending(&s), vec!["a.country".to_string()]);
        // A domain that exists already queues nothing.
        s.provision_done("a.country", ProvisionKind::Provision)
            .unwrap();
        assert!(
            !s.domain_add_provisioned("a.country", Source::Static, true)
                .unwrap()
        );
        assert!(pending(&s).is_empty());
        // Without provisioning, the domain alone.
        assert!(
            s.domain_add_provisioned("b.country", Source::Static, false)
                .unwrap()
        );
        assert!(pending(&s).is_empty());
    }

    #[test]
    fn alias_crud_keeps_id_and_created() {
        let (_d, s) = store();
        assert!(s.domain_add("a.test", Source::Static).unwrap());
        assert!(!s.domain_add("a.test", Source::Static).unwrap());
        let first = s
            .alias_put("a.test", "x", vec!["u@dest.test".into()], Source::Static)
            .unwrap();
        let second = s
            .alias_put("a.test", "x", vec!["v@dest.test".into()], Source::Static)
            .unwrap();
        assert_eq!(first.id, second.id);
        assert_eq!(first.created, second.created);
        assert_eq!(second.forwards, vec!["v@dest.test".to_string()]);
        let other = s
            .alias_put("a.test", "y", vec!["w@dest.test".into()], Source::Static)
            .unwrap();
        assert_ne!(other.id, first.id);
        let listed: Vec<String> = s
            .alias_list("a.test")
            .unwrap()
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(listed, vec!["x", "y"]);
        assert!(s.alias_remove("a.test", "x").unwrap());
        assert!(!s.alias_remove("a.test", "x").unwrap());
        assert!(s.alias_get("a.test", "x").unwrap().is_none());
    }

    #[test]
    fn removing_a_domain_removes_only_its_aliases() {
        let (_d, s) = store();
        s.domain_add("a.test", Source::Static).unwrap();
        s.domain_add("a.testx", Source::Static).unwrap();
        s.alias_put("a.test", "x", vec!["u@d.test".into()], Source::Static)
            .unwrap();
        s.alias_put("a.testx", "x", vec!["u@d.test".into()], Source::Static)
            .unwrap();
        assert!(s.domain_remove("a.test").unwrap());
        assert!(s.alias_get("a.test", "x").unwrap().is_none());
        assert!(s.alias_get("a.testx", "x").unwrap().is_some());
        assert_eq!(s.domain_list().unwrap().len(), 1);
    }
}
