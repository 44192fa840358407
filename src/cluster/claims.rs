//! What people said, written into the shared database (cluster mode: a
//! write is acknowledged only once committed here; the node then writes its
//! local store with the ids given here). Each write is one transaction that
//! first sets `eas.origin` to the writing node's id, which V2's row
//! triggers copy into the `changes` rows they append: domains (add, change,
//! remove), static aliases (create, replace, remove, many at once),
//! suspensions, and chain reveals (put, remove).
//!
//! These are claims, not proofs: a reveal is written only after the
//! accepting node checked it against the chain, and every node checks it
//! again before it forwards (DESIGN.md §9).

use super::{ClusterError, Db};
use crate::config::valid_node_id;
use crate::store::{DomainRecord, Source};
use deadpool_postgres::{Object, Transaction};
use tokio_postgres::Row;

/// A static alias as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAliasRow {
    /// From the `alias_ids` sequence: the id every node shows.
    pub id: u64,
    pub forwards: Vec<String>,
    /// Unix seconds.
    pub created: u64,
}

/// What removing a static domain found in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainRemoval {
    /// Removed, with its aliases and suspensions.
    Removed,
    /// The database has no such domain (removing it locally is right).
    Missing,
    /// The database has it as chain-governed: not removed anywhere.
    ChainGoverned,
}

/// How a static alias write treats one that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasWrite {
    /// Only a new one (an existing one is left as it is).
    Create,
    /// Only an existing one (its forwards replaced).
    Replace,
    /// Either.
    Upsert,
}

/// What a static alias write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasClaim {
    /// Written (created or replaced): the row now.
    Written(StaticAliasRow),
    /// `Create` of one that exists: the row as it is (unchanged).
    Exists(StaticAliasRow),
    /// `Replace` of one that does not exist.
    Missing,
    /// The domain is not in the database.
    NoDomain,
}

/// A chain reveal the accepting node checked against the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevealClaim<'a> {
    /// `sld.tld`.
    pub domain: &'a str,
    pub sld: &'a str,
    pub tld: &'a str,
    /// The local part as matched at RCPT (lower case).
    pub local: &'a str,
    /// The alias exactly as activated (its keccak256 is on chain).
    pub alias: &'a str,
    pub forward: &'a str,
    /// 0x-hex, exactly as sent.
    pub signature: &'a str,
    /// keccak256(alias | forward | signature), 0x-hex, lower case.
    pub commitment: &'a str,
}

/// The `settings` column of a domain: the record's optional fields
/// (`notification_email`, `webhook`, `whitelabel`, `spam`), each absent
/// when unset (`cluster init` writes the same).
pub fn domain_settings(record: &DomainRecord) -> serde_json::Value {
    use serde_json::Value;
    let mut map = serde_json::Map::new();
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(v) = value {
            map.insert(key.into(), Value::String(v.clone()));
        }
    };
    put("notification_email", &record.notification_email);
    put("webhook", &record.webhook);
    put("whitelabel", &record.whitelabel);
    if let Some(spam) = &record.spam
        && let Ok(v) = serde_json::to_value(spam)
    {
        map.insert("spam".into(), v);
    }
    Value::Object(map)
}

/// The `source` column of a domain.
fn source_name(source: Source) -> &'static str {
    match source {
        Source::Static => "static",
        Source::Chain => "chain",
    }
}

const ALIAS_COLUMNS: &str = "id, forwards, (extract(epoch FROM created_at))::bigint";

/// How long a write waits for a lock (the change table's, a row's).
const LOCK_TIMEOUT: &str = "5s";
/// How long one statement of a write may run.
const STATEMENT_TIMEOUT: &str = "30s";

