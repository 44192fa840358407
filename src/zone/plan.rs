//! What an alias domain and the relay should publish in DNS: the [`Plan`]
//! (names, keys, addresses, from the config and the DKIM keys) and its
//! [`Record`]s (MX, SPF, DKIM, DMARC, each with the reason).

use crate::config::{Config, KeyAlgorithm};
use crate::dns::canonical;
use crate::rewrite::keys::{self, DkimKeyError, SelectorKey};
use serde::Serialize;
use std::path::PathBuf;

/// Preference of the MX records we suggest.
pub(crate) const MX_PREFERENCE: u16 = 10;
/// The SPF record of the relay's domains: the addresses of `hostname`.
pub(super) fn relay_spf(hostname: &str) -> String {
    format!("v=spf1 a:{hostname} -all")
}
/// SPF of an alias domain: nothing sends as it (see [`records`]).
pub(crate) const ALIAS_SPF: &str = "v=spf1 -all";
/// DMARC suggested for an alias domain (it sends no mail).
pub(crate) const ALIAS_DMARC: &str = "v=DMARC1; p=reject";
/// DMARC suggested for the relay's DKIM domain.
pub(crate) const RELAY_DMARC: &str = "v=DMARC1; p=quarantine";

/// A DKIM key as far as DNS is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanKey {
    pub(crate) selector: String,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) bits: usize,
    /// Ed25519: the raw 32 bytes; RSA: SubjectPublicKeyInfo DER.
    pub(crate) public: Vec<u8>,
    /// The TXT value to publish (`v=DKIM1; k=...; p=...`).
    pub(crate) record: String,
    pub(crate) path: PathBuf,
    /// Signs DKIM (false: only seals ARC; its record is needed all the same).
    pub(crate) dkim: bool,
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
pub(crate) struct Plan {
    /// The alias domain.
    pub(crate) domain: String,
    /// The relay's host name (MX target, SPF `a:`).
    pub(crate) hostname: String,
    /// The name of outbound EHLO (SPF of the relay's bounces).
    pub(crate) helo: String,
    /// Domain of SRS addresses; None when SRS is off.
    pub(crate) srs_domain: Option<String>,
    /// d= of the relay's signatures.
    pub(crate) dkim_domain: String,
    /// The keys that sign or seal; empty when the relay does not sign.
    pub(crate) keys: Vec<PlanKey>,
    /// The From of messages whose From the relay rewrites; None when off.
    pub(crate) from_address: Option<String>,
    /// Key files `keys::load` generated just now (the node would have).
    pub(crate) generated: Vec<PathBuf>,
}

/// The relay loads DKIM keys (and needs their records) when it signs or seals.
pub(crate) fn signs(config: &Config) -> bool {
    config.dkim.enabled || (config.arc.enabled && config.auth.enabled)
}

impl Plan {
    /// The plan for `domain` (already normalized) with these keys.
    pub(crate) fn new(config: &Config, domain: &str, keys: Vec<PlanKey>) -> Plan {
        let rewriting = config.auth.enabled && config.rewrite.from_for_strict_dmarc;
        let from_address = rewriting.then(|| {
            if config.rewrite.from_address.is_empty() {
                format!("forwarder@{}", canonical(config.dkim_domain()))
            } else {
                config.rewrite.from_address.clone()
            }
        });
        Plan {
            domain: canonical(domain),
            hostname: canonical(&config.hostname),
            helo: canonical(config.helo_name()),
            srs_domain: config.srs.enabled.then(|| canonical(config.srs_domain())),
            dkim_domain: canonical(config.dkim_domain()),
            keys,
            from_address,
            generated: Vec::new(),
        }
    }

    /// The plan with the relay's DKIM keys, loaded (or generated, as the
    /// node does on first start) by [`keys::load`].
    pub(crate) fn load(config: &Config, domain: &str) -> Result<Plan, DkimKeyError> {
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

    pub(super) fn dkim_name(&self, key: &PlanKey) -> String {
        format!("{}._domainkey.{}", key.selector, self.dkim_domain)
    }
}

/// Which part of the output a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// Published for each alias domain.
    Alias,
    /// Published once for the relay.
    Relay,
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Record {
    /// Fully qualified, with the trailing dot.
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// MX: `10 host.`; TXT: the text, unquoted and unsplit; a value in
    /// `<...>` is a placeholder for something only the operator knows.
    pub(crate) value: String,
    pub(crate) why: String,
    #[serde(skip)]
    pub(crate) section: Section,
    /// Not a record to copy as is (the relay's address and its PTR).
    #[serde(skip)]
    pub(crate) placeholder: bool,
}

pub(super) fn record(
    section: Section,
    name: &str,
    kind: &'static str,
    value: String,
    why: String,
) -> Record {
    Record {
        name: format!("{}.", canonical(name)),
        kind,
        value,
        why,
        section,
        placeholder: false,
    }
}

/// Every record the operator must (MX, SPF, DKIM) or should (DMARC, PTR)
/// publish for `plan.domain` and for the relay.
pub(crate) fn records(plan: &Plan) -> Vec<Record> {
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

pub(super) fn describe_key(algorithm: KeyAlgorithm, bits: usize) -> String {
    match algorithm {
        KeyAlgorithm::Ed25519 => "Ed25519".into(),
        KeyAlgorithm::Rsa => format!("RSA-{bits}"),
    }
}

pub(super) fn algorithm_name(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::Ed25519 => "ed25519",
        KeyAlgorithm::Rsa => "rsa",
    }
}

/// Every name whose TXT records the checks read: for each name, the DMARC
/// tree walk (`_dmarc.a.b.c`, `_dmarc.b.c`; never a top-level domain).
pub(super) fn dmarc_names(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').collect();
    (0..labels.len().saturating_sub(1))
        .map(|i| format!("_dmarc.{}", labels[i..].join(".")))
        .collect()
}

pub(super) fn mx_names(plan: &Plan) -> Vec<String> {
    let mut names = vec![plan.domain.clone()];
    if let Some(srs) = &plan.srs_domain
        && *srs != plan.domain
    {
        names.push(srs.clone());
    }
    names
}

/// Domains whose SPF must authorize the relay: (domain, required).
pub(super) fn spf_domains(plan: &Plan) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    if let Some(srs) = &plan.srs_domain {
        out.push((srs.clone(), true));
    }
    if plan.helo_needs_spf() {
        out.push((plan.helo.clone(), false));
    }
    out
}
