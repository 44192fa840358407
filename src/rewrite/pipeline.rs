//! The one step the SMTP session calls at the end of DATA: verify the
//! inbound message (SPF, DKIM, ARC, DMARC), refuse or defer it by policy,
//! rewrite From for DMARC-strict senders, then sign (DKIM) and seal (ARC)
//! it, returning the exact bytes to queue.

use crate::auth::{self, Envelope, Verdicts, Verifier};
use crate::config::Config;
use crate::reply::Reply;
use crate::rewrite::from::FromRewrite;
use crate::rewrite::keys::{self, DkimKeyError, SelectorKey};
use crate::rewrite::results;
use crate::rewrite::sign::{Seal, Signer};
use crate::spool::{Body, Message};
use mail_auth::common::crypto::HashAlgorithm;
use mail_auth::dkim::Canonicalization;
use mail_auth::{ArcOutput, AuthenticatedMessage, DkimResult};

/// What the session knows about the message's arrival.
pub struct Inbound<'a> {
    pub client_ip: std::net::IpAddr,
    pub helo: &'a str,
    /// envelope sender as received, "" = null sender
    pub mail_from: &'a str,
    /// The content scan's verdict, e.g. `rspamd: no action, score=1.20`:
    /// a comment after our authserv-id in Authentication-Results and in
    /// the ARC set's results.
    pub scan: Option<&'a str>,
}

pub struct Prepared {
    /// the message to queue: our added headers (ARC set, DKIM-Signature(s),
    /// Authentication-Results), then the message's header section (From
    /// possibly rewritten, forged results of ours removed), then the body
    pub message: Message,
    /// one line for the log, e.g. "spf=pass dkim=pass dmarc=pass arc=none from_rewritten=no"
    pub verdicts: String,
    /// The envelope sender passed SPF, or a DKIM signature aligned with the
    /// From domain passed: a DSN to it is no backscatter. False when
    /// verification is off or timed out.
    pub sender_authenticated: bool,
}

impl Prepared {
    /// The whole message as bytes (reads a body that is in a file; for
    /// tests and tools, never on the delivery path).
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.message.head.clone();
        match &self.message.body {
            Body::Memory(bytes) => out.extend_from_slice(bytes),
            Body::File(_) => {
                let _ = self
                    .message
                    .body
                    .for_each_chunk(|c| out.extend_from_slice(c));
            }
        }
        out
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field(
                "message",
                &format_args!(
                    "{} + {} bytes",
                    self.message.head.len(),
                    self.message.body.len()
                ),
            )
            .field("verdicts", &self.verdicts)
            .finish()
    }
}

/// A message as it arrived: its header section (with our Received field on
/// top), its body, and the body's relaxed SHA-256 DKIM hash.
pub struct Arrived {
    pub header: Vec<u8>,
    pub body: Body,
    pub body_hash: Vec<u8>,
}

impl Arrived {
    /// Splits a whole message held in memory (tests, tools).
    pub fn from_bytes(message: Vec<u8>) -> Arrived {
        let mut header = message;
        let end = if header.starts_with(b"\r\n") {
            Some(2)
        } else {
            memchr::memmem::find(&header, b"\r\n\r\n").map(|p| p + 4)
        };
        let body = match end {
            Some(end) => header.split_off(end.min(header.len())),
            None => Vec::new(),
        };
        let body_hash = HashAlgorithm::Sha256
            .hash(Canonicalization::Relaxed.canonical_body(&body, 0))
            .as_ref()
            .to_vec();
        Arrived {
            header,
            body: Body::Memory(body),
            body_hash,
        }
    }
}

/// The owned facts of [`Inbound`], for work moved to another thread.
struct InboundOwned {
    client_ip: std::net::IpAddr,
    helo: String,
    mail_from: String,
    scan: Option<String>,
}

/// Why the forwarding step cannot be set up (at startup).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Key(#[from] DkimKeyError),
    #[error("cannot set up DKIM/ARC signing: {0}")]
    Signer(String),
    #[error("cannot set up sender verification: {0}")]
    Verifier(String),
}

