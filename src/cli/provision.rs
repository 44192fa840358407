//! `dns provision DOMAIN [--dry-run]` and `dns provision --all`: write
//! names' MX, SPF and DMARC into the zone in Redis now, with the settings
//! of `[dns_provisioning]` (the work is `crate::provision`'s). `--all`
//! takes every domain with active aliases (from a running node, or the
//! store) and runs them pipelined, with a progress bar.

use crate::config::Config;
use crate::provision::{Outcome, Provisioner, RedisZone, Settings, provision_many};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

/// Names in flight at once with `--all` (their commands share one
/// pipelined connection).
const IN_FLIGHT: usize = 256;

pub(super) fn run(config: Config, domain: Option<String>, dry_run: bool, json: bool) -> ExitCode {
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
        match domain {
            Some(domain) => one(&provisioner, &domain, dry_run, json).await,
            None => all(config, provisioner, dry_run, json).await,
        }
    })
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
    config: Config,
    p: Arc<Provisioner<RedisZone>>,
    dry_run: bool,
    json: bool,
) -> ExitCode {
    let domains = match super::manage::domains(config).await {
        Ok(domains) => domains,
        Err(e) => {
            eprintln!("eas-relay: {e}");
            return ExitCode::from(1);
        }
    };
    let names: Vec<String> = domains
        .into_iter()
        .filter(|d| d.active && d.aliases_total > 0)
        .map(|d| d.domain)
        .collect();
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
