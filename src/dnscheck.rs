//! What an operator publishes in DNS for an alias domain and for the relay
//! (MX, SPF, DKIM, DMARC, each with the reason), printed in zone-file form
//! (`eas-relay dns records`); a live check of those records (`eas-relay dns
//! check`); and a new DKIM key with its config block and record (`eas-relay
//! dkim keygen`).
//!
//! The [`Plan`] (what should be published) comes from the config and the
//! DKIM keys. A check first looks everything up ([`observe`]), then judges
//! the answers ([`evaluate`], pure), so every verdict is testable without a
//! DNS server.

use crate::config::{Config, KeyAlgorithm};
use crate::rewrite::keys::{self, DkimKeyError, SelectorKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::RData;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfResult};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Preference of the MX records we suggest.
pub const MX_PREFERENCE: u16 = 10;
/// Longest a character-string of a TXT record may be (RFC 1035 §3.3).
pub const TXT_STRING_MAX: usize = 255;
/// The SPF record of the relay's domains: the addresses of `hostname`.
fn relay_spf(hostname: &str) -> String {
    format!("v=spf1 a:{hostname} -all")
}
/// SPF of an alias domain: nothing sends as it (see [`records`]).
pub const ALIAS_SPF: &str = "v=spf1 -all";
/// DMARC suggested for an alias domain (it sends no mail).
pub const ALIAS_DMARC: &str = "v=DMARC1; p=reject";
/// DMARC suggested for the relay's DKIM domain.
pub const RELAY_DMARC: &str = "v=DMARC1; p=quarantine";
/// Time allowed for one lookup, and for one SPF evaluation (up to ten
/// lookups), beyond the resolver's own timeouts.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);
const SPF_TIMEOUT: Duration = Duration::from_secs(40);

// ------------------------------------------------------------------ plan

/// A DKIM key as far as DNS is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanKey {
    pub selector: String,
    pub algorithm: KeyAlgorithm,
    pub bits: usize,
    /// Ed25519: the raw 32 bytes; RSA: SubjectPublicKeyInfo DER.
    pub public: Vec<u8>,
    /// The TXT value to publish (`v=DKIM1; k=...; p=...`).
    pub record: String,
    pub path: PathBuf,
    /// Signs DKIM (false: only seals ARC; its record is needed all the same).
    pub dkim: bool,
}

impl From<&SelectorKey> for PlanKey {
    fn from(key: &SelectorKey) -> PlanKey {
        PlanKey {
            selector: key.selector.clone(),
            algorithm: key.pair.algorithm(),
            bits: key.pair.bits(),
            public: key.pair.public_key().to_vec(),
            record: keys::txt_record(&key.pair),
            path: key.path.clone(),
            dkim: key.dkim,
        }
    }
}

/// What must be published for one alias domain and for the relay. Names
/// are lower case, without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The alias domain.
    pub domain: String,
    /// The relay's host name (MX target, SPF `a:`).
    pub hostname: String,
    /// The name of outbound EHLO (SPF of the relay's bounces).
    pub helo: String,
    /// Domain of SRS addresses; None when SRS is off.
    pub srs_domain: Option<String>,
    /// d= of the relay's signatures.
    pub dkim_domain: String,
    /// The keys that sign or seal; empty when the relay does not sign.
    pub keys: Vec<PlanKey>,
    /// The From of messages whose From the relay rewrites; None when off.
    pub from_address: Option<String>,
    /// Key files `keys::load` generated just now (the node would have).
    pub generated: Vec<PathBuf>,
}

/// The relay loads DKIM keys (and needs their records) when it signs or seals.
pub fn signs(config: &Config) -> bool {
    config.dkim.enabled || (config.arc.enabled && config.auth.enabled)
}

fn lower(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Plan {
    /// The plan for `domain` (already normalized) with these keys.
    pub fn new(config: &Config, domain: &str, keys: Vec<PlanKey>) -> Plan {
        let rewriting = config.auth.enabled && config.rewrite.from_for_strict_dmarc;
        let from_address = rewriting.then(|| {
            if config.rewrite.from_address.is_empty() {
                format!("forwarder@{}", lower(config.dkim_domain()))
            } else {
                config.rewrite.from_address.clone()
            }
        });
        Plan {
            domain: lower(domain),
            hostname: lower(&config.hostname),
            helo: lower(config.helo_name()),
            srs_domain: config.srs.enabled.then(|| lower(config.srs_domain())),
            dkim_domain: lower(config.dkim_domain()),
            keys,
            from_address,
            generated: Vec::new(),
        }
    }

    /// The plan with the relay's DKIM keys, loaded (or generated, as the
    /// node does on first start) by [`keys::load`].
    pub fn load(config: &Config, domain: &str) -> Result<Plan, DkimKeyError> {
        if !signs(config) {
            return Ok(Plan::new(config, domain, Vec::new()));
        }
        let defaults: Vec<PathBuf> = if config.dkim.keys.is_empty() {
            [keys::DEFAULT_ED25519_SELECTOR, keys::DEFAULT_RSA_SELECTOR]
                .iter()
                .map(|s| config.data_dir.join("dkim").join(format!("{s}.pem")))
                .filter(|p| !p.exists())
                .collect()
        } else {
            Vec::new()
        };
        let loaded = keys::load(config)?;
        let mut plan = Plan::new(config, domain, loaded.iter().map(PlanKey::from).collect());
        plan.generated = defaults.into_iter().filter(|p| p.exists()).collect();
        Ok(plan)
    }

    /// The SPF of the HELO name needs its own record (the SRS domain's
    /// does not cover it).
    fn helo_needs_spf(&self) -> bool {
        self.srs_domain.as_deref() != Some(self.helo.as_str())
    }

    /// The relay sends mail as the alias domain itself (it is also one of
    /// the relay's own domains): then the relay's SPF applies to it.
    fn domain_is_relay_sender(&self) -> bool {
        self.srs_domain.as_deref() == Some(self.domain.as_str()) || self.helo == self.domain
    }

    fn dkim_name(&self, key: &PlanKey) -> String {
        format!("{}._domainkey.{}", key.selector, self.dkim_domain)
    }
}

// ---------------------------------------------------------------- records

/// Which part of the output a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Published for each alias domain.
    Alias,
    /// Published once for the relay.
    Relay,
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Fully qualified, with the trailing dot.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// MX: `10 host.`; TXT: the text, unquoted and unsplit; a value in
    /// `<...>` is a placeholder for something only the operator knows.
    pub value: String,
    pub why: String,
    #[serde(skip)]
    pub section: Section,
    /// Not a record to copy as is (the relay's address and its PTR).
    #[serde(skip)]
    pub placeholder: bool,
}

fn record(section: Section, name: &str, kind: &'static str, value: String, why: String) -> Record {
    Record {
        name: format!("{}.", lower(name)),
        kind,
        value,
        why,
        section,
        placeholder: false,
    }
}