/// Messages checked and signed at once. A heavy message (see [`is_light`])
/// is checked on a thread of the blocking pool: the CPU-heavy work (body
/// hashes of a file, many DKIM and ARC verifications) never runs on the
/// threads that serve sessions, and a flood of hostile messages waits here
/// instead of taking them all.
/// Threads mostly wait for DNS, so there are more of them than cores.
const CHECK_THREADS: usize = 32;

/// Largest header section a message may have to be checked on the
/// session's own thread ([`is_light`]).
const LIGHT_HEADER_MAX: usize = 16 * 1024;

/// Most signature fields (DKIM-Signature, ARC-Seal, ARC-Message-Signature)
/// a message may carry to be checked on the session's own thread.
const LIGHT_SIGNATURES_MAX: usize = 3;

/// Whether checking `arrived` is cheap enough for a session thread: a body
/// in memory (no file to read for other body hashes), a small header
/// section, few signatures to verify. Hostile messages (hundreds of
/// signatures, a huge header) are not light and wait for the pool.
fn is_light(arrived: &Arrived) -> bool {
    if !matches!(arrived.body, Body::Memory(_)) || arrived.header.len() > LIGHT_HEADER_MAX {
        return false;
    }
    let signatures = crate::message::header_fields(&arrived.header)
        .filter(|(name, _)| {
            name.eq_ignore_ascii_case(b"dkim-signature")
                || name.eq_ignore_ascii_case(b"arc-seal")
                || name.eq_ignore_ascii_case(b"arc-message-signature")
        })
        .take(LIGHT_SIGNATURES_MAX + 1)
        .count();
    signatures <= LIGHT_SIGNATURES_MAX
}

/// Verification, From rewriting and signing, shared by every session.
pub struct Forwarding {
    /// None when auth.enabled is off.
    verifier: Option<Verifier>,
    /// None when rewrite.from_for_strict_dmarc is off.
    from: Option<FromRewrite>,
    signer: Signer,
    keys: Vec<SelectorKey>,
    /// The authserv-id of our results (our host name).
    authserv_id: String,
    /// Our signing domain (what seals our own ARC sets).
    dkim_domain: String,
    max_dkim_signatures: usize,
    checks: std::sync::Arc<tokio::sync::Semaphore>,
}

