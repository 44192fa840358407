//! `dkim keygen` and `dns records|check`: the keys and DNS records a
//! domain needs, printed or checked live (the work is `crate::zone`'s).

use super::args::KeyAlgo;
use crate::config::Config;
use crate::zone;
use std::path::PathBuf;
use std::process::ExitCode;

pub(super) fn dkim_keygen(
    config: &Config,
    algo: KeyAlgo,
    selector: Option<String>,
    out: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let algorithm = match algo {
        KeyAlgo::Ed25519 => crate::config::KeyAlgorithm::Ed25519,
        KeyAlgo::Rsa => crate::config::KeyAlgorithm::Rsa,
    };
    let today = time::OffsetDateTime::now_utc().date();
    match zone::keygen(config, algorithm, selector, out, today) {
        Ok(key) => {
            if json {
                out!("{}", serde_json::to_string(&key).unwrap_or_default());
            } else {
                out!("{}", key.text().trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eas-relay: {e}");
            match e {
                zone::KeygenError::BadSelector(_) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// The plan for DOMAIN, with the relay's keys (generated as the node would
/// when there are none yet, which is said on stderr).
fn plan(config: &Config, domain: &str) -> Result<zone::Plan, ExitCode> {
    use crate::rewrite::keys::DkimKeyError;
    match zone::Plan::load(config, domain) {
        Ok(plan) => {
            for path in &plan.generated {
                eprintln!(
                    "eas-relay: generated the DKIM key {} (the relay signs with it)",
                    path.display()
                );
            }
            Ok(plan)
        }
        Err(e) => {
            eprintln!("eas-relay: {e}");
            // A configured key file that cannot be used is a config error.
            Err(match e {
                DkimKeyError::Read { .. } | DkimKeyError::Invalid { .. } => ExitCode::from(2),
                _ => ExitCode::from(1),
            })
        }
    }
}

pub(super) fn records(config: &Config, domain: &str, json: bool) -> ExitCode {
    let plan = match plan(config, domain) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let records = zone::records(&plan);
    if json {
        out!("{}", serde_json::to_string(&records).unwrap_or_default());
    } else {
        out!("{}", zone::zone(&plan, &records).trim_end());
    }
    ExitCode::SUCCESS
}

pub(super) fn check(config: &Config, domain: &str, json: bool) -> ExitCode {
    let plan = match plan(config, domain) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let checks = runtime.block_on(async {
        let resolver = crate::dns::resolver(&config.outbound.nameservers)?;
        Ok::<_, String>(zone::check(&plan, &resolver).await)
    });
    let checks = match checks {
        Ok(checks) => checks,
        Err(e) => {
            eprintln!("eas-relay: {e}");
            return ExitCode::from(1);
        }
    };
    let passed = zone::passed(&checks);
    if json {
        let value = serde_json::json!({ "ok": passed, "checks": checks });
        out!("{value}");
    } else {
        out!("{}", zone::report(&checks).trim_end());
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
