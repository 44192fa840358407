//! From a change row to a store write: what each kind of row means for the
//! local replica. Domains, static aliases and suspensions are taken as the
//! database says (their form checked); a chain reveal is a claim, so the
//! node checks it against its own view of the chain first
//! ([`Activation::verify`], the checks of `/activate`) and refuses one that
//! does not hold: not stored, and a chain alias at that key removed.

use super::Status;
use crate::address::Mailbox;
use crate::chain::activation::{ActivateRequest, Activation, ActivationError};
use crate::cluster::ChangeRow;
use crate::store::{DomainRecord, ReplicaOp, ReplicaReveal, Source, SpamThresholds, Store};
use serde_json::Value;
use std::sync::Arc;

/// What one row becomes.
#[derive(Debug)]
pub(crate) enum Step {
    /// A state to write.
    Op(ReplicaOp),
    /// Nothing to write (an unknown kind, a row that cannot be read).
    Skip,
    /// A reveal the chain could not be asked about now: tried again later.
    Defer(String),
}

/// Turns change rows into replica writes.
pub(crate) struct Applier {
    pub(crate) store: Arc<Store>,
    activation: Option<Arc<Activation>>,
    status: Arc<Status>,
}

/// Unix seconds of a timestamp as `to_jsonb` writes it (RFC 3339); now
/// when absent or unreadable.
fn unix_of(value: &Value) -> u64 {
    let now = crate::store::now_ms() / 1000;
    value
        .as_str()
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
        .unwrap_or(now)
}

fn text(payload: &Value, field: &str) -> Option<String> {
    payload.get(field)?.as_str().map(str::to_string)
}

fn id_of(payload: &Value) -> Option<u64> {
    payload.get("id")?.as_u64()
}

/// (local, domain) of an alias key `local@domain`.
fn split_key(key: &str) -> Option<(String, String)> {
    let (local, domain) = key.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then(|| (local.to_string(), domain.to_string()))
}

/// A domain row's record.
fn domain_record(payload: &Value) -> Option<DomainRecord> {
    let source = match payload.get("source")?.as_str()? {
        "static" => Source::Static,
        "chain" => Source::Chain,
        _ => return None,
    };
    let settings = payload.get("settings").cloned().unwrap_or(Value::Null);
    let spam = settings.get("spam").and_then(|s| {
        let reject = s.get("reject").and_then(Value::as_f64);
        let add_header = s.get("add_header").and_then(Value::as_f64);
        (reject.is_some() || add_header.is_some()).then_some(SpamThresholds { reject, add_header })
    });
    Some(DomainRecord {
        created: unix_of(payload.get("created_at").unwrap_or(&Value::Null)),
        active: payload.get("active")?.as_bool()?,
        source,
        notification_email: text(&settings, "notification_email"),
        webhook: text(&settings, "webhook"),
        whitelabel: text(&settings, "whitelabel"),
        spam,
    })
}

impl Applier {
    pub(crate) fn new(
        store: Arc<Store>,
        activation: Option<Arc<Activation>>,
        status: Arc<Status>,
    ) -> Applier {
        Applier {
            store,
            activation,
            status,
        }
    }

    /// What `row` means for the replica.
    pub(crate) async fn step(&self, row: &ChangeRow) -> Step {
        let removed = row.payload.is_null();
        match row.kind.as_str() {
            "domain" if removed => Step::Op(ReplicaOp::Domain {
                domain: row.key.clone(),
                record: None,
            }),
            "domain" => match domain_record(&row.payload) {
                Some(record) if text(&row.payload, "domain").as_deref() == Some(&row.key) => {
                    Step::Op(ReplicaOp::Domain {
                        domain: row.key.clone(),
                        record: Some(record),
                    })
                }
                _ => self.unreadable(row),
            },
            "alias" => self.static_alias(row),
            "suspension" => match split_key(&row.key) {
                Some((local, domain)) => Step::Op(ReplicaOp::Suspension {
                    domain,
                    local,
                    suspended: !removed,
                }),
                None => self.unreadable(row),
            },
            "reveal" => self.reveal(row).await,
            other => {
                tracing::debug!(
                    kind = other,
                    id = row.id,
                    "change of an unknown kind skipped"
                );
                Step::Skip
            }
        }
    }

    fn unreadable(&self, row: &ChangeRow) -> Step {
        tracing::warn!(id = row.id, kind = %row.kind, key = %row.key,
            "a change row this node cannot read was skipped");
        metrics::counter!("eas_replica_unreadable_total").increment(1);
        Step::Skip
    }

