//! Repacking the store after a bulk load: the tables that grow with the
//! aliases are rewritten in key order, then redb gives the freed pages
//! back to the file system.
//!
//! Why: redb splits a full leaf into two half-full ones, so keys that
//! arrive in random order (activations, hashes in the alias index) leave
//! the pages about 70 % full, and every transaction's copy-on-write leaves
//! free pages behind in the file. A table written in ascending key order
//! into an empty tree is packed instead (redb starts a new leaf rather
//! than splitting the last one). Records still in JSON (a store written
//! before the binary form) are rewritten in the binary form on the way.

use super::codec::{Compact, decode_compact, encode_compact};
use super::db::{Store, StoreError};
use super::records::{AliasRecord, NameState, Reveal};
use super::tables::{ALIASES, CHAIN_ALIAS_INDEX, CHAIN_NAMES, CHAIN_NODES, CHAIN_REVEALS, DOMAINS};
use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// A scratch table the repacking copies through (deleted before commit).
const SCRATCH_STR: TableDefinition<&str, &[u8]> = TableDefinition::new("repack_scratch_str");
const SCRATCH_BYTES: TableDefinition<&[u8], &str> = TableDefinition::new("repack_scratch_bytes");

/// Turns a stored record (key, bytes) into its current form.
type Recode = fn(&str, &[u8]) -> Result<Vec<u8>, StoreError>;

/// Rewrites a table keyed by name in key order; `recode` turns a record
/// into its current form (None: kept as it is).
fn repack_named(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    recode: Option<Recode>,
) -> Result<(), StoreError> {
    txn.delete_table(SCRATCH_STR)?;
    {
        let from = txn.open_table(table)?;
        let mut to = txn.open_table(SCRATCH_STR)?;
        for item in from.iter()? {
            let (k, v) = item?;
            to.insert(k.value(), v.value())?;
        }
    }
    txn.delete_table(table)?;
    {
        let from = txn.open_table(SCRATCH_STR)?;
        let mut to = txn.open_table(table)?;
        for item in from.iter()? {
            let (k, v) = item?;
            match recode {
                Some(recode) => to.insert(k.value(), recode(k.value(), v.value())?.as_slice())?,
                None => to.insert(k.value(), v.value())?,
            };
        }
    }
    txn.delete_table(SCRATCH_STR)?;
    Ok(())
}

/// Rewrites a table keyed by bytes in key order.
fn repack_binary(
    txn: &WriteTransaction,
    table: TableDefinition<&[u8], &str>,
) -> Result<(), StoreError> {
    txn.delete_table(SCRATCH_BYTES)?;
    {
        let from = txn.open_table(table)?;
        let mut to = txn.open_table(SCRATCH_BYTES)?;
        for item in from.iter()? {
            let (k, v) = item?;
            to.insert(k.value(), v.value())?;
        }
    }
    txn.delete_table(table)?;
    {
        let from = txn.open_table(SCRATCH_BYTES)?;
        let mut to = txn.open_table(table)?;
        for item in from.iter()? {
            let (k, v) = item?;
            to.insert(k.value(), v.value())?;
        }
    }
    txn.delete_table(SCRATCH_BYTES)?;
    Ok(())
}

/// A record of type `T` in its binary form, whatever form it was in.
fn recode<T: Compact>(table: &'static str, key: &str, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    if bytes.first() == Some(&super::codec::BINARY_V1) {
        return Ok(bytes.to_vec());
    }
    let record: T = decode_compact(table, key, bytes)?;
    Ok(encode_compact(key, &record))
}

