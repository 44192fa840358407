//! Writes of aliases whose id the cluster's database gave (cluster mode:
//! a write is committed in PostgreSQL first, then here with the SAME id, so
//! that the id a client saw is the one every node shows). Each is the
//! ordinary write ([`super::aliases::put_alias`], [`super::chain`]'s
//! activation) with the id set in the same transaction, and the local id
//! counter moved past it (a later local id never reuses one).

use super::aliases::put_alias;
use super::chain::{Activated, activate_in};
use super::codec::encode_compact;
use super::db::{Store, StoreError};
use super::records::{AliasRecord, Source};
use super::tables::{ALIASES, META, alias_key};
use redb::ReadableTable;
use std::sync::atomic::Ordering;

/// Gives the alias record just written at `domain`/`local` in `txn` the
/// id `id`.
fn set_id(
    txn: &redb::WriteTransaction,
    domain: &str,
    local: &str,
    mut record: AliasRecord,
    id: u64,
) -> Result<AliasRecord, StoreError> {
    if record.id != id {
        record.id = id;
        let key = alias_key(domain, local);
        txn.open_table(ALIASES)?
            .insert(key.as_str(), encode_compact(&key, &record).as_slice())?;
    }
    let mut meta = txn.open_table(META)?;
    let counter = meta.get("alias_id")?.map(|v| v.value()).unwrap_or(0);
    if counter < id {
        meta.insert("alias_id", id)?;
    }
    Ok(record)
}

impl Store {
    /// Creates or replaces static (or other `source`) aliases as
    /// [`Store::alias_put_many`] does, each with its given id, in one
    /// transaction; returns the stored records in the order given.
    pub fn alias_put_claimed(
        &self,
        items: impl IntoIterator<Item = (String, String, Vec<String>, u64)>,
        source: Source,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let txn = self.db().begin_write()?;
        let records = items
            .into_iter()
            .map(|(domain, local, forwards, id)| {
                let record = put_alias(&txn, &domain, &local, forwards, source, None)?;
                set_id(&txn, &domain, &local, record, id)
            })
            .collect::<Result<Vec<_>, _>>()?;
        txn.commit()?;
        Ok(records)
    }

    /// Records an activation as [`Store::chain_activate`] does, the alias
    /// with the id `id`.
    pub fn chain_activate_claimed(
        &self,
        activation: &Activated,
        id: u64,
    ) -> Result<AliasRecord, StoreError> {
        let txn = self.db().begin_write()?;
        let provision = self.provision_on_activation.load(Ordering::Relaxed);
        let record = activate_in(&txn, activation, provision)?;
        let record = set_id(&txn, &activation.domain, &activation.local, record, id)?;
        txn.commit()?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_ids_are_kept_and_local_ids_never_reuse_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.domain_add("a.test", Source::Static).unwrap();
        let got = s
            .alias_put_claimed(
                [("a.test".into(), "x".into(), vec!["u@d.test".into()], 42)],
                Source::Static,
            )
            .unwrap();
        assert_eq!(got[0].id, 42);
        assert_eq!(s.alias_get("a.test", "x").unwrap().unwrap().id, 42);
        // Replaced with the id the database gives (the same row there).
        let again = s
            .alias_put_claimed(
                [("a.test".into(), "x".into(), vec!["v@d.test".into()], 42)],
                Source::Static,
            )
            .unwrap();
        assert_eq!((again[0].id, again[0].created), (42, got[0].created));
        // A local id (no cluster) comes after the claimed ones.
        let local = s
            .alias_put("a.test", "y", vec!["w@d.test".into()], Source::Static)
            .unwrap();
        assert!(local.id > 42, "{}", local.id);
    }
}