/// Every record the operator must (MX, SPF, DKIM) or should (DMARC, PTR)
/// publish for `plan.domain` and for the relay.
pub fn records(plan: &Plan) -> Vec<Record> {
    use Section::{Alias, Relay};
    let host = &plan.hostname;
    let domain = &plan.domain;
    let mut out = Vec::new();
    let mx = format!("{MX_PREFERENCE} {host}.");

    // The alias domain.
    out.push(record(
        Alias,
        domain,
        "MX",
        mx.clone(),
        format!("Mail to the aliases at {domain} must reach this relay, which forwards it."),
    ));
    if !plan.domain_is_relay_sender() {
        let envelope = match &plan.srs_domain {
            Some(srs) => format!("its envelope sender is an SRS address at {srs}"),
            None => "its envelope sender stays the original sender's".into(),
        };
        let from = match &plan.from_address {
            Some(addr) => {
                format!("keeps the original From (or, for DMARC-strict senders, gets {addr})")
            }
            None => "keeps the original From".into(),
        };
        out.push(record(
            Alias,
            domain,
            "TXT",
            ALIAS_SPF.into(),
            format!(
                "SPF: the relay never sends mail as {domain}. Forwarded mail {from}, {envelope}, \
                 and bounces come from <> with From MAILER-DAEMON@{host}; so the relay must NOT \
                 be listed here. \"-all\" makes mail forged as {domain} fail SPF. If another \
                 service sends mail as {domain}, list that service instead."
            ),
        ));
    }
    if *domain != plan.dkim_domain {
        out.push(record(
            Alias,
            &format!("_dmarc.{domain}"),
            "TXT",
            ALIAS_DMARC.into(),
            format!(
                "DMARC (suggested): {domain} sends no mail of its own, so receivers may reject \
                 mail that claims to come from it. If another service sends as {domain}, start \
                 with \"p=none; rua=mailto:<you>\" and tighten once the reports are clean."
            ),
        ));
    }

    // The relay.
    if let Some(srs) = &plan.srs_domain {
        out.push(record(
            Relay,
            srs,
            "MX",
            mx.clone(),
            format!(
                "Forwarded mail's envelope sender is an SRS address at {srs}: bounces to it \
                 must come back to this relay, which returns them to the original sender."
            ),
        ));
        let helo_too = if plan.helo_needs_spf() {
            String::new()
        } else {
            format!(
                " It also covers the HELO name {}, which receivers check for the relay's \
                 bounces (null sender).",
                plan.helo
            )
        };
        out.push(record(
            Relay,
            srs,
            "TXT",
            relay_spf(host),
            format!(
                "SPF: receivers check the envelope sender's domain {srs} against the sending \
                 address; this authorizes the addresses of {host}.{helo_too} If other hosts \
                 send mail as {srs}, add them before \"-all\"."
            ),
        ));
    }
    if plan.helo_needs_spf() {
        out.push(record(
            Relay,
            &plan.helo,
            "TXT",
            relay_spf(host),
            format!(
                "SPF of the HELO name {}: the relay's bounces (DSNs) have the null sender, and \
                 receivers then check SPF of the HELO name.",
                plan.helo
            ),
        ));
    }
    for key in &plan.keys {
        let role = if key.dkim {
            "the relay signs forwarded mail with it (and may seal ARC)"
        } else {
            "the relay seals ARC with it (dkim = false: no DKIM signatures)"
        };
        out.push(record(
            Relay,
            &plan.dkim_name(key),
            "TXT",
            key.record.clone(),
            format!(
                "DKIM key \"{}\" ({}, {}): {role}, d={}; receivers fetch the public key here.",
                key.selector,
                describe_key(key.algorithm, key.bits),
                key.path.display(),
                plan.dkim_domain
            ),
        ));
    }
    {
        let rewritten = match &plan.from_address {
            Some(addr) => format!(
                "mail whose From the relay rewrites (DMARC-strict senders) comes from {addr}, \
                 signed with d={}, and passes DMARC. ",
                plan.dkim_domain
            ),
            None => String::new(),
        };
        out.push(record(
            Relay,
            &format!("_dmarc.{}", plan.dkim_domain),
            "TXT",
            RELAY_DMARC.into(),
            format!(
                "DMARC (suggested) for the relay's domain {}: {rewritten}Large receivers expect \
                 a DMARC record on domains that send in bulk. quarantine rather than reject: \
                 the relay's own bounces are not DKIM-signed. Add \"rua=mailto:<you>\" for \
                 reports.",
                plan.dkim_domain
            ),
        ));
    }
    let address_why = format!(
        "{host} must resolve to the relay's public sending address(es), A (and AAAA if it \
         sends over IPv6); SPF's \"a:{host}\" authorizes exactly these."
    );
    for (kind, family) in [("A", "IPv4"), ("AAAA", "IPv6")] {
        out.push(Record {
            placeholder: true,
            ..record(
                Relay,
                host,
                kind,
                format!("<public {family} address of {host}>"),
                address_why.clone(),
            )
        });
    }
    out.push(Record {
        name: "<reverse name of each address>.".into(),
        placeholder: true,
        ..record(
            Relay,
            host,
            "PTR",
            format!("{host}."),
            format!(
                "Each of those addresses needs a PTR record naming {host} (forward-confirmed \
                 reverse DNS; set it at the provider of the address): many receivers refuse \
                 mail from addresses without one."
            ),
        )
    });
    // The alias domain may be one of the relay's own (the same MX twice).
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert((r.name.clone(), r.kind, r.value.clone())));
    out
}

fn describe_key(algorithm: KeyAlgorithm, bits: usize) -> String {
    match algorithm {
        KeyAlgorithm::Ed25519 => "Ed25519".into(),
        KeyAlgorithm::Rsa => format!("RSA-{bits}"),
    }
}

fn algorithm_name(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::Ed25519 => "ed25519",
        KeyAlgorithm::Rsa => "rsa",
    }
}