/// `451` for a local fault while checking a message (a body that cannot
/// be read back, a check that died).
const LOCAL_FAILURE: Reply = Reply::new(
    451,
    [4, 3, 0],
    "Temporary local problem checking the message, try again later",
);

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
            authserv_id: config.hostname.clone(),
            dkim_domain: config.dkim_domain().to_ascii_lowercase(),
            max_dkim_signatures: config.auth.max_dkim_signatures,
            checks: std::sync::Arc::new(tokio::sync::Semaphore::new(CHECK_THREADS)),
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

    /// Verify, decide, rewrite, sign a whole message held in memory.
    /// Err(reply) = refuse with that reply (550 5.7.1 or 451 4.7.x).
    pub async fn prepare(
        &self,
        message: Vec<u8>,
        inbound: &Inbound<'_>,
    ) -> Result<Prepared, Reply> {
        self.prepare_arrived(Arrived::from_bytes(message), inbound)
            .await
    }

    /// [`Forwarding::prepare_arrived`] on a thread of the bounded check
    /// pool (see [`CHECK_THREADS`]); the session's own thread only waits.
    /// A light message is checked in place, under the same bound.
    pub async fn prepare_on_pool(
        self: std::sync::Arc<Self>,
        arrived: Arrived,
        inbound: &Inbound<'_>,
    ) -> Result<Prepared, Reply> {
        // Nothing to verify or sign (auth off, no DKIM/ARC keys): what is
        // left is a scan of the header in memory, cheaper than the hand-off
        // to a pool thread that every message would otherwise pay.
        if self.verifier.is_none() && self.signer.is_idle() {
            return self.prepare_arrived(arrived, inbound).await;
        }
        // A light message (small header in memory, at most a few
        // signatures to verify, body in memory) costs about what one
        // signature of ours costs: checked here, it saves two thread
        // hand-offs per message. Everything heavier goes to the pool.
        if is_light(&arrived) {
            let Ok(_permit) = self.checks.acquire().await else {
                return Err(LOCAL_FAILURE);
            };
            return self.prepare_arrived(arrived, inbound).await;
        }
        let Ok(permit) = self.checks.clone().acquire_owned().await else {
            return Err(LOCAL_FAILURE);
        };
        let owned = InboundOwned {
            client_ip: inbound.client_ip,
            helo: inbound.helo.to_string(),
            mail_from: inbound.mail_from.to_string(),
            scan: inbound.scan.map(str::to_string),
        };
        let handle = tokio::runtime::Handle::current();
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let inbound = Inbound {
                client_ip: owned.client_ip,
                helo: &owned.helo,
                mail_from: &owned.mail_from,
                scan: owned.scan.as_deref(),
            };
            handle.block_on(self.prepare_arrived(arrived, &inbound))
        });
        job.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "message checks failed");
            Err(LOCAL_FAILURE)
        })
    }

    /// Verify, decide, rewrite, sign. The body is read (in chunks, when it
    /// is in a file) only for the body hashes of signatures other than
    /// relaxed/SHA-256. Blocks on file reads and hashing: run it where that
    /// is fine ([`Forwarding::prepare_on_pool`]).
    pub async fn prepare_arrived(
        &self,
        arrived: Arrived,
        inbound: &Inbound<'_>,
    ) -> Result<Prepared, Reply> {
        let Arrived {
            header,
            body,
            body_hash,
        } = arrived;
        // RFC 8601 §5: no result in our name but our own goes on.
        let stripped = results::strip_own(&header, &self.authserv_id);
        let Some(verifier) = &self.verifier else {
            let header = stripped.unwrap_or(header);
            return self.sign_only(
                header,
                body,
                &body_hash,
                "auth=off from_rewritten=no".into(),
            );
        };
        let mut parsed =
            AuthenticatedMessage::parse(&header).unwrap_or_else(|| AuthenticatedMessage {
                raw_message: &header,
                body_offset: header.len() as u32,
                ..AuthenticatedMessage::default()
            });
        self.limit_signatures(&mut parsed);
        if let Err(e) = auth::body::fill(&mut parsed, &header, &body, &body_hash) {
            tracing::error!(error = %e, "cannot read an incoming message body");
            return Err(LOCAL_FAILURE);
        }
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
                let header = stripped.unwrap_or(header);
                return self.sign_only(
                    header,
                    body,
                    &body_hash,
                    "auth=timeout from_rewritten=no".into(),
                );
            }
        };
        if let Some(reply) = verifier.refusal(&verdicts) {
            return Err(reply);
        }
        let authserv = match inbound.scan {
            Some(scan) => format!("{} ({})", self.authserv_id, comment_safe(scan)),
            None => self.authserv_id.clone(),
        };
        let results = verifier.results(&verdicts, &parsed, &envelope, &authserv);
        let ar_header = auth::authentication_results_header(&results, &verdicts);

        let base: &[u8] = stripped.as_deref().unwrap_or(&header);
        let (rewritten, from_state) = self.rewrite_from(base, &verdicts, inbound);
        let signed: &[u8] = rewritten.as_deref().unwrap_or(base);
        let forged_arc = results::forged_arc_results(&parsed, &self.authserv_id, &self.dkim_domain);
        if forged_arc {
            tracing::warn!(
                client = %inbound.client_ip,
                "ARC chain has results in our name that we did not seal: not continued"
            );
        }
        let seal = (!forged_arc && sealable(&parsed, &verdicts.arc)).then_some(Seal {
            results: &results,
            chain: &verdicts.arc,
        });
        let sealing = seal.is_some() && self.signer.arc_selector().is_some();
        let our_hash = self.signed_body_hash(signed, &body, &body_hash)?;
        let added = self.signer.sign(signed, seal, &our_hash).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a message");
            SIGN_FAILURE
        })?;
        let verdict_line = format!(
            "{} from_rewritten={from_state} arc_sealed={}{}",
            verdicts.summary(),
            if sealing { "yes" } else { "no" },
            if forged_arc { " arc_untrusted=yes" } else { "" },
        );
        let mut head = Vec::with_capacity(added.len() + ar_header.len() + signed.len());
        head.extend_from_slice(&added);
        head.extend_from_slice(ar_header.as_bytes());
        head.extend_from_slice(signed);
        Ok(Prepared {
            message: Message { head, body },
            verdicts: verdict_line,
            sender_authenticated: verdicts.sender_authenticated(),
        })
    }

    /// Keeps the first `auth.max_dkim_signatures` DKIM signatures (the
    /// topmost, added last) and as many malformed ones: verifying each costs
    /// a DNS lookup and a public-key operation, and a hostile message may
    /// carry hundreds (RFC 6376 §6.1 lets a verifier limit them).
    fn limit_signatures(&self, parsed: &mut AuthenticatedMessage<'_>) {
        let max = self.max_dkim_signatures;
        if parsed.dkim_headers.len() > max {
            tracing::info!(
                signatures = parsed.dkim_headers.len(),
                checked = max,
                "DKIM signatures beyond the limit not checked"
            );
            parsed.dkim_headers.truncate(max);
        }
        let mut dkim_errors = 0usize;
        parsed.errors.retain(|e| {
            if matches!(e.header, mail_auth::Error::Dkim(_)) {
                dkim_errors += 1;
                dkim_errors <= max
            } else {
                true
            }
        });
    }

    /// The relaxed SHA-256 hash of what follows the header fields of
    /// `header` (our signer's body): the hash computed on arrival, unless
    /// the header section ends before the end of `header`.
    fn signed_body_hash(
        &self,
        header: &[u8],
        body: &Body,
        body_hash: &[u8],
    ) -> Result<Vec<u8>, Reply> {
        let (_, offset) = crate::rewrite::sign::header_fields(header);
        let rest = header.get(offset..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(body_hash.to_vec());
        }
        let wanted = [(Canonicalization::Relaxed, HashAlgorithm::Sha256, 0)];
        auth::body::hashes(rest, body, &wanted)
            .ok()
            .and_then(|mut h| h.pop())
            .ok_or(LOCAL_FAILURE)
    }

    /// Signs without verdicts (auth off, or checks timed out).
    fn sign_only(
        &self,
        header: Vec<u8>,
        body: Body,
        body_hash: &[u8],
        line: String,
    ) -> Result<Prepared, Reply> {
        if self.signer.is_idle() {
            return Ok(Prepared {
                message: Message { head: header, body },
                verdicts: line,
                sender_authenticated: false,
            });
        }
        let our_hash = self.signed_body_hash(&header, &body, body_hash)?;
        let added = self.signer.sign(&header, None, &our_hash).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a message");
            SIGN_FAILURE
        })?;
        let mut head = Vec::with_capacity(added.len() + header.len());
        head.extend_from_slice(&added);
        head.extend_from_slice(&header);
        Ok(Prepared {
            message: Message { head, body },
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

/// Text that may stand in a header comment: printable ASCII without the
/// characters that end or nest a comment, or escape.
fn comment_safe(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| !matches!(c, '(' | ')' | '\\'))
        .take(200)
        .collect()
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

    /// What runs on a session's thread must stay cheap: a message with
    /// many signatures or a large header goes to the check pool (the
    /// defence of `five_hundred_dkim_signatures_do_not_stall_other_sessions`).
    #[test]
    fn many_signatures_or_a_large_header_are_not_checked_on_session_threads() {
        let message = |fields: &str| {
            Arrived::from_bytes(format!("{fields}From: a@b.test\r\n\r\nhello\r\n").into_bytes())
        };
        assert!(is_light(&message("")));
        assert!(is_light(&message(
            "DKIM-Signature: v=1; d=b.test\r\nARC-Seal: i=1\r\nARC-Message-Signature: i=1\r\n"
        )));
        assert!(!is_light(&message(
            &"dkim-signature: v=1; d=b.test\r\n".repeat(4)
        )));
        assert!(!is_light(&message(
            "DKIM-Signature: v=1\r\nARC-Seal: i=1\r\nARC-Message-Signature: i=1\r\nArc-Seal: i=2\r\n"
        )));
        let padding = format!("X-Pad: {}\r\n", "p".repeat(100)).repeat(200);
        assert!(!is_light(&message(&padding)));
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
