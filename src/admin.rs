//! Operator actions on domains, aliases and the queue, with their input
//! validation. The admin API calls them on a running node; the CLI calls
//! them on the store directly when no node runs. Both print the same views.

use crate::address::{ForwardError, Mailbox, parse_domain_name};
use crate::config::Config;
use crate::queue::{Queue, QueueError};
use crate::spool::Spool;
use crate::store::{
    AliasRecord, DomainRecord, LogEntry, QueueEntry, Source, Store, StoreError, format_queue_id,
    now_ms, parse_queue_id,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Remote(String),
}

fn invalid(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn conflict(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Conflict {
        field: field.into(),
        message: message.into(),
    }
}

/// Aliases shown inside a domain (ImprovMX embeds the first ones).
pub const DOMAIN_ALIASES_SHOWN: usize = 20;

/// A domain as the API and CLI show it (ImprovMX fields, plus `source` and
/// `aliases_total`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainView {
    pub domain: String,
    pub display: String,
    pub active: bool,
    /// Unix ms.
    pub added: u64,
    pub notification_email: Option<String>,
    pub webhook: Option<String>,
    pub whitelabel: Option<String>,
    pub source: Source,
    /// The first [`DOMAIN_ALIASES_SHOWN`] aliases.
    pub aliases: Vec<AliasView>,
    pub aliases_total: usize,
}

/// An alias as the API and CLI show it (ImprovMX fields, plus `active` and
/// `source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasView {
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

/// Changes to a domain's settings (`PUT /v3/domains/{d}`); absent fields
/// stay as they are, `null` clears one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainUpdate {
    #[serde(default, with = "double_option")]
    pub notification_email: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub webhook: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub whitelabel: Option<Option<String>>,
    /// eas-relay: false suspends the whole domain (mail to it is refused).
    pub active: Option<bool>,
}

impl DomainUpdate {
    /// Refuses settings that are not what they claim to be.
    pub fn check(&self) -> Result<(), AdminError> {
        if let Some(Some(email)) = &self.notification_email
            && Mailbox::parse(email).is_none()
        {
            return Err(invalid(
                "notification_email",
                format!("`{email}` is not a valid email address"),
            ));
        }
        if let Some(Some(url)) = &self.webhook
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid("webhook", "must be an http(s) URL"));
        }
        Ok(())
    }
}

/// Tells an absent field (None) from an explicit `null` (Some(None)).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// One item of a bulk alias request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkItem {
    pub alias: String,
    pub forward: String,
}

/// `add`: create the aliases that do not exist, skip the others;
/// `update`: create or replace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkBehavior {
    #[default]
    Add,
    Update,
}

/// A bulk item that was refused, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkFailure {
    pub alias: String,
    pub forward: String,
    pub errors: std::collections::BTreeMap<String, Vec<String>>,
}

/// What a bulk request did, item by item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkResult {
    pub added: Vec<AliasView>,
    pub updated: Vec<AliasView>,
    pub skipped: Vec<AliasView>,
    pub failed: Vec<BulkFailure>,
}

/// Most items in one bulk request.
pub const BULK_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecipientView {
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
pub struct QueueView {
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
    fn from_entry(e: &QueueEntry) -> QueueView {
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
                    next_attempt: (r.status == crate::store::RcptStatus::Pending)
                        .then_some(r.next_attempt),
                    last_reply: r.last_reply.clone(),
                })
                .collect(),
        }
    }
}

fn alias_view(local: &str, r: &AliasRecord) -> AliasView {
    AliasView {
        alias: local.to_string(),
        forward: r.forwards.join(","),
        id: r.id,
        created: r.created * 1000,
        active: r.active,
        source: r.source,
    }
}

/// What removing an alias did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Deleted,
    /// A chain-governed alias: suspended here, the chain still holds it.
    Suspended,
}

/// How queue changes are made.
pub enum QueueAccess {
    /// Through the running node's committer.
    Live(Queue),
    /// Directly in the store (no node running).
    Offline(Spool),
}

pub struct Admin {
    config: Arc<Config>,
    store: Arc<Store>,
    queue: QueueAccess,
}

impl Admin {
    pub fn new(config: Arc<Config>, store: Arc<Store>, queue: QueueAccess) -> Admin {
        Admin {
            config,
            store,
            queue,
        }
    }

