//! DNS provisioning of chain names into the `.country` zone, as the EAS
//! server did: on the first activation of a name, its MX, SPF and DMARC
//! records are written into the zone CoreDNS serves from Redis (one hash
//! per zone, key `<sld>.<tld>.`, one JSON field per label, `@` the apex).
//!
//! [`edit`] decides what a label must become (pure); a [`ZoneWriter`] reads
//! labels and writes them only if they are still what was read (Redis:
//! [`RedisZone`]); the [`Provisioner`] ties them with a bounded retry on
//! conflicts; [`worker`] drains the store's durable queue of pending names
//! with backoff, so that Redis being down never loses a provisioning;
//! [`provision_many`] runs many names pipelined (the CLI's `--all`).

mod bulk;
mod edit;
mod redis;
pub(crate) mod worker;

pub use bulk::{Summary, provision_many};
pub use edit::{Desired, LabelChange, LabelError, changes, removals};
pub use redis::{RedisZone, load_ca};

use crate::config::Config;
use crate::store::ProvisionKind;
use std::future::Future;
use std::path::PathBuf;

/// How often a write is tried again when another writer changed the same
/// labels between our read and our write.
const CONFLICT_ATTEMPTS: usize = 5;

/// Why a name could not be provisioned (the worker retries all of them:
/// see [`ProvisionError::is_permanent`] for how often).
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("zone unreachable: {0}")]
    Unreachable(String),
    #[error("zone refused the command: {0}")]
    Refused(String),
    #[error("zone did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error(transparent)]
    Label(#[from] LabelError),
    #[error("the zone kept changing under us ({CONFLICT_ATTEMPTS} attempts)")]
    Conflict,
    #[error("cannot use dns_provisioning.redis_ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot read dns_provisioning.redis_password_file {path}: {source}")]
    Password {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ProvisionError {
    /// Whether the failure is in the labels' content (not a JSON object, a
    /// CNAME at the apex, too large): trying again soon cannot help, so the
    /// worker waits `retry_max` and counts the name as failing until an
    /// operator (or the label's owner) fixes the zone. Everything else
    /// (Redis down, slow, refusing, a busy label) is temporary.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ProvisionError::Label(_))
    }
}

/// A zone backend: reads labels of a zone and writes labels only if they
/// still hold what was read (compare-and-set), so that a concurrent writer
/// is never overwritten.
pub trait ZoneWriter: Send + Sync {
    /// The JSON of each of `labels` in `zone` (None: absent).
    fn read(
        &self,
        zone: &str,
        labels: &[&str],
    ) -> impl Future<Output = Result<Vec<Option<String>>, ProvisionError>> + Send;

    /// Writes every change's `after` (deletes the label when None) if
    /// every label still holds its `before`; false (nothing written)
    /// otherwise.
    fn compare_and_set(
        &self,
        zone: &str,
        changes: &[LabelChange],
    ) -> impl Future<Output = Result<bool, ProvisionError>> + Send;
}

/// What provisioning a name did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The zone already held the records: nothing written.
    Unchanged,
    /// These labels were written (or, in a dry run, would be).
    Written(Vec<LabelChange>),
    /// The name is under no provisioned TLD: not the relay's zone.
    NotOurZone,
}

/// Which names are provisioned, into which keys, with which records.
#[derive(Debug, Clone)]
pub struct Settings {
    pub key_prefix: String,
    pub key_suffix: String,
    /// Lower case, without dots at the ends.
    pub zones: Vec<String>,
    pub desired: Desired,
}

impl Settings {
    /// The settings of `config` (`tld_zones`, or the chain's TLDs).
    pub fn from_config(config: &Config) -> Settings {
        let p = &config.dns_provisioning;
        let zones = if p.tld_zones.is_empty() {
            config
                .chain
                .registries
                .iter()
                .map(|r| r.tld.clone())
                .collect()
        } else {
            p.tld_zones.clone()
        };
        // The SPF and DMARC an alias domain should publish, as `eas-relay
        // dns records` says (for any name: they do not depend on it).
        let plan = crate::zone::Plan::new(config, "name.invalid", Vec::new());
        let records = crate::zone::records(&plan);
        let txt = |name: &str| {
            records
                .iter()
                .find(|r| r.kind == "TXT" && r.name == name)
                .map(|r| r.value.clone())
        };
        Settings {
            key_prefix: p.key_prefix.clone(),
            key_suffix: p.key_suffix.clone(),
            zones: zones
                .iter()
                .map(|z| crate::dns::canonical(z.trim_start_matches('.')))
                .collect(),
            desired: Desired {
                mx: p
                    .mx
                    .iter()
                    .map(|h| format!("{}.", crate::dns::canonical(h)))
                    .collect(),
                keep_mx: p.keep_mx.iter().map(|h| crate::dns::canonical(h)).collect(),
                ttl: p.ttl,
                spf: if p.spf { txt("name.invalid.") } else { None },
                dmarc: if p.dmarc {
                    txt("_dmarc.name.invalid.")
                } else {
                    None
                },
            },
        }
    }

