//! Removal marks of chain-governed aliases. `/deactivate` is public and
//! reads the chain at its latest block, which a lagging or lying RPC
//! endpoint (or a reorg) can get wrong; so it only marks the alias, and the
//! watcher removes it once a read at a confirmed block says the commitment
//! is gone (or drops the mark when the chain still commits to it).

use super::codec::get_compact;
use super::db::{Store, StoreError, decode, encode};
use super::records::{AliasRecord, ChainBinding, Deactivating};
use super::tables::{ALIASES, CHAIN_DEACTIVATING, alias_key};
use redb::{ReadableDatabase, ReadableTable};

impl Store {
    /// Marks the chain alias `local@domain` for removal (`all`: by
    /// `/deactivate-all`), if its binding is still `expected`; false when it
    /// is not (gone, static, replaced).
    pub(crate) fn chain_mark_deactivating(
        &self,
        domain: &str,
        local: &str,
        expected: &ChainBinding,
        from_block: u64,
        all: bool,
    ) -> Result<bool, StoreError> {
        let key = alias_key(domain, local);
        let txn = self.db().begin_write()?;
        let marked = {
            let aliases = txn.open_table(ALIASES)?;
            let current: Option<AliasRecord> = get_compact(&aliases, "aliases", &key)?;
            let mark = Deactivating {
                alias: expected.alias.clone(),
                commitment: expected.commitment.clone(),
                from_block,
                all,
            };
            let same = current
                .and_then(|r| r.chain)
                .is_some_and(|b| b.tld == expected.tld && b.sld == expected.sld && mark.marks(&b));
            if same {
                txn.open_table(CHAIN_DEACTIVATING)?
                    .insert(key.as_str(), encode(&mark).as_slice())?;
            }
            same
        };
        txn.commit()?;
        Ok(marked)
    }

    /// Up to `limit` pending removals: (alias key, mark), in key order.
    pub(crate) fn chain_deactivating(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, Deactivating)>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CHAIN_DEACTIVATING)?;
        let mut out = Vec::new();
        for item in table.iter()?.take(limit) {
            let (k, v) = item?;
            let key = k.value().to_string();
            let mark: Deactivating = decode("chain_deactivating", &key, v.value())?;
            out.push((key, mark));
        }
        Ok(out)
    }

    /// Drops the removal mark of an alias key (the chain still commits to
    /// it, or the alias is gone).
    pub(crate) fn chain_unmark(&self, key: &str) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        txn.open_table(CHAIN_DEACTIVATING)?.remove(key)?;
        txn.commit()?;
        Ok(())
    }
}
