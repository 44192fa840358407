//! `eas-relay cluster init`: copies a single node's data from its store
//! into PostgreSQL — domains, static aliases, chain reveals (the alias as
//! activated, its forward and signature), suspensions, then the delivery
//! log. The schema is migrated first. What people said is copied in one
//! transaction (all of it or nothing); the log, whose rows are keyed by
//! (node id, log id), in batches.
//!
//! The rule for keys PostgreSQL already holds: the same values are fine
//! (counted as already there, nothing written: running it twice changes
//! nothing); different values are a conflict, and a conflict refuses the
//! whole copy, naming the keys. Compared: a domain's source, active flag
//! and settings; an alias's forwards; a reveal's alias, forward and
//! signature. A suspension is a key alone. Alias ids are kept when free in
//! PostgreSQL, else a new one is taken.

use super::claims::domain_settings;
use super::{ClusterError, Db};
use crate::store::tables::{ALIASES, CHAIN_REVEALS, split_alias_key};
use crate::store::{AliasRecord, DomainRecord, Reveal, Source, Store, StoreError};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Keys compared and written per statement.
const CHUNK: usize = 1_000;
/// Log rows read from the store per batch (one transaction each).
const LOG_BATCH: usize = 5_000;
/// Conflicts named in the error (the rest are counted).
const CONFLICTS_SHOWN: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(
        "PostgreSQL already holds different data for {} key(s), so nothing was copied:\n{}\n\
         A key PostgreSQL holds must have the same values as in this store (domains: source, \
         active, settings; aliases: forwards; reveals: alias, forward, signature): fix or \
         remove those rows in PostgreSQL or in this store, then run `cluster init` again",
        .0.len(), shown(.0)
    )]
    Conflicts(Vec<String>),
}

fn shown(conflicts: &[String]) -> String {
    let mut lines: Vec<String> = conflicts
        .iter()
        .take(CONFLICTS_SHOWN)
        .map(|c| format!("  {c}"))
        .collect();
    if conflicts.len() > CONFLICTS_SHOWN {
        lines.push(format!(
            "  … and {} more",
            conflicts.len() - CONFLICTS_SHOWN
        ));
    }
    lines.join("\n")
}

/// Rows of one kind: copied now, or already in PostgreSQL with the same values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub copied: u64,
    pub present: u64,
}

/// What `cluster init` did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InitReport {
    /// Migrations applied first (empty: the schema was up to date).
    pub migrated: Vec<String>,
    pub domains: Counts,
    pub aliases: Counts,
    pub reveals: Counts,
    pub suspensions: Counts,
    pub logs: Counts,
    /// Records not copied, with why (an alias of an unknown domain, a
    /// chain alias without its reveal).
    pub skipped: Vec<String>,
}

impl InitReport {
    /// Nothing was written (a second run).
    pub fn unchanged(&self) -> bool {
        self.migrated.is_empty()
            && [
                self.domains,
                self.aliases,
                self.reveals,
                self.suspensions,
                self.logs,
            ]
            .iter()
            .all(|c| c.copied == 0)
    }
}

fn time_of_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn source_text(source: Source) -> &'static str {
    match source {
        Source::Static => "static",
        Source::Chain => "chain",
    }
}

