//! Operator actions on aliases: list, page, add, change, remove, bulk
//! writes and imports, with the checks of their forwarding addresses.

use super::validate::{conflict, invalid, parse_alias, parse_domain};
use super::views::{Removed, alias_view};
use super::{AliasView, Local, ManageError};
use crate::address::{ForwardError, Mailbox};
use crate::cluster::{AliasClaim, AliasWrite};
use crate::store::{AliasRecord, Source};
use serde::{Deserialize, Serialize};

/// One item of a bulk alias request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkItem {
    pub alias: String,
    pub forward: String,
}

/// `add`: create the aliases that do not exist, skip the others;
/// `update`: create or replace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BulkBehavior {
    #[default]
    Add,
    Update,
}

/// A bulk item that was refused, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BulkFailure {
    pub alias: String,
    pub forward: String,
    pub errors: std::collections::BTreeMap<String, Vec<String>>,
}

/// What a bulk request did, item by item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BulkResult {
    pub added: Vec<AliasView>,
    pub updated: Vec<AliasView>,
    pub skipped: Vec<AliasView>,
    pub failed: Vec<BulkFailure>,
}

/// A domain this node has that the cluster's database does not (its data
/// predates cluster mode, or the domain was just removed elsewhere).
fn not_in_cluster(name: &str) -> ManageError {
    ManageError::NotFound(format!(
        "domain {name} in the cluster database (`eas-relay cluster init` moves a node's data there)"
    ))
}

/// Most items in one bulk request.
pub(crate) const BULK_MAX: usize = 1000;

impl Local {
    /// Aliases of a domain, ordered by name.
    pub(crate) fn aliases(&self, domain: &str) -> Result<Vec<AliasView>, ManageError> {
        let (name, _) = self.domain_record(domain)?;
        Ok(self
            .store
            .alias_list(&name)?
            .iter()
            .map(|(local, r)| alias_view(local, r))
            .collect())
    }

    /// One page (from 1) of a domain's aliases: those starting with
    /// `alias`, and those whose name or forward contains `q` (when given);
    /// and how many match.
    pub(crate) fn aliases_page(
        &self,
        domain: &str,
        q: Option<&str>,
        alias: Option<&str>,
        page: usize,
        limit: usize,
    ) -> Result<(usize, Vec<AliasView>), ManageError> {
        let (name, _) = self.domain_record(domain)?;
        let prefix = alias.map(str::to_lowercase).unwrap_or_default();
        let q = q.map(str::to_lowercase);
        let contains = |local: &str, r: &AliasRecord| {
            let q = q.as_deref().unwrap_or_default();
            local.contains(q) || r.forwards.iter().any(|f| f.to_lowercase().contains(q))
        };
        let offset = page.saturating_sub(1).saturating_mul(limit);
        let (total, records) = self.store.alias_page(
            &name,
            |local| local.starts_with(&prefix),
            q.is_some()
                .then_some(&contains as &dyn Fn(&str, &AliasRecord) -> bool),
            offset,
            limit,
        )?;
        Ok((
            total,
            records.iter().map(|(l, r)| alias_view(l, r)).collect(),
        ))
    }

