//! The content scan at the end of DATA/BDAT (`crate::scan` asks rspamd):
//! the session's side. A refusal is answered before anything is queued,
//! and written to the delivery log of each recipient's domain with the
//! score and symbols; a forwarded message gets its `X-Spam-*` fields. When
//! rspamd cannot be asked, `scan.fail` decides: `451 4.7.1`, or forward
//! with `X-Spam-Status: Unknown`.

use super::session::{Io, Session};
use crate::config::{ScanFailMode, SpamHeaders};
use crate::queue::AcceptedRecipient;
use crate::reply::Reply;
use crate::scan::{Action, Envelope, Scanner, Verdict};
use crate::spool::Body;
use crate::store::{LogEntry, LogOutcome, SpamLog, SpamThresholds, format_queue_id, now_ms};

/// The message as the end of DATA has it: its envelope (the transaction
/// is partly taken apart by then) and what the log shows of it.
pub(super) struct Transacted<'a> {
    pub(super) sender: &'a str,
    pub(super) recipients: &'a [AcceptedRecipient],
    pub(super) subject: Option<&'a str>,
    pub(super) message_id: Option<&'a str>,
}

/// What the scan decided.
pub(super) enum Scanned {
    /// Forward, with these header fields (possibly none) added, and the
    /// verdict for our Authentication-Results.
    Forward {
        fields: String,
        comment: String,
        log: Option<SpamLog>,
    },
    /// Refuse with this reply; the metrics reason.
    Refuse(Reply, &'static str),
}

/// Most delivery-log rows written for one refused message.
const MAX_REFUSED_ROWS: usize = 10;

/// The reply while rspamd cannot be asked (tempfail mode).
const SCANNER_DOWN: Reply = Reply::new(
    451,
    [4, 7, 1],
    "Error: temporary failure of the content scan, try again later",
);

impl<T: Io> Session<T> {
    /// Scans the message `id` (its header section as it arrived, and body).
    pub(super) async fn scan(
        &self,
        scanner: &Scanner,
        txn: &Transacted<'_>,
        id: u64,
        header: &[u8],
        body: &Body,
    ) -> Scanned {
        let recipients: Vec<String> = txn.recipients.iter().map(|r| r.rcpt.clone()).collect();
        let queue_id = format_queue_id(id);
        let helo = self.helo.as_ref().map(|h| h.name.as_str()).unwrap_or("");
        let envelope = Envelope {
            client_ip: self.peer.ip(),
            helo,
            mail_from: txn.sender,
            recipients: &recipients,
            queue_id: &queue_id,
            user: None,
        };
        let verdict = match scanner.scan(&envelope, header, body).await {
            Ok(verdict) => verdict,
            Err(e) => {
                let fail = match e.may_pass_unscanned() {
                    true => scanner.fail_mode(),
                    // This message's own failure, or load: always deferred.
                    false => ScanFailMode::Tempfail,
                };
                return match fail {
                    ScanFailMode::Tempfail => {
                        tracing::warn!(id = %queue_id, client = %self.peer.ip(), error = %e, "scan failed: message deferred");
                        Scanned::Refuse(SCANNER_DOWN, "scan_unavailable")
                    }
                    ScanFailMode::Accept => {
                        tracing::warn!(id = %queue_id, client = %self.peer.ip(), error = %e, "scan failed: forwarding unscanned");
                        let fields = match scanner.headers() {
                            SpamHeaders::None => String::new(),
                            _ => "X-Spam-Status: Unknown (content scan unavailable)\r\n".into(),
                        };
                        Scanned::Forward {
                            fields,
                            comment: "rspamd: unavailable".into(),
                            log: None,
                        }
                    }
                };
            }
        };
        let thresholds = self.domain_thresholds(txn.recipients);
        let action = verdict.action_for(thresholds.iter().map(Option::as_ref));
        let symbols = verdict.symbol_list();
        let Some(reply) = verdict.refusal(action) else {
            tracing::info!(
                id = %queue_id,
                action = action.as_str(),
                score = verdict.score,
                symbols = %symbols,
                "scan: forwarded"
            );
            let all = scanner.headers() == SpamHeaders::All;
            let fields = match scanner.headers() {
                SpamHeaders::None => String::new(),
                _ => verdict.header_fields(action, all),
            };
            let comment = format!(
                "rspamd: {}, score={:.2} required={:.2}{}",
                action.as_str(),
                verdict.score,
                verdict.required,
                if verdict.truncated {
                    ", only the start scanned"
                } else {
                    ""
                }
            );
            return Scanned::Forward {
                fields,
                comment,
                log: Some(spam_log(&verdict, action)),
            };
        };
        let reason = if verdict.virus.is_some() {
            "virus"
        } else if reply.is_permanent() {
            "spam"
        } else {
            "spam_deferred"
        };
        tracing::info!(
            id = %queue_id,
            from = %txn.sender,
            client = %self.peer.ip(),
            action = action.as_str(),
            score = verdict.score,
            symbols = %symbols,
            virus = verdict.virus.as_deref().unwrap_or(""),
            %reply,
            "scan: refused"
        );
        let entries = refused_entries(id, txn, &verdict, action, &reply);
        if !self.ctx.queue.log_refused(entries).await {
            tracing::warn!(id = %queue_id, "scan: the refusal could not be written to the delivery log");
        }
        Scanned::Refuse(reply, reason)
    }