    fn static_alias(&self, row: &ChangeRow) -> Step {
        let Some((local, domain)) = split_key(&row.key) else {
            return self.unreadable(row);
        };
        if row.payload.is_null() {
            return Step::Op(ReplicaOp::Static {
                domain,
                local,
                alias: None,
            });
        }
        let forwards: Option<Vec<String>> = row
            .payload
            .get("forwards")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|f| f.as_str().map(str::to_string)).collect());
        let (Some(id), Some(forwards)) = (id_of(&row.payload), forwards) else {
            return self.unreadable(row);
        };
        // Forwards the relay could not deliver to are not taken: the
        // alias is removed rather than kept with a part of them.
        if forwards.is_empty() || forwards.iter().any(|f| Mailbox::parse(f).is_none()) {
            tracing::warn!(id = row.id, key = %row.key, "a static alias with an invalid forward was refused");
            metrics::counter!("eas_replica_refused_total", "kind" => "alias").increment(1);
            return Step::Op(ReplicaOp::Static {
                domain,
                local,
                alias: None,
            });
        }
        let created = unix_of(row.payload.get("created_at").unwrap_or(&Value::Null));
        Step::Op(ReplicaOp::Static {
            domain,
            local,
            alias: Some((id, forwards, created)),
        })
    }

    /// A reveal row: checked against this node's chain before it forwards.
    async fn reveal(&self, row: &ChangeRow) -> Step {
        let Some((local, domain)) = split_key(&row.key) else {
            return self.unreadable(row);
        };
        let refuse = |why: String| {
            tracing::warn!(id = row.id, alias = %row.key, origin = %row.origin, reason = %why,
                "a reveal in the cluster's database does not hold on chain: refused");
            metrics::counter!("eas_replica_refused_total", "kind" => "reveal").increment(1);
            self.status.note_refused();
            Step::Op(ReplicaOp::Reveal {
                domain: domain.clone(),
                local: local.clone(),
                reveal: None,
            })
        };
        if row.payload.is_null() {
            return Step::Op(ReplicaOp::Reveal {
                domain,
                local,
                reveal: None,
            });
        }
        let p = &row.payload;
        let (Some(id), Some(sld), Some(tld), Some(alias), Some(forward), Some(signature)) = (
            id_of(p),
            text(p, "sld"),
            text(p, "tld"),
            text(p, "alias"),
            text(p, "forward"),
            text(p, "signature"),
        ) else {
            return refuse("the row lacks a field".into());
        };
        // The row's key must be the alias it reveals: a row moved to
        // another key by hand claims nothing there.
        if domain != format!("{sld}.{tld}") || local != alias.to_ascii_lowercase() {
            return refuse(format!(
                "the key {} is not the alias {alias}@{sld}.{tld}",
                row.key
            ));
        }
        let Some(activation) = &self.activation else {
            return refuse("chain.enabled is off on this node: nothing to check against".into());
        };
        let request = ActivateRequest {
            alias,
            sld,
            forward_address: forward,
            signature,
            tld: Some(tld),
        };
        match activation.verify(&request).await {
            Ok(verified) => Step::Op(ReplicaOp::Reveal {
                domain,
                local,
                reveal: Some(Box::new(ReplicaReveal {
                    id,
                    activated: verified.activated,
                    maintainer: verified.maintainer,
                })),
            }),
            // Not an answer about the reveal: ask again later.
            Err(ActivationError::Chain(e)) => Step::Defer(e.to_string()),
            Err(ActivationError::Store(e)) => Step::Defer(format!("store: {e}")),
            Err(e) => refuse(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_rows_and_keys_are_read_as_written_by_to_jsonb() {
        let payload = serde_json::json!({
            "domain": "shop.example", "source": "static", "active": false,
            "settings": {"webhook": "https://h.example/x", "spam": {"reject": 12.5}},
            "created_at": "2026-12-03T17:49:16.123456+01:00",
        });
        let record = domain_record(&payload).unwrap();
        assert!(!record.active);
        assert_eq!(record.source, Source::Static);
        assert_eq!(record.webhook.as_deref(), Some("https://h.example/x"));
        assert_eq!(record.spam.and_then(|s| s.reject), Some(12.5));
        assert_eq!(record.created, 1_796_316_556);
        assert!(domain_record(&serde_json::json!({"source": "other", "active": true})).is_none());
        assert_eq!(
            split_key("a@b@shop.example"),
            Some(("a@b".to_string(), "shop.example".to_string()))
        );
        assert_eq!(split_key("@shop.example"), None);
    }
}
