//! The periodic reconciliation: one digest per domain computed by
//! PostgreSQL (its source and state, its static aliases with ids and
//! forwards, its reveals with ids and forwards, its suspensions) compared
//! with the same digest of the local replica; a domain that differs (or is
//! on one side only) is read again from the database and applied, which
//! repairs whatever a lost change, a bug or a hand edit of the local store
//! left behind. Reveals refused or waiting for the chain count as what the
//! database says (they are not checked again while their row is the same).

use super::apply::Step;
use super::{Replica, ReplicaError};
use crate::cluster::{ChangeRow, Feed};
use crate::store::{AliasRecord, DomainRecord, ReplicaOp, Source};
use std::collections::{HashMap, HashSet};

/// The text every digest is the SHA-256 of, in the database's words:
/// `source:active`, then `#` and the static aliases `local=id>f1,f2`
/// joined by `|`, `#` and the reveals `local=id>forward`, `#` and the
/// suspended locals; lists ordered by local part, byte-wise.
const DIGESTS: &str = r#"SELECT d.domain, encode(sha256(convert_to(
    d.source || ':' || d.active::text
    || '#' || coalesce((SELECT string_agg(a.local || '=' || a.id || '>' || array_to_string(a.forwards, ','), '|' ORDER BY a.local COLLATE "C") FROM static_aliases a WHERE a.domain = d.domain), '')
    || '#' || coalesce((SELECT string_agg(r.local || '=' || r.id || '>' || r.forward, '|' ORDER BY r.local COLLATE "C") FROM chain_reveals r WHERE r.domain = d.domain), '')
    || '#' || coalesce((SELECT string_agg(s.local, '|' ORDER BY s.local COLLATE "C") FROM suspensions s WHERE s.domain = d.domain), ''),
    'UTF8')), 'hex') FROM domains d"#;

fn sha256_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The local digest of one domain; `claimed`: reveals refused or waiting,
/// by local part → (id, forward), counted as the database's.
fn local_digest(
    record: &DomainRecord,
    aliases: &[(String, AliasRecord)],
    claimed: &HashMap<String, (u64, String)>,
    suspended: &[String],
) -> String {
    let source = match record.source {
        Source::Static => "static",
        Source::Chain => "chain",
    };
    let statics: Vec<String> = aliases
        .iter()
        .filter(|(_, a)| a.source == Source::Static)
        .map(|(l, a)| format!("{l}={}>{}", a.id, a.forwards.join(",")))
        .collect();
    let mut reveals: Vec<(String, String)> = aliases
        .iter()
        .filter(|(l, a)| a.source == Source::Chain && !claimed.contains_key(l))
        .map(|(l, a)| {
            let forward = a.forwards.first().map(String::as_str).unwrap_or("");
            (l.clone(), format!("{l}={}>{forward}", a.id))
        })
        .collect();
    reveals.extend(
        claimed
            .iter()
            .map(|(l, (id, forward))| (l.clone(), format!("{l}={id}>{forward}"))),
    );
    reveals.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let reveals: Vec<String> = reveals.into_iter().map(|(_, t)| t).collect();
    let text = format!(
        "{source}:{}#{}#{}#{}",
        record.active,
        statics.join("|"),
        reveals.join("|"),
        suspended.join("|")
    );
    sha256_hex(&text)
}

/// (local, domain) → (id, forward) of a reveal row's payload.
fn claim_of(row: &ChangeRow) -> Option<(String, String, u64, String)> {
    let (local, domain) = row.key.rsplit_once('@')?;
    let id = row.payload.get("id")?.as_u64()?;
    let forward = row.payload.get("forward")?.as_str()?;
    Some((local.into(), domain.into(), id, forward.into()))
}

