//! The store's handle: opening the redb file (private to its owner, one
//! process at a time) with every table, the id generators, and the JSON
//! codec every record goes through.

use super::tables::{
    ALIASES, CHAIN_ALIAS_INDEX, CHAIN_DEACTIVATING, CHAIN_MAINTAINERS, CHAIN_META, CHAIN_NAMES,
    CHAIN_NODES, CHAIN_REVEALS, DNS_FAILING, DNS_PENDING, DNS_PENDING_DUE, DOMAINS, LOG,
    LOG_OUTBOX, LOG_TIME, META, QUEUE, QUEUE_DUE, REPLICA_SUSPENDED,
};
use super::tables::{CREDENTIAL_NONCES, CREDENTIALS};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
// The queue's committer writes these two tables itself.
use crate::config::DEFAULT_CACHE_SIZE;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Store failures. All of them are temporary from a client's point of view.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store {0} is in use by another process (is a node running?)")]
    Locked(String),
    #[error("store database error: {0}")]
    Database(#[from] redb::DatabaseError),
    #[error("store transaction error: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("store table error: {0}")]
    Table(#[from] redb::TableError),
    #[error("store I/O error: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("store commit error: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("cannot create store directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("store compaction error: {0}")]
    Compaction(#[from] redb::CompactionError),
    #[error("damaged record in {table} at {key}: {reason}")]
    Corrupt {
        table: &'static str,
        key: String,
        reason: String,
    },
}

/// Creates the store file 0600 before redb opens it (redb would create it
/// with the umask's mode; it holds forwarding addresses); an existing
/// store file open to others is made 0600.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            crate::files::restrict_own_file(path)
        }
        Err(e) => Err(e),
    }
}

/// Handle to the store; cheap to share behind an `Arc`.
pub struct Store {
    db: Database,
    /// The file, to tell its size (see [`Store::compact`]).
    path: std::path::PathBuf,
    ids: IdGenerator,
    pub(crate) log_ids: IdGenerator,
    /// The timestamp of the newest confirmed block the watcher processed
    /// (Unix s, 0: none): names expire by whichever is later, this or the
    /// wall clock (see `Store::expiry_now`).
    pub(crate) chain_time: std::sync::atomic::AtomicU64,
    /// How far (s) the chain's time may run ahead of the wall clock and
    /// still be believed (`chain.max_clock_skew`).
    pub(crate) chain_skew: std::sync::atomic::AtomicU64,
    /// Whether a chain name's first activation also records its DNS
    /// provisioning as pending (`dns_provisioning.enabled`).
    pub(crate) provision_on_activation: std::sync::atomic::AtomicBool,
    /// Whether a `/deactivate-all` that removes a name's last alias queues
    /// the removal of its zone records.
    pub(crate) remove_on_deactivate_all: std::sync::atomic::AtomicBool,
    /// Bound of the delivery-log outbox of a cluster node; 0: off.
    pub(crate) outbox_max: AtomicU64,
    /// Rows the full outbox dropped since the store was opened.
    pub(crate) outbox_dropped: AtomicU64,
}