    /// Adds or updates many aliases of one static domain, each item on its
    /// own: invalid ones fail with their errors, the others are written in
    /// one transaction.
    pub(crate) async fn bulk_aliases(
        &self,
        domain: &str,
        items: &[BulkItem],
        behavior: BulkBehavior,
    ) -> Result<BulkResult, ManageError> {
        let name = self.static_domain(domain)?;
        if items.len() > BULK_MAX {
            return Err(invalid(
                "aliases",
                format!("at most {BULK_MAX} aliases per request"),
            ));
        }
        let mut result = BulkResult::default();
        let mut writes: Vec<(String, Vec<String>, bool)> = Vec::new();
        for item in items {
            let checked = parse_alias(&item.alias)
                .and_then(|local| Ok((local, self.parse_forwards(&item.forward)?)));
            let (local, forwards) = match checked {
                Ok(ok) => ok,
                Err(ManageError::Invalid { field, message }) => {
                    result.failed.push(BulkFailure {
                        alias: item.alias.clone(),
                        forward: item.forward.clone(),
                        errors: [(field, vec![message])].into(),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            if writes.iter().any(|(l, _, _)| *l == local) {
                result.failed.push(BulkFailure {
                    alias: item.alias.clone(),
                    forward: item.forward.clone(),
                    errors: [("alias".into(), vec!["given twice in this request".into()])].into(),
                });
                continue;
            }
            match self.store.alias_get(&name, &local)? {
                Some(existing) if behavior == BulkBehavior::Add => {
                    result.skipped.push(alias_view(&local, &existing));
                }
                existing => writes.push((local, forwards, existing.is_some())),
            }
        }
        if let Some(c) = &self.cluster {
            // The database decides what exists (another node may have
            // written meanwhile): an `add` of one it has is skipped.
            let items: Vec<_> = writes
                .iter()
                .map(|(local, forwards, _)| (name.clone(), local.clone(), forwards.clone()))
                .collect();
            let mode = match behavior {
                BulkBehavior::Add => AliasWrite::Create,
                BulkBehavior::Update => AliasWrite::Upsert,
            };
            let claims =
                c.db.claim_static_aliases(&c.node_id, &[], &items, mode)
                    .await?;
            let mut written = Vec::new();
            for ((local, forwards, existed), claim) in writes.into_iter().zip(claims) {
                match claim {
                    AliasClaim::Written(row) => written.push((local, forwards, existed, row.id)),
                    AliasClaim::Exists(row) => result.skipped.push(alias_view(
                        &local,
                        &AliasRecord {
                            id: row.id,
                            forwards: row.forwards,
                            created: row.created,
                            active: true,
                            source: Source::Static,
                            chain: None,
                        },
                    )),
                    AliasClaim::Missing | AliasClaim::NoDomain => {
                        return Err(not_in_cluster(&name));
                    }
                }
            }
            let records = self.store.alias_put_claimed(
                written.iter().map(|(local, forwards, _, id)| {
                    (name.clone(), local.clone(), forwards.clone(), *id)
                }),
                Source::Static,
            )?;
            for ((local, _, existed, _), record) in written.iter().zip(&records) {
                let view = alias_view(local, record);
                if *existed {
                    result.updated.push(view);
                } else {
                    result.added.push(view);
                }
            }
            return Ok(result);
        }
        let records = self.store.alias_put_many(
            writes
                .iter()
                .map(|(local, forwards, _)| (name.clone(), local.clone(), forwards.clone())),
            Source::Static,
        )?;
        for ((local, _, existed), record) in writes.iter().zip(&records) {
            let view = alias_view(local, record);
            if *existed {
                result.updated.push(view);
            } else {
                result.added.push(view);
            }
        }
        Ok(result)
    }

    pub(crate) fn alias(&self, domain: &str, alias: &str) -> Result<AliasView, ManageError> {
        let (name, _) = self.domain_record(domain)?;
        let local = parse_alias(alias)?;
        match self.store.alias_get(&name, &local)? {
            Some(r) => Ok(alias_view(&local, &r)),
            None => Err(ManageError::NotFound(format!("alias {local}@{name}"))),
        }
    }

    /// Creates an alias; refused when it exists (`replace` false) or when
    /// it does not (`replace` true, i.e. an update).
    pub(crate) async fn put_alias(
        &self,
        domain: &str,
        alias: &str,
        forward: &str,
        replace: bool,
    ) -> Result<AliasView, ManageError> {
        let name = self.static_domain(domain)?;
        let local = parse_alias(alias)?;
        let forwards = self.parse_forwards(forward)?;
        let exists = self.store.alias_get(&name, &local)?.is_some();
        if exists && !replace {
            return Err(conflict("alias", format!("{local}@{name} already exists")));
        }
        if !exists && replace {
            return Err(ManageError::NotFound(format!("alias {local}@{name}")));
        }
        let Some(c) = &self.cluster else {
            let record = self
                .store
                .alias_put(&name, &local, forwards, Source::Static)?;
            return Ok(alias_view(&local, &record));
        };
        let mode = if replace {
            AliasWrite::Replace
        } else {
            AliasWrite::Create
        };
        let row = match c
            .db
            .claim_static_alias(&c.node_id, &name, &local, &forwards, mode)
            .await?
        {
            AliasClaim::Written(row) => row,
            AliasClaim::Exists(_) => {
                return Err(conflict("alias", format!("{local}@{name} already exists")));
            }
            AliasClaim::Missing => {
                return Err(ManageError::NotFound(format!("alias {local}@{name}")));
            }
            AliasClaim::NoDomain => return Err(not_in_cluster(&name)),
        };
        let mut records = self.store.alias_put_claimed(
            [(name.clone(), local.clone(), forwards, row.id)],
            Source::Static,
        )?;
        let record = records
            .pop()
            .ok_or_else(|| ManageError::NotFound(format!("alias {local}@{name}")))?;
        Ok(alias_view(&local, &record))
    }

    /// `PUT` of an alias: a new `forward` (static domains only) and/or
    /// `active` (suspend or resume; also for a chain-governed alias, whose
    /// forward only the chain sets).
    pub(crate) async fn update_alias(
        &self,
        domain: &str,
        alias: &str,
        forward: Option<&str>,
        active: Option<bool>,
    ) -> Result<AliasView, ManageError> {
        if forward.is_none() && active.is_none() {
            return Err(invalid("forward", "give `forward`, `active` or both"));
        }
        let mut view = match forward {
            Some(forward) => self.put_alias(domain, alias, forward, true).await?,
            None => self.alias(domain, alias)?,
        };
        if let Some(active) = active {
            let (name, _) = self.domain_record(domain)?;
            self.claim_active(&name, &view.alias, active).await?;
            self.store.alias_set_active(&name, &view.alias, active)?;
            view.active = active;
        }
        Ok(view)
    }

    /// Deletes a static alias; suspends a chain-governed one (the chain
    /// still holds it: deleting it here would not stop a re-activation).
    /// A static alias left in a chain-governed domain is deleted.
    pub(crate) async fn remove_alias(
        &self,
        domain: &str,
        alias: &str,
    ) -> Result<Removed, ManageError> {
        let (name, _) = self.domain_record(domain)?;
        let local = parse_alias(alias)?;
        let Some(record) = self.store.alias_get(&name, &local)? else {
            return Err(ManageError::NotFound(format!("alias {local}@{name}")));
        };
        if record.chain.is_some() {
            self.claim_active(&name, &local, false).await?;
        } else if let Some(c) = &self.cluster {
            // Missing there: removed here all the same (the database, the
            // truth, does not have it either).
            c.db.claim_static_alias_remove(&c.node_id, &name, &local)
                .await?;
        }
        let found = if record.chain.is_some() {
            self.store.alias_set_active(&name, &local, false)?
        } else {
            self.store.alias_remove(&name, &local)?
        };
        // In cluster mode the feed may have applied the database's removal
        // before this line: the removal happened all the same.
        if !found && self.cluster.is_none() {
            return Err(ManageError::NotFound(format!("alias {local}@{name}")));
        }
        Ok(if record.chain.is_some() {
            Removed::Suspended
        } else {
            Removed::Deleted
        })
    }

    /// Static records that do not forward because they are under a
    /// chain-governed TLD: static domains there (`domain`) and static
    /// aliases left in chain-governed domains (`alias@domain`). They
    /// predate the TLD being governed; the operator may remove them.
    pub(crate) fn static_under_chain(&self) -> Result<Vec<String>, ManageError> {
        let mut found = Vec::new();
        for (name, record) in self.store.domain_list()? {
            if self.config.chain.governing_tld(&name).is_none() {
                continue;
            }
            if record.source == Source::Static {
                found.push(name);
                continue;
            }
            for (local, alias) in self.store.alias_list(&name)? {
                if alias.chain.is_none() {
                    found.push(format!("{local}@{name}"));
                }
            }
        }
        Ok(found)
    }

    /// Imports `alias@domain<TAB>forward[,forward...]` lines (blank lines
    /// and `#` comments skipped), adding missing domains; all or nothing.
    pub(crate) async fn import_aliases(&self, text: &str) -> Result<usize, ManageError> {
        let mut items = Vec::new();
        let mut domains = std::collections::BTreeSet::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let field = format!("line {}", n + 1);
            let (address, forward) = line
                .split_once(['\t', ' '])
                .ok_or_else(|| invalid(&field, "expected `alias@domain<TAB>forward`"))?;
            let (alias, domain) = address
                .rsplit_once('@')
                .ok_or_else(|| invalid(&field, format!("`{address}` has no domain")))?;
            let domain = parse_domain(domain).map_err(|e| invalid(&field, e.to_string()))?;
            let local = parse_alias(alias).map_err(|e| invalid(&field, e.to_string()))?;
            let forwards = self
                .parse_forwards(forward.trim())
                .map_err(|e| invalid(&field, e.to_string()))?;
            domains.insert(domain.clone());
            items.push((domain, local, forwards));
        }
        for domain in &domains {
            self.not_chain_governed(domain)?;
            if let Some(record) = self.store.domain_get(domain)?
                && record.source == Source::Chain
            {
                return Err(conflict(
                    "domain",
                    format!("{domain} is governed by the chain"),
                ));
            }
        }
        // A forward to a domain this import adds would loop, as one to a
        // domain already served does.
        for (n, (_, _, forwards)) in items.iter().enumerate() {
            if let Some(f) = forwards.iter().find(|f| {
                Mailbox::parse(f).is_some_and(|m| domains.contains(&m.domain.to_lowercase()))
            }) {
                return Err(invalid(
                    "forward",
                    format!(
                        "alias {}: `{f}` is at a domain this import adds (a forwarding loop)",
                        n + 1
                    ),
                ));
            }
        }
        let ids = match &self.cluster {
            Some(c) => {
                let domains: Vec<String> = domains.iter().cloned().collect();
                let claims =
                    c.db.claim_static_aliases(&c.node_id, &domains, &items, AliasWrite::Upsert)
                        .await?;
                let ids = claims
                    .into_iter()
                    .zip(&items)
                    .map(|(claim, (domain, _, _))| match claim {
                        AliasClaim::Written(row) => Ok(row.id),
                        _ => Err(not_in_cluster(domain)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(ids)
            }
            None => None,
        };
        for domain in &domains {
            self.store.domain_add(domain, Source::Static)?;
        }
        match ids {
            Some(ids) => Ok(self
                .store
                .alias_put_claimed(
                    items
                        .into_iter()
                        .zip(ids)
                        .map(|((domain, local, forwards), id)| (domain, local, forwards, id)),
                    Source::Static,
                )?
                .len()),
            None => Ok(self.store.alias_put_many(items, Source::Static)?.len()),
        }
    }

    /// Cluster mode: suspends or resumes `local@name` in the shared
    /// database first (nothing to do for a single node).
    async fn claim_active(&self, name: &str, local: &str, active: bool) -> Result<(), ManageError> {
        if let Some(c) = &self.cluster
            && !c
                .db
                .claim_alias_active(&c.node_id, name, local, active, "suspended by the operator")
                .await?
        {
            return Err(not_in_cluster(name));
        }
        Ok(())
    }

    pub(super) fn parse_forwards(&self, forward: &str) -> Result<Vec<String>, ManageError> {
        let forwards: Vec<String> = forward
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if forwards.is_empty() {
            return Err(invalid(
                "forward",
                "at least one forwarding address is required",
            ));
        }
        let max = self.config.aliases.max_destinations;
        if forwards.len() > max {
            return Err(invalid(
                "forward",
                format!("at most {max} forwarding addresses"),
            ));
        }
        let own = self.config.own_domains();
        for f in &forwards {
            crate::address::check_forward(f, |domain| {
                Ok(own.iter().any(|d| d == domain) || self.store.domain_get(domain)?.is_some())
            })
            .map_err(|e| match e {
                ForwardError::Invalid(why) => invalid(
                    "forward",
                    format!("`{f}` is not a valid email address: {why}"),
                ),
                ForwardError::Served => invalid(
                    "forward",
                    format!("`{f}` is at a domain this relay serves (a forwarding loop)"),
                ),
                ForwardError::Lookup(e) => ManageError::Store(e),
            })?;
        }
        Ok(forwards)
    }
}
