//! DATA and BDAT (CHUNKING), and the end of a message: loop check, trace
//! header, content scan (`scan.rs`), then the durable queue — `250` only once the message is on disk.

use super::incoming::oversize_reply;
use super::receiver::{DataReceiver, declared_chunk_size};
use super::scan::{Scanned, Transacted};
use super::session::{Flow, Io, Session, State, Transaction};
use crate::message::{count_received, header_value, rfc2822_now};
use crate::queue::{Accepted, AcceptedRecipient, Queued};
use crate::reply::Reply;
use crate::rewrite::envelope;
use crate::rewrite::pipeline::{self, Inbound};
use crate::store::{format_queue_id, now_ms};
use smtp_proto::request::receiver::{BdatReceiver, DummyDataReceiver};

impl<T: Io> Session<T> {
    pub(super) fn data(&mut self) -> Flow {
        let Some(txn) = &self.txn else {
            return self.error(Reply::new(503, [5, 5, 1], "Error: need MAIL command"));
        };
        if txn.recipients.is_empty() {
            return self.error(Reply::new(554, [5, 5, 1], "Error: no valid recipients"));
        }
        if txn.chunking {
            return self.error(Reply::new(
                503,
                [5, 5, 1],
                "Error: BDAT transaction in progress",
            ));
        }
        self.reply(&Reply {
            code: 354,
            enhanced: None,
            text: "End data with <CR><LF>.<CR><LF>".into(),
        });
        self.state = State::Data(DataReceiver::new());
        Flow::Continue
    }

    pub(super) async fn bdat(&mut self, size: usize, last: bool, line: &[u8]) -> Flow {
        if declared_chunk_size(line) != Some(size as u64) {
            // smtp-proto 0.2.5 wraps sizes of 21 digits or more to small
            // numbers; reading the wrong number of bytes would desync the
            // stream, so the only safe answer is to end the session.
            let text = format!(
                "{} Error: BDAT chunk size out of range",
                self.ctx.config.hostname
            );
            self.reply(&Reply::owned(421, [4, 7, 0], text));
            return Flow::Close;
        }
        let max = self.ctx.config.smtp.max_message_size.0;
        // The refusal, and whether it is news (a client error to count) or
        // the repeat of a failure already answered in this transaction.
        let refusal = match &mut self.txn {
            None => Some((Reply::new(503, [5, 5, 1], "Error: need MAIL command"), true)),
            Some(txn) if txn.recipients.is_empty() => Some((
                Reply::new(554, [5, 5, 1], "Error: no valid recipients"),
                true,
            )),
            Some(txn) if txn.failed.is_some() => txn.failed.clone().map(|r| (r, false)),
            Some(txn) if txn.incoming.size().saturating_add(size as u64) > max => {
                txn.chunking = true;
                txn.incoming.discard();
                txn.failed = Some(oversize_reply());
                Some((oversize_reply(), true))
            }
            Some(txn) => {
                txn.chunking = true;
                None
            }
        };
        match refusal {
            Some((reply, count)) => {
                if size == 0 {
                    return self.bdat_refused(reply, last, count);
                }
                self.state = State::BdatDiscard {
                    receiver: DummyDataReceiver::new_bdat(size),
                    reply,
                    last,
                    count,
                };
                Flow::Continue
            }
            None => {
                if size == 0 {
                    return self.bdat_chunk_done(0, last).await;
                }
                self.state = State::Bdat {
                    receiver: BdatReceiver::new(size, last),
                    size,
                };
                Flow::Continue
            }
        }
    }

    /// A BDAT chunk arrived whole.
    pub(super) async fn bdat_chunk_done(&mut self, size: usize, last: bool) -> Flow {
        if last {
            return self.end_of_message().await;
        }
        self.reply(&Reply::owned(
            250,
            [2, 0, 0],
            format!("{size} octets received"),
        ));
        Flow::Continue
    }

