//! What the operator sees of domains, aliases, queued messages and the
//! delivery log: the shapes the admin API returns (ImprovMX fields) and the
//! CLI prints, built from the store's records.

use crate::store::{
    AliasRecord, LogEntry, LogOutcome, QueueEntry, RcptStatus, Source, SpamThresholds,
    format_queue_id,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Aliases shown inside a domain (ImprovMX embeds the first ones).
pub(crate) const DOMAIN_ALIASES_SHOWN: usize = 20;

/// A domain as the API and CLI show it (ImprovMX fields, plus `source` and
/// `aliases_total`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DomainView {
    pub domain: String,
    pub display: String,
    pub active: bool,
    /// Unix ms.
    pub added: u64,
    pub notification_email: Option<String>,
    pub webhook: Option<String>,
    pub whitelabel: Option<String>,
    /// The domain's own spam thresholds; absent: rspamd's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam: Option<SpamThresholds>,
    pub source: Source,
    /// The first [`DOMAIN_ALIASES_SHOWN`] aliases.
    pub aliases: Vec<AliasView>,
    pub aliases_total: usize,
}

/// An alias as the API and CLI show it (ImprovMX fields, plus `active` and
/// `source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AliasView {
    pub alias: String,
    /// Comma-separated forwarding addresses.
    pub forward: String,
    pub id: u64,
    /// Unix ms.
    pub created: u64,
    pub active: bool,
    #[serde(default)]
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueRecipientView {
    pub address: String,
    pub rcpt: String,
    pub alias: String,
    pub status: String,
    pub attempts: u32,
    /// Unix ms of the next attempt (pending only).
    pub next_attempt: Option<u64>,
    pub last_reply: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueView {
    pub id: String,
    pub sender: String,
    /// The envelope sender used towards the next hop (SRS), when different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope_from: Option<String>,
    /// Unix ms.
    pub created: u64,
    pub size: u64,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub client_ip: Option<String>,
    pub is_dsn: bool,
    pub recipients: Vec<QueueRecipientView>,
}

impl QueueView {
    pub(super) fn from_entry(e: &QueueEntry) -> QueueView {
        QueueView {
            id: format_queue_id(e.id),
            sender: e.sender.clone(),
            envelope_from: e.envelope_from.clone(),
            created: e.created,
            size: e.size,
            subject: e.subject.clone(),
            message_id: e.message_id.clone(),
            client_ip: e.client_ip.clone(),
            is_dsn: e.is_dsn,
            recipients: e
                .recipients
                .iter()
                .map(|r| QueueRecipientView {
                    address: r.address.clone(),
                    rcpt: r.rcpt.clone(),
                    alias: r.alias.clone(),
                    status: format!("{:?}", r.status).to_lowercase(),
                    attempts: r.attempts,
                    next_attempt: (r.status == RcptStatus::Pending).then_some(r.next_attempt),
                    last_reply: r.last_reply.clone(),
                })
                .collect(),
        }
    }
}

/// What removing an alias did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    Deleted,
    /// A chain-governed alias: suspended here, the chain still holds it.
    Suspended,
}

pub(super) fn alias_view(local: &str, r: &AliasRecord) -> AliasView {
    AliasView {
        alias: local.to_string(),
        forward: r.forwards.join(","),
        id: r.id,
        created: r.created * 1000,
        active: r.active,
        source: r.source,
    }
}

/// The delivery log as the API renders it, one item per recipient outcome
/// with its event (the CLI prints from it too).
pub(crate) fn log_items(logs: &[LogEntry]) -> Vec<Value> {
    logs.iter()
        .map(|l| {
            let status = match l.outcome {
                LogOutcome::Delivered => "DELIVERED",
                LogOutcome::Deferred => "SOFT-BOUNCE",
                LogOutcome::Bounced => "HARD-BOUNCE",
                // ImprovMX's status of mail refused as spam.
                LogOutcome::Refused => "REFUSED",
            };
            json!({
                "id": l.id.to_string(),
                "created": l.time,
                "queueId": format_queue_id(l.queue_id),
                "messageId": l.message_id,
                "subject": l.subject,
                "sender": { "email": l.sender },
                "alias": l.alias,
                "recipient": { "email": if l.recipient.is_empty() { &l.alias } else { &l.recipient } },
                "forward": { "email": l.forward },
                "events": [{
                    "code": l.code,
                    "status": status,
                    "message": l.message,
                    "server": l.server,
                    "created": l.time,
                    "spam": l.spam,
                }],
            })
        })
        .collect()
}