    /// Each recipient's domain thresholds (None: rspamd's); a store error
    /// counts as none (the scan still decides by rspamd's).
    fn domain_thresholds(&self, recipients: &[AcceptedRecipient]) -> Vec<Option<SpamThresholds>> {
        let mut domains: Vec<&str> = recipients
            .iter()
            .filter_map(|r| r.alias.rsplit_once('@').map(|(_, d)| d))
            .collect();
        domains.sort_unstable();
        domains.dedup();
        domains
            .into_iter()
            .map(|d| {
                self.ctx
                    .store
                    .domain_get(d)
                    .ok()
                    .flatten()
                    .and_then(|r| r.spam)
            })
            .collect()
    }
}

/// The verdict as the delivery log keeps it.
fn spam_log(verdict: &Verdict, action: Action) -> SpamLog {
    SpamLog {
        score: verdict.score,
        required: verdict.required,
        action: match &verdict.virus {
            Some(_) => "virus".into(),
            None => action.as_str().into(),
        },
        symbols: verdict.symbol_list(),
    }
}

/// One delivery-log row per recipient of a refused message.
fn refused_entries(
    id: u64,
    txn: &Transacted<'_>,
    verdict: &Verdict,
    action: Action,
    reply: &Reply,
) -> Vec<LogEntry> {
    let spam = spam_log(verdict, action);
    let now = now_ms();
    // One row per alias, and at most MAX_REFUSED_ROWS: a spammer's
    // hundred recipients must not cost a hundred rows per attempt.
    let mut aliases: Vec<&AcceptedRecipient> = Vec::new();
    for r in txn.recipients {
        if !aliases.iter().any(|a| a.alias == r.alias) {
            aliases.push(r);
        }
    }
    aliases.truncate(MAX_REFUSED_ROWS);
    aliases
        .into_iter()
        .map(|r| LogEntry {
            id: 0,
            time: now,
            queue_id: id,
            sender: txn.sender.to_string(),
            alias: r.alias.clone(),
            recipient: r.rcpt.clone(),
            forward: r.destinations.join(","),
            subject: txn.subject.map(str::to_string),
            message_id: txn.message_id.map(str::to_string),
            outcome: LogOutcome::Refused,
            code: reply.code,
            message: reply.to_string(),
            server: None,
            spam: Some(spam.clone()),
        })
        .collect()
}
