//! Inbound verdicts: SPF (MAIL FROM and HELO), DKIM, ARC and DMARC of an
//! arriving message, checked with mail-auth through the resolver of
//! [`crate::dns`] behind our caches (`cache.rs`); the policy applied to
//! them (refuse DMARC `p=reject` failures, defer on temporary DNS errors);
//! and the one Authentication-Results header (RFC 8601) that records them.

pub mod body;
pub(crate) mod cache;

use crate::config::Config;
use crate::reply::Reply;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput,
    DmarcResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

/// Longest time all checks of one message may take together (SPF may need
/// ten lookups, DMARC a tree walk); beyond it the verdict is a temporary
/// error.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// The envelope facts the checks need.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub client_ip: IpAddr,
    pub helo: &'a str,
    /// As received; "" is the null sender.
    pub mail_from: &'a str,
}

/// Checks inbound mail; built once, shared by every session.
pub struct Verifier {
    authenticator: MessageAuthenticator,
    caches: cache::Caches,
    hostname: String,
    reject_dmarc_failures: bool,
    tempfail_on_dns_error: bool,
}

/// Every check of one message. Borrows the parsed message (DKIM and ARC
/// results point at its signatures).
pub struct Verdicts<'x> {
    /// SPF of the MAIL FROM identity; None for the null sender.
    pub spf_mail_from: Option<SpfOutput>,
    /// SPF of the HELO identity; None when HELO gave no domain.
    pub spf_helo: Option<SpfOutput>,
    pub dkim: Vec<DkimOutput<'x>>,
    pub arc: ArcOutput<'x>,
    pub dmarc: DmarcOutput,
}

/// The checks did not finish within [`VERIFY_TIMEOUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl Verifier {
    pub fn new(config: &Config) -> Result<Verifier, String> {
        let resolver = crate::dns::resolver(&config.outbound.nameservers)?;
        Ok(Verifier {
            authenticator: MessageAuthenticator(resolver),
            caches: cache::Caches::new(),
            hostname: config.hostname.clone(),
            reject_dmarc_failures: config.auth.reject_dmarc_failures,
            tempfail_on_dns_error: config.auth.tempfail_on_dns_error,
        })
    }

    /// Runs SPF (HELO and MAIL FROM), DKIM and ARC concurrently, then DMARC.
    pub async fn verify<'x>(
        &'x self,
        message: &'x AuthenticatedMessage<'x>,
        envelope: &Envelope<'x>,
    ) -> Result<Verdicts<'x>, TimedOut> {
        tokio::time::timeout(VERIFY_TIMEOUT, self.verify_all(message, envelope))
            .await
            .map_err(|_| TimedOut)
    }

    async fn verify_all<'x>(
        &'x self,
        message: &'x AuthenticatedMessage<'x>,
        envelope: &Envelope<'x>,
    ) -> Verdicts<'x> {
        let auth = &self.authenticator;
        let ip = envelope.client_ip;
        let helo = helo_domain(envelope.helo);
        let mail_from = envelope.mail_from;
        let host = self.hostname.as_str();
        let spf_helo = async {
            match helo {
                Some(helo) => Some(
                    auth.verify_spf(self.caches.with(SpfParameters::verify_ehlo(ip, helo, host)))
                        .await,
                ),
                None => None,
            }
        };
        let spf_mail_from = async {
            if mail_from.is_empty() {
                None
            } else {
                let params =
                    SpfParameters::verify_mail_from(ip, helo.unwrap_or(""), host, mail_from);
                Some(auth.verify_spf(self.caches.with(params)).await)
            }
        };
        let dkim = auth.verify_dkim(self.caches.with(message));
        let arc = auth.verify_arc(self.caches.with(message));
        let (spf_helo, spf_mail_from, dkim, arc) = tokio::join!(spf_helo, spf_mail_from, dkim, arc);

        // DMARC's SPF identity: MAIL FROM, or HELO for the null sender (RFC 7489 §4.1).
        let default_spf = SpfOutput::default();
        let (spf_domain, spf) = match (&spf_mail_from, &spf_helo) {
            (Some(spf), _) => (domain_of(mail_from), spf),
            (None, Some(spf)) => (helo.unwrap_or(""), spf),
            (None, None) => ("", &default_spf),
        };
        let dmarc = auth
            .verify_dmarc(
                self.caches
                    .with(DmarcParameters::new(message, &dkim, spf_domain, spf)),
            )
            .await;
        Verdicts {
            spf_mail_from,
            spf_helo,
            dkim,
            arc,
            dmarc,
        }
    }

    /// What to answer instead of accepting, if anything: `451 4.7.x` for a
    /// temporary DNS error (when configured), `550 5.7.1` for a DMARC failure
    /// of a `p=reject` domain (when configured).
    pub fn refusal(&self, verdicts: &Verdicts<'_>) -> Option<Reply> {
        if self.tempfail_on_dns_error
            && let Some(reply) = verdicts.tempfail_reply()
        {
            return Some(reply);
        }
        if self.reject_dmarc_failures && verdicts.dmarc_rejects() {
            return Some(Reply::owned(
                550,
                [5, 7, 1],
                format!(
                    "DMARC policy reject: the sender domain {} rejects mail that fails DMARC \
                     (no aligned SPF or DKIM pass)",
                    verdicts.dmarc.domain()
                ),
            ));
        }
        None
    }

    /// `451` when the checks ran out of time (and deferring is configured).
    pub fn timeout_refusal(&self) -> Option<Reply> {
        self.tempfail_on_dns_error.then(|| {
            Reply::new(
                451,
                [4, 7, 1],
                "Temporary failure: sender authentication checks timed out, try again later",
            )
        })
    }

    /// The results for the Authentication-Results header and the ARC seal.
    /// `comment` follows the authserv-id (RFC 8601 allows CFWS there): the
    /// content scan's verdict, which has no registered method of its own.
    pub fn results<'a>(
        &'a self,
        verdicts: &Verdicts<'_>,
        message: &AuthenticatedMessage<'_>,
        envelope: &Envelope<'_>,
        authserv: &'a str,
    ) -> AuthenticationResults<'a> {
        let mut ar = AuthenticationResults::new(authserv);
        if let Some(spf) = &verdicts.spf_mail_from {
            ar = ar.with_spf_mailfrom_result(
                spf,
                envelope.client_ip,
                envelope.mail_from,
                envelope.helo,
            );
        }
        if let Some(spf) = &verdicts.spf_helo {
            ar = ar.with_spf_ehlo_result(spf, envelope.client_ip, envelope.helo);
        }
        ar = ar.with_dkim_results(&verdicts.dkim, message.from());
        ar = ar.with_arc_result(&verdicts.arc, envelope.client_ip);
        if !verdicts.dmarc.domain().is_empty() {
            ar = ar.with_dmarc_result(&verdicts.dmarc);
        }
        ar
    }
}

