//! The one step the SMTP session calls at the end of DATA: verify the
//! inbound message (SPF, DKIM, ARC, DMARC), refuse or defer it by policy,
//! rewrite From for DMARC-strict senders, then sign (DKIM) and seal (ARC)
//! it, returning the exact bytes to queue.

use crate::auth::{self, Envelope, Verdicts, Verifier};
use crate::config::Config;
use crate::rewrite::from::FromRewrite;
use crate::rewrite::keys::{self, KeyError, SelectorKey};
use crate::rewrite::sign::{Seal, Signer};
use crate::smtp::reply::Reply;
use mail_auth::common::crypto::HashAlgorithm;
use mail_auth::dkim::Canonicalization;
use mail_auth::{ArcOutput, AuthenticatedMessage, DkimResult};

/// What the session knows about the message's arrival.
pub struct Inbound<'a> {
    pub client_ip: std::net::IpAddr,
    pub helo: &'a str,
    /// envelope sender as received, "" = null sender
    pub mail_from: &'a str,
}

pub struct Prepared {
    /// the message to queue: our added headers (ARC set, DKIM-Signature(s),
    /// Authentication-Results), then the message (From possibly rewritten)
    pub message: Vec<u8>,
    /// one line for the log, e.g. "spf=pass dkim=pass dmarc=pass arc=none from_rewritten=no"
    pub verdicts: String,
    /// The envelope sender passed SPF, or a DKIM signature aligned with the
    /// From domain passed: a DSN to it is no backscatter. False when
    /// verification is off or timed out.
    pub sender_authenticated: bool,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("message", &format_args!("{} bytes", self.message.len()))
            .field("verdicts", &self.verdicts)
            .finish()
    }
}

/// Why the forwarding step cannot be set up (at startup).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot set up DKIM/ARC signing: {0}")]
    Signer(String),
    #[error("cannot set up sender verification: {0}")]
    Verifier(String),
}

/// Verification, From rewriting and signing, shared by every session.
pub struct Forwarding {
    /// None when auth.enabled is off.
    verifier: Option<Verifier>,
    /// None when rewrite.from_for_strict_dmarc is off.
    from: Option<FromRewrite>,
    signer: Signer,
    keys: Vec<SelectorKey>,
}

/// `451` for a message we could not sign (a local fault: better late than
/// unsigned).
const SIGN_FAILURE: Reply = Reply::new(
    451,
    [4, 3, 0],
    "Temporary local problem signing the message, try again later",
);

impl Forwarding {
    pub fn new(config: &Config) -> Result<Forwarding, PipelineError> {
        let sealing = config.arc.enabled && config.auth.enabled;
        let keys = if config.dkim.enabled || sealing {
            keys::load(config)?
        } else {
            Vec::new()
        };
        let signer = Signer::new(config, &keys).map_err(PipelineError::Signer)?;
        let verifier = if config.auth.enabled {
            Some(Verifier::new(config).map_err(PipelineError::Verifier)?)
        } else {
            None
        };
        let from = (config.auth.enabled && config.rewrite.from_for_strict_dmarc)
            .then(|| FromRewrite::new(config));
        log_setup(config, &signer);
        Ok(Forwarding {
            verifier,
            from,
            signer,
            keys,
        })
    }

    /// (selector, TXT value) of every key, to publish at
    /// `<selector>._domainkey.<dkim domain>`.
    pub fn dkim_records(&self) -> Vec<(String /*selector*/, String /*TXT value*/)> {
        self.keys
            .iter()
            .map(|k| (k.selector.clone(), keys::txt_record(&k.pair)))
            .collect()
    }

    /// Verify, decide, rewrite, sign. Err(reply) = refuse with that reply (550 5.7.1 or 451 4.7.x).
    pub async fn prepare(
        &self,
        message: Vec<u8>,
        inbound: &Inbound<'_>,
    ) -> Result<Prepared, crate::smtp::reply::Reply> {
        let Some(verifier) = &self.verifier else {
            return self.sign_only(message, "auth=off from_rewritten=no".into());
        };
        let parsed =
            AuthenticatedMessage::parse(&message).unwrap_or_else(|| AuthenticatedMessage {
                raw_message: &message,
                ..AuthenticatedMessage::default()
            });
        let envelope = Envelope {
            client_ip: inbound.client_ip,
            helo: inbound.helo,
            mail_from: inbound.mail_from,
        };
        let verdicts = match verifier.verify(&parsed, &envelope).await {
            Ok(verdicts) => verdicts,
            Err(auth::TimedOut) => {
                if let Some(reply) = verifier.timeout_refusal() {
                    return Err(reply);
                }
                tracing::warn!(client = %inbound.client_ip, "sender checks timed out: forwarding unverified");
                drop(parsed);
                return self.sign_only(message, "auth=timeout from_rewritten=no".into());
            }
        };
        if let Some(reply) = verifier.refusal(&verdicts) {
            return Err(reply);
        }
        let results = verifier.results(&verdicts, &parsed, &envelope);
        let ar_header = auth::authentication_results_header(&results, &verdicts);

        let (rewritten, from_state) = self.rewrite_from(&message, &verdicts, inbound);
        let signed: &[u8] = rewritten.as_deref().unwrap_or(&message);
        let seal = sealable(&parsed, &verdicts.arc).then_some(Seal {
            results: &results,
            chain: &verdicts.arc,
        });
        let sealing = seal.is_some() && self.signer.arc_selector().is_some();
        // Rewriting never touches the body: the inbound relaxed body hash, when
        // a signature made mail-auth compute it, is ours too.
        let known_body_hash = parsed
            .body_hashes
            .iter()
            .find(|(c, h, l, _)| {
                *c == Canonicalization::Relaxed && *h == HashAlgorithm::Sha256 && *l == 0
            })
            .map(|(_, _, _, bh)| (message.len() - parsed.body_offset(), bh.as_slice()));
        let added = self
            .signer
            .sign(signed, seal, known_body_hash)
            .map_err(|e| {
                tracing::error!(error = %e, "cannot sign a message");
                SIGN_FAILURE
            })?;
        let verdict_line = format!(
            "{} from_rewritten={from_state} arc_sealed={}",
            verdicts.summary(),
            if sealing { "yes" } else { "no" }
        );
        let mut out = Vec::with_capacity(added.len() + ar_header.len() + signed.len());
        out.extend_from_slice(&added);
        out.extend_from_slice(ar_header.as_bytes());
        out.extend_from_slice(signed);
        Ok(Prepared {
            message: out,
            verdicts: verdict_line,
            sender_authenticated: verdicts.sender_authenticated(),
        })
    }