impl Db {
    /// A transaction on `client` whose changes are recorded as `origin`'s.
    async fn begin<'c>(
        &self,
        client: &'c mut Object,
        origin: &str,
    ) -> Result<Transaction<'c>, ClusterError> {
        if !valid_node_id(origin) {
            return Err(ClusterError::NodeId(origin.to_string()));
        }
        let tx = client.transaction().await.map_err(|e| self.error(&e))?;
        // SET LOCAL takes no parameter; set_config(…, true) is the same.
        // The timeouts: a write waits at most LOCK_TIMEOUT for the change
        // lock or a row (a psql session left open inside a transaction, a
        // long `cluster init`) and then answers 503, instead of hanging
        // with a pooled connection while every later write queues behind.
        tx.execute(
            "SELECT set_config('eas.origin', $1, true), \
                    set_config('lock_timeout', $2, true), \
                    set_config('statement_timeout', $3, true)",
            &[&origin, &LOCK_TIMEOUT, &STATEMENT_TIMEOUT],
        )
        .await
        .map_err(|e| self.error(&e))?;
        Ok(tx)
    }

    /// A connection for a write, once the schema is there (before taking
    /// it: migrating needs a connection of its own).
    async fn write_client(&self) -> Result<Object, ClusterError> {
        self.ensure_schema().await?;
        self.client().await
    }

    async fn commit(&self, tx: Transaction<'_>) -> Result<(), ClusterError> {
        tx.commit().await.map_err(|e| self.error(&e))
    }

    fn alias_row(&self, row: &Row) -> Result<StaticAliasRow, ClusterError> {
        // try_get: a column of another type (a schema changed by hand) is
        // an error, not a panic.
        let get = |e: tokio_postgres::Error| self.error(&e);
        let id: i64 = row.try_get(0).map_err(get)?;
        let created: i64 = row.try_get(2).map_err(get)?;
        Ok(StaticAliasRow {
            id: u64::try_from(id)
                .map_err(|_| ClusterError::Other(format!("alias id {id} is negative")))?,
            forwards: row.try_get(1).map_err(get)?,
            created: u64::try_from(created).unwrap_or(0),
        })
    }

    /// Adds a domain with `record`'s state; false when it exists (left
    /// unchanged).
    pub async fn claim_domain_add(
        &self,
        origin: &str,
        domain: &str,
        record: &DomainRecord,
    ) -> Result<bool, ClusterError> {
        let mut client = self.write_client().await?;
        let tx = self.begin(&mut client, origin).await?;
        let added = tx
            .execute(
                "INSERT INTO domains (domain, source, active, settings) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (domain) DO NOTHING",
                &[
                    &domain,
                    &source_name(record.source),
                    &record.active,
                    &domain_settings(record),
                ],
            )
            .await
            .map_err(|e| self.error(&e))?;
        self.commit(tx).await?;
        Ok(added == 1)
    }

    /// Sets a domain's `active` flag and settings from `record`; false
    /// when the database has no such domain.
    pub async fn claim_domain_update(
        &self,
        origin: &str,
        domain: &str,
        record: &DomainRecord,
    ) -> Result<bool, ClusterError> {
        let mut client = self.write_client().await?;
        let tx = self.begin(&mut client, origin).await?;
        let n = tx
            .execute(
                "UPDATE domains SET active = $2, settings = $3, updated_at = now() \
                 WHERE domain = $1",
                &[&domain, &record.active, &domain_settings(record)],
            )
            .await
            .map_err(|e| self.error(&e))?;
        self.commit(tx).await?;
        Ok(n == 1)
    }

    /// Removes a static domain with its aliases and suspensions (the
    /// cascade). A chain-governed one is never removed here: another
    /// node's activation may have made it one after this node last looked.
    pub async fn claim_domain_remove(
        &self,
        origin: &str,
        domain: &str,
    ) -> Result<DomainRemoval, ClusterError> {
        let mut client = self.write_client().await?;
        let tx = self.begin(&mut client, origin).await?;
        // The subquery reads the statement's snapshot: the row as it was
        // before the DELETE, so a chain domain is told from a missing one.
        let row = tx
            .query_one(
                "WITH gone AS (DELETE FROM domains WHERE domain = $1 AND source = 'static' \
                 RETURNING 1) \
                 SELECT (SELECT count(*) FROM gone), \
                        (SELECT source FROM domains WHERE domain = $1)",
                &[&domain],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let removed: i64 = row.try_get(0).map_err(|e| self.error(&e))?;
        let source: Option<String> = row.try_get(1).map_err(|e| self.error(&e))?;
        self.commit(tx).await?;
        Ok(match (removed, source.as_deref()) {
            (1.., _) => DomainRemoval::Removed,
            (_, Some("chain")) => DomainRemoval::ChainGoverned,
            _ => DomainRemoval::Missing,
        })
    }

    /// Writes static aliases of existing domains, in one transaction, each
    /// as `mode` says; `add_domains` are added first (as static, when
    /// missing). A written alias is active again (its suspension ends), as
    /// in the local store. Returns one claim per item, in order.
    pub async fn claim_static_aliases(
        &self,
        origin: &str,
        add_domains: &[String],
        items: &[(String, String, Vec<String>)],
        mode: AliasWrite,
    ) -> Result<Vec<AliasClaim>, ClusterError> {
        let mut client = self.write_client().await?;
        let tx = self.begin(&mut client, origin).await?;
        for domain in add_domains {
            tx.execute(
                "INSERT INTO domains (domain, source) VALUES ($1, 'static') \
                 ON CONFLICT (domain) DO NOTHING",
                &[domain],
            )
            .await
            .map_err(|e| self.error(&e))?;
        }
        let create = format!(
            "INSERT INTO static_aliases (domain, local, forwards) VALUES ($1, $2, $3) \
             ON CONFLICT (domain, local) DO NOTHING RETURNING {ALIAS_COLUMNS}"
        );
        let replace = format!(
            "UPDATE static_aliases SET forwards = $3, updated_at = now() \
             WHERE domain = $1 AND local = $2 RETURNING {ALIAS_COLUMNS}"
        );
        let upsert = format!(
            "INSERT INTO static_aliases (domain, local, forwards) VALUES ($1, $2, $3) \
             ON CONFLICT (domain, local) DO UPDATE SET forwards = EXCLUDED.forwards, \
             updated_at = now() RETURNING {ALIAS_COLUMNS}"
        );
        let existing =
            format!("SELECT {ALIAS_COLUMNS} FROM static_aliases WHERE domain = $1 AND local = $2");
        let write = match mode {
            AliasWrite::Create => create,
            AliasWrite::Replace => replace,
            AliasWrite::Upsert => upsert,
        };
        let mut claims = Vec::with_capacity(items.len());
        for (domain, local, forwards) in items {
            // The domain row is locked against a removal until commit: the
            // alias cannot be written into a domain removed meanwhile.
            let known = tx
                .query_opt(
                    "SELECT 1 FROM domains WHERE domain = $1 FOR SHARE",
                    &[domain],
                )
                .await
                .map_err(|e| self.error(&e))?;
            if known.is_none() {
                claims.push(AliasClaim::NoDomain);
                continue;
            }
            let row = tx
                .query_opt(&write, &[domain, local, forwards])
                .await
                .map_err(|e| self.error(&e))?;
            let claim = match row {
                Some(row) => {
                    tx.execute(
                        "DELETE FROM suspensions WHERE domain = $1 AND local = $2",
                        &[domain, local],
                    )
                    .await
                    .map_err(|e| self.error(&e))?;
                    AliasClaim::Written(self.alias_row(&row)?)
                }
                None if mode == AliasWrite::Create => {
                    let row = tx
                        .query_one(&existing, &[domain, local])
                        .await
                        .map_err(|e| self.error(&e))?;
                    AliasClaim::Exists(self.alias_row(&row)?)
                }
                None => AliasClaim::Missing,
            };
            claims.push(claim);
        }
        self.commit(tx).await?;
        Ok(claims)
    }

    /// One static alias: [`Db::claim_static_aliases`] of one item.
    pub async fn claim_static_alias(
        &self,
        origin: &str,
        domain: &str,
        local: &str,
        forwards: &[String],
        mode: AliasWrite,
    ) -> Result<AliasClaim, ClusterError> {
        let items = [(domain.to_string(), local.to_string(), forwards.to_vec())];
        let mut claims = self.claim_static_aliases(origin, &[], &items, mode).await?;
        claims
            .pop()
            .ok_or_else(|| ClusterError::Other("no answer for the alias".into()))
    }

    /// Removes a static alias and its suspension; false when the database
    /// has no such alias.
    pub async fn claim_static_alias_remove(
        &self,
        origin: &str,
        domain: &str,
        local: &str,
    ) -> Result<bool, ClusterError> {
        let mut client = self.write_client().await?;
        let tx = self.begin(&mut client, origin).await?;
        let n = tx
            .execute(
                "DELETE FROM static_aliases WHERE domain = $1 AND local = $2",
                &[&domain, &local],
            )
            .await
            .map_err(|e| self.error(&e))?;
        tx.execute(
            "DELETE FROM suspensions WHERE domain = $1 AND local = $2",
            &[&domain, &local],
        )
        .await
        .map_err(|e| self.error(&e))?;
        self.commit(tx).await?;
        Ok(n == 1)
    }

    /// Suspends (`active` false: a row in `suspensions`, the first
    /// suspension's reason and time kept) or resumes (the row removed) the
    /// alias `local@domain`, static or chain; false when the database has
    /// no such domain.
    pub async fn claim_alias_active(
        &self,
        origin: &str,
        domain: &str,
        local: &str,
        active: bool,
        reason: &str,
    ) -> Result<bool, ClusterError> {
        let mut client = self.write_client().await?;
        let tx = self.begin(&mut client, origin).await?;
        let known = tx
            .query_opt(
                "SELECT 1 FROM domains WHERE domain = $1 FOR SHARE",
                &[&domain],
            )
            .await
            .map_err(|e| self.error(&e))?
            .is_some();
        if known && active {
            tx.execute(
                "DELETE FROM suspensions WHERE domain = $1 AND local = $2",
                &[&domain, &local],
            )
            .await
            .map_err(|e| self.error(&e))?;
        } else if known {
            tx.execute(
                "INSERT INTO suspensions (domain, local, reason, suspended_by) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (domain, local) DO NOTHING",
                &[&domain, &local, &reason, &origin],
            )
            .await
            .map_err(|e| self.error(&e))?;
        }
        self.commit(tx).await?;
        Ok(known)
    }

    /// Puts a reveal at (domain, local), replacing an earlier one there;
    /// the domain becomes chain-governed (added when missing). Returns the
    /// row's id (kept when it replaced one).
    pub async fn claim_reveal(
        &self,
        origin: &str,
        reveal: &RevealClaim<'_>,
    ) -> Result<u64, ClusterError> {
        let mut client = self.write_client().await?;
        let tx = self.begin(&mut client, origin).await?;
        tx.execute(
            "INSERT INTO domains (domain, source) VALUES ($1, 'chain') \
             ON CONFLICT (domain) DO UPDATE SET source = 'chain', updated_at = now() \
             WHERE domains.source <> 'chain'",
            &[&reveal.domain],
        )
        .await
        .map_err(|e| self.error(&e))?;
        let row = tx
            .query_one(
                "INSERT INTO chain_reveals \
                 (domain, sld, tld, local, alias, forward, signature, commitment, accepted_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (domain, local) DO UPDATE SET sld = EXCLUDED.sld, \
                 tld = EXCLUDED.tld, alias = EXCLUDED.alias, forward = EXCLUDED.forward, \
                 signature = EXCLUDED.signature, commitment = EXCLUDED.commitment, \
                 accepted_by = EXCLUDED.accepted_by, accepted_at = now() \
                 RETURNING id",
                &[
                    &reveal.domain,
                    &reveal.sld,
                    &reveal.tld,
                    &reveal.local,
                    &reveal.alias,
                    &reveal.forward,
                    &reveal.signature,
                    &reveal.commitment,
                    &origin,
                ],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let id: i64 = row.try_get(0).map_err(|e| self.error(&e))?;
        self.commit(tx).await?;
        u64::try_from(id).map_err(|_| ClusterError::Other(format!("reveal id {id} is negative")))
    }

    /// Removes each reveal `(domain, local, alias, commitment)` when it is
    /// the one activated as `alias` with `commitment` (a later activation
    /// at the same place stays), in one transaction; returns how many
    /// were removed.
    pub async fn claim_reveals_remove(
        &self,
        origin: &str,
        reveals: &[(&str, &str, &str, &str)],
    ) -> Result<u64, ClusterError> {
        let mut client = self.write_client().await?;
        let tx = self.begin(&mut client, origin).await?;
        let mut removed = 0;
        for (domain, local, alias, commitment) in reveals {
            removed += tx
                .execute(
                    "DELETE FROM chain_reveals WHERE domain = $1 AND local = $2 AND alias = $3 \
                     AND commitment = lower($4)",
                    &[domain, local, alias, commitment],
                )
                .await
                .map_err(|e| self.error(&e))?;
        }
        self.commit(tx).await?;
        Ok(removed)
    }
}

/// Where this node's writes go first: the shared database, and the node
/// id they are recorded as (`eas.origin`).
#[derive(Debug, Clone)]
pub struct Writes {
    pub db: Db,
    pub node_id: String,
}

impl Writes {
    /// Refuses a node id the `nodes` table would not take.
    pub fn new(db: Db, node_id: &str) -> Result<Writes, ClusterError> {
        if !valid_node_id(node_id) {
            return Err(ClusterError::NodeId(node_id.to_string()));
        }
        Ok(Writes {
            db,
            node_id: node_id.to_string(),
        })
    }
}
