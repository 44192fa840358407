//! Operator actions on domains: list, show, add, change, remove.

use super::validate::{conflict, invalid, parse_domain};
use super::views::alias_view;
use super::{DOMAIN_ALIASES_SHOWN, DomainView, Local, ManageError};
use crate::address::Mailbox;
use crate::cluster::DomainRemoval;
use crate::store::{DomainRecord, Source, SpamThresholds};
use serde::Deserialize;

/// Changes to a domain's settings (`PUT /v3/domains/{d}`); absent fields
/// stay as they are, `null` clears one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DomainUpdate {
    #[serde(default, with = "double_option")]
    pub notification_email: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub webhook: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub whitelabel: Option<Option<String>>,
    /// eas-relay: false suspends the whole domain (mail to it is refused).
    pub active: Option<bool>,
    /// eas-relay: the domain's spam thresholds (content scanning); `null`
    /// follows rspamd's again.
    #[serde(default, with = "double_option")]
    pub spam: Option<Option<SpamInput>>,
}

/// A domain's spam thresholds as the API takes them: scores, each optional.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpamInput {
    pub reject: Option<f64>,
    pub add_header: Option<f64>,
}

/// Longest free-text setting accepted (a URL or a host name).
const MAX_SETTING: usize = 2048;

/// Highest threshold accepted (rspamd scores stay far below).
const MAX_THRESHOLD: f64 = 1000.0;

impl DomainUpdate {
    /// Refuses settings that are not what they claim to be.
    pub(crate) fn check(&self) -> Result<(), ManageError> {
        // Free text kept for ImprovMX clients: bounded, and without control
        // characters (a NUL cannot be stored by a cluster's PostgreSQL, and
        // none belongs in a URL, an address or a host name).
        for (name, value) in [
            ("notification_email", &self.notification_email),
            ("webhook", &self.webhook),
            ("whitelabel", &self.whitelabel),
        ] {
            if let Some(Some(text)) = value {
                if text.len() > MAX_SETTING {
                    return Err(invalid(name, format!("longer than {MAX_SETTING} bytes")));
                }
                if text.chars().any(char::is_control) {
                    return Err(invalid(name, "must not contain control characters"));
                }
            }
        }
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
        if let Some(Some(spam)) = &self.spam {
            for (name, value) in [
                ("spam.reject", spam.reject),
                ("spam.add_header", spam.add_header),
            ] {
                if let Some(v) = value
                    && !(v.is_finite() && v.abs() <= MAX_THRESHOLD)
                {
                    return Err(invalid(
                        name,
                        format!("must be a score between -{MAX_THRESHOLD} and {MAX_THRESHOLD}"),
                    ));
                }
            }
            if let (Some(add), Some(reject)) = (spam.add_header, spam.reject)
                && add > reject
            {
                return Err(invalid(
                    "spam.add_header",
                    "must not be above spam.reject (a message would be refused before it is flagged)",
                ));
            }
        }
        Ok(())
    }
}

/// Tells an absent field (None) from an explicit `null` (Some(None)).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

impl Local {
    fn domain_view(&self, name: &str, record: &DomainRecord) -> Result<DomainView, ManageError> {
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
            spam: record.spam,
            source: record.source,
            aliases: first.iter().map(|(l, r)| alias_view(l, r)).collect(),
            aliases_total: total,
        })
    }

    pub(crate) fn domains(&self) -> Result<Vec<DomainView>, ManageError> {
        self.store
            .domain_list()?
            .iter()
            .map(|(name, record)| self.domain_view(name, record))
            .collect()
    }

    /// One page (from 1) of the domains containing `q` (when given) that
    /// are active or not (when `active` is given); and how many match.
    pub(crate) fn domains_page(
        &self,
        q: Option<&str>,
        active: Option<bool>,
        page: usize,
        limit: usize,
    ) -> Result<(usize, Vec<DomainView>), ManageError> {
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

    /// Changes a domain's settings (cluster mode: in the shared database
    /// first).
    pub(crate) async fn update_domain(
        &self,
        domain: &str,
        update: DomainUpdate,
    ) -> Result<DomainView, ManageError> {
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
        if let Some(spam) = update.spam {
            record.spam = spam.map(|s| SpamThresholds {
                reject: s.reject,
                add_header: s.add_header,
            });
        }
        if let Some(c) = &self.cluster
            && !c.db.claim_domain_update(&c.node_id, &name, &record).await?
        {
            return Err(ManageError::NotFound(format!(
                "domain {name} in the cluster database"
            )));
        }
        self.store.domain_put(&name, &record)?;
        self.domain_view(&name, &record)
    }

    pub(crate) fn domain(&self, domain: &str) -> Result<DomainView, ManageError> {
        let (name, record) = self.domain_record(domain)?;
        self.domain_view(&name, &record)
    }

    /// Adds a static domain (cluster mode: in the shared database first;
    /// one there already is a conflict, as one here is).
    pub(crate) async fn add_domain(&self, domain: &str) -> Result<DomainView, ManageError> {
        let name = parse_domain(domain)?;
        self.not_chain_governed(&name)?;
        let taken = || conflict("domain", format!("{name} is already registered"));
        if let Some(c) = &self.cluster {
            if self.store.domain_get(&name)?.is_some() {
                return Err(taken());
            }
            let record = DomainRecord::new(crate::store::now_ms() / 1000, Source::Static);
            if !c.db.claim_domain_add(&c.node_id, &name, &record).await? {
                return Err(taken());
            }
        }
        // The node's provisioning worker writes its records (names under
        // no provisioned TLD leave the queue unwritten); the row is queued
        // in the domain's own transaction.
        let provisioning = &self.config.dns_provisioning;
        let provision = provisioning.enabled && provisioning.static_domains;
        if !self
            .store
            .domain_add_provisioned(&name, Source::Static, provision)?
            // Cluster mode: the replica may have brought it meanwhile.
            && self.cluster.is_none()
        {
            return Err(taken());
        }
        self.domain(&name)
    }

    /// Removes a static domain with its aliases (cluster mode: from the
    /// shared database first; one missing there is still removed here,
    /// which is what the database says).
    pub(crate) async fn remove_domain(&self, domain: &str) -> Result<(), ManageError> {
        let (name, record) = self.domain_record(domain)?;
        if record.source == Source::Chain {
            return Err(conflict(
                "domain",
                format!("{name} is governed by the chain"),
            ));
        }
        if let Some(c) = &self.cluster
            && c.db.claim_domain_remove(&c.node_id, &name).await? == DomainRemoval::ChainGoverned
        {
            // Another node's activation made it a chain domain after this
            // node last heard: the replica will follow; nothing is removed.
            return Err(conflict(
                "domain",
                format!("{name} is governed by the chain"),
            ));
        }
        self.store.domain_remove(&name)?;
        Ok(())
    }
}
