//! DATA and BDAT (CHUNKING), and the end of a message: loop check, trace
//! header, then the durable queue — `250` only once the message is on disk.

use super::reply::Reply;
use super::session::{Flow, Io, Session, State, Transaction, oversize_reply};
use crate::message::{count_received, has_8bit, header_value, normalize_crlf, rfc2822_now};
use crate::store::{QueueEntry, QueuedRecipient, RcptStatus, format_queue_id, now_ms};
use smtp_proto::request::receiver::{BdatReceiver, DataReceiver, DummyDataReceiver};
use std::collections::HashSet;

impl<T: Io> Session<T> {
    pub(super) fn data(&mut self) -> Flow {
        let Some(txn) = &self.txn else {
            return self.error(Reply::new(503, [5, 5, 1], "Error: need MAIL command"));
        };
        if txn.recipients.is_empty() {
            return self.error(Reply::new(554, [5, 5, 1], "Error: no valid recipients"));
        }
        if !txn.body.is_empty() || txn.failed.is_some() {
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
        self.state = State::Data(primed_data_receiver());
        Flow::Continue
    }

    pub(super) async fn bdat(&mut self, size: usize, last: bool) -> Flow {
        let max = self.ctx.config.smtp.max_message_size.0;
        let refusal = match &mut self.txn {
            None => Some(Reply::new(503, [5, 5, 1], "Error: need MAIL command")),
            Some(txn) if txn.recipients.is_empty() => {
                Some(Reply::new(554, [5, 5, 1], "Error: no valid recipients"))
            }
            Some(txn) if txn.failed.is_some() => txn.failed.clone(),
            Some(txn) if (txn.body.len() as u64).saturating_add(size as u64) > max => {
                txn.body = Vec::new();
                txn.failed = Some(oversize_reply());
                txn.failed.clone()
            }
            Some(_) => None,
        };
        match refusal {
            Some(reply) => {
                self.state = State::BdatDiscard {
                    receiver: DummyDataReceiver::new_bdat(size),
                    reply: reply.clone(),
                    last,
                };
                if size == 0 {
                    self.state = State::Command;
                    return self.bdat_refused(reply, last);
                }
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

    /// A refused BDAT chunk was drained.
    pub(super) fn bdat_refused(&mut self, reply: Reply, last: bool) -> Flow {
        if last {
            self.txn = None;
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
        let reply = self.accept(txn).await;
        if reply.is_positive() {
            self.reply(&reply);
            Flow::Continue
        } else if reply.code == 554 {
            self.reject(reply, "loop")
        } else {
            self.reply(&reply);
            Flow::Continue
        }
    }

    async fn accept(&mut self, txn: Transaction) -> Reply {
        let config = &self.ctx.config;
        let body = normalize_crlf(txn.body);
        if count_received(&body) >= config.smtp.max_received_headers {
            return Reply::new(554, [5, 4, 6], "Error: too many hops, mail loop detected");
        }
        let id = self.ctx.store.next_queue_id();
        let received = self.received_header(id, &txn.recipients, txn.smtputf8);
        let now = now_ms();
        let mut seen = HashSet::new();
        let mut recipients = Vec::new();
        for accepted in &txn.recipients {
            for dest in &accepted.destinations {
                if seen.insert(dest.to_lowercase()) {
                    recipients.push(QueuedRecipient {
                        address: dest.clone(),
                        rcpt: accepted.rcpt.clone(),
                        alias: accepted.alias.clone(),
                        status: RcptStatus::Pending,
                        attempts: 0,
                        next_attempt: now,
                        last_reply: None,
                    });
                }
            }
        }
        let entry = QueueEntry {
            id,
            sender: txn.sender,
            created: now,
            size: (received.len() + body.len()) as u64,
            client_ip: Some(self.peer.ip().to_string()),
            helo: self.helo.as_ref().map(|h| h.name.clone()),
            message_id: header_value(&body, "message-id"),
            subject: header_value(&body, "subject"),
            smtputf8: txn.smtputf8,
            body_8bit: has_8bit(&body),
            is_dsn: false,
            recipients,
            due: None,
        };
        let mut message = Vec::with_capacity(received.len() + body.len());
        message.extend_from_slice(received.as_bytes());
        message.extend_from_slice(&body);
        drop(body);
        let sender = entry.sender.clone();
        let count = entry.recipients.len();
        match self.ctx.queue.enqueue(entry, message).await {
            Ok(id) => {
                metrics::counter!("eas_messages_accepted_total").increment(1);
                tracing::info!(
                    id = %format_queue_id(id),
                    from = %sender,
                    client = %self.peer.ip(),
                    recipients = count,
                    "message queued"
                );
                Reply::owned(
                    250,
                    [2, 0, 0],
                    format!("Ok: queued as {}", format_queue_id(id)),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot queue message");
                metrics::counter!("eas_messages_rejected_total", "reason" => "queue_error")
                    .increment(1);
                Reply::new(
                    451,
                    [4, 3, 0],
                    "Error: temporary failure, message not queued",
                )
            }
        }
    }

    /// Our trace header (RFC 5321 §4.4). The recipient is named only when
    /// there is one, and it is the alias, never the forwarding address.
    fn received_header(
        &self,
        id: u64,
        recipients: &[super::session::AcceptedRecipient],
        smtputf8: bool,
    ) -> String {
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

/// A DATA receiver that knows the body starts at the beginning of a line,
/// so that `.` or `..` on the very first line is handled like any other.
fn primed_data_receiver() -> DataReceiver {
    let mut receiver = DataReceiver::new();
    let mut scratch = Vec::new();
    receiver.ingest(&mut b"\r\n".iter(), &mut scratch);
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(chunks: &[&[u8]]) -> Option<Vec<u8>> {
        let mut r = primed_data_receiver();
        let mut body = Vec::new();
        for chunk in chunks {
            if r.ingest(&mut chunk.iter(), &mut body) {
                return Some(body);
            }
        }
        None
    }

    #[test]
    fn first_line_dot_handling() {
        assert_eq!(receive(&[b".\r\n"]), Some(vec![]));
        assert_eq!(receive(&[b"..x\r\n.\r\n"]), Some(b".x\r\n".to_vec()));
        assert_eq!(
            receive(&[b"a\r\n..b\r\n.", b"\r\n"]),
            Some(b"a\r\n.b\r\n".to_vec())
        );
        assert_eq!(
            receive(&[b"a\n.\nb\r\n"]),
            None,
            "bare LF dot does not end data"
        );
    }
}
