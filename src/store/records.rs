//! The records the store keeps: a domain, an alias, and what binds a
//! chain-governed alias to the chain (the reveal, the commitment, the
//! name's owner and expiry, the watcher's position, pending removals). JSON
//! (serde) so they can grow new fields, except the alias record, the reveal
//! and the name state, which `codec` stores in a binary form (and reads
//! from JSON too): a field added to those three does not compile until
//! `codec` builds it, and then needs a new version byte there.

use serde::{Deserialize, Serialize};

/// Who governs a domain's aliases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Managed by the operator (admin API, CLI).
    #[default]
    Static,
    /// Governed by the chain (activation endpoint and watcher).
    Chain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// Unix seconds.
    pub created: u64,
    pub active: bool,
    #[serde(default)]
    pub source: Source,
    /// Kept for ImprovMX clients that set them (`PUT /v3/domains/{d}`);
    /// eas-relay sends no notifications and calls no webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whitelabel: Option<String>,
    /// The domain's own spam thresholds (content scanning): None follows
    /// rspamd's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam: Option<SpamThresholds>,
}

/// A domain's spam thresholds: the score from which rspamd's verdict
/// becomes `reject` (550) or `add header` (forwarded, flagged). An absent
/// one follows rspamd's. Scores are finite (checked where
/// they are set), so equality is total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SpamThresholds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_header: Option<f64>,
}

impl Eq for SpamThresholds {}

impl DomainRecord {
    /// An active domain created at `created` (Unix seconds).
    pub fn new(created: u64, source: Source) -> DomainRecord {
        DomainRecord {
            created,
            active: true,
            source,
            notification_email: None,
            webhook: None,
            whitelabel: None,
            spam: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// Stable numeric id (ImprovMX clients expect one).
    pub id: u64,
    /// Forwarding addresses, at least one.
    pub forwards: Vec<String>,
    /// Unix seconds.
    pub created: u64,
    /// False when suspended locally: the alias then rejects like an unknown one.
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub source: Source,
    /// For a chain-governed alias: what was revealed and must still hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainBinding>,
}

fn yes() -> bool {
    true
}

/// The revealed plaintext of a chain-governed alias and what it must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBinding {
    pub tld: String,
    pub sld: String,
    /// The alias exactly as activated (its keccak256 is on chain).
    pub alias: String,
    /// keccak256(alias | forward | signature), 0x-hex (the forward and the
    /// signature are in the [`Reveal`]).
    pub commitment: String,
    /// The commitment on chain at the last check; forwarding needs equality.
    pub observed: String,
    /// The address that signed (0x-hex, lower case).
    pub signer: String,
    /// Block of the last check.
    pub checked_block: u64,
}

impl ChainBinding {
    pub fn commitment_holds(&self) -> bool {
        self.observed.eq_ignore_ascii_case(&self.commitment)
    }
}

/// What the owner revealed to activate an alias: the plaintext forward and
/// the signature whose hash, with the alias, is the commitment on chain.
/// Kept so that the activation can be shown, audited or passed to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reveal {
    pub forward: String,
    /// The 65-byte signature r‖s‖v, 0x-hex, exactly as sent.
    pub signature: String,
}

/// A name's state on chain at the last check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameState {
    pub tld: String,
    pub sld: String,
    /// 0x-hex, lower case.
    pub owner: String,
    /// Unix seconds.
    pub expires: u64,
    /// The owner lets maintainers manage the aliases.
    pub maintainer_allowed: bool,
    pub checked_block: u64,
}

/// The watcher's position: the last block fully processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    pub number: u64,
    pub hash: [u8; 32],
}

/// Status of the chain connection as last recorded by the watcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    /// Unix ms of the last successful read of the chain.
    pub last_ok_ms: u64,
    pub head: u64,
    /// The chain's time (Unix s): of the newest confirmed block processed.
    #[serde(default)]
    pub chain_time: u64,
    pub last_error: Option<String>,
}

/// A processed block: (number, hash), kept to find the fork point of a reorg.
pub(crate) type BlockSeen = (u64, [u8; 32]);

/// A pending removal: `/deactivate` read the alias's own on-chain key as
/// zero at block `from_block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Deactivating {
    /// The alias exactly as activated (whose key read zero).
    pub alias: String,
    /// The commitment of the binding that was marked: a later activation
    /// (another commitment) is not removed by this mark.
    pub commitment: String,
    /// The (claimed) latest block of that read.
    pub from_block: u64,
    /// Marked by `/deactivate-all` (the name's records may leave the zone
    /// with its last alias), not by `/deactivate`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl Deactivating {
    /// Whether `binding` is still the one this mark was made for.
    pub fn marks(&self, binding: &ChainBinding) -> bool {
        binding.alias == self.alias && binding.commitment.eq_ignore_ascii_case(&self.commitment)
    }
}

/// What a pending zone operation does to a name's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionKind {
    /// Write the relay's records.
    #[default]
    Provision,
    /// Remove exactly the records the relay wrote (`remove_on_deactivate_all`).
    Remove,
}

/// A domain whose DNS records are still to be written into (or removed
/// from) the zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingProvision {
    /// Rows written before removal existed are provisionings.
    #[serde(default)]
    pub kind: ProvisionKind,
    /// When it was queued (Unix ms).
    pub since_ms: u64,
    /// Failed writes so far.
    pub attempts: u32,
    /// Not attempted before this (Unix ms).
    pub next_ms: u64,
    /// Why the last write failed (empty before the first attempt).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    /// The last failure was in the labels' content (retried at
    /// `retry_max` only, counted as failing), not the zone being down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permanent: bool,
}