    /// The zone's hash key of `domain`, if it is exactly one label under
    /// a provisioned TLD: `a.b.zone` would make `a.b.zone.` a new, more
    /// specific zone that takes over `a.b.zone` from its owner's.
    pub fn key(&self, domain: &str) -> Option<String> {
        let domain = crate::address::normalize_domain(domain)?;
        let ours = self.zones.iter().any(|z| {
            domain
                .strip_suffix(z.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|sld| {
                    !sld.contains('.')
                        && (crate::chain::activation::valid_sld(sld)
                            || crate::address::is_hostname(sld))
                })
        });
        ours.then(|| format!("{}{domain}.{}", self.key_prefix, self.key_suffix))
    }
}

/// Provisions names into one zone backend.
pub struct Provisioner<Z> {
    zone: Z,
    settings: Settings,
}

impl<Z: ZoneWriter> Provisioner<Z> {
    pub fn new(zone: Z, settings: Settings) -> Provisioner<Z> {
        Provisioner { zone, settings }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Writes `domain`'s records into its zone (with `dry_run`, only says
    /// what it would write).
    pub async fn provision(&self, domain: &str, dry_run: bool) -> Result<Outcome, ProvisionError> {
        self.run(domain, ProvisionKind::Provision, dry_run).await
    }

    /// Takes the records the relay writes out of `domain`'s zone, leaving
    /// everything else (with `dry_run`, only says what it would write).
    pub async fn remove(&self, domain: &str, dry_run: bool) -> Result<Outcome, ProvisionError> {
        self.run(domain, ProvisionKind::Remove, dry_run).await
    }

    /// Does `kind` for `domain`. A writer that changes the same labels
    /// between our read and our write makes us read again, a few times at
    /// most.
    pub async fn run(
        &self,
        domain: &str,
        kind: ProvisionKind,
        dry_run: bool,
    ) -> Result<Outcome, ProvisionError> {
        let Some(key) = self.settings.key(domain) else {
            return Ok(Outcome::NotOurZone);
        };
        let labels = [edit::APEX, edit::DMARC_LABEL];
        for _ in 0..CONFLICT_ATTEMPTS {
            let found = self.zone.read(&key, &labels).await?;
            let (apex, dmarc) = match found.as_slice() {
                [apex, dmarc] => (apex.as_deref(), dmarc.as_deref()),
                _ => return Err(ProvisionError::Refused("short answer".into())),
            };
            let todo = match kind {
                ProvisionKind::Provision => changes(apex, dmarc, &self.settings.desired)?,
                ProvisionKind::Remove => removals(apex, dmarc, &self.settings.desired)?,
            };
            if todo.is_empty() {
                return Ok(Outcome::Unchanged);
            }
            if dry_run || self.zone.compare_and_set(&key, &todo).await? {
                return Ok(Outcome::Written(todo));
            }
        }
        Err(ProvisionError::Conflict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            key_prefix: "p:".into(),
            key_suffix: String::new(),
            zones: vec!["country".into()],
            desired: Desired {
                mx: vec!["mx1.relay.example.".into()],
                keep_mx: Vec::new(),
                ttl: 300,
                spf: None,
                dmarc: None,
            },
        }
    }

    #[test]
    fn attacker_asks_for_a_multi_label_name_to_take_over_a_sub_zone() {
        let s = settings();
        assert_eq!(s.key("Name.Country.").as_deref(), Some("p:name.country."));
        assert_eq!(
            s.key("xn--bcher-kva.country").as_deref(),
            Some("p:xn--bcher-kva.country.")
        );
        for bad in [
            "a.b.country",
            "www.victim.country",
            "country",
            ".country",
            "a..country",
            "-a.country",
            "a b.country",
            "a.country..",
            "name.other",
        ] {
            assert_eq!(s.key(bad), None, "{bad}");
        }
    }
}