/// A TXT value in zone-file form: quoted character-strings of at most 255
/// bytes each (RFC 1035 §3.3.14), `"` and `\` escaped, bytes outside
/// printable ASCII as `\DDD`.
pub fn zone_txt(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return "\"\"".into();
    }
    bytes
        .chunks(TXT_STRING_MAX)
        .map(|chunk| {
            let mut s = String::with_capacity(chunk.len() + 2);
            s.push('"');
            for &b in chunk {
                match b {
                    b'"' | b'\\' => {
                        s.push('\\');
                        s.push(b as char);
                    }
                    0x20..=0x7e => s.push(b as char),
                    _ => s.push_str(&format!("\\{b:03}")),
                }
            }
            s.push('"');
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One record as a zone-file line (`name IN TYPE value`), the name padded
/// to `width`.
pub fn zone_line(r: &Record, width: usize) -> String {
    let value = if r.kind == "TXT" {
        zone_txt(&r.value)
    } else {
        r.value.clone()
    };
    format!("{:<width$} IN {:<5} {value}", r.name, r.kind)
}

/// `text` in lines of at most 78 columns (unless a word is longer), each
/// starting with `prefix`.
fn wrap(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && prefix.len() + line.len() + 1 + word.len() > 78 {
            out.push_str(prefix);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(prefix);
    out.push_str(&line);
    out.push('\n');
    out
}

/// `text` as `; ` comment lines.
fn comment(text: &str) -> String {
    wrap(text, "; ")
}

/// The records in zone-file form, grouped, each after a comment saying why.
/// The relay's address and PTR are commented out: their values are the
/// operator's to fill in.
pub fn zone(plan: &Plan, records: &[Record]) -> String {
    let width = records
        .iter()
        .filter(|r| !r.placeholder)
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0);
    let mut out = comment(&format!(
        "DNS records for the alias domain {} and for the relay {}. Check them with \
         `eas-relay dns check {}`. TXT values longer than 255 bytes are split into several \
         quoted strings of one record (RFC 1035); receivers join them.",
        plan.domain, plan.hostname, plan.domain
    ));
    let headings = [
        (
            Section::Alias,
            format!("---- {} (for each alias domain) ----", plan.domain),
        ),
        (
            Section::Relay,
            format!(
                "---- the relay {} (once, shared by every alias domain) ----",
                plan.hostname
            ),
        ),
    ];
    for (section, heading) in headings {
        out.push('\n');
        out.push_str(&comment(&heading));
        let mut last_why = "";
        for r in records.iter().filter(|r| r.section == section) {
            if r.why != last_why {
                out.push('\n');
                out.push_str(&comment(&r.why));
                last_why = &r.why;
            }
            let line = zone_line(r, width);
            if r.placeholder {
                out.push_str("; ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    if plan.keys.is_empty() {
        out.push('\n');
        out.push_str(&comment(
            "No DKIM records: the relay neither signs (dkim.enabled) nor seals (arc.enabled).",
        ));
    }
    out
}

// ---------------------------------------------------------------- keygen

/// Why `dkim keygen` refused.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error(
        "selector `{0}` is already used by a key of the relay (dkim.keys, or the generated default keys); choose another with --selector"
    )]
    SelectorTaken(String),
    #[error("`{0}` is not a valid selector (letters, digits, '-', '_', dot-separated)")]
    BadSelector(String),
    #[error(transparent)]
    Key(#[from] DkimKeyError),
}

/// A key `dkim keygen` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct NewKey {
    pub selector: String,
    pub algorithm: &'static str,
    /// Absolute path of the PEM file (0600).
    pub key: PathBuf,
    /// The `[[dkim.keys]]` block for the config file.
    pub config: String,
    /// The TXT record to publish.
    pub record: Record,
    /// `[[dkim.keys]]` blocks of the generated default keys, which stop
    /// being used once dkim.keys lists any key (empty when they do not
    /// exist or dkim.keys is already in use).
    pub keep: String,
}

/// `eas-<algo>-<YYYYMMDD>`.
pub fn default_selector(algorithm: KeyAlgorithm, today: time::Date) -> String {
    format!(
        "eas-{}-{:04}{:02}{:02}",
        algorithm_name(algorithm),
        today.year(),
        u8::from(today.month()),
        today.day()
    )
}

fn config_block(selector: &str, algorithm: KeyAlgorithm, path: &Path) -> String {
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    format!(
        "[[dkim.keys]]\nselector = {}\nalgorithm = {}\nkey = {}\n",
        quoted(selector),
        quoted(algorithm_name(algorithm)),
        quoted(&path.display().to_string())
    )
}

/// Generates a key (refusing to overwrite a file or to reuse a selector of
/// the relay) into `out`, or data_dir/dkim/<selector>.pem.
pub fn keygen(
    config: &Config,
    algorithm: KeyAlgorithm,
    selector: Option<String>,
    out: Option<PathBuf>,
    today: time::Date,
) -> Result<NewKey, KeygenError> {
    let selector = selector.unwrap_or_else(|| default_selector(algorithm, today));
    if !crate::config::is_hostname(&selector) || selector.ends_with('.') {
        return Err(KeygenError::BadSelector(selector));
    }
    let defaults = [keys::DEFAULT_ED25519_SELECTOR, keys::DEFAULT_RSA_SELECTOR];
    let taken = if config.dkim.keys.is_empty() {
        defaults.iter().any(|d| d.eq_ignore_ascii_case(&selector))
    } else {
        config
            .dkim
            .keys
            .iter()
            .any(|k| k.selector.eq_ignore_ascii_case(&selector))
    };
    if taken {
        return Err(KeygenError::SelectorTaken(selector));
    }
    let path = out.unwrap_or_else(|| config.data_dir.join("dkim").join(format!("{selector}.pem")));
    let path = std::path::absolute(&path).unwrap_or(path);
    let pair = keys::generate(algorithm, &path)?;
    let dkim_domain = lower(config.dkim_domain());
    let key = PlanKey {
        selector: selector.clone(),
        algorithm,
        bits: pair.bits(),
        public: pair.public_key().to_vec(),
        record: keys::txt_record(&pair),
        path: path.clone(),
        dkim: true,
    };
    let record = record(
        Section::Relay,
        &format!("{selector}._domainkey.{dkim_domain}"),
        "TXT",
        key.record.clone(),
        format!(
            "DKIM key \"{selector}\" ({}): receivers fetch the public key of the relay's \
             signatures (d={dkim_domain}) here.",
            describe_key(algorithm, key.bits)
        ),
    );
    let keep = if config.dkim.keys.is_empty() {
        [
            (keys::DEFAULT_ED25519_SELECTOR, KeyAlgorithm::Ed25519),
            (keys::DEFAULT_RSA_SELECTOR, KeyAlgorithm::Rsa),
        ]
        .iter()
        .map(|(s, a)| (s, a, config.data_dir.join("dkim").join(format!("{s}.pem"))))
        .filter(|(_, _, p)| p.exists())
        .map(|(s, a, p)| config_block(s, *a, &std::path::absolute(&p).unwrap_or(p)))
        .collect::<Vec<_>>()
        .join("\n")
    } else {
        String::new()
    };
    Ok(NewKey {
        config: config_block(&selector, algorithm, &path),
        selector,
        algorithm: algorithm_name(algorithm),
        key: path,
        record,
        keep,
    })
}

impl NewKey {
    /// What `dkim keygen` prints.
    pub fn text(&self) -> String {
        let algorithm = match self.algorithm {
            "rsa" => "an RSA",
            _ => "an Ed25519",
        };
        let mut out = wrap(
            &format!(
                "Generated {algorithm} DKIM key \"{}\" in {} (mode 0600).",
                self.selector,
                self.key.display()
            ),
            "",
        );
        out.push('\n');
        out.push_str("1. Publish its public key in DNS:\n");
        out.push_str(&format!(
            "\n{}\n\nCheck that it resolves: dig +short TXT {}\n\n",
            zone_line(&self.record, 0),
            self.record.name
        ));
        out.push_str(&wrap(
            "2. Then add it to the config file and restart the relay (from then on \
             `eas-relay dns check DOMAIN` checks its record too):",
            "",
        ));
        out.push('\n');
        out.push_str(&self.config);
        if !self.keep.is_empty() {
            out.push('\n');
            out.push_str(&wrap(
                "Note: dkim.keys is empty, so the relay now signs with the keys it generated \
                 itself; once dkim.keys lists a key, only the listed keys are used. To keep \
                 signing with the generated keys, add them too:",
                "",
            ));
            out.push('\n');
            out.push_str(&self.keep);
        }
        out
    }
}

// ---------------------------------------------------------------- check

/// The outcome of one lookup, as far as the checks care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records of the asked type (never an empty list).
    Found(T),
    /// NXDOMAIN, or no record of the asked type (NODATA).
    Missing,
    /// SERVFAIL, REFUSED, a timeout...: we cannot tell.
    Failed(String),
}

/// MX records as (preference, exchange in lower case without the dot).
pub type MxSet = Vec<(u16, String)>;

/// Everything [`observe`] looked up, keyed by name. A name missing from a
/// map was not looked up; the checks treat it as a failed lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub mx: HashMap<String, Answer<MxSet>>,
    /// Each TXT record's character-strings joined, per name.
    pub txt: HashMap<String, Answer<Vec<String>>>,
    /// A and AAAA of `plan.hostname`.
    pub addresses: Answer<Vec<IpAddr>>,
    /// SPF of (domain, address).
    pub spf: HashMap<(String, IpAddr), SpfResult>,
    /// PTR of each address, names in lower case without the dot.
    pub ptr: HashMap<IpAddr, Answer<Vec<String>>>,
}

/// Verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Missing,
    Wrong,
    DnsError,
}

/// One check: what was looked up, what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// "MX", "A/AAAA", "SPF", "DKIM", "DMARC" or "PTR".
    pub check: &'static str,
    /// The name looked up (the address, for PTR).
    pub name: String,
    pub status: Status,
    /// Failing it fails `dns check`; the others are suggestions (warnings).
    pub required: bool,
    pub expected: String,
    pub found: String,
}

impl Check {
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// Every name whose TXT records the checks read: for each name, the DMARC
/// tree walk (`_dmarc.a.b.c`, `_dmarc.b.c`; never a top-level domain).
fn dmarc_names(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').collect();
    (0..labels.len().saturating_sub(1))
        .map(|i| format!("_dmarc.{}", labels[i..].join(".")))
        .collect()
}

fn mx_names(plan: &Plan) -> Vec<String> {
    let mut names = vec![plan.domain.clone()];
    if let Some(srs) = &plan.srs_domain
        && *srs != plan.domain
    {
        names.push(srs.clone());
    }
    names
}

/// Domains whose SPF must authorize the relay: (domain, required).
fn spf_domains(plan: &Plan) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    if let Some(srs) = &plan.srs_domain {
        out.push((srs.clone(), true));
    }
    if plan.helo_needs_spf() {
        out.push((plan.helo.clone(), false));
    }
    out
}

fn txt_names(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = spf_domains(plan).into_iter().map(|(d, _)| d).collect();
    names.extend(plan.keys.iter().map(|k| plan.dkim_name(k)));
    names.extend(dmarc_names(&plan.domain));
    names.extend(dmarc_names(&plan.dkim_domain));
    names.sort();
    names.dedup();
    names
}

/// What a failed lookup says: `SERVFAIL`, `REFUSED`, `timed out`...
fn describe_error(e: &NetError) -> String {
    match e {
        NetError::Dns(DnsError::ResponseCode(code)) => format!("{code:?}").to_ascii_uppercase(),
        NetError::Timeout => "timed out".into(),
        e => e.to_string(),
    }
}

async fn lookup<T>(
    future: impl Future<Output = Result<T, NetError>>,
    found: impl FnOnce(T) -> Vec<RData>,
) -> Answer<Vec<RData>> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, future).await {
        Err(_) => Answer::Failed("timed out".into()),
        Ok(Err(e)) if e.is_no_records_found() => Answer::Missing,
        Ok(Err(e)) => Answer::Failed(describe_error(&e)),
        Ok(Ok(lookup)) => {
            let records = found(lookup);
            if records.is_empty() {
                Answer::Missing
            } else {
                Answer::Found(records)
            }
        }
    }
}

fn map_answer<T>(answer: Answer<Vec<RData>>, f: impl Fn(&RData) -> Option<T>) -> Answer<Vec<T>> {
    match answer {
        Answer::Found(records) => {
            let items: Vec<T> = records.iter().filter_map(f).collect();
            if items.is_empty() {
                Answer::Missing
            } else {
                Answer::Found(items)
            }
        }
        Answer::Missing => Answer::Missing,
        Answer::Failed(e) => Answer::Failed(e),
    }
}

fn rdata(lookup: hickory_resolver::lookup::Lookup) -> Vec<RData> {
    lookup.answers().iter().map(|r| r.data.clone()).collect()
}

async fn lookup_mx(resolver: &TokioResolver, name: &str) -> Answer<MxSet> {
    let answer = lookup(resolver.mx_lookup(format!("{name}.")), rdata).await;
    map_answer(answer, |r| match r {
        RData::MX(mx) => Some((mx.preference, lower(&mx.exchange.to_ascii()))),
        _ => None,
    })
}

async fn lookup_txt(resolver: &TokioResolver, name: &str) -> Answer<Vec<String>> {
    let answer = lookup(resolver.txt_lookup(format!("{name}.")), rdata).await;
    map_answer(answer, |r| match r {
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect::<String>(),
        ),
        _ => None,
    })
}

