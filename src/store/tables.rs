//! Every table of the store, in one place, and how their keys are built:
//! the modules that read and write them (aliases, chain, queue, log) all
//! name them from here, so none has to reach into another for a table.

use redb::TableDefinition;

/// domain -> DomainRecord
pub(crate) const DOMAINS: TableDefinition<&str, &[u8]> = TableDefinition::new("domains");
/// "domain\0local" -> AliasRecord
pub(crate) const ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("aliases");
/// queue id -> QueueEntry
pub(crate) const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// (due ms, queue id) -> ()
pub(crate) const QUEUE_DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("queue_due");
/// (alias domain, log id) -> LogEntry
pub(crate) const LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("delivery_log");
/// log id -> alias domain (for retention sweeps in time order)
pub(crate) const LOG_TIME: TableDefinition<u64, &str> = TableDefinition::new("delivery_log_time");
/// log id -> LogEntry: a cluster node's log rows not yet in PostgreSQL
pub(crate) const LOG_OUTBOX: TableDefinition<u64, &[u8]> =
    TableDefinition::new("delivery_log_outbox");
/// named counters
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// domain ("sld.tld") -> NameState
pub(crate) const CHAIN_NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("chain_names");
/// node (keccak256 of the sld, 32 bytes) ‖ tld -> domain
pub(crate) const CHAIN_NODES: TableDefinition<&[u8], &str> = TableDefinition::new("chain_nodes");
/// node ‖ alias hash (64 bytes) ‖ tld -> local part (the domain is the
/// node's in CHAIN_NODES; stores written before the compact records hold
/// the whole alias key, "domain\0local", and are read as such)
pub(crate) const CHAIN_ALIAS_INDEX: TableDefinition<&[u8], &str> =
    TableDefinition::new("chain_alias_index");
/// "tld\0account" -> () for accounts holding MAINTAINER_ROLE
pub(crate) const CHAIN_MAINTAINERS: TableDefinition<&str, ()> =
    TableDefinition::new("chain_maintainers");
/// "cursor" / "recent" / "status" -> JSON
pub(crate) const CHAIN_META: TableDefinition<&str, &[u8]> = TableDefinition::new("chain_meta");
/// alias key → the reveal it was activated with ([`Reveal`]): evidence kept
/// apart from the alias record, which RCPT reads and should stay small.
pub(crate) const CHAIN_REVEALS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("chain_reveals");

/// alias key → [`Deactivating`]: aliases `/deactivate` found gone on
/// chain, removed once the watcher confirms it (see
/// [`Store::chain_mark_deactivating`]).
pub(crate) const CHAIN_DEACTIVATING: TableDefinition<&str, &[u8]> =
    TableDefinition::new("chain_deactivating");

/// domain → [`PendingProvision`](super::records::PendingProvision): names
/// whose DNS records are still to be written into the zone (Redis), kept
/// until a write succeeds.
pub(crate) const DNS_PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("dns_pending");
/// (next attempt ms, domain) -> (): the rows of DNS_PENDING in the order
/// they come due, so a pass reads only the due ones.
pub(crate) const DNS_PENDING_DUE: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("dns_pending_due");
/// domain -> (): queued names whose last failure was in their labels'
/// content (not the zone being down): an operator has to look at them.
pub(crate) const DNS_FAILING: TableDefinition<&str, ()> = TableDefinition::new("dns_failing");

/// alias key -> (): aliases the cluster's database suspends (a fact of
/// its own, so a suspension that arrives before its alias still holds).
pub(crate) const REPLICA_SUSPENDED: TableDefinition<&str, ()> =
    TableDefinition::new("replica_suspended");

/// The key of an alias in the aliases table (also how the chain tables
/// name an alias): `domain NUL local`.
pub(crate) fn alias_key(domain: &str, local: &str) -> String {
    format!("{domain}\0{local}")
}

/// Splits an alias key into (domain, local).
pub(crate) fn split_alias_key(key: &str) -> (&str, &str) {
    key.split_once('\0').unwrap_or((key, ""))
}

/// The key of an account in CHAIN_MAINTAINERS: `tld NUL account` (hex,
/// lower case).
pub(crate) fn maintainer_key(tld: &str, account: &str) -> String {
    format!("{tld}\0{}", account.to_ascii_lowercase())
}

/// The key of a name in CHAIN_NODES: `node ‖ tld`.
pub(crate) fn node_key(node: &[u8; 32], tld: &str) -> Vec<u8> {
    [node.as_slice(), tld.as_bytes()].concat()
}

/// The key of an alias in CHAIN_ALIAS_INDEX: `node ‖ alias hash ‖ tld`.
pub(crate) fn alias_index_key(node: &[u8; 32], alias: &[u8; 32], tld: &str) -> Vec<u8> {
    [node.as_slice(), alias.as_slice(), tld.as_bytes()].concat()
}

/// "domain\0local" → [`CredentialRecord`](super::CredentialRecord):
/// the submission credentials (the username is `local@domain`).
pub(crate) const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
/// "signer\0nonce" → expiry (unix seconds) of a wallet-signed grant or
/// revocation already used: a signature counts once, until it expires.
pub(crate) const CREDENTIAL_NONCES: TableDefinition<&str, u64> =
    TableDefinition::new("credential_nonces");