/// A 0x-hex string of `digits` hex digits (what the schema's CHECKs accept).
fn is_hex(text: &str, digits: usize) -> bool {
    text.strip_prefix("0x")
        .is_some_and(|h| h.len() == digits && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

struct StaticRow {
    id: i64,
    domain: String,
    local: String,
    forwards: Vec<String>,
    created: SystemTime,
}

struct RevealRow {
    id: i64,
    domain: String,
    sld: String,
    tld: String,
    local: String,
    alias: String,
    forward: String,
    signature: String,
    commitment: String,
    created: SystemTime,
}

/// What the store holds, in the rows PostgreSQL takes.
#[derive(Default)]
struct Rows {
    domains: Vec<(String, DomainRecord)>,
    statics: Vec<StaticRow>,
    reveals: Vec<RevealRow>,
    /// (domain, local) of suspended aliases.
    suspensions: Vec<(String, String)>,
    skipped: Vec<String>,
    max_id: i64,
}

fn read_store(store: &Store) -> Result<Rows, StoreError> {
    let mut rows = Rows {
        domains: store.domain_list()?,
        ..Rows::default()
    };
    let known: HashSet<String> = rows.domains.iter().map(|(d, _)| d.clone()).collect();
    let aliases: Vec<(String, AliasRecord)> = store.read_all("aliases", ALIASES)?;
    let reveals: HashMap<String, Reveal> = store
        .read_all("chain_reveals", CHAIN_REVEALS)?
        .into_iter()
        .collect();
    for (key, record) in aliases {
        let (domain, local) = split_alias_key(&key);
        let shown = format!("{local}@{domain}");
        if !known.contains(domain) {
            rows.skipped
                .push(format!("alias {shown}: its domain is not in the store"));
            continue;
        }
        let id = i64::try_from(record.id).unwrap_or(0);
        rows.max_id = rows.max_id.max(id);
        match (&record.source, &record.chain) {
            (Source::Chain, Some(binding)) => {
                let Some(reveal) = reveals.get(&key) else {
                    rows.skipped.push(format!(
                        "chain alias {shown}: no reveal kept (its owner activates it again)"
                    ));
                    continue;
                };
                let commitment = binding.commitment.to_ascii_lowercase();
                if !is_hex(&reveal.signature, 130) || !is_hex(&commitment, 64) {
                    rows.skipped.push(format!(
                        "chain alias {shown}: its signature or commitment is not 0x-hex"
                    ));
                    continue;
                }
                rows.reveals.push(RevealRow {
                    id,
                    domain: domain.to_string(),
                    sld: binding.sld.clone(),
                    tld: binding.tld.clone(),
                    local: local.to_string(),
                    alias: binding.alias.clone(),
                    forward: reveal.forward.clone(),
                    signature: reveal.signature.clone(),
                    commitment,
                    created: time_of_secs(record.created),
                });
            }
            (Source::Chain, None) => {
                rows.skipped
                    .push(format!("chain alias {shown}: no chain binding"));
                continue;
            }
            (Source::Static, _) => rows.statics.push(StaticRow {
                id,
                domain: domain.to_string(),
                local: local.to_string(),
                forwards: record.forwards.clone(),
                created: time_of_secs(record.created),
            }),
        }
        if !record.active {
            rows.suspensions
                .push((domain.to_string(), local.to_string()));
        }
    }
    Ok(rows)
}

/// Keeps a row's id when no alias of either table holds it.
const ID_OR_NEW: &str = "CASE WHEN EXISTS (SELECT 1 FROM static_aliases s WHERE s.id = u.id) \
     OR EXISTS (SELECT 1 FROM chain_reveals r WHERE r.id = u.id) \
     THEN nextval('alias_ids') ELSE u.id END";

impl Db {
    /// Copies `store` into PostgreSQL as node `node_id`'s data (see the
    /// module's rule for keys already there).
    pub async fn init_from(&self, store: &Store, node_id: &str) -> Result<InitReport, InitError> {
        let mut report = InitReport {
            migrated: self.migrate().await?,
            ..InitReport::default()
        };
        let rows = read_store(store)?;
        report.skipped = rows.skipped.clone();
        let mut client = self.client().await?;
        let e = |e: tokio_postgres::Error| InitError::Cluster(self.error(&e));
        let txn = client.transaction().await.map_err(e)?;
        // Change rows written by the triggers name this node.
        txn.execute("SELECT set_config('eas.origin', $1, true)", &[&node_id])
            .await
            .map_err(e)?;
        // Ids the sequence hands out from here on are above every id of
        // this store: a kept id and a new one never meet.
        txn.execute(
            "SELECT setval('alias_ids', greatest($1::bigint, 1, \
             (SELECT last_value FROM alias_ids), \
             (SELECT coalesce(max(id), 0) FROM static_aliases), \
             (SELECT coalesce(max(id), 0) FROM chain_reveals)))",
            &[&rows.max_id],
        )
        .await
        .map_err(e)?;
        let mut conflicts = Vec::new();
        for chunk in rows.domains.chunks(CHUNK) {
            report.domains = add(
                report.domains,
                copy_domains(&txn, chunk, &mut conflicts).await.map_err(e)?,
            );
        }
        for chunk in rows.statics.chunks(CHUNK) {
            report.aliases = add(
                report.aliases,
                copy_statics(&txn, chunk, &mut conflicts).await.map_err(e)?,
            );
        }
        for chunk in rows.reveals.chunks(CHUNK) {
            report.reveals = add(
                report.reveals,
                copy_reveals(&txn, chunk, node_id, &mut conflicts)
                    .await
                    .map_err(e)?,
            );
        }
        for chunk in rows.suspensions.chunks(CHUNK) {
            let (domains, locals): (Vec<&str>, Vec<&str>) =
                chunk.iter().map(|(d, l)| (d.as_str(), l.as_str())).unzip();
            let copied = txn
                .execute(
                    "INSERT INTO suspensions (domain, local, suspended_by) \
                     SELECT u.domain, u.local, $3 FROM unnest($1::text[], $2::text[]) AS u(domain, local) \
                     ON CONFLICT (domain, local) DO NOTHING",
                    &[&domains, &locals, &node_id],
                )
                .await
                .map_err(e)?;
            report.suspensions = add(report.suspensions, counts(chunk.len(), copied));
        }
        if !conflicts.is_empty() {
            // Dropping the transaction rolls it back.
            return Err(InitError::Conflicts(conflicts));
        }
        txn.commit().await.map_err(e)?;
        drop(client);
        report.logs = self.copy_logs(store, node_id).await?;
        Ok(report)
    }

    /// The store's whole delivery log, in batches (rows already there,
    /// same node id and log id, are skipped).
    async fn copy_logs(&self, store: &Store, node_id: &str) -> Result<Counts, InitError> {
        let mut total = Counts::default();
        let mut after = 0;
        loop {
            let batch = store.log_after(after, LOG_BATCH)?;
            let Some(last) = batch.last() else {
                return Ok(total);
            };
            after = last.id;
            let copied = self.insert_logs(node_id, &batch).await?;
            total = add(total, counts(batch.len(), copied));
        }
    }
}

fn add(a: Counts, b: Counts) -> Counts {
    Counts {
        copied: a.copied + b.copied,
        present: a.present + b.present,
    }
}

fn counts(total: usize, copied: u64) -> Counts {
    Counts {
        copied,
        present: (total as u64).saturating_sub(copied),
    }
}

type Txn<'a> = deadpool_postgres::Transaction<'a>;

async fn copy_domains(
    txn: &Txn<'_>,
    chunk: &[(String, DomainRecord)],
    conflicts: &mut Vec<String>,
) -> Result<Counts, tokio_postgres::Error> {
    let names: Vec<&str> = chunk.iter().map(|(d, _)| d.as_str()).collect();
    let existing = txn
        .query(
            "SELECT domain, source, active, settings FROM domains WHERE domain = ANY($1)",
            &[&names],
        )
        .await?;
    let mut there: HashMap<String, (String, bool, Value)> = HashMap::new();
    for row in &existing {
        there.insert(
            row.try_get(0)?,
            (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
        );
    }
    for (name, record) in chunk {
        if let Some((source, active, settings_there)) = there.get(name) {
            let ours = (
                source_text(record.source),
                record.active,
                domain_settings(record),
            );
            if (source.as_str(), *active, settings_there) != (ours.0, ours.1, &ours.2) {
                conflicts.push(format!(
                    "domain {name}: PostgreSQL has source {source}, active {active}, settings {settings_there}; \
                     this store source {}, active {}, settings {}",
                    ours.0, ours.1, ours.2
                ));
            }
        }
    }
    let sources: Vec<&str> = chunk.iter().map(|(_, r)| source_text(r.source)).collect();
    let actives: Vec<bool> = chunk.iter().map(|(_, r)| r.active).collect();
    let all_settings: Vec<Value> = chunk.iter().map(|(_, r)| domain_settings(r)).collect();
    let created: Vec<SystemTime> = chunk.iter().map(|(_, r)| time_of_secs(r.created)).collect();
    let copied = txn
        .execute(
            "INSERT INTO domains (domain, source, active, settings, created_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::jsonb[], $5::timestamptz[]) \
             ON CONFLICT (domain) DO NOTHING",
            &[&names, &sources, &actives, &all_settings, &created],
        )
        .await?;
    Ok(counts(chunk.len(), copied))
}

async fn copy_statics(
    txn: &Txn<'_>,
    chunk: &[StaticRow],
    conflicts: &mut Vec<String>,
) -> Result<Counts, tokio_postgres::Error> {
    let domains: Vec<&str> = chunk.iter().map(|r| r.domain.as_str()).collect();
    let locals: Vec<&str> = chunk.iter().map(|r| r.local.as_str()).collect();
    let existing = txn
        .query(
            "SELECT a.domain, a.local, a.forwards FROM static_aliases a \
             JOIN unnest($1::text[], $2::text[]) AS u(domain, local) USING (domain, local)",
            &[&domains, &locals],
        )
        .await?;
    let mut there: HashMap<(String, String), Vec<String>> = HashMap::new();
    for row in &existing {
        there.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
    }
    for r in chunk {
        if let Some(forwards) = there.get(&(r.domain.clone(), r.local.clone()))
            && *forwards != r.forwards
        {
            conflicts.push(format!(
                "alias {}@{}: PostgreSQL forwards to {}, this store to {}",
                r.local,
                r.domain,
                forwards.join(","),
                r.forwards.join(",")
            ));
        }
    }
    let ids: Vec<i64> = chunk.iter().map(|r| r.id).collect();
    // One text per alias (an address holds no newline): a two-dimensional
    // array of uneven rows cannot be passed.
    let forwards: Vec<String> = chunk.iter().map(|r| r.forwards.join("\n")).collect();
    let created: Vec<SystemTime> = chunk.iter().map(|r| r.created).collect();
    let copied = txn
        .execute(
            &format!(
                "INSERT INTO static_aliases (id, domain, local, forwards, created_at) \
                 SELECT {ID_OR_NEW}, u.domain, u.local, string_to_array(u.forwards, E'\\n'), u.created \
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
                 AS u(id, domain, local, forwards, created) \
                 ON CONFLICT (domain, local) DO NOTHING"
            ),
            &[&ids, &domains, &locals, &forwards, &created],
        )
        .await?;
    Ok(counts(chunk.len(), copied))
}

async fn copy_reveals(
    txn: &Txn<'_>,
    chunk: &[RevealRow],
    node_id: &str,
    conflicts: &mut Vec<String>,
) -> Result<Counts, tokio_postgres::Error> {
    let domains: Vec<&str> = chunk.iter().map(|r| r.domain.as_str()).collect();
    let locals: Vec<&str> = chunk.iter().map(|r| r.local.as_str()).collect();
    let existing = txn
        .query(
            "SELECT a.domain, a.local, a.alias, a.forward, a.signature FROM chain_reveals a \
             JOIN unnest($1::text[], $2::text[]) AS u(domain, local) USING (domain, local)",
            &[&domains, &locals],
        )
        .await?;
    let mut there: HashMap<(String, String), (String, String, String)> = HashMap::new();
    for row in &existing {
        there.insert(
            (row.try_get(0)?, row.try_get(1)?),
            (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?),
        );
    }
    for r in chunk {
        if let Some((alias, forward, signature)) = there.get(&(r.domain.clone(), r.local.clone()))
            && (alias != &r.alias || forward != &r.forward || signature != &r.signature)
        {
            conflicts.push(format!(
                "reveal {}@{}: PostgreSQL has alias {alias:?} forward {forward} signature {signature}; \
                 this store alias {:?} forward {} signature {}",
                r.local, r.domain, r.alias, r.forward, r.signature
            ));
        }
    }
    let ids: Vec<i64> = chunk.iter().map(|r| r.id).collect();
    let slds: Vec<&str> = chunk.iter().map(|r| r.sld.as_str()).collect();
    let tlds: Vec<&str> = chunk.iter().map(|r| r.tld.as_str()).collect();
    let aliases: Vec<&str> = chunk.iter().map(|r| r.alias.as_str()).collect();
    let forwards: Vec<&str> = chunk.iter().map(|r| r.forward.as_str()).collect();
    let signatures: Vec<&str> = chunk.iter().map(|r| r.signature.as_str()).collect();
    let commitments: Vec<&str> = chunk.iter().map(|r| r.commitment.as_str()).collect();
    let created: Vec<SystemTime> = chunk.iter().map(|r| r.created).collect();
    let copied = txn
        .execute(
            &format!(
                "INSERT INTO chain_reveals (id, domain, sld, tld, local, alias, forward, signature, \
                 commitment, accepted_by, accepted_at) \
                 SELECT {ID_OR_NEW}, u.domain, u.sld, u.tld, u.local, u.alias, u.forward, u.signature, \
                 u.commitment, $10, u.created \
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::text[], $9::text[], $11::timestamptz[]) \
                 AS u(id, domain, sld, tld, local, alias, forward, signature, commitment, created) \
                 ON CONFLICT (domain, local) DO NOTHING"
            ),
            &[
                &ids,
                &domains,
                &slds,
                &tlds,
                &locals,
                &aliases,
                &forwards,
                &signatures,
                &commitments,
                &node_id,
                &created,
            ],
        )
        .await?;
    Ok(counts(chunk.len(), copied))
}
