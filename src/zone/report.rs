//! The verdicts of a check: what [`observe`](super::lookup::observe) found
//! judged against the [`Plan`] ([`evaluate`], pure, so every verdict is
//! testable without a DNS server), and the lines `eas-relay dns check`
//! prints.

use super::lookup::Observed;
use super::plan::{
    ALIAS_DMARC, MX_PREFERENCE, Plan, PlanKey, RELAY_DMARC, algorithm_name, dmarc_names, mx_names,
    relay_spf, spf_domains,
};
use crate::config::KeyAlgorithm;
use crate::dns::{Answer, MxSet};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::SpfResult;
use serde::Serialize;
use std::net::IpAddr;

/// Verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Ok,
    Missing,
    Wrong,
    DnsError,
}

/// One check: what was looked up, what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    /// "MX", "A/AAAA", "SPF", "DKIM", "DMARC" or "PTR".
    pub(crate) check: &'static str,
    /// The name looked up (the address, for PTR).
    pub(crate) name: String,
    pub(crate) status: Status,
    /// Failing it fails `dns check`; the others are suggestions (warnings).
    pub(crate) required: bool,
    pub(crate) expected: String,
    pub(crate) found: String,
}

impl Check {
    pub(crate) fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

fn not_looked_up<T>() -> Answer<T> {
    Answer::Failed("not looked up".into())
}

fn quote_short(text: &str) -> String {
    const MAX: usize = 100;
    if text.len() <= MAX {
        format!("\"{text}\"")
    } else {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("\"{}...\"", &text[..end])
    }
}

fn spf_records(txt: Option<&Answer<Vec<String>>>) -> Vec<&str> {
    match txt {
        Some(Answer::Found(records)) => records
            .iter()
            .map(String::as_str)
            .filter(|r| {
                let r = r.trim_start().to_ascii_lowercase();
                r == "v=spf1" || r.starts_with("v=spf1 ")
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn check_mx(plan: &Plan, name: &str, answer: Option<&Answer<MxSet>>) -> Check {
    let host = &plan.hostname;
    let expected = format!("an MX naming {host} (\"{MX_PREFERENCE} {host}.\")");
    let (status, found) = match answer.cloned().unwrap_or_else(not_looked_up) {
        Answer::Found(mut mx) => {
            mx.sort();
            let list = mx
                .iter()
                .map(|(p, h)| format!("{p} {}", if h.is_empty() { "." } else { h }))
                .collect::<Vec<_>>()
                .join(", ");
            if mx.iter().any(|(_, h)| h == host) {
                (Status::Ok, list)
            } else if mx.iter().any(|(_, h)| h.is_empty()) {
                (
                    Status::Wrong,
                    format!("{list} (null MX: the domain takes no mail)"),
                )
            } else {
                (Status::Wrong, list)
            }
        }
        Answer::Missing => (Status::Missing, "no MX record".into()),
        Answer::Failed(e) => (Status::DnsError, e),
    };
    Check {
        check: "MX",
        name: name.into(),
        status,
        required: true,
        expected,
        found,
    }
}

pub(super) fn check_spf(plan: &Plan, obs: &Observed, domain: &str, required: bool) -> Vec<Check> {
    let record = relay_spf(&plan.hostname);
    let make = |status, expected: String, found: String| Check {
        check: "SPF",
        name: domain.into(),
        status,
        required,
        expected,
        found,
    };
    let ips = match &obs.addresses {
        Answer::Found(ips) => ips,
        Answer::Missing => {
            return vec![make(
                Status::Missing,
                format!("pass for the addresses of {} (\"{record}\")", plan.hostname),
                format!("no address of {} to evaluate SPF for", plan.hostname),
            )];
        }
        Answer::Failed(e) => {
            return vec![make(
                Status::DnsError,
                format!("pass for the addresses of {} (\"{record}\")", plan.hostname),
                format!("the addresses of {}: {e}", plan.hostname),
            )];
        }
    };
    let published = spf_records(obs.txt.get(domain));
    let shown = match published.as_slice() {
        [] => String::new(),
        [one] => format!(" ({})", quote_short(one)),
        many => format!(
            " ({} SPF records: {})",
            many.len(),
            many.iter()
                .map(|r| quote_short(r))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    ips.iter()
        .map(|ip| {
            let expected = format!("pass for {ip} (\"{record}\")");
            let result = obs
                .spf
                .get(&(domain.to_string(), *ip))
                .copied()
                .unwrap_or(SpfResult::TempError);
            // RFC 7208 §4.5: several SPF records are a permerror, whatever
            // the first one says (mail-auth evaluates the first that parses).
            let result = if published.len() > 1 {
                SpfResult::PermError
            } else {
                result
            };
            match result {
                SpfResult::Pass => make(Status::Ok, expected, format!("pass for {ip}{shown}")),
                SpfResult::None => make(Status::Missing, expected, "no SPF record".into()),
                SpfResult::TempError => make(
                    Status::DnsError,
                    expected,
                    format!("temperror: a DNS lookup failed while evaluating SPF{shown}"),
                ),
                other => make(
                    Status::Wrong,
                    expected,
                    format!("{}{shown}", crate::auth::spf_result_name(other)),
                ),
            }
        })
        .collect()
}

/// Tags of a DKIM key record (RFC 6376 §3.2): names in lower case, values
/// trimmed, whitespace removed from `p=` (base64 may be folded).
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|spec| {
            let (name, value) = spec.split_once('=')?;
            let name = name.trim().to_ascii_lowercase();
            let value = if name == "p" {
                value.split_whitespace().collect()
            } else {
                value.trim().to_string()
            };
            Some((name, value))
        })
        .collect()
}

/// Whether a TXT record is meant as a DKIM key record: `v=DKIM1` first, or a `p=` tag.
fn is_dkim_record(record: &str) -> bool {
    let tags = tags(record);
    matches!(tags.first(), Some((n, _)) if n == "v") || tags.iter().any(|(n, _)| n == "p")
}

/// Compares a published DKIM key record with our key: Ok(()) when it
/// publishes exactly this key, Err(what is wrong) otherwise.
pub(crate) fn compare_dkim(
    record: &str,
    algorithm: KeyAlgorithm,
    public: &[u8],
) -> Result<(), String> {
    let tags = tags(record);
    let get = |name: &str| {
        tags.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(pos) = tags.iter().position(|(n, _)| n == "v")
        && (pos != 0 || tags[pos].1 != "DKIM1")
    {
        return Err(format!(
            "v={} (it must be the first tag and \"DKIM1\")",
            tags[pos].1
        ));
    }
    let k = get("k").unwrap_or("rsa");
    let want = algorithm_name(algorithm);
    if !k.eq_ignore_ascii_case(want) {
        return Err(format!("k={k}, not k={want}"));
    }
    let p = match get("p") {
        None => return Err("no p= tag".into()),
        Some("") => return Err("an empty p= (the key is revoked)".into()),
        Some(p) => p,
    };
    let Ok(published) = BASE64.decode(p) else {
        return Err("a p= that is not valid base64".into());
    };
    // An RSA key may also be published as a bare RSAPublicKey (PKCS#1),
    // the last part of the SubjectPublicKeyInfo we hold.
    let same = published == public
        || (algorithm == KeyAlgorithm::Rsa
            && published.len() >= 64
            && public.ends_with(&published));
    if same {
        Ok(())
    } else {
        let tail = &p[p.len().saturating_sub(12)..];
        Err(format!("a different public key (p=...{tail})"))
    }
}

pub(super) fn check_dkim(
    plan: &Plan,
    key: &PlanKey,
    answer: Option<&Answer<Vec<String>>>,
) -> Check {
    let name = plan.dkim_name(key);
    let algorithm = algorithm_name(key.algorithm);
    let expected = format!(
        "\"v=DKIM1; k={algorithm}; p=<the public key of {}>\" (`eas-relay dns records` prints it)",
        key.path.display()
    );
    let (status, found) = match answer.cloned().unwrap_or_else(not_looked_up) {
        Answer::Found(txts) => {
            let dkim: Vec<&String> = txts.iter().filter(|t| is_dkim_record(t)).collect();
            match dkim.as_slice() {
                [] => (
                    Status::Wrong,
                    format!(
                        "no DKIM key record, only {}",
                        txts.iter()
                            .map(|t| quote_short(t))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                [one] => match compare_dkim(one, key.algorithm, &key.public) {
                    Ok(()) => (
                        Status::Ok,
                        format!("k={algorithm} with the key of {}", key.path.display()),
                    ),
                    Err(why) => (Status::Wrong, why),
                },
                many => (
                    Status::Wrong,
                    format!(
                        "{} DKIM key records (a verifier uses any one of them)",
                        many.len()
                    ),
                ),
            }
        }
        Answer::Missing => (Status::Missing, "no TXT record".into()),
        Answer::Failed(e) => (Status::DnsError, e),
    };
    Check {
        check: "DKIM",
        name,
        status,
        required: true,
        expected,
        found,
    }
}

pub(super) fn is_dmarc_record(record: &str) -> bool {
    let r = record.trim_start();
    r.len() >= 8
        && r[..8].eq_ignore_ascii_case("v=DMARC1")
        && r[8..]
            .chars()
            .next()
            .is_none_or(|c| c == ';' || c.is_whitespace())
}

pub(super) fn check_dmarc(obs: &Observed, domain: &str, suggested: &str) -> Check {
    let names = dmarc_names(domain);
    let make = |status, found: String| Check {
        check: "DMARC",
        name: names.first().cloned().unwrap_or_default(),
        status,
        required: false,
        expected: format!("a DMARC record, e.g. \"{suggested}\""),
        found,
    };
    for (i, name) in names.iter().enumerate() {
        let inherited = if i == 0 {
            String::new()
        } else {
            format!(" at {name} (inherited by subdomains)")
        };
        match obs.txt.get(name).cloned().unwrap_or_else(not_looked_up) {
            Answer::Failed(e) if i == 0 => return make(Status::DnsError, e),
            Answer::Failed(e) => return make(Status::DnsError, format!("{name}: {e}")),
            Answer::Missing => {}
            Answer::Found(txts) => {
                let dmarc: Vec<&String> = txts.iter().filter(|t| is_dmarc_record(t)).collect();
                match dmarc.as_slice() {
                    [] => {}
                    [one] => return make(Status::Ok, format!("{}{inherited}", quote_short(one))),
                    many => {
                        return make(
                            Status::Wrong,
                            format!(
                                "{} DMARC records{inherited} (receivers then ignore them all)",
                                many.len()
                            ),
                        );
                    }
                }
            }
        }
    }
    make(Status::Missing, "no DMARC record".into())
}

fn check_ptr(plan: &Plan, ip: IpAddr, answer: Option<&Answer<Vec<String>>>) -> Check {
    let (status, found) = match answer.cloned().unwrap_or_else(not_looked_up) {
        Answer::Found(names) => {
            let list = names.join(", ");
            if names.contains(&plan.hostname) {
                (Status::Ok, list)
            } else {
                (Status::Wrong, list)
            }
        }
        Answer::Missing => (Status::Missing, "no PTR record".into()),
        Answer::Failed(e) => (Status::DnsError, e),
    };
    Check {
        check: "PTR",
        name: ip.to_string(),
        status,
        required: false,
        expected: plan.hostname.clone(),
        found,
    }
}

fn check_addresses(plan: &Plan, answer: &Answer<Vec<IpAddr>>) -> Check {
    let (status, found) = match answer {
        Answer::Found(ips) => (
            Status::Ok,
            ips.iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Answer::Missing => (Status::Missing, "no A or AAAA record".into()),
        Answer::Failed(e) => (Status::DnsError, e.clone()),
    };
    Check {
        check: "A/AAAA",
        name: plan.hostname.clone(),
        status,
        required: true,
        expected: "the relay's public address(es)".into(),
        found,
    }
}

/// Judges what [`observe`](super::lookup::observe) found against `plan`, one [`Check`] per record
/// (per address for SPF and PTR).
pub(crate) fn evaluate(plan: &Plan, obs: &Observed) -> Vec<Check> {
    let mut checks: Vec<Check> = mx_names(plan)
        .iter()
        .map(|name| check_mx(plan, name, obs.mx.get(name)))
        .collect();
    checks.push(check_addresses(plan, &obs.addresses));
    for (domain, required) in spf_domains(plan) {
        checks.extend(check_spf(plan, obs, &domain, required));
    }
    for key in &plan.keys {
        checks.push(check_dkim(plan, key, obs.txt.get(&plan.dkim_name(key))));
    }
    if plan.domain != plan.dkim_domain {
        checks.push(check_dmarc(obs, &plan.domain, ALIAS_DMARC));
    }
    checks.push(check_dmarc(obs, &plan.dkim_domain, RELAY_DMARC));
    if let Answer::Found(ips) = &obs.addresses {
        for ip in ips {
            checks.push(check_ptr(plan, *ip, obs.ptr.get(ip)));
        }
    }
    checks
}

impl Check {
    /// The label of its line: `ok`, `MISSING`, `WRONG`, `DNS ERROR`, or
    /// `warn` for a suggestion that is not met.
    pub(crate) fn label(&self) -> &'static str {
        match (self.status, self.required) {
            (Status::Ok, _) => "ok",
            (_, false) => "warn",
            (Status::Missing, true) => "MISSING",
            (Status::Wrong, true) => "WRONG",
            (Status::DnsError, true) => "DNS ERROR",
        }
    }

    /// `LABEL     CHECK name: detail`.
    pub(crate) fn line(&self) -> String {
        let detail = match self.status {
            Status::Ok => self.found.clone(),
            Status::DnsError => {
                format!("lookup failed: {}; expected {}", self.found, self.expected)
            }
            _ => format!("expected {}; found {}", self.expected, self.found),
        };
        let note = if self.required || self.is_ok() {
            ""
        } else {
            " (suggestion)"
        };
        format!(
            "{:<9} {} {}: {detail}{note}",
            self.label(),
            self.check,
            self.name
        )
    }
}

/// Every required check is ok.
pub(crate) fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.is_ok() || !c.required)
}

/// One line per check, then a summary line.
pub(crate) fn report(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&c.line());
        out.push('\n');
    }
    let required = checks.iter().filter(|c| c.required).count();
    let failed = checks.iter().filter(|c| c.required && !c.is_ok()).count();
    let warnings = checks.iter().filter(|c| !c.required && !c.is_ok()).count();
    let warnings = match warnings {
        0 => String::new(),
        1 => ", 1 warning".into(),
        n => format!(", {n} warnings"),
    };
    if failed == 0 {
        out.push_str(&format!("all {required} required checks ok{warnings}\n"));
    } else {
        out.push_str(&format!(
            "{failed} of {required} required checks failed{warnings}\n"
        ));
    }
    out
}