impl Store {
    /// Opens (or creates) the store at `path`, creating every table, with
    /// the default page cache ([`DEFAULT_CACHE_SIZE`]).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_SIZE)
    }

    /// Like [`Store::open`] with a page cache of at most `cache_bytes`
    /// (filled only as pages are read, so a small store stays small).
    pub(crate) fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            crate::files::create_private_dir(dir)?;
        }
        create_private_file(path)?;
        let db = match Database::builder().set_cache_size(cache_bytes).create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked(path.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let store = Store {
            db,
            path: path.to_path_buf(),
            ids: IdGenerator::default(),
            log_ids: IdGenerator::default(),
            chain_time: std::sync::atomic::AtomicU64::new(0),
            chain_skew: std::sync::atomic::AtomicU64::new(
                crate::config::ChainConfig::default()
                    .max_clock_skew
                    .0
                    .as_secs(),
            ),
            provision_on_activation: std::sync::atomic::AtomicBool::new(false),
            remove_on_deactivate_all: std::sync::atomic::AtomicBool::new(false),
            outbox_max: AtomicU64::new(0),
            outbox_dropped: AtomicU64::new(0),
        };
        let txn = store.db.begin_write()?;
        {
            txn.open_table(DOMAINS)?;
            txn.open_table(ALIASES)?;
            txn.open_table(QUEUE)?;
            txn.open_table(QUEUE_DUE)?;
            txn.open_table(LOG)?;
            txn.open_table(LOG_TIME)?;
            txn.open_table(LOG_OUTBOX)?;
            txn.open_table(META)?;
            txn.open_table(CHAIN_NAMES)?;
            txn.open_table(CHAIN_NODES)?;
            txn.open_table(DNS_PENDING)?;
            txn.open_table(DNS_PENDING_DUE)?;
            txn.open_table(DNS_FAILING)?;
            super::provision::index_in(&txn)?;
            txn.open_table(CHAIN_ALIAS_INDEX)?;
            txn.open_table(CHAIN_MAINTAINERS)?;
            txn.open_table(CHAIN_META)?;
            txn.open_table(CHAIN_REVEALS)?;
            txn.open_table(CHAIN_DEACTIVATING)?;
            txn.open_table(REPLICA_SUSPENDED)?;
            txn.open_table(CREDENTIALS)?;
            txn.open_table(CREDENTIAL_NONCES)?;
        }
        txn.commit()?;
        let (queue_max, log_max) = store.max_ids()?;
        store.ids.seed(queue_max);
        store.log_ids.seed(log_max);
        store.chain_time.store(
            store.chain_status()?.chain_time,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(store)
    }

    /// Reads every page of the tables RCPT consults (domains, aliases,
    /// names, maintainer roles) into the page cache, so that the first
    /// lookup of each alias after a start is as fast as the next ones (a
    /// page read from the file costs ten times a cached one). Returns the
    /// entries and bytes read.
    pub fn prewarm(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let (mut entries, mut bytes) = (0u64, 0u64);
        let mut count = |k: usize, v: usize| {
            entries += 1;
            bytes += (k + v) as u64;
        };
        for item in txn.open_table(DOMAINS)?.iter()? {
            let (k, v) = item?;
            count(k.value().len(), v.value().len());
        }
        for item in txn.open_table(ALIASES)?.iter()? {
            let (k, v) = item?;
            count(k.value().len(), v.value().len());
        }
        for item in txn.open_table(CHAIN_NAMES)?.iter()? {
            let (k, v) = item?;
            count(k.value().len(), v.value().len());
        }
        for item in txn.open_table(CHAIN_MAINTAINERS)?.iter()? {
            let (k, _) = item?;
            count(k.value().len(), 0);
        }
        Ok((entries, bytes))
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub(crate) fn db_mut(&mut self) -> &mut Database {
        &mut self.db
    }

    /// The size of the store's file in bytes (0 when it cannot be read).
    pub(crate) fn file_len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// A new queue id, unique and increasing across restarts.
    pub(crate) fn next_queue_id(&self) -> u64 {
        self.ids.next()
    }

    fn max_ids(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let queue = txn.open_table(QUEUE)?;
        let log = txn.open_table(LOG_TIME)?;
        let queue_max = queue.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        let log_max = log.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        Ok((queue_max, log_max))
    }
}

/// Monotonic ids of the form `unix_ms << 12 | n`: time-ordered, unique as
/// long as fewer than 4096 are taken per millisecond on average.
#[derive(Default)]
pub(crate) struct IdGenerator {
    last: AtomicU64,
}

impl IdGenerator {
    pub(crate) fn seed(&self, at_least: u64) {
        self.last.fetch_max(at_least, Ordering::SeqCst);
    }

    pub(crate) fn next(&self) -> u64 {
        let floor = now_ms() << 12;
        let mut current = self.last.load(Ordering::Relaxed);
        loop {
            let next = floor.max(current + 1);
            match self.last.compare_exchange_weak(
                current,
                next,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Renders a queue id the way logs and the CLI show it.
pub(crate) fn format_queue_id(id: u64) -> String {
    format!("{id:016X}")
}

/// Parses a queue id as shown by `format_queue_id`.
pub(crate) fn parse_queue_id(s: &str) -> Option<u64> {
    (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?
}

/// A store in a fresh temporary directory (unit tests).
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(&dir.path().join("s.redb")).expect("a new store");
    (dir, store)
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        key: key.to_string(),
        // Aliases, reveals and name states are binary (`codec`): reading
        // one here is a bug of the caller, not damage; say so.
        reason: if bytes.first() == Some(&super::codec::BINARY_V1) {
            "a binary record read as JSON (read it with codec::decode_compact)".to_string()
        } else {
            e.to_string()
        },
    })
}

/// The record under `key` in a table keyed by name, decoded (`name` says
/// which table a corrupt record is in); works on read and write tables.
pub(crate) fn get_decoded<T: DeserializeOwned>(
    table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key)? {
        Some(v) => Ok(Some(decode(name, key, v.value())?)),
        None => Ok(None),
    }
}

/// A record [`Store::read_all`] reads: JSON, or for the records with a
/// binary form (see `codec`) either form.
pub(crate) trait Stored: Sized {
    fn decode_stored(table: &'static str, key: &str, bytes: &[u8]) -> Result<Self, StoreError>;
}

impl Stored for super::records::DomainRecord {
    fn decode_stored(table: &'static str, key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        decode(table, key, bytes)
    }
}

impl Stored for super::records::PendingProvision {
    fn decode_stored(table: &'static str, key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        decode(table, key, bytes)
    }
}

impl Store {
    /// Every record of a table keyed by name, decoded, in key order
    /// (`name` says which table a corrupt record is in).
    pub(crate) fn read_all<T: Stored>(
        &self,
        name: &'static str,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(table)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let record = T::decode_stored(name, k.value(), v.value())?;
            out.push((k.value().to_string(), record));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let a = store.next_queue_id();
        let b = store.next_queue_id();
        assert!(b > a);
        assert_eq!(parse_queue_id(&format_queue_id(a)), Some(a));
        assert_eq!(parse_queue_id("xyz"), None);
    }

    #[test]
    fn second_open_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = Store::open(&path).unwrap();
        match Store::open(&path) {
            Err(StoreError::Locked(p)) => assert!(p.ends_with("s.redb")),
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("expected Locked, got a second handle"),
        }
    }
}
