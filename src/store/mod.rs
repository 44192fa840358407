//! The embedded store (redb): domains and aliases, what binds chain aliases
//! to the chain, queue metadata with its `(due, id)` index, and the delivery
//! log. One process opens it at a time (redb locks the file). The records
//! every alias has (alias record, reveal, name state) are in a compact
//! binary form, the others JSON so they can grow new fields; JSON records
//! of those three, from older stores, still read.
//!
//! `db` is the handle and JSON codec, `codec` the binary one, `tables`
//! every table and key, `records` the domain, alias and chain records,
//! `compact` the repacking after a bulk load; `aliases`, `chain`,
//! `chain_deactivation`, `claimed` (writes with the cluster's ids),
//! `queue`, `log`, `outbox` (a cluster node's log rows still to send to
//! PostgreSQL) and `provision` (DNS writes still to do) are the operations
//! on them.

mod aliases;
mod chain;
mod chain_deactivation;
mod claimed;
mod codec;
mod compact;
mod credentials;
mod db;
mod log;
mod outbox;
mod provision;
mod queue;
mod records;
mod replica;
pub(crate) mod tables;

pub use aliases::Lookup;
pub use chain::Activated;
pub(crate) use chain::ChainUpdate;
pub use credentials::{CredentialRecord, Grant};
pub use log::{LogEntry, LogOutcome, SpamLog};
pub use outbox::OutboxPage;
#[cfg(test)]
pub(crate) use queue::sample_entry;
pub use queue::{Batch, QueueEntry, QueuedRecipient, RcptStatus};
pub use records::{
    AliasRecord, ChainBinding, ChainStatus, DomainRecord, NameState, PendingProvision,
    ProvisionKind, Reveal, Source, SpamThresholds,
};
pub(crate) use records::{Cursor, Deactivating};
pub use replica::{ReplicaOp, ReplicaReveal};

pub use db::{Store, StoreError};
pub(crate) use db::{format_queue_id, now_ms, parse_queue_id};
// The queue committer's tests read these two tables themselves.
#[cfg(test)]
pub(crate) use tables::{QUEUE, QUEUE_DUE};