impl Store {
    /// Repacks the tables that grow with the aliases (domains, aliases,
    /// reveals, names, the chain indexes) in key order, in one
    /// transaction, and then compacts the file (redb's `compact`). For
    /// after a bulk load (an import, a node's first sync) or offline: it
    /// needs the only handle, and copies each table twice. Returns the
    /// file's size before and after, in bytes (0 when unknown).
    pub fn compact(&mut self) -> Result<(u64, u64), StoreError> {
        let before = self.file_len();
        let txn = self.db().begin_write()?;
        repack_named(&txn, DOMAINS, None)?;
        repack_named(
            &txn,
            ALIASES,
            Some(|k, v| recode::<AliasRecord>("aliases", k, v)),
        )?;
        repack_named(
            &txn,
            CHAIN_REVEALS,
            Some(|k, v| recode::<Reveal>("chain_reveals", k, v)),
        )?;
        repack_named(
            &txn,
            CHAIN_NAMES,
            Some(|k, v| recode::<NameState>("chain_names", k, v)),
        )?;
        repack_binary(&txn, CHAIN_NODES)?;
        repack_binary(&txn, CHAIN_ALIAS_INDEX)?;
        txn.commit()?;
        // Each call moves what it can towards the start of the file and
        // truncates; repeated until there is nothing left to move.
        while self.db_mut().compact()? {}
        Ok((before, self.file_len()))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Activated, ChainBinding, NameState, Reveal, Source, Store};

    fn activation(i: u32) -> Activated {
        // Hashes in no key order, as on chain.
        let mix = |salt: u32| -> [u8; 32] {
            let mut h = [0u8; 32];
            let v = i.wrapping_mul(0x9E37_79B9) ^ salt;
            h[..4].copy_from_slice(&v.to_be_bytes());
            h[4..8].copy_from_slice(&i.to_be_bytes());
            h
        };
        let sld = format!("name{}", i / 10);
        Activated {
            domain: format!("{sld}.country"),
            local: format!("a{i}"),
            node: mix(i / 10),
            alias_hash: mix(7),
            binding: ChainBinding {
                tld: "country".into(),
                sld: sld.clone(),
                alias: format!("a{i}"),
                commitment: format!("0x{i:064x}"),
                observed: format!("0x{i:064x}"),
                signer: "0xaa".into(),
                checked_block: 1,
            },
            reveal: Reveal {
                forward: format!("u{i}@dest.example"),
                signature: format!("0x{}1b", "11".repeat(64)),
            },
            name: NameState {
                tld: "country".into(),
                sld,
                owner: "0xaa".into(),
                expires: 4_000_000_000,
                maintainer_allowed: false,
                checked_block: 1,
            },
        }
    }

    #[test]
    fn compact_shrinks_the_file_and_keeps_every_alias_and_index_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.redb")).unwrap();
        let all: Vec<Activated> = (0..3000).map(activation).collect();
        for batch in all.chunks(100) {
            s.chain_activate_many(batch).unwrap();
        }
        s.alias_put(
            "name0.country",
            "static",
            vec!["x@y.example".into()],
            Source::Static,
        )
        .unwrap();
        let bindings = s.chain_bindings().unwrap();
        let names = s.chain_names().unwrap();
        let (before, after) = s.compact().unwrap();
        assert!(after > 0 && after < before, "{before} -> {after}");
        assert_eq!(s.file_len(), after);
        // Everything reads the same: records, names, both chain indexes.
        assert_eq!(s.chain_bindings().unwrap(), bindings);
        assert_eq!(s.chain_names().unwrap(), names);
        for a in &all {
            let found = s.lookup(&a.domain, &[&a.local]).unwrap();
            let (_, record) = found.hit.unwrap();
            assert_eq!(record.forwards, vec![a.reveal.forward.clone()]);
            assert_eq!(found.name.as_ref(), Some(&a.name));
            assert_eq!(
                s.chain_alias_of(&a.node, &a.alias_hash, "country").unwrap(),
                Some(crate::store::tables::alias_key(&a.domain, &a.local))
            );
            assert_eq!(
                s.chain_domain_of(&a.node, "country").unwrap().as_deref(),
                Some(a.domain.as_str())
            );
        }
        assert!(s.alias_get("name0.country", "static").unwrap().is_some());
        // And the store takes writes again.
        s.chain_activate(&activation(5000)).unwrap();
        assert!(s.alias_get("name500.country", "a5000").unwrap().is_some());
    }
}