impl Replica {
    /// Compares the digests and repairs every domain that differs; returns
    /// how many were repaired.
    pub(crate) async fn reconcile(&self, feed: &mut Feed) -> Result<usize, ReplicaError> {
        let started = std::time::Instant::now();
        let remote: HashMap<String, String> = feed
            .text_rows(DIGESTS)
            .await?
            .into_iter()
            .filter_map(|mut r| {
                let digest = r.pop()?;
                let domain = r.pop()?;
                Some((domain, digest))
            })
            .collect();
        // Reveals refused or waiting, by domain.
        let mut claimed: HashMap<String, HashMap<String, (u64, String)>> = HashMap::new();
        {
            let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let rows = pending.refused.values().chain(pending.reveals.values());
            for (local, domain, id, forward) in rows.filter_map(claim_of) {
                claimed
                    .entry(domain)
                    .or_default()
                    .insert(local, (id, forward));
            }
        }
        let store = self.store().clone();
        let local = tokio::task::spawn_blocking(move || {
            let suspended = store.replica_suspended()?;
            let mut by_domain: HashMap<String, Vec<String>> = HashMap::new();
            for key in suspended {
                if let Some((l, d)) = key.rsplit_once('@') {
                    by_domain
                        .entry(d.to_string())
                        .or_default()
                        .push(l.to_string());
                }
            }
            for list in by_domain.values_mut() {
                list.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            }
            let none = HashMap::new();
            let mut digests = HashMap::new();
            store.replica_visit(|domain, record, aliases| {
                let suspended = by_domain.get(domain).map(Vec::as_slice).unwrap_or(&[]);
                let claimed = claimed.get(domain).unwrap_or(&none);
                digests.insert(
                    domain.to_string(),
                    local_digest(record, aliases, claimed, suspended),
                );
            })?;
            Ok::<_, crate::store::StoreError>(digests)
        })
        .await
        .map_err(|e| ReplicaError::Task(e.to_string()))??;
        let differ: HashSet<&String> = remote
            .iter()
            .filter(|(d, digest)| local.get(*d) != Some(*digest))
            .map(|(d, _)| d)
            .chain(local.keys().filter(|d| !remote.contains_key(*d)))
            .collect();
        for domain in &differ {
            self.repair(feed, domain).await?;
        }
        if !differ.is_empty() {
            tracing::warn!(
                domains = differ.len(),
                "reconciliation repaired domains the replica had wrong"
            );
            metrics::counter!("eas_replica_repaired_total").increment(differ.len() as u64);
        }
        tracing::debug!(
            domains = remote.len(),
            ms = started.elapsed().as_millis() as u64,
            "reconciled"
        );
        Ok(differ.len())
    }

    /// Reads `domain` again from the database and makes the replica hold
    /// exactly that.
    async fn repair(&self, feed: &mut Feed, domain: &str) -> Result<(), ReplicaError> {
        let rows = feed.domain_rows(domain).await?;
        if !rows.iter().any(|r| r.kind == "domain") {
            let op = ReplicaOp::Domain {
                domain: domain.to_string(),
                record: None,
            };
            return self.write(vec![op], None).await;
        }
        let store = self.store().clone();
        let d = domain.to_string();
        let (aliases, suspended) = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            store.replica_visit(|domain, _, aliases| {
                if domain == d {
                    found = aliases.to_vec();
                }
            })?;
            let suspended: Vec<String> = store
                .replica_suspended()?
                .into_iter()
                .filter(|k| k.rsplit_once('@').is_some_and(|(_, dd)| dd == d))
                .collect();
            Ok::<_, crate::store::StoreError>((found, suspended))
        })
        .await
        .map_err(|e| ReplicaError::Task(e.to_string()))??;
        let keys: HashSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let mut ops = Vec::new();
        for row in &rows {
            if row.kind == "reveal" && self.reveal_settled(row, &aliases) {
                continue;
            }
            let step = self.applier.step(row).await;
            if let Step::Defer(_) = step {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.reveals.insert(row.key.clone(), row.clone());
                continue;
            }
            self.forget_pending(row, &step);
            if let Step::Op(op) = step {
                ops.push(op);
            }
        }
        for (local, record) in &aliases {
            if keys.contains(format!("{local}@{domain}").as_str()) {
                continue;
            }
            ops.push(match record.source {
                Source::Static => ReplicaOp::Static {
                    domain: domain.to_string(),
                    local: local.clone(),
                    alias: None,
                },
                Source::Chain => ReplicaOp::Reveal {
                    domain: domain.to_string(),
                    local: local.clone(),
                    reveal: None,
                },
            });
        }
        for key in suspended {
            if !rows.iter().any(|r| r.kind == "suspension" && r.key == key)
                && let Some((local, _)) = key.rsplit_once('@')
            {
                ops.push(ReplicaOp::Suspension {
                    domain: domain.to_string(),
                    local: local.to_string(),
                    suspended: false,
                });
            }
        }
        self.write(ops, None).await
    }

    /// Whether a reveal row needs no new chain check: refused before as
    /// it stands, or already held locally with its id and forward.
    fn reveal_settled(&self, row: &ChangeRow, aliases: &[(String, AliasRecord)]) -> bool {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending
            .refused
            .get(&row.key)
            .is_some_and(|r| r.payload == row.payload)
        {
            return true;
        }
        let Some((local, _, id, forward)) = claim_of(row) else {
            return false;
        };
        aliases.iter().any(|(l, a)| {
            *l == local
                && a.source == Source::Chain
                && a.id == id
                && a.forwards == [forward.clone()]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_digest_is_the_text_the_database_hashes() {
        let record = DomainRecord::new(0, Source::Static);
        let alias = |id, f: &str, source| AliasRecord {
            id,
            forwards: vec![f.to_string()],
            created: 0,
            active: true,
            source,
            chain: None,
        };
        let aliases = vec![
            ("a".to_string(), alias(3, "x@y.example", Source::Static)),
            ("b".to_string(), alias(4, "z@y.example", Source::Chain)),
        ];
        let claimed = HashMap::from([("c".to_string(), (5, "w@y.example".to_string()))]);
        assert_eq!(
            local_digest(&record, &aliases, &claimed, &["a".to_string()]),
            sha256_hex("static:true#a=3>x@y.example#b=4>z@y.example|c=5>w@y.example#a")
        );
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