/// The `Authentication-Results:` header field (CRLF-terminated). mail-auth
/// writes nothing for an unsigned message; RFC 8601 §2.7.1 has `dkim=none`.
pub fn authentication_results_header(
    ar: &AuthenticationResults<'_>,
    verdicts: &Verdicts<'_>,
) -> String {
    let mut header = ar.to_header();
    if verdicts.dkim.is_empty() && header.ends_with("\r\n") {
        header.truncate(header.len() - 2);
        header.push_str(";\r\n\tdkim=none (no signatures)\r\n");
    }
    header
}

impl Verdicts<'_> {
    /// The SPF result DMARC used: MAIL FROM's, or HELO's for the null sender.
    pub fn spf(&self) -> SpfResult {
        self.spf_mail_from
            .as_ref()
            .or(self.spf_helo.as_ref())
            .map_or(SpfResult::None, |s| s.result())
    }

    /// True when a valid DKIM signature aligned with the From domain passed
    /// (in the alignment mode of the domain's DMARC record; relaxed unless
    /// it says `adkim=s`).
    pub fn dkim_aligned(&self) -> bool {
        self.dmarc.dkim_result() == &DmarcResult::Pass
    }

    /// The envelope sender is vouched for: its SPF (MAIL FROM) passed, or
    /// a DKIM signature passed whose domain is the From domain or a parent
    /// of it (relaxed alignment; the DMARC verdict when the From domain
    /// publishes a record, otherwise checked here, where a one-label
    /// domain never aligns). Only such senders get DSNs
    /// (`queue.dsn_authenticated_only`): a bounce to a forged sender is
    /// backscatter.
    pub fn sender_authenticated(&self) -> bool {
        let spf_pass = self
            .spf_mail_from
            .as_ref()
            .is_some_and(|s| s.result() == SpfResult::Pass);
        if spf_pass || self.dkim_aligned() {
            return true;
        }
        let from = self
            .dmarc
            .domain()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        !from.is_empty()
            && self.dkim.iter().any(|o| {
                let d = o
                    .signature()
                    .map(|s| s.d.trim_end_matches('.').to_ascii_lowercase())
                    .unwrap_or_default();
                *o.result() == DkimResult::Pass
                    && d.contains('.')
                    && (from == d || from.ends_with(&format!(".{d}")))
            })
    }

    /// The From domain publishes `p=quarantine` or `p=reject` (after `sp=`,
    /// `np=` and `t=y` are applied).
    pub fn strict_dmarc_policy(&self) -> bool {
        self.dmarc.dmarc_record().is_some()
            && matches!(self.dmarc.policy(), Policy::Quarantine | Policy::Reject)
    }

    /// DMARC failed and the domain's policy is `p=reject`.
    pub fn dmarc_rejects(&self) -> bool {
        matches!(self.dmarc.result(), DmarcResult::Fail(_))
            && self.dmarc.dmarc_record().is_some()
            && self.dmarc.policy() == Policy::Reject
    }

    /// Checks that ended in a temporary error, by name. A HELO error counts
    /// only for the null sender (it is then the identity DMARC uses);
    /// otherwise its result decides nothing. DMARC's own temporary error
    /// counts only when it does not merely follow from SPF's or DKIM's.
    pub fn temp_errors(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        let spf_temp = |s: &Option<SpfOutput>| {
            s.as_ref()
                .is_some_and(|s| s.result() == SpfResult::TempError)
        };
        if spf_temp(&self.spf_mail_from)
            || (self.spf_mail_from.is_none() && spf_temp(&self.spf_helo))
        {
            failed.push("spf");
        }
        if self
            .dkim
            .iter()
            .any(|d| matches!(d.result(), DkimResult::TempError(_)))
        {
            failed.push("dkim");
        }
        if matches!(self.arc.result(), DkimResult::TempError(_)) {
            failed.push("arc");
        }
        let dmarc_temp = matches!(self.dmarc.result(), DmarcResult::TempError(_))
            || matches!(self.dmarc.spf_result(), DmarcResult::TempError(_))
            || matches!(self.dmarc.dkim_result(), DmarcResult::TempError(_));
        if dmarc_temp && failed.iter().all(|f| *f == "arc") {
            failed.push("dmarc");
        }
        failed
    }

    /// `451 4.7.24` (SPF validation error, RFC 7372) when only SPF hit a
    /// temporary error, `451 4.7.26` (multiple checks) when several did,
    /// `451 4.7.1` for DKIM, ARC or DMARC alone.
    pub fn tempfail_reply(&self) -> Option<Reply> {
        let failed = self.temp_errors();
        let enhanced = match failed.as_slice() {
            [] => return None,
            ["spf"] => [4, 7, 24],
            [_] => [4, 7, 1],
            _ => [4, 7, 26],
        };
        let text = format!(
            "Temporary DNS failure verifying the sender ({}), try again later",
            failed.join(", ")
        );
        Some(Reply::owned(451, enhanced, text))
    }

    /// One line for the log, e.g. `spf=pass helo_spf=none
    /// dkim=pass:example.com dmarc=pass dmarc_policy=reject arc=none`
    /// (`spf` is the identity DMARC uses: MAIL FROM, or HELO for `<>`).
    pub fn summary(&self) -> String {
        let mut out = String::with_capacity(96);
        let spf_name =
            |s: &Option<SpfOutput>| s.as_ref().map_or("none", |s| spf_result_name(s.result()));
        let _ = write!(
            out,
            "spf={} helo_spf={} dkim=",
            spf_result_name(self.spf()),
            spf_name(&self.spf_helo)
        );
        if self.dkim.is_empty() {
            out.push_str("none");
        }
        for (i, d) in self.dkim.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(dkim_result_name(d.result()));
            if let Some(sig) = d.signature() {
                let _ = write!(out, ":{}", sig.d);
            }
        }
        let _ = write!(
            out,
            " dmarc={} dmarc_policy={} arc={}",
            dmarc_result_name(&self.dmarc.result()),
            self.dmarc.policy(),
            dkim_result_name(self.arc.result())
        );
        out
    }
}

/// The HELO name as an SPF identity: None for an empty name or an address
/// literal.
fn helo_domain(helo: &str) -> Option<&str> {
    let helo = helo.trim();
    (!helo.is_empty() && !helo.starts_with('[')).then_some(helo)
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

pub fn spf_result_name(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

pub fn dkim_result_name(result: &DkimResult) -> &'static str {
    match result {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

pub fn dmarc_result_name(result: &DmarcResult) -> &'static str {
    match result {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}