async fn lookup_addresses(resolver: &TokioResolver, host: &str) -> Answer<Vec<IpAddr>> {
    let name = format!("{host}.");
    let (v4, v6) = tokio::join!(
        lookup(resolver.ipv4_lookup(name.clone()), rdata),
        lookup(resolver.ipv6_lookup(name), rdata)
    );
    let mut addresses = Vec::new();
    for answer in [v4, v6] {
        match answer {
            Answer::Failed(e) => return Answer::Failed(e),
            Answer::Missing => {}
            Answer::Found(records) => addresses.extend(records.iter().filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
        }
    }
    if addresses.is_empty() {
        Answer::Missing
    } else {
        Answer::Found(addresses)
    }
}

async fn lookup_ptr(resolver: &TokioResolver, ip: IpAddr) -> Answer<Vec<String>> {
    let answer = lookup(resolver.reverse_lookup(ip), rdata).await;
    map_answer(answer, |r| match r {
        RData::PTR(ptr) => Some(lower(&ptr.0.to_ascii())),
        _ => None,
    })
}

/// SPF of `domain` for mail the relay sends from `ip` (as mail-auth
/// evaluates it for an envelope sender at `domain`).
async fn spf(auth: &MessageAuthenticator, plan: &Plan, domain: &str, ip: IpAddr) -> SpfResult {
    let sender = format!("postmaster@{domain}");
    let params = SpfParameters::verify_mail_from(ip, &plan.helo, &plan.hostname, &sender);
    match tokio::time::timeout(SPF_TIMEOUT, auth.verify_spf(params)).await {
        Ok(output) => output.result(),
        Err(_) => SpfResult::TempError,
    }
}

/// Looks up everything the checks of `plan` need, concurrently, in DNS
/// only: the system's hosts file (where Debian maps the machine's own name
/// to 127.0.1.1) is not what receivers see.
pub async fn observe(plan: &Plan, resolver: &TokioResolver) -> Observed {
    let mut resolver = resolver.clone();
    resolver.set_hosts(Arc::new(hickory_resolver::Hosts::default()));
    let resolver = &resolver;
    enum Got {
        Mx(String, Answer<MxSet>),
        Txt(String, Answer<Vec<String>>),
        Addresses(Answer<Vec<IpAddr>>),
        Spf(String, IpAddr, SpfResult),
        Ptr(IpAddr, Answer<Vec<String>>),
    }
    let mut observed = Observed {
        mx: HashMap::new(),
        txt: HashMap::new(),
        addresses: Answer::Failed("not looked up".into()),
        spf: HashMap::new(),
        ptr: HashMap::new(),
    };
    let store = |observed: &mut Observed, got: Got| match got {
        Got::Mx(name, a) => {
            observed.mx.insert(name, a);
        }
        Got::Txt(name, a) => {
            observed.txt.insert(name, a);
        }
        Got::Addresses(a) => observed.addresses = a,
        Got::Spf(domain, ip, result) => {
            observed.spf.insert((domain, ip), result);
        }
        Got::Ptr(ip, a) => {
            observed.ptr.insert(ip, a);
        }
    };

    let mut tasks = tokio::task::JoinSet::new();
    for name in mx_names(plan) {
        let r = resolver.clone();
        tasks.spawn(async move { Got::Mx(name.clone(), lookup_mx(&r, &name).await) });
    }
    for name in txt_names(plan) {
        let r = resolver.clone();
        tasks.spawn(async move { Got::Txt(name.clone(), lookup_txt(&r, &name).await) });
    }
    let (r, host) = (resolver.clone(), plan.hostname.clone());
    tasks.spawn(async move { Got::Addresses(lookup_addresses(&r, &host).await) });
    while let Some(got) = tasks.join_next().await {
        if let Ok(got) = got {
            store(&mut observed, got);
        }
    }

    // Then what depends on the relay's addresses.
    if let Answer::Found(ips) = &observed.addresses {
        let auth = Arc::new(MessageAuthenticator(resolver.clone()));
        let plan = Arc::new(plan.clone());
        for &ip in ips {
            for (domain, _) in spf_domains(&plan) {
                let (auth, plan) = (auth.clone(), plan.clone());
                tasks.spawn(async move {
                    let result = spf(&auth, &plan, &domain, ip).await;
                    Got::Spf(domain, ip, result)
                });
            }
            let r = resolver.clone();
            tasks.spawn(async move { Got::Ptr(ip, lookup_ptr(&r, ip).await) });
        }
        while let Some(got) = tasks.join_next().await {
            if let Ok(got) = got {
                store(&mut observed, got);
            }
        }
    }
    observed
}

/// Looks up and judges every record of `plan`.
pub async fn check(plan: &Plan, resolver: &TokioResolver) -> Vec<Check> {
    let observed = observe(plan, resolver).await;
    evaluate(plan, &observed)
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

fn check_spf(plan: &Plan, obs: &Observed, domain: &str, required: bool) -> Vec<Check> {
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
pub fn compare_dkim(record: &str, algorithm: KeyAlgorithm, public: &[u8]) -> Result<(), String> {
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

fn check_dkim(plan: &Plan, key: &PlanKey, answer: Option<&Answer<Vec<String>>>) -> Check {
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

fn is_dmarc_record(record: &str) -> bool {
    let r = record.trim_start();
    r.len() >= 8
        && r[..8].eq_ignore_ascii_case("v=DMARC1")
        && r[8..]
            .chars()
            .next()
            .is_none_or(|c| c == ';' || c.is_whitespace())
}

fn check_dmarc(obs: &Observed, domain: &str, suggested: &str) -> Check {
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

/// Judges what [`observe`] found against `plan`, one [`Check`] per record
/// (per address for SPF and PTR).
pub fn evaluate(plan: &Plan, obs: &Observed) -> Vec<Check> {
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
    pub fn label(&self) -> &'static str {
        match (self.status, self.required) {
            (Status::Ok, _) => "ok",
            (_, false) => "warn",
            (Status::Missing, true) => "MISSING",
            (Status::Wrong, true) => "WRONG",
            (Status::DnsError, true) => "DNS ERROR",
        }
    }

    /// `LABEL     CHECK name: detail`.
    pub fn line(&self) -> String {
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
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.is_ok() || !c.required)
}

/// One line per check, then a summary line.
pub fn report(checks: &[Check]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 25));

    /// Reads zone-file character-strings back (the inverse of `zone_txt`).
    fn unquote(zone: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let bytes = zone.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b' ' {
                i += 1;
                continue;
            }
            assert_eq!(bytes[i], b'"', "{zone}");
            i += 1;
            let mut s = Vec::new();
            while bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    if bytes[i + 1].is_ascii_digit() {
                        let n: u8 = zone[i + 1..i + 4].parse().unwrap();
                        s.push(n);
                        i += 4;
                    } else {
                        s.push(bytes[i + 1]);
                        i += 2;
                    }
                } else {
                    s.push(bytes[i]);
                    i += 1;
                }
            }
            i += 1;
            out.push(s);
        }
        out
    }

    #[test]
    fn zone_txt_splits_at_255_bytes_and_escapes() {
        assert_eq!(zone_txt(""), "\"\"");
        assert_eq!(zone_txt("v=spf1 -all"), "\"v=spf1 -all\"");
        assert_eq!(zone_txt("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(zone_txt("é"), "\"\\195\\169\"");
        for len in [1usize, 254, 255, 256, 510, 511, 1000] {
            let value: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let strings = unquote(&zone_txt(&value));
            assert_eq!(strings.len(), len.div_ceil(255), "{len}");
            assert!(strings.iter().all(|s| s.len() <= 255 && !s.is_empty()));
            assert_eq!(strings.concat(), value.as_bytes());
        }
        // Escapes never straddle a split: 255 bytes of quotes, then one more.
        let quotes = "\"".repeat(256);
        let strings = unquote(&zone_txt(&quotes));
        assert_eq!(strings.iter().map(Vec::len).collect::<Vec<_>>(), [255, 1]);
    }

    fn config() -> Config {
        let mut config = Config {
            hostname: "mx.relay.test".into(),
            ..Config::default()
        };
        config.srs.domain = "bounce.relay.test".into();
        config.dkim.domain = "relay.test".into();
        config
    }

    fn key(selector: &str, algorithm: KeyAlgorithm, public: &[u8]) -> PlanKey {
        PlanKey {
            selector: selector.into(),
            algorithm,
            bits: 256,
            public: public.to_vec(),
            record: format!(
                "v=DKIM1; k={}; p={}",
                algorithm_name(algorithm),
                BASE64.encode(public)
            ),
            path: PathBuf::from(format!("/keys/{selector}.pem")),
            dkim: true,
        }
    }

    fn plan() -> Plan {
        Plan::new(
            &config(),
            "alias.test",
            vec![key("ed", KeyAlgorithm::Ed25519, &[7; 32])],
        )
    }

    #[test]
    fn records_name_the_right_places() {
        let plan = plan();
        let got: Vec<(String, &str, String)> = records(&plan)
            .into_iter()
            .filter(|r| !r.placeholder)
            .map(|r| (r.name, r.kind, r.value))
            .collect();
        let want = [
            ("alias.test.", "MX", "10 mx.relay.test."),
            ("alias.test.", "TXT", "v=spf1 -all"),
            ("_dmarc.alias.test.", "TXT", "v=DMARC1; p=reject"),
            ("bounce.relay.test.", "MX", "10 mx.relay.test."),
            ("bounce.relay.test.", "TXT", "v=spf1 a:mx.relay.test -all"),
            ("mx.relay.test.", "TXT", "v=spf1 a:mx.relay.test -all"),
            (
                "ed._domainkey.relay.test.",
                "TXT",
                &plan.keys[0].record.clone(),
            ),
            ("_dmarc.relay.test.", "TXT", "v=DMARC1; p=quarantine"),
        ];
        let want: Vec<(String, &str, String)> = want
            .iter()
            .map(|(n, k, v)| (n.to_string(), *k, v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn default_names_merge_records_of_one_domain() {
        // srs domain = helo = dkim domain = hostname: one SPF for all.
        let config = Config {
            hostname: "relay.test".into(),
            ..Config::default()
        };
        let plan = Plan::new(&config, "relay.test", Vec::new());
        let got: Vec<(String, &str)> = records(&plan)
            .into_iter()
            .filter(|r| !r.placeholder)
            .map(|r| (r.name, r.kind))
            .collect();
        // The alias domain is the relay's own: no "-all", one DMARC.
        assert_eq!(
            got,
            [
                ("relay.test.".to_string(), "MX"),
                ("relay.test.".into(), "TXT"),
                ("_dmarc.relay.test.".into(), "TXT")
            ]
        );
        let checks = evaluate(&plan, &observed_ok(&plan));
        let names: Vec<_> = checks.iter().map(|c| (c.check, c.name.as_str())).collect();
        assert_eq!(
            names,
            [
                ("MX", "relay.test"),
                ("A/AAAA", "relay.test"),
                ("SPF", "relay.test"),
                ("DMARC", "_dmarc.relay.test"),
                ("PTR", "192.0.2.25")
            ]
        );
    }

    #[test]
    fn zone_groups_and_comments_records() {
        let plan = plan();
        let text = zone(&plan, &records(&plan));
        assert!(
            text.contains("\n; ---- alias.test (for each alias domain) ----\n"),
            "{text}"
        );
        // Names are padded to the longest one (the DKIM name here).
        let width = "ed._domainkey.relay.test.".len();
        let mx = format!("\n{:<width$} IN MX    10 mx.relay.test.\n", "alias.test.");
        assert!(text.contains(&mx), "{text}");
        let spf = format!("\n{:<width$} IN TXT   \"v=spf1 -all\"\n", "alias.test.");
        assert!(text.contains(&spf), "{text}");
        // Placeholders are commented out.
        assert!(text.contains("\n; mx.relay.test."), "{text}");
        assert!(text.contains("IN PTR   mx.relay.test.\n"), "{text}");
        // Each record follows the comment saying why.
        let before_mx = &text[..text.find(&mx).unwrap()];
        assert!(before_mx.ends_with("forwards it."), "{text}");
        for line in text
            .lines()
            .filter(|l| l.starts_with(';') && !l.contains(" IN "))
        {
            assert!(line.len() <= 80, "{line}");
        }
    }

    fn observed_ok(plan: &Plan) -> Observed {
        let mut obs = Observed {
            mx: HashMap::new(),
            txt: HashMap::new(),
            addresses: Answer::Found(vec![IP]),
            spf: HashMap::new(),
            ptr: HashMap::from([(IP, Answer::Found(vec![plan.hostname.clone()]))]),
        };
        for name in mx_names(plan) {
            obs.mx
                .insert(name, Answer::Found(vec![(10, plan.hostname.clone())]));
        }
        for name in txt_names(plan) {
            obs.txt.insert(name, Answer::Missing);
        }
        for (domain, _) in spf_domains(plan) {
            obs.txt.insert(
                domain.clone(),
                Answer::Found(vec![relay_spf(&plan.hostname)]),
            );
            obs.spf.insert((domain, IP), SpfResult::Pass);
        }
        for key in &plan.keys {
            obs.txt
                .insert(plan.dkim_name(key), Answer::Found(vec![key.record.clone()]));
        }
        obs.txt.insert(
            format!("_dmarc.{}", plan.domain),
            Answer::Found(vec![ALIAS_DMARC.into()]),
        );
        obs.txt.insert(
            format!("_dmarc.{}", plan.dkim_domain),
            Answer::Found(vec![RELAY_DMARC.into()]),
        );
        obs
    }

    #[test]
    fn a_correct_zone_passes_every_check() {
        let plan = plan();
        let checks = evaluate(&plan, &observed_ok(&plan));
        let lines: Vec<String> = checks.iter().map(Check::line).collect();
        assert_eq!(
            lines,
            [
                "ok        MX alias.test: 10 mx.relay.test",
                "ok        MX bounce.relay.test: 10 mx.relay.test",
                "ok        A/AAAA mx.relay.test: 192.0.2.25",
                "ok        SPF bounce.relay.test: pass for 192.0.2.25 (\"v=spf1 a:mx.relay.test -all\")",
                "ok        SPF mx.relay.test: pass for 192.0.2.25 (\"v=spf1 a:mx.relay.test -all\")",
                "ok        DKIM ed._domainkey.relay.test: k=ed25519 with the key of /keys/ed.pem",
                "ok        DMARC _dmarc.alias.test: \"v=DMARC1; p=reject\"",
                "ok        DMARC _dmarc.relay.test: \"v=DMARC1; p=quarantine\"",
                "ok        PTR 192.0.2.25: mx.relay.test",
            ]
        );
        assert!(passed(&checks));
        assert!(report(&checks).ends_with("\nall 5 required checks ok\n"));
    }

    #[test]
    fn failures_say_what_was_expected_and_found() {
        let plan = plan();
        let mut obs = observed_ok(&plan);
        obs.mx.insert("alias.test".into(), Answer::Missing);
        obs.mx.insert(
            "bounce.relay.test".into(),
            Answer::Found(vec![(0, String::new())]),
        );
        obs.txt.insert(
            "bounce.relay.test".into(),
            Answer::Found(vec!["v=spf1 -all".into()]),
        );
        obs.spf
            .insert(("bounce.relay.test".into(), IP), SpfResult::Fail);
        obs.spf
            .insert(("mx.relay.test".into(), IP), SpfResult::TempError);
        obs.txt.insert(
            "ed._domainkey.relay.test".into(),
            Answer::Failed("SERVFAIL".into()),
        );
        obs.txt.insert("_dmarc.alias.test".into(), Answer::Missing);
        obs.ptr
            .insert(IP, Answer::Found(vec!["dyn-192-0-2-25.isp.test".into()]));
        let checks = evaluate(&plan, &obs);
        let lines: Vec<String> = checks.iter().map(Check::line).collect();
        assert_eq!(
            lines,
            [
                "MISSING   MX alias.test: expected an MX naming mx.relay.test (\"10 mx.relay.test.\"); found no MX record",
                "WRONG     MX bounce.relay.test: expected an MX naming mx.relay.test (\"10 mx.relay.test.\"); found 0 . (null MX: the domain takes no mail)",
                "ok        A/AAAA mx.relay.test: 192.0.2.25",
                "WRONG     SPF bounce.relay.test: expected pass for 192.0.2.25 (\"v=spf1 a:mx.relay.test -all\"); found fail (\"v=spf1 -all\")",
                "warn      SPF mx.relay.test: lookup failed: temperror: a DNS lookup failed while evaluating SPF (\"v=spf1 a:mx.relay.test -all\"); expected pass for 192.0.2.25 (\"v=spf1 a:mx.relay.test -all\") (suggestion)",
                "DNS ERROR DKIM ed._domainkey.relay.test: lookup failed: SERVFAIL; expected \"v=DKIM1; k=ed25519; p=<the public key of /keys/ed.pem>\" (`eas-relay dns records` prints it)",
                "warn      DMARC _dmarc.alias.test: expected a DMARC record, e.g. \"v=DMARC1; p=reject\"; found no DMARC record (suggestion)",
                "ok        DMARC _dmarc.relay.test: \"v=DMARC1; p=quarantine\"",
                "warn      PTR 192.0.2.25: expected mx.relay.test; found dyn-192-0-2-25.isp.test (suggestion)",
            ]
        );
        assert!(!passed(&checks));
        assert!(report(&checks).ends_with("\n4 of 5 required checks failed, 3 warnings\n"));
        let json = serde_json::to_value(&checks[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "check": "MX", "name": "alias.test", "status": "missing", "required": true,
                "expected": "an MX naming mx.relay.test (\"10 mx.relay.test.\")",
                "found": "no MX record"
            })
        );
        assert_eq!(serde_json::to_value(checks[5].status).unwrap(), "dns_error");
    }

    #[test]
    fn no_address_means_spf_cannot_be_evaluated() {
        let plan = plan();
        let mut obs = observed_ok(&plan);
        obs.addresses = Answer::Missing;
        let checks = evaluate(&plan, &obs);
        let spf: Vec<_> = checks.iter().filter(|c| c.check == "SPF").collect();
        assert_eq!(spf.len(), 2);
        assert_eq!(spf[0].status, Status::Missing);
        assert!(
            spf[0].found.contains("no address of mx.relay.test"),
            "{:?}",
            spf[0]
        );
        assert!(!checks.iter().any(|c| c.check == "PTR"));
        obs.addresses = Answer::Failed("REFUSED".into());
        let checks = evaluate(&plan, &obs);
        assert_eq!(
            checks[2].line(),
            "DNS ERROR A/AAAA mx.relay.test: lookup failed: REFUSED; expected the relay's public address(es)"
        );
        assert_eq!(checks[3].status, Status::DnsError);
    }

    #[test]
    fn several_spf_records_are_a_permerror() {
        let plan = plan();
        let mut obs = observed_ok(&plan);
        obs.txt.insert(
            "bounce.relay.test".into(),
            Answer::Found(vec![
                "v=spf1 a:mx.relay.test -all".into(),
                "google-site-verification=x".into(),
                "v=spf1 -all".into(),
            ]),
        );
        let c = &check_spf(&plan, &obs, "bounce.relay.test", true)[0];
        assert_eq!(c.status, Status::Wrong);
        assert_eq!(
            c.found,
            "permerror (2 SPF records: \"v=spf1 a:mx.relay.test -all\", \"v=spf1 -all\")"
        );
    }

    #[test]
    fn spf_results_map_to_statuses() {
        let plan = plan();
        for (result, status, text) in [
            (SpfResult::Pass, Status::Ok, "pass for 192.0.2.25"),
            (SpfResult::None, Status::Missing, "no SPF record"),
            (SpfResult::SoftFail, Status::Wrong, "softfail"),
            (SpfResult::Neutral, Status::Wrong, "neutral"),
            (SpfResult::PermError, Status::Wrong, "permerror"),
            (SpfResult::TempError, Status::DnsError, "temperror"),
        ] {
            let mut obs = observed_ok(&plan);
            obs.spf.insert(("bounce.relay.test".into(), IP), result);
            let c = &check_spf(&plan, &obs, "bounce.relay.test", true)[0];
            assert_eq!(c.status, status, "{result:?}");
            assert!(c.found.starts_with(text), "{result:?}: {c:?}");
        }
    }

    #[test]
    fn dkim_record_comparison() {
        let ed = [7u8; 32];
        let p = BASE64.encode(ed);
        let ok = |r: &str| compare_dkim(r, KeyAlgorithm::Ed25519, &ed);
        assert_eq!(ok(&format!("v=DKIM1; k=ed25519; p={p}")), Ok(()));
        // Case of tag names, spacing and a folded p= do not matter.
        let folded = format!("{} {}", &p[..20], &p[20..]);
        assert_eq!(ok(&format!(" v=DKIM1 ;K=ED25519;  p= {folded} ;")), Ok(()));
        assert_eq!(ok(&format!("k=ed25519; t=s; p={p}")), Ok(()));
        // k= defaults to rsa.
        assert_eq!(
            ok(&format!("v=DKIM1; p={p}")),
            Err("k=rsa, not k=ed25519".into())
        );
        assert_eq!(
            ok("v=DKIM1; k=ed25519; p="),
            Err("an empty p= (the key is revoked)".into())
        );
        assert_eq!(ok("v=DKIM1; k=ed25519"), Err("no p= tag".into()));
        assert_eq!(
            ok("v=DKIM1; k=ed25519; p=!!"),
            Err("a p= that is not valid base64".into())
        );
        let other = BASE64.encode([8u8; 32]);
        assert_eq!(
            ok(&format!("v=DKIM1; k=ed25519; p={other}")),
            Err(format!(
                "a different public key (p=...{})",
                &other[other.len() - 12..]
            ))
        );
        assert!(
            ok(&format!("k=ed25519; v=DKIM1; p={p}"))
                .unwrap_err()
                .contains("first tag")
        );
        assert!(ok(&format!("v=DKIM2; k=ed25519; p={p}")).is_err());

        // RSA: the SubjectPublicKeyInfo, or its RSAPublicKey part.
        let spki: Vec<u8> = (0..294).map(|i| i as u8).collect();
        let rsa = |r: &str| compare_dkim(r, KeyAlgorithm::Rsa, &spki);
        assert_eq!(rsa(&format!("v=DKIM1; p={}", BASE64.encode(&spki))), Ok(()));
        assert_eq!(
            rsa(&format!("v=DKIM1; k=rsa; p={}", BASE64.encode(&spki[24..]))),
            Ok(())
        );
        assert!(
            rsa(&format!(
                "v=DKIM1; k=rsa; p={}",
                BASE64.encode(&spki[280..])
            ))
            .is_err()
        );
    }

    #[test]
    fn dkim_check_finds_the_key_record_among_txt_records() {
        let plan = plan();
        let key = &plan.keys[0];
        let check = |txts: Vec<String>| check_dkim(&plan, key, Some(&Answer::Found(txts)));
        assert!(check(vec!["hello".into(), key.record.clone()]).is_ok());
        let c = check(vec!["hello".into()]);
        assert_eq!(
            (c.status, c.found.as_str()),
            (Status::Wrong, "no DKIM key record, only \"hello\"")
        );
        let c = check(vec![
            key.record.clone(),
            key.record.replace("ed25519", "rsa"),
        ]);
        assert_eq!(c.status, Status::Wrong);
        assert!(c.found.starts_with("2 DKIM key records"), "{c:?}");
        let c = check_dkim(&plan, key, None);
        assert_eq!(c.status, Status::DnsError);
    }

    #[test]
    fn dmarc_walks_up_to_the_organizational_domain() {
        assert_eq!(
            dmarc_names("a.b.example"),
            ["_dmarc.a.b.example", "_dmarc.b.example"]
        );
        assert_eq!(dmarc_names("example.country"), ["_dmarc.example.country"]);
        assert!(dmarc_names("localhost").is_empty());
        let mut obs = observed_ok(&plan());
        obs.txt.insert(
            "_dmarc.a.b.example".into(),
            Answer::Found(vec!["v=spf1 -all".into()]),
        );
        obs.txt.insert(
            "_dmarc.b.example".into(),
            Answer::Found(vec!["v=DMARC1;p=none".into()]),
        );
        let c = check_dmarc(&obs, "a.b.example", ALIAS_DMARC);
        assert_eq!(c.status, Status::Ok);
        assert_eq!(c.name, "_dmarc.a.b.example");
        assert_eq!(
            c.found,
            "\"v=DMARC1;p=none\" at _dmarc.b.example (inherited by subdomains)"
        );
        obs.txt.insert(
            "_dmarc.a.b.example".into(),
            Answer::Found(vec!["v=DMARC1; p=none".into(), "v=DMARC1; p=reject".into()]),
        );
        assert_eq!(
            check_dmarc(&obs, "a.b.example", ALIAS_DMARC).status,
            Status::Wrong
        );
        obs.txt.insert(
            "_dmarc.a.b.example".into(),
            Answer::Failed("SERVFAIL".into()),
        );
        let c = check_dmarc(&obs, "a.b.example", ALIAS_DMARC);
        assert_eq!(c.status, Status::DnsError);
        assert_eq!(c.label(), "warn");
        assert!(!is_dmarc_record("v=DMARC10; p=none"));
        assert!(is_dmarc_record("V=dmarc1"));
    }

    #[test]
    fn default_selector_has_algorithm_and_date() {
        let day = time::macros::date!(2026 - 03 - 07);
        assert_eq!(
            default_selector(KeyAlgorithm::Ed25519, day),
            "eas-ed25519-20260307"
        );
        assert_eq!(default_selector(KeyAlgorithm::Rsa, day), "eas-rsa-20260307");
    }

    #[test]
    fn keygen_refuses_taken_and_bad_selectors() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config();
        config.data_dir = dir.path().to_path_buf();
        let day = time::macros::date!(2026 - 03 - 07);
        let err = keygen(
            &config,
            KeyAlgorithm::Rsa,
            Some("eas-rsa".into()),
            None,
            day,
        );
        assert!(matches!(err, Err(KeygenError::SelectorTaken(_))), "{err:?}");
        let err = keygen(&config, KeyAlgorithm::Rsa, Some("a b".into()), None, day);
        assert!(matches!(err, Err(KeygenError::BadSelector(_))), "{err:?}");
        let key = keygen(&config, KeyAlgorithm::Ed25519, None, None, day).unwrap();
        assert_eq!(key.selector, "eas-ed25519-20260307");
        assert_eq!(key.key, dir.path().join("dkim/eas-ed25519-20260307.pem"));
        assert_eq!(
            key.record.name,
            "eas-ed25519-20260307._domainkey.relay.test."
        );
        assert_eq!(key.keep, "", "no generated keys to keep");
        let parsed: toml::Table = key.config.parse().unwrap();
        let entry = &parsed["dkim"]["keys"][0];
        assert_eq!(entry["algorithm"].as_str(), Some("ed25519"));
        assert_eq!(entry["key"].as_str(), Some(key.key.to_str().unwrap()));
        let err = keygen(&config, KeyAlgorithm::Ed25519, None, None, day);
        assert!(
            matches!(err, Err(KeygenError::Key(DkimKeyError::Exists(_)))),
            "{err:?}"
        );
        // Once dkim.keys is in use, its selectors are the taken ones.
        config.dkim.keys = vec![crate::config::DkimKeyConfig {
            selector: "mine".into(),
            algorithm: KeyAlgorithm::Ed25519,
            key: key.key.clone(),
            dkim: true,
        }];
        let err = keygen(&config, KeyAlgorithm::Rsa, Some("MINE".into()), None, day);
        assert!(matches!(err, Err(KeygenError::SelectorTaken(_))), "{err:?}");
    }
}