    /// A refused BDAT chunk was drained. A chunk refused only because an
    /// earlier one failed is not counted again: a pipelining client sends
    /// all its chunks before it sees the first refusal, and must hear the
    /// permanent 552 at LAST rather than a 421 for "too many errors".
    pub(super) fn bdat_refused(&mut self, reply: Reply, last: bool, count: bool) -> Flow {
        if last {
            self.txn = None;
        }
        if !count {
            self.reply(&reply);
            return Flow::Continue;
        }
        let reason = if reply.code == 552 {
            "too_big"
        } else {
            "protocol"
        };
        self.reject(reply, reason)
    }

    /// The whole message is in: check it, queue it durably, answer.
    pub(super) async fn end_of_message(&mut self) -> Flow {
        let Some(txn) = self.txn.take() else {
            return self.error(Reply::new(503, [5, 5, 1], "Error: need MAIL command"));
        };
        // A bounce uses its address's daily budget when it is accepted, not
        // at RCPT (RCPT then RSET must not spend it); taken before queueing
        // so that concurrent sessions cannot overrun it, given back if the
        // message is not accepted after all.
        let bounce = txn.bounce_to.clone();
        if let Some(to) = &bounce
            && !self.ctx.guards.bounces.take(to)
        {
            return self.reject(super::rcpt::bounce_cap_reply(), "srs_bounce_cap");
        }
        // Boxed: the end of a message (checks, queueing) is a large future
        // that idle sessions need not carry.
        let result = Box::pin(self.accept(txn)).await;
        let accepted = matches!(&result, Ok(reply) if reply.code == 250);
        if let Some(to) = &bounce
            && !accepted
        {
            self.ctx.guards.bounces.give_back(to);
        }
        if accepted {
            self.progress();
        }
        match result {
            Ok(reply) => {
                self.reply(&reply);
                Flow::Continue
            }
            Err((reply, reason)) => self.reject(reply, reason),
        }
    }