    /// The running node's queue workers (None offline).
    pub fn queue_health(&self) -> Option<Arc<crate::queue::health::Health>> {
        match &self.queue {
            QueueAccess::Live(queue) => Some(queue.health().clone()),
            QueueAccess::Offline(_) => None,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn domain_record(&self, domain: &str) -> Result<(String, DomainRecord), AdminError> {
        let name = parse_domain(domain)?;
        match self.store.domain_get(&name)? {
            Some(record) => Ok((name, record)),
            None => Err(AdminError::NotFound(format!("domain {name}"))),
        }
    }

    /// Refuses (409) a name under a chain-governed TLD: the operator may
    /// not claim it, whoever holds it on chain (or nobody yet).
    fn not_chain_governed(&self, name: &str) -> Result<(), AdminError> {
        match self.config.chain.governing_tld(name) {
            Some(tld) => Err(conflict(
                "domain",
                format!(
                    "{name} is under .{tld}, whose names are governed by the chain: \
                     its owner activates aliases on chain and with POST /activate"
                ),
            )),
            None => Ok(()),
        }
    }

    /// The normalized name of a domain whose aliases the operator manages
    /// (refused under a chain-governed TLD and for chain-governed domains).
    fn static_domain(&self, domain: &str) -> Result<String, AdminError> {
        self.not_chain_governed(&parse_domain(domain)?)?;
        let (name, record) = self.domain_record(domain)?;
        if record.source == Source::Chain {
            return Err(conflict(
                "alias",
                format!("aliases of {name} are governed by the chain"),
            ));
        }
        Ok(name)
    }

    fn domain_view(&self, name: &str, record: &DomainRecord) -> Result<DomainView, AdminError> {
        let (total, first) =
            self.store
                .alias_page(name, |_| true, None, 0, DOMAIN_ALIASES_SHOWN)?;
        Ok(DomainView {
            domain: name.to_string(),
            display: name.to_string(),
            active: record.active,
            added: record.created * 1000,
            notification_email: record.notification_email.clone(),
            webhook: record.webhook.clone(),
            whitelabel: record.whitelabel.clone(),
            source: record.source,
            aliases: first.iter().map(|(l, r)| alias_view(l, r)).collect(),
            aliases_total: total,
        })
    }

    pub fn domains(&self) -> Result<Vec<DomainView>, AdminError> {
        self.store
            .domain_list()?
            .iter()
            .map(|(name, record)| self.domain_view(name, record))
            .collect()
    }

    /// One page (from 1) of the domains containing `q` (when given) that
    /// are active or not (when `active` is given); and how many match.
    pub fn domains_page(
        &self,
        q: Option<&str>,
        active: Option<bool>,
        page: usize,
        limit: usize,
    ) -> Result<(usize, Vec<DomainView>), AdminError> {
        let q = q.map(str::to_lowercase);
        let matching: Vec<(String, DomainRecord)> = self
            .store
            .domain_list()?
            .into_iter()
            .filter(|(name, record)| {
                q.as_deref().is_none_or(|q| name.contains(q))
                    && active.is_none_or(|a| record.active == a)
            })
            .collect();
        let views = matching
            .iter()
            .skip(page.saturating_sub(1).saturating_mul(limit))
            .take(limit)
            .map(|(name, record)| self.domain_view(name, record))
            .collect::<Result<_, _>>()?;
        Ok((matching.len(), views))
    }

    /// Changes a domain's settings.
    pub fn update_domain(
        &self,
        domain: &str,
        update: DomainUpdate,
    ) -> Result<DomainView, AdminError> {
        let (name, mut record) = self.domain_record(domain)?;
        update.check()?;
        if let Some(v) = update.notification_email {
            record.notification_email = v;
        }
        if let Some(v) = update.webhook {
            record.webhook = v;
        }
        if let Some(v) = update.whitelabel {
            record.whitelabel = v;
        }
        if let Some(active) = update.active {
            record.active = active;
        }
        self.store.domain_put(&name, &record)?;
        self.domain_view(&name, &record)
    }

    pub fn domain(&self, domain: &str) -> Result<DomainView, AdminError> {
        let (name, record) = self.domain_record(domain)?;
        self.domain_view(&name, &record)
    }

    pub fn add_domain(&self, domain: &str) -> Result<DomainView, AdminError> {
        let name = parse_domain(domain)?;
        self.not_chain_governed(&name)?;
        if !self.store.domain_add(&name, Source::Static)? {
            return Err(conflict("domain", format!("{name} is already registered")));
        }
        self.domain(&name)
    }

    pub fn remove_domain(&self, domain: &str) -> Result<(), AdminError> {
        let (name, record) = self.domain_record(domain)?;
        if record.source == Source::Chain {
            return Err(conflict(
                "domain",
                format!("{name} is governed by the chain"),
            ));
        }
        self.store.domain_remove(&name)?;
        Ok(())
    }

    /// Aliases of a domain, ordered by name.
    pub fn aliases(&self, domain: &str) -> Result<Vec<AliasView>, AdminError> {
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
    pub fn aliases_page(
        &self,
        domain: &str,
        q: Option<&str>,
        alias: Option<&str>,
        page: usize,
        limit: usize,
    ) -> Result<(usize, Vec<AliasView>), AdminError> {
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
    pub fn bulk_aliases(
        &self,
        domain: &str,
        items: &[BulkItem],
        behavior: BulkBehavior,
    ) -> Result<BulkResult, AdminError> {
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
                Err(AdminError::Invalid { field, message }) => {
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

    pub fn alias(&self, domain: &str, alias: &str) -> Result<AliasView, AdminError> {
        let (name, _) = self.domain_record(domain)?;
        let local = parse_alias(alias)?;
        match self.store.alias_get(&name, &local)? {
            Some(r) => Ok(alias_view(&local, &r)),
            None => Err(AdminError::NotFound(format!("alias {local}@{name}"))),
        }
    }

    /// Creates an alias; refused when it exists (`replace` false) or when
    /// it does not (`replace` true, i.e. an update).
    pub fn put_alias(
        &self,
        domain: &str,
        alias: &str,
        forward: &str,
        replace: bool,
    ) -> Result<AliasView, AdminError> {
        let name = self.static_domain(domain)?;
        let local = parse_alias(alias)?;
        let forwards = self.parse_forwards(forward)?;
        let exists = self.store.alias_get(&name, &local)?.is_some();
        if exists && !replace {
            return Err(conflict("alias", format!("{local}@{name} already exists")));
        }
        if !exists && replace {
            return Err(AdminError::NotFound(format!("alias {local}@{name}")));
        }
        let record = self
            .store
            .alias_put(&name, &local, forwards, Source::Static)?;
        Ok(alias_view(&local, &record))
    }

    /// `PUT` of an alias: a new `forward` (static domains only) and/or
    /// `active` (suspend or resume; also for a chain-governed alias, whose
    /// forward only the chain sets).
    pub fn update_alias(
        &self,
        domain: &str,
        alias: &str,
        forward: Option<&str>,
        active: Option<bool>,
    ) -> Result<AliasView, AdminError> {
        if forward.is_none() && active.is_none() {
            return Err(invalid("forward", "give `forward`, `active` or both"));
        }
        let mut view = match forward {
            Some(forward) => self.put_alias(domain, alias, forward, true)?,
            None => self.alias(domain, alias)?,
        };
        if let Some(active) = active {
            let (name, _) = self.domain_record(domain)?;
            self.store.alias_set_active(&name, &view.alias, active)?;
            view.active = active;
        }
        Ok(view)
    }

    /// Deletes a static alias; suspends a chain-governed one (the chain
    /// still holds it: deleting it here would not stop a re-activation).
    /// A static alias left in a chain-governed domain is deleted.
    pub fn remove_alias(&self, domain: &str, alias: &str) -> Result<Removed, AdminError> {
        let (name, _) = self.domain_record(domain)?;
        let local = parse_alias(alias)?;
        let Some(record) = self.store.alias_get(&name, &local)? else {
            return Err(AdminError::NotFound(format!("alias {local}@{name}")));
        };
        let found = if record.chain.is_some() {
            self.store.alias_set_active(&name, &local, false)?
        } else {
            self.store.alias_remove(&name, &local)?
        };
        if !found {
            return Err(AdminError::NotFound(format!("alias {local}@{name}")));
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
    pub fn static_under_chain(&self) -> Result<Vec<String>, AdminError> {
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
    pub fn import_aliases(&self, text: &str) -> Result<usize, AdminError> {
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
        for domain in &domains {
            self.store.domain_add(domain, Source::Static)?;
        }
        Ok(self.store.alias_put_many(items, Source::Static)?.len())
    }

    fn parse_forwards(&self, forward: &str) -> Result<Vec<String>, AdminError> {
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
                ForwardError::Lookup(e) => AdminError::Store(e),
            })?;
        }
        Ok(forwards)
    }

    pub fn queue(&self) -> Result<Vec<QueueView>, AdminError> {
        let (entries, _) = self.store.queue_scan()?;
        Ok(entries.iter().map(QueueView::from_entry).collect())
    }

    pub fn queue_entry(&self, id: &str) -> Result<QueueView, AdminError> {
        let entry = self
            .store
            .queue_get(parse_id(id)?)?
            .ok_or_else(|| AdminError::NotFound(format!("message {id}")))?;
        Ok(QueueView::from_entry(&entry))
    }

    /// Makes one message (or all) due now; returns how many.
    pub async fn retry(&self, id: Option<&str>) -> Result<usize, AdminError> {
        let id = id.map(parse_id).transpose()?;
        let n = match &self.queue {
            QueueAccess::Live(queue) => queue.retry(id).await?,
            QueueAccess::Offline(_) => {
                let ids = crate::queue::ops::targets(&self.store, id)?;
                let now = now_ms();
                self.store.batch(true, |b| {
                    let mut n = 0;
                    for id in ids {
                        n += usize::from(crate::queue::ops::retry(b, id, now)?);
                    }
                    Ok(n)
                })?
            }
        };
        if let (Some(id), 0) = (id, n) {
            return Err(AdminError::NotFound(format!(
                "message {}",
                format_queue_id(id)
            )));
        }
        Ok(n)
    }

    /// Removes a message without delivering it.
    pub async fn drop_message(&self, id: &str) -> Result<(), AdminError> {
        let id = parse_id(id)?;
        let found = match &self.queue {
            QueueAccess::Live(queue) => queue.drop_message(id).await?,
            QueueAccess::Offline(spool) => {
                let found = self
                    .store
                    .batch(true, |b| crate::queue::ops::remove(b, id))?;
                if found {
                    spool.remove(id).map_err(QueueError::Spool)?;
                }
                found
            }
        };
        if !found {
            return Err(AdminError::NotFound(format!(
                "message {}",
                format_queue_id(id)
            )));
        }
        Ok(())
    }

    /// The delivery log of a domain (or one alias of it), newest first.
    pub fn logs(
        &self,
        domain: &str,
        alias: Option<&str>,
        page: usize,
        limit: usize,
    ) -> Result<Vec<LogEntry>, AdminError> {
        let (name, _) = self.domain_record(domain)?;
        let alias = alias.map(parse_alias).transpose()?;
        let offset = page.saturating_sub(1).saturating_mul(limit);
        Ok(self
            .store
            .log_list(&name, alias.as_deref(), offset, limit)?)
    }
}

/// A domain name as operators may register it (the same rules as mail
/// addresses: no code point IDNA2008 disallows, nothing silently dropped).
pub fn parse_domain(domain: &str) -> Result<String, AdminError> {
    parse_domain_name(domain).map_err(|e| {
        invalid(
            "domain",
            format!(
                "`{}` is not a valid domain name: {e}",
                domain.escape_debug()
            ),
        )
    })
}

/// An alias local part: `*` (catch-all) or letters, digits, `.`, `_`, `-`,
/// `+`, 1 to 64 characters, not starting or ending with `.`.
pub fn parse_alias(alias: &str) -> Result<String, AdminError> {
    let alias = alias.to_lowercase();
    let ok = alias == crate::recipients::CATCH_ALL
        || (!alias.is_empty()
            && alias.len() <= 64
            && !alias.starts_with('.')
            && !alias.ends_with('.')
            && !alias.contains("..")
            && alias
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+')));
    if ok {
        Ok(alias)
    } else {
        Err(invalid(
            "alias",
            format!("`{alias}` is not a valid alias (letters, digits, . _ - +, or *)"),
        ))
    }
}

fn parse_id(id: &str) -> Result<u64, AdminError> {
    parse_queue_id(&id.to_ascii_uppercase())
        .ok_or_else(|| invalid("id", format!("`{id}` is not a queue id (16 hex digits)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> (tempfile::TempDir, Admin) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let admin = Admin::new(
            Arc::new(Config::default()),
            store,
            QueueAccess::Offline(spool),
        );
        (dir, admin)
    }

    #[test]
    fn alias_validation_is_anchored() {
        assert_eq!(parse_alias("Hello.World").unwrap(), "hello.world");
        assert_eq!(parse_alias("*").unwrap(), "*");
        for bad in [
            "", ".a", "a.", "a..b", "a@b", "a b", "a%b", "x\n", " x", "ä",
        ] {
            assert!(parse_alias(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_domain("Example.COM").is_ok());
        assert!(parse_domain("[1.2.3.4]").is_err());
    }

    #[test]
    fn alias_lifecycle_and_errors() {
        let (_d, a) = admin();
        assert!(matches!(a.aliases("x.test"), Err(AdminError::NotFound(_))));
        a.add_domain("x.test").unwrap();
        assert!(matches!(
            a.add_domain("X.test"),
            Err(AdminError::Conflict { .. })
        ));
        let v = a
            .put_alias("x.test", "Hi", "u@dest.test, v@dest.test", false)
            .unwrap();
        assert_eq!(v.forward, "u@dest.test,v@dest.test");
        assert!(matches!(
            a.put_alias("x.test", "hi", "w@dest.test", false),
            Err(AdminError::Conflict { .. })
        ));
        assert!(matches!(
            a.put_alias("x.test", "nobody", "w@dest.test", true),
            Err(AdminError::NotFound(_))
        ));
        let err = a
            .put_alias("x.test", "loop", "me@x.test", false)
            .unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
        let err = a
            .put_alias("x.test", "bad", "not-an-address", false)
            .unwrap_err();
        assert!(err.to_string().contains("forward"), "{err}");
        let too_many = (0..11)
            .map(|i| format!("u{i}@d.test"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(a.put_alias("x.test", "many", &too_many, false).is_err());
        assert_eq!(a.domain("x.test").unwrap().aliases_total, 1);
        a.remove_alias("x.test", "hi").unwrap();
        assert!(matches!(
            a.remove_alias("x.test", "hi"),
            Err(AdminError::NotFound(_))
        ));
    }

    #[test]
    fn import_is_all_or_nothing() {
        let (_d, a) = admin();
        let err = a
            .import_aliases("a@one.test\tu@dest.test\nbroken line-without-at\n")
            .unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(a.domains().unwrap().is_empty());
        let n = a
            .import_aliases("# comment\n1fwd@alias1.country\td1.u1@dest.test\n2fwd@alias1.country\td1.u2@dest.test\n")
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(a.aliases("alias1.country").unwrap().len(), 2);
    }

    #[test]
    fn names_under_a_chain_governed_tld_cannot_be_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        // A static domain from before the TLD was governed.
        store.domain_add("old.country", Source::Static).unwrap();
        store
            .alias_put(
                "old.country",
                "a",
                vec!["u@dest.test".into()],
                Source::Static,
            )
            .unwrap();
        let mut config = Config::default();
        config.chain.enabled = true;
        config.chain.registries = vec![crate::config::RegistryConfig {
            tld: "country".into(),
            eas: format!("0x{}", "11".repeat(20)),
            dc: String::new(),
            eas_events: true,
            log_addresses: Vec::new(),
        }];
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let a = Admin::new(Arc::new(config), store, QueueAccess::Offline(spool));
        let refused = |r: Result<_, AdminError>| match r {
            Err(AdminError::Conflict { field, message }) => {
                assert_eq!(field, "domain");
                assert!(message.contains("/activate"), "{message}");
            }
            Err(e) => panic!("expected 409, got {e}"),
            Ok(_) => panic!("expected 409, got success"),
        };
        for name in ["unclaimed.country", "A.B.Country", "country", "x.country."] {
            refused(a.add_domain(name).map(|_| ()));
        }
        refused(
            a.put_alias("old.country", "b", "u@dest.test", false)
                .map(|_| ()),
        );
        refused(
            a.update_alias("old.country", "a", Some("v@dest.test"), None)
                .map(|_| ()),
        );
        let item = BulkItem {
            alias: "c".into(),
            forward: "u@dest.test".into(),
        };
        refused(
            a.bulk_aliases("unclaimed.country", &[item], BulkBehavior::Add)
                .map(|_| ()),
        );
        refused(
            a.import_aliases("x@unclaimed.country\tu@dest.test\n")
                .map(|_| ()),
        );
        // Names that only look alike are the operator's.
        a.add_domain("country.example").unwrap();
        a.add_domain("xcountry").unwrap();
        // What is left from before is reported, and can be removed.
        assert_eq!(a.static_under_chain().unwrap(), vec!["old.country"]);
        assert_eq!(
            a.remove_alias("old.country", "a").unwrap(),
            Removed::Deleted
        );
        a.remove_domain("old.country").unwrap();
        assert!(a.static_under_chain().unwrap().is_empty());
    }

    #[test]
    fn import_refuses_a_forward_to_a_domain_it_adds() {
        let (_d, a) = admin();
        let err = a
            .import_aliases("a@one.test\tb@two.test\nb@two.test\tu@dest.test\n")
            .unwrap_err();
        assert!(err.to_string().contains("forwarding loop"), "{err}");
        assert!(a.domains().unwrap().is_empty(), "nothing imported");
    }
}
