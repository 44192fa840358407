//! `dns provision DOMAIN [--dry-run]` and `dns provision --all`: write
//! names' MX, SPF and DMARC into the zone in Redis now, with the settings
//! of `[dns_provisioning]` (the work is `crate::provision`'s). `--all`
//! takes every domain with active aliases (from a running node, or the
//! store) and runs them pipelined, with a progress bar. Only names the
//! relay serves are written (unless `--force`): a zone entry for a name
//! the relay does not serve would point its mail at a relay that refuses it.

use crate::config::Config;
use crate::manage::DomainView;
use crate::provision::{Outcome, Provisioner, RedisZone, Settings, provision_many};
use crate::store::{Source, Store};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

/// Names in flight at once with `--all` (their commands share one
/// pipelined connection).
const IN_FLIGHT: usize = 256;

pub(super) fn run(
    config: Config,
    domain: Option<String>,
    dry_run: bool,
    force: bool,
    json: bool,
) -> ExitCode {
    if config.dns_provisioning.mx.is_empty() {
        eprintln!("eas-relay: dns_provisioning.mx is empty: there is nothing to write");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let zone = match RedisZone::from_config(&config.dns_provisioning) {
            Ok(zone) => zone,
            Err(e) => {
                eprintln!("eas-relay: {e}");
                return ExitCode::from(2);
            }
        };
        let provisioner = Arc::new(Provisioner::new(zone, Settings::from_config(&config)));
        let domains = match super::manage::domains(config.clone()).await {
            Ok(domains) => domains,
            Err(e) => {
                eprintln!("eas-relay: {e}");
                return ExitCode::from(1);
            }
        };
        let expired = Expired::open(&config);
        match domain {
            Some(domain) => {
                let view = domains.iter().find(|d| d.domain == domain);
                if let Some(why) = not_served(view, &expired, true).filter(|_| !force) {
                    eprintln!("eas-relay: {domain}: {why}; not written (--force writes it anyway)");
                    return ExitCode::from(1);
                }
                one(&provisioner, &domain, dry_run, json).await
            }
            None => {
                let static_ok = config.dns_provisioning.static_domains;
                let names = domains
                    .iter()
                    .filter(|d| d.aliases_total > 0)
                    .filter(|d| force || not_served(Some(d), &expired, static_ok).is_none())
                    .map(|d| d.domain.clone())
                    .collect();
                all(provisioner, names, dry_run, json).await
            }
        }
    })
}

/// Chain names whose expiry has passed, as far as the store says. A
/// running node holds the store: then only what it reports (domain present
/// and active) is checked, and the node itself stops serving expired names.
struct Expired(Option<Store>);

impl Expired {
    fn open(config: &Config) -> Expired {
        Expired(Store::open(&config.store_path()).ok())
    }

    fn contains(&self, domain: &str) -> bool {
        let Some(store) = &self.0 else { return false };
        match store.chain_name(domain) {
            Ok(Some(name)) => name.expires <= store.expiry_now(),
            _ => false,
        }
    }
}

/// Why the relay does not serve `view`'s domain (None: it does).
/// `static_ok`: static domains count (`--all` writes them only with
/// `dns_provisioning.static_domains`).
fn not_served(
    view: Option<&DomainView>,
    expired: &Expired,
    static_ok: bool,
) -> Option<&'static str> {
    let Some(view) = view else {
        return Some("not a domain of this relay");
    };
    if !view.active {
        return Some("the domain is disabled");
    }
    match view.source {
        Source::Static if !static_ok => {
            Some("a static domain (dns_provisioning.static_domains is off)")
        }
        Source::Chain if expired.contains(&view.domain) => Some("the chain name has expired"),
        _ => None,
    }
}