    /// Checks, prepares (verdicts, rewriting, signatures) and queues the
    /// message; Err carries the refusal and its metrics reason.
    async fn accept(&mut self, txn: Transaction) -> Result<Reply, (Reply, &'static str)> {
        let arrived = match txn.incoming.finish().await {
            Ok(arrived) => arrived,
            Err(refusal) => return Err((refusal.reply(), refusal.reason())),
        };
        let config = &self.ctx.config;
        if count_received(&arrived.header) >= config.smtp.max_received_headers {
            let reply = Reply::new(554, [5, 4, 6], "Error: too many hops, mail loop detected");
            return Err((reply, "loop"));
        }
        let id = self.ctx.store.next_queue_id();
        let received = self.received_header(id, &txn.recipients, txn.smtputf8);
        let now = now_ms();
        let message_id = header_value(&arrived.header, "message-id");
        let subject = header_value(&arrived.header, "subject");
        let body_8bit = arrived.eight_bit;
        // The content scan sees the message as it arrived, before any
        // header of ours; its refusal comes before anything is queued.
        let mut spam_fields = String::new();
        let mut scan_comment = None;
        let mut spam = None;
        if let Some(scanner) = self.ctx.scanner.clone() {
            let scanned = self
                .scan(
                    &scanner,
                    &Transacted {
                        sender: &txn.sender,
                        recipients: &txn.recipients,
                        subject: subject.as_deref(),
                        message_id: message_id.as_deref(),
                    },
                    id,
                    &arrived.header,
                    &arrived.body,
                )
                .await;
            match scanned {
                Scanned::Forward {
                    fields,
                    comment,
                    log,
                } => {
                    spam_fields = fields;
                    scan_comment = Some(comment);
                    spam = log;
                }
                Scanned::Refuse(reply, reason) => return Err((reply, reason)),
            }
        }
        // A scanned message carries only our verdict: any the sender wrote
        // (X-Spam-Flag: NO …) is removed.
        let stripped = match self.ctx.scanner {
            Some(_) => crate::scan::strip_spam_fields(&arrived.header),
            None => None,
        };
        let original = stripped.as_deref().unwrap_or(&arrived.header);
        let mut header = Vec::with_capacity(received.len() + spam_fields.len() + original.len());
        header.extend_from_slice(received.as_bytes());
        header.extend_from_slice(spam_fields.as_bytes());
        header.extend_from_slice(original);
        let helo = self.helo.as_ref().map(|h| h.name.clone());
        let inbound = Inbound {
            client_ip: self.peer.ip(),
            helo: helo.as_deref().unwrap_or(""),
            mail_from: &txn.sender,
            scan: scan_comment.as_deref(),
        };
        let message = pipeline::Arrived {
            header,
            body: arrived.body,
            body_hash: arrived.body_hash,
        };
        let forwarding = self.ctx.forwarding.clone();
        let prepared = match forwarding.prepare_on_pool(message, &inbound).await {
            Ok(prepared) => prepared,
            Err(reply) => {
                let reason = if reply.is_permanent() {
                    "dmarc"
                } else {
                    "auth_tempfail"
                };
                tracing::info!(from = %txn.sender, client = %self.peer.ip(), %reply, "message refused");
                return Err((reply, reason));
            }
        };
        let accepted = Accepted {
            id,
            created: now,
            envelope_from: envelope::srs_sender(
                self.ctx.srs.as_ref(),
                &self.ctx.store,
                &txn.sender,
            ),
            sender: txn.sender,
            client_ip: self.peer.ip(),
            helo,
            message_id,
            subject,
            smtputf8: txn.smtputf8,
            body_8bit,
            sender_authenticated: prepared.sender_authenticated,
            recipients: txn.recipients,
            spam,
        };
        let sender = accepted.sender.clone();
        match self.ctx.queue.accept(accepted, prepared.message).await {
            Ok(Queued {
                id,
                recipients: count,
            }) => {
                metrics::counter!("eas_messages_accepted_total").increment(1);
                tracing::info!(
                    id = %format_queue_id(id),
                    from = %sender,
                    client = %self.peer.ip(),
                    recipients = count,
                    verdicts = %prepared.verdicts,
                    "message queued"
                );
                Ok(Reply::owned(
                    250,
                    [2, 0, 0],
                    format!("Ok: queued as {}", format_queue_id(id)),
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot queue message");
                metrics::counter!("eas_messages_rejected_total", "reason" => "queue_error")
                    .increment(1);
                Ok(Reply::new(
                    451,
                    [4, 3, 0],
                    "Error: temporary failure, message not queued",
                ))
            }
        }
    }

    /// Our trace header (RFC 5321 §4.4). The recipient is named only when
    /// there is one, and it is the alias, never the forwarding address.
    fn received_header(&self, id: u64, recipients: &[AcceptedRecipient], smtputf8: bool) -> String {
        let helo = self.helo.as_ref();
        // RFC 3848 / RFC 6531 §3.7.3 protocol names.
        let mut protocol = String::from(match helo {
            _ if smtputf8 => "UTF8SMTP",
            Some(h) if h.esmtp => "ESMTP",
            _ => "SMTP",
        });
        if self.tls.is_some() {
            protocol.push('S');
        }
        let mut header = format!(
            "Received: from {} ([{}])\r\n\tby {} (eas-relay)",
            helo.map(|h| h.name.as_str()).unwrap_or("unknown"),
            self.peer.ip(),
            self.ctx.config.hostname,
        );
        if let Some(tls) = &self.tls {
            header.push_str(&format!("\r\n\t(using {tls})"));
        }
        header.push_str(&format!("\r\n\twith {protocol} id {}", format_queue_id(id)));
        if let [only] = recipients {
            header.push_str(&format!("\r\n\tfor <{}>", only.rcpt));
        }
        header.push_str(&format!("; {}\r\n", rfc2822_now()));
        header
    }
}