    /// Signs without verdicts (auth off, or checks timed out).
    fn sign_only(&self, message: Vec<u8>, line: String) -> Result<Prepared, Reply> {
        if self.signer.is_idle() {
            return Ok(Prepared {
                message,
                verdicts: line,
                sender_authenticated: false,
            });
        }
        let added = self.signer.sign(&message, None, None).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a message");
            SIGN_FAILURE
        })?;
        let mut out = Vec::with_capacity(added.len() + message.len());
        out.extend_from_slice(&added);
        out.extend_from_slice(&message);
        Ok(Prepared {
            message: out,
            verdicts: line,
            sender_authenticated: false,
        })
    }

    /// From rewritten when the sender's domain is DMARC-strict and nothing
    /// aligned will survive forwarding: "yes", "no", or "refused" (malformed
    /// From; logged).
    fn rewrite_from(
        &self,
        message: &[u8],
        verdicts: &Verdicts<'_>,
        inbound: &Inbound<'_>,
    ) -> (Option<Vec<u8>>, &'static str) {
        let Some(from) = &self.from else {
            return (None, "no");
        };
        if !verdicts.strict_dmarc_policy() || verdicts.dkim_aligned() {
            return (None, "no");
        }
        match from.rewrite(message) {
            Ok(rewritten) => (Some(rewritten), "yes"),
            Err(why) => {
                tracing::warn!(
                    client = %inbound.client_ip,
                    from = %inbound.mail_from,
                    domain = %verdicts.dmarc.domain(),
                    reason = %why,
                    "From of a DMARC-strict sender not rewritten; forwarding it unchanged"
                );
                (None, "refused")
            }
        }
    }
}

/// The inbound ARC chain can be continued: it passed, or there is none at
/// all. A chain that failed (or that we could not check) is not sealed: RFC
/// 8617 §5.1.2 would have us seal it with cv=fail over our own set only,
/// which mail-auth's sealer cannot do (it signs every earlier set, and for a
/// malformed chain restarts at i=1); a cv=fail chain is worthless to every
/// later receiver, and our Authentication-Results still says arc=fail.
fn sealable(message: &AuthenticatedMessage<'_>, chain: &ArcOutput<'_>) -> bool {
    match chain.result() {
        DkimResult::Pass => chain.can_be_sealed(),
        DkimResult::None => {
            !message.has_arc_errors
                && message.ams_headers.is_empty()
                && message.as_headers.is_empty()
                && message.aar_headers.is_empty()
        }
        _ => false,
    }
}

fn log_setup(config: &Config, signer: &Signer) {
    let dkim: Vec<&str> = signer.dkim_selectors().collect();
    tracing::info!(
        auth = config.auth.enabled,
        dkim_domain = config.dkim_domain(),
        dkim_selectors = ?dkim,
        arc_selector = signer.arc_selector().unwrap_or("-"),
        from_rewrite = config.auth.enabled && config.rewrite.from_for_strict_dmarc,
        "forwarding pipeline ready"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `eas-relay dns records` builds the pipeline outside any runtime.
    #[test]
    fn builds_without_a_runtime_and_lists_the_records_to_publish() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            hostname: "mx.relay.test".into(),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.outbound.nameservers = vec!["127.0.0.1:53".parse().unwrap()];
        let forwarding = Forwarding::new(&config).unwrap();
        let records = forwarding.dkim_records();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, "eas-ed25519");
        assert!(records[0].1.starts_with("v=DKIM1; k=ed25519; p="));
        assert_eq!(records[1].0, "eas-rsa");
        assert!(records[1].1.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
        // Built again (a restart), the same keys are published.
        assert_eq!(Forwarding::new(&config).unwrap().dkim_records(), records);
    }

    #[test]
    fn nothing_to_load_when_everything_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.auth.enabled = false;
        config.dkim.enabled = false;
        let forwarding = Forwarding::new(&config).unwrap();
        assert!(forwarding.dkim_records().is_empty());
        assert!(!dir.path().join("dkim").exists(), "no key generated");
    }

    #[test]
    fn a_bad_arc_selector_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.auth.enabled = true;
        config.arc.selector = "nope".into();
        config.outbound.nameservers = vec!["127.0.0.1:53".parse().unwrap()];
        let err = Forwarding::new(&config).err().unwrap().to_string();
        assert!(
            err.contains("`arc.selector`") && err.contains("nope"),
            "{err}"
        );
        assert!(err.contains("eas-ed25519, eas-rsa"), "{err}");
    }
}