async fn one(p: &Provisioner<RedisZone>, domain: &str, dry_run: bool, json: bool) -> ExitCode {
    let outcome = match p.provision(domain, dry_run).await {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("eas-relay: {domain}: {e}");
            return ExitCode::from(1);
        }
    };
    let (word, changes) = match &outcome {
        Outcome::Written(changes) => (
            if dry_run { "would write" } else { "written" },
            &changes[..],
        ),
        Outcome::Unchanged => ("unchanged", &[][..]),
        Outcome::NotOurZone => ("not under dns_provisioning.tld_zones", &[][..]),
    };
    if json {
        out!(
            "{}",
            json!({"domain": domain, "dry_run": dry_run, "outcome": word, "changes": changes})
        );
        return ExitCode::SUCCESS;
    }
    out!("{domain}: {word}");
    for c in changes {
        out!("label {}", c.label);
        out!("  before: {}", c.before.as_deref().unwrap_or("(absent)"));
        out!("  after:  {}", c.after.as_deref().unwrap_or("(absent)"));
    }
    ExitCode::SUCCESS
}

async fn all(
    p: Arc<Provisioner<RedisZone>>,
    names: Vec<String>,
    dry_run: bool,
    json: bool,
) -> ExitCode {
    let bar = ProgressBar::new(names.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:40}] {pos}/{len} domains, {per_sec}, ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let summary = provision_many(p, names, dry_run, IN_FLIGHT, |_, _| bar.inc(1)).await;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if json {
        out!(
            "{}",
            json!({"dry_run": dry_run, "summary": summary, "seconds": seconds})
        );
    } else {
        out!(
            "{} {}, {} unchanged, {} not under tld_zones, {} failed ({seconds:.2}s)",
            summary.written,
            if dry_run {
                "would be written"
            } else {
                "written"
            },
            summary.unchanged,
            summary.not_our_zone,
            summary.failed.len()
        );
        for (name, why) in &summary.failed {
            out!("failed {name}: {why}");
        }
    }
    if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChainBinding, NameState};

    fn view(domain: &str, source: Source, active: bool) -> DomainView {
        DomainView {
            domain: domain.into(),
            display: domain.into(),
            active,
            added: 0,
            notification_email: None,
            webhook: None,
            whitelabel: None,
            spam: None,
            source,
            aliases: Vec::new(),
            aliases_total: 1,
        }
    }

    /// A store holding the chain name `name.country`, expiring at `expires`.
    fn chain_store(expires: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let binding = ChainBinding {
            tld: "country".into(),
            sld: "name".into(),
            alias: "hello".into(),
            commitment: "0xc1".into(),
            observed: "0xc1".into(),
            signer: "0xaa".into(),
            checked_block: 1,
        };
        let name = NameState {
            tld: "country".into(),
            sld: "name".into(),
            owner: "0xaa".into(),
            expires,
            maintainer_allowed: true,
            checked_block: 1,
        };
        s.chain_activate(&crate::store::Activated {
            domain: "name.country".into(),
            local: "hello".into(),
            node: [1; 32],
            alias_hash: [2; 32],
            binding,
            reveal: crate::store::Reveal {
                forward: "someone@dest.test".into(),
                signature: format!("0x{}1b", "11".repeat(64)),
            },
            name,
        })
        .unwrap();
        (dir, s)
    }

    #[test]
    fn attacker_gets_an_unserved_disabled_static_or_expired_name_provisioned() {
        let none = Expired(None);
        assert!(not_served(None, &none, true).is_some());
        let disabled = view("off.country", Source::Static, false);
        assert!(not_served(Some(&disabled), &none, true).is_some());
        let fixed = view("fixed.country", Source::Static, true);
        assert_eq!(not_served(Some(&fixed), &none, true), None);
        // --all without dns_provisioning.static_domains.
        assert!(not_served(Some(&fixed), &none, false).is_some());

        let chain = view("name.country", Source::Chain, true);
        let now = crate::store::now_ms() / 1000;
        let (_d, s) = chain_store(now.saturating_sub(10));
        assert_eq!(
            not_served(Some(&chain), &Expired(Some(s)), true),
            Some("the chain name has expired")
        );
        let (_d, s) = chain_store(now + 3600);
        assert_eq!(not_served(Some(&chain), &Expired(Some(s)), true), None);
    }
}
