//! One SMTP session: reads bytes, frames command lines (with the configured
//! length limit), parses them with smtp-proto, dispatches to the verb
//! handlers, feeds DATA bodies to our strict receiver (`receiver.rs`) and BDAT
//! chunks to smtp-proto's, and flushes replies once the pipelined input at
//! hand is consumed (RFC 2920).

use super::SmtpContext;
use super::receiver::DataReceiver;
use crate::queue::AcceptedRecipient;
use crate::reply::Reply;
use memchr::memchr;
use smtp_proto::Request;
use smtp_proto::request::receiver::{BdatReceiver, DummyDataReceiver};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// A byte stream a session can run on (TCP, TLS over TCP, test streams).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Bytes read per call in DATA and BDAT.
const READ_BUFFER: usize = 8 * 1024;
/// How long past the session's lifetime its last reply may take to write.
const LAST_WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Bytes read per call between commands (a longer line is read in pieces).
const COMMAND_BUFFER: usize = 1024;

/// What the client said in HELO/EHLO.
pub(crate) struct Helo {
    pub(crate) name: String,
    pub(crate) esmtp: bool,
}

/// The mail transaction in progress (from MAIL to end of data).
pub(crate) struct Transaction {
    pub(crate) sender: String,
    pub(crate) smtputf8: bool,
    pub(crate) recipients: Vec<AcceptedRecipient>,
    /// Message bytes of the input at hand, on their way to `incoming`.
    pub(crate) body: Vec<u8>,
    /// The message so far (header in memory, body streamed to a file).
    pub(crate) incoming: super::incoming::Incoming,
    /// A BDAT chunk failed: the transaction ends with this reply at LAST.
    pub(crate) failed: Option<Reply>,
    /// BDAT chunks are being sent: the message is under way (no DATA now,
    /// and shutdown waits for it like for a message in DATA).
    pub(crate) chunking: bool,
    /// The transaction carries a bounce through an SRS address: to this
    /// original sender, whose daily budget it uses when accepted.
    pub(crate) bounce_to: Option<String>,
}

/// Where the byte stream is.
pub(crate) enum State {
    Command,
    Data(DataReceiver),
    /// Draining a DATA body that will be refused (limit crossed, or a
    /// local write failure).
    DataDiscard(DataReceiver, super::incoming::Refusal),
    Bdat {
        receiver: BdatReceiver,
        size: usize,
    },
    /// Draining a BDAT chunk that will be refused with the reply.
    BdatDiscard {
        receiver: DummyDataReceiver,
        reply: Reply,
        last: bool,
        /// The refusal counts as a client error (not a repeat).
        count: bool,
    },
}

/// What the session does after handling input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
    StartTls,
}

pub(crate) struct Session<T> {
    pub(crate) ctx: Arc<SmtpContext>,
    pub(crate) stream: T,
    pub(crate) peer: SocketAddr,
    pub(crate) state: State,
    pub(crate) helo: Option<Helo>,
    /// "TLSv1.3 with cipher ..." once STARTTLS completed.
    pub(crate) tls: Option<String>,
    pub(crate) txn: Option<Transaction>,
    line: Vec<u8>,
    line_overflow: bool,
    pub(crate) out: Vec<u8>,
    errors: usize,
    /// Commands without progress since the last accepted message.
    junk: usize,
    /// When the session must end, whatever it is doing.
    deadline: Instant,
    /// Screening is on and the client not allowlisted: no command may
    /// follow another in one read before EHLO/HELO is answered.
    pub(crate) strict_before_helo: bool,
    shutdown: watch::Receiver<bool>,
}

/// Runs a whole connection: greeting, session, STARTTLS upgrade.
pub(crate) async fn handle<T: Io>(
    ctx: Arc<SmtpContext>,
    stream: T,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    metrics::gauge!("eas_smtp_sessions_active").increment(1.0);
    let mut session = Session::new(ctx, stream, peer, shutdown);
    let greeted = match session.ctx.screen.clone() {
        Some(screen) => session.screen_and_greet(&screen).await == Flow::Continue,
        None => {
            session.greet();
            session.flush().await.is_ok()
        }
    };
    if greeted && session.run().await == Flow::StartTls {
        // Boxed: the TLS session's future is allocated only when needed,
        // not carried by every session (idle sessions cost memory).
        Box::pin(session.upgrade()).await;
    }
    metrics::gauge!("eas_smtp_sessions_active").decrement(1.0);
}

impl<T: Io> Session<T> {
    pub(crate) fn new(
        ctx: Arc<SmtpContext>,
        stream: T,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Session<T> {
        let now = Instant::now();
        // A huge configured time must not overflow the clock: a year is
        // forever for a session.
        let deadline = now
            .checked_add(ctx.config.smtp.max_session_time.0)
            .unwrap_or_else(|| now + std::time::Duration::from_secs(365 * 86_400));
        Session {
            ctx,
            stream,
            peer,
            state: State::Command,
            helo: None,
            tls: None,
            txn: None,
            line: Vec::new(),
            line_overflow: false,
            out: Vec::with_capacity(512),
            errors: 0,
            junk: 0,
            deadline,
            strict_before_helo: false,
            shutdown,
        }
    }

    pub(crate) fn greet(&mut self) {
        let text = format!("{} ESMTP eas-relay", self.ctx.config.hostname);
        self.reply(&Reply {
            code: 220,
            enhanced: None,
            text: text.into(),
        });
    }

    /// Performs the TLS handshake after `220 Ready to start TLS` and runs
    /// the session again over TLS, with all state forgotten (RFC 3207).
    async fn upgrade(self) {
        let Some(acceptor) = self.ctx.tls.clone() else {
            return;
        };
        let limit = self.ctx.config.smtp.command_timeout.0;
        let Session {
            ctx,
            stream,
            peer,
            shutdown,
            junk,
            deadline,
            ..
        } = self;
        let limit = limit.min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let (_, conn) = tls.get_ref();
                // rustls says "TLSv1_3"; trace headers say "TLSv1.3".
                let info = format!(
                    "{} with cipher {}",
                    conn.protocol_version()
                        .and_then(|v| v.as_str())
                        .unwrap_or("TLS")
                        .replace('_', "."),
                    conn.negotiated_cipher_suite()
                        .and_then(|s| s.suite().as_str())
                        .unwrap_or("unknown")
                );
                let mut secured = Session::new(ctx, tls, peer, shutdown);
                secured.tls = Some(info);
                // The same connection: its time and junk budgets go on.
                secured.deadline = deadline;
                secured.junk = junk;
                secured.run().await;
            }
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    /// Reads and handles input until the session ends or asks for TLS.
    pub(crate) async fn run(&mut self) -> Flow {
        let mut buf = Vec::new();
        loop {
            // A small buffer between commands (most sessions wait there,
            // and 10,000 idle ones must stay cheap), a large one for data.
            let want = match self.state {
                State::Command => COMMAND_BUFFER,
                _ => READ_BUFFER,
            };
            if buf.len() != want {
                buf = vec![0u8; want];
            }
            // Shutdown interrupts a session between commands, not one in the
            // middle of a message (DATA, or a BDAT transaction under way):
            // that one is told after its message is answered.
            let chunking = self.txn.as_ref().is_some_and(|t| t.chunking);
            let idle = matches!(self.state, State::Command) && self.line.is_empty() && !chunking;
            if idle && *self.shutdown.borrow() {
                return self.shutting_down().await;
            }
            let limit = match self.state {
                State::Command => self.ctx.config.smtp.command_timeout.0,
                _ => self.ctx.config.smtp.data_timeout.0,
            };
            // The session's lifetime bounds every wait, so that a client
            // that always sends something in time still leaves at the end.
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.session_time_over().await;
            }
            let lifetime_bound = left < limit;
            let limit = limit.min(left);
            let read = {
                let stream = &mut self.stream;
                let shutdown = &mut self.shutdown;
                tokio::select! {
                    read = tokio::time::timeout(limit, stream.read(&mut buf)) => Some(read),
                    _ = shutdown.changed(), if idle => None,
                }
            };
            let Some(read) = read else {
                return self.shutting_down().await;
            };
            let n = match read {
                Err(_) if lifetime_bound => return self.session_time_over().await,
                Err(_) => {
                    let text = format!("{} Error: timeout exceeded", self.ctx.config.hostname);
                    self.reply(&Reply::owned(421, [4, 4, 2], text));
                    let _ = self.flush().await;
                    return Flow::Close;
                }
                Ok(Err(_)) | Ok(Ok(0)) => return Flow::Close,
                Ok(Ok(n)) => n,
            };
            let flow = self.ingest(&buf[..n]).await;
            if self.flush().await.is_err() {
                return Flow::Close;
            }
            if flow != Flow::Continue {
                return flow;
            }
        }
    }

    async fn session_time_over(&mut self) -> Flow {
        metrics::counter!("eas_smtp_sessions_closed_total", "reason" => "session_time")
            .increment(1);
        let text = format!(
            "{} Error: session time limit exceeded",
            self.ctx.config.hostname
        );
        self.reply(&Reply::owned(421, [4, 4, 2], text));
        let _ = self.flush().await;
        Flow::Close
    }

    /// Counts a command that moves no message forward; too many of them
    /// between two accepted messages end the session (a client holding a
    /// slot with NOOPs).
    pub(crate) fn junk(&mut self) -> Option<Flow> {
        self.junk += 1;
        if self.junk <= self.ctx.config.smtp.max_junk_commands {
            return None;
        }
        metrics::counter!("eas_smtp_sessions_closed_total", "reason" => "junk_commands")
            .increment(1);
        let text = format!(
            "{} Error: too many commands without a message",
            self.ctx.config.hostname
        );
        self.reply(&Reply::owned(421, [4, 7, 0], text));
        Some(Flow::Close)
    }

    /// A message was accepted: the session makes progress.
    pub(crate) fn progress(&mut self) {
        self.junk = 0;
    }

    async fn shutting_down(&mut self) -> Flow {
        let text = format!(
            "{} Service shutting down, try again later",
            self.ctx.config.hostname
        );
        self.reply(&Reply::owned(421, [4, 3, 0], text));
        let _ = self.flush().await;
        Flow::Close
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // The session's lifetime bounds writes too: a client that never
        // reads its replies would otherwise hold its slot for another
        // command_timeout per write. The last reply (a 421) gets a grace.
        let left = self.deadline.saturating_duration_since(Instant::now());
        let limit =
            (self.ctx.config.smtp.command_timeout.0).min(left.saturating_add(LAST_WRITE_GRACE));
        let result = tokio::time::timeout(limit, async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        })
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        self.out.clear();
        result
    }

    /// Handles a chunk of input; replies accumulate in `out`.
    pub(crate) async fn ingest(&mut self, mut bytes: &[u8]) -> Flow {
        while !bytes.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Command);
            let flow = match state {
                State::Command => {
                    let Some(pos) = memchr(b'\n', bytes) else {
                        self.buffer_partial_line(bytes);
                        break;
                    };
                    let (line, rest) = bytes.split_at(pos + 1);
                    bytes = rest;
                    if self.strict_before_helo && self.helo.is_none() && !rest.is_empty() {
                        return self.pipelined_before_helo();
                    }
                    let flow = self.complete_line(line).await;
                    if flow == Flow::StartTls {
                        // Anything pipelined after STARTTLS is discarded
                        // (command injection, CVE-2011-0411).
                        return flow;
                    }
                    flow
                }
                State::Data(mut receiver) => {
                    let Some(txn) = self.txn.as_mut() else {
                        return self.error(Reply::new(503, [5, 5, 1], "Error: need MAIL command"));
                    };
                    let done = receiver.ingest(&mut bytes, Some(&mut txn.body));
                    txn.incoming.push(&txn.body);
                    txn.body.clear();
                    txn.incoming.spill().await;
                    match (done, txn.incoming.failed()) {
                        (true, Some(refusal)) => self.refuse(refusal),
                        (true, None) => self.end_of_message().await,
                        (false, Some(refusal)) => {
                            self.state = State::DataDiscard(receiver, refusal);
                            Flow::Continue
                        }
                        (false, None) => {
                            self.state = State::Data(receiver);
                            Flow::Continue
                        }
                    }
                }
                State::DataDiscard(mut receiver, refusal) => {
                    let done = receiver.ingest(&mut bytes, None);
                    if done {
                        self.refuse(refusal)
                    } else {
                        self.state = State::DataDiscard(receiver, refusal);
                        Flow::Continue
                    }
                }
                State::Bdat { mut receiver, size } => {
                    let Some(txn) = self.txn.as_mut() else {
                        return self.error(Reply::new(503, [5, 5, 1], "Error: need MAIL command"));
                    };
                    let mut it = bytes.iter();
                    let done = receiver.ingest(&mut it, &mut txn.body);
                    bytes = it.as_slice();
                    txn.incoming.push(&txn.body);
                    txn.body.clear();
                    txn.incoming.spill().await;
                    if let (true, Some(refusal)) = (done, txn.incoming.failed()) {
                        // Refused while streaming (the rest of the chunk was
                        // drained unkept): the transaction ends with the
                        // refusal at LAST.
                        txn.failed = Some(refusal.reply());
                        self.bdat_refused(refusal.reply(), receiver.is_last, true)
                    } else if done {
                        self.bdat_chunk_done(size, receiver.is_last).await
                    } else {
                        self.state = State::Bdat { receiver, size };
                        Flow::Continue
                    }
                }
                State::BdatDiscard {
                    mut receiver,
                    reply,
                    last,
                    count,
                } => {
                    let mut it = bytes.iter();
                    let done = receiver.ingest(&mut it);
                    bytes = it.as_slice();
                    if done {
                        self.bdat_refused(reply, last, count)
                    } else {
                        self.state = State::BdatDiscard {
                            receiver,
                            reply,
                            last,
                            count,
                        };
                        Flow::Continue
                    }
                }
            };
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }

    fn buffer_partial_line(&mut self, bytes: &[u8]) {
        if self.line_overflow
            || self.line.len() + bytes.len() > self.ctx.config.smtp.max_line_length
        {
            self.line_overflow = true;
            self.line.clear();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// A complete command line (ending in LF) arrived.
    async fn complete_line(&mut self, tail: &[u8]) -> Flow {
        let too_long = self.line_overflow
            || self.line.len() + tail.len() > self.ctx.config.smtp.max_line_length;
        if too_long {
            self.line.clear();
            self.line_overflow = false;
            return self.error(Reply::new(500, [5, 5, 2], "Error: line too long"));
        }
        if self.line.is_empty() {
            return self.command(tail).await;
        }
        let mut line = std::mem::take(&mut self.line);
        line.extend_from_slice(tail);
        let flow = self.command(&line).await;
        line.clear();
        if self.line.is_empty() {
            self.line = line; // keep the allocation
        }
        flow
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request,
            Err(smtp_proto::Error::InvalidRecipientAddress) => return self.rcpt_unparsed(line),
            Err(e) => {
                if let Some(flow) = self.junk() {
                    return flow;
                }
                return self.error(syntax_reply(e));
            }
        };
        let no_progress = matches!(
            request,
            Request::Ehlo { .. }
                | Request::Helo { .. }
                | Request::Rset
                | Request::Noop { .. }
                | Request::Vrfy { .. }
                | Request::Expn { .. }
                | Request::Help { .. }
        );
        if no_progress && let Some(flow) = self.junk() {
            return flow;
        }
        match request {
            Request::Ehlo { host } => self.ehlo(&host, true),
            Request::Helo { host } => self.ehlo(&host, false),
            Request::Mail { from } => self.mail_from(from, line),
            Request::Rcpt { to } => self.rcpt_to(to, line),
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last, line).await,
            Request::StartTls => self.starttls(),
            Request::Rset => {
                self.txn = None;
                self.reply(&Reply::new(250, [2, 0, 0], "Ok"));
                Flow::Continue
            }
            Request::Noop { .. } => {
                self.reply(&Reply::new(250, [2, 0, 0], "Ok"));
                Flow::Continue
            }
            Request::Quit => {
                self.reply(&Reply::new(221, [2, 0, 0], "Bye"));
                Flow::Close
            }
            Request::Vrfy { .. } => self.vrfy(),
            Request::Expn { .. } => self.expn(),
            Request::Help { .. } => {
                self.reply(&Reply::new(
                    214,
                    [2, 0, 0],
                    "eas-relay forwards mail for .country aliases; see RFC 5321",
                ));
                Flow::Continue
            }
            Request::Lhlo { .. }
            | Request::Auth { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                self.error(Reply::new(502, [5, 5, 1], "Error: command not implemented"))
            }
        }
    }

    /// Writes a reply.
    pub(crate) fn reply(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out);
    }

    /// Writes a reply to a client mistake; too many mistakes end the session.
    pub(crate) fn error(&mut self, reply: Reply) -> Flow {
        self.errors += 1;
        if self.errors >= self.ctx.config.smtp.max_errors {
            let text = format!("{} Error: too many errors", self.ctx.config.hostname);
            self.reply(&Reply::owned(421, [4, 7, 0], text));
            return Flow::Close;
        }
        self.reply(&reply);
        Flow::Continue
    }

    /// Refuses something and counts it under `reason` in the metrics.
    pub(crate) fn reject(&mut self, reply: Reply, reason: &'static str) -> Flow {
        metrics::counter!("eas_messages_rejected_total", "reason" => reason).increment(1);
        self.error(reply)
    }

    fn refuse(&mut self, refusal: super::incoming::Refusal) -> Flow {
        self.txn = None;
        self.reject(refusal.reply(), refusal.reason())
    }

    /// The limits a message is held to while it arrives.
    pub(crate) fn limits(&self) -> super::incoming::Limits {
        let smtp = &self.ctx.config.smtp;
        super::incoming::Limits {
            max_size: smtp.max_message_size.0,
            max_header_size: smtp.max_header_size.0,
            max_header_fields: smtp.max_header_fields,
        }
    }
}

/// Maps smtp-proto's parse errors to replies.
fn syntax_reply(e: smtp_proto::Error) -> Reply {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => Reply::new(500, [5, 5, 2], "Error: command not recognized"),
        E::InvalidSenderAddress => Reply::new(501, [5, 1, 7], "Error: bad sender address syntax"),
        E::InvalidRecipientAddress => {
            Reply::new(501, [5, 1, 3], "Error: bad recipient address syntax")
        }
        E::SyntaxError { syntax } => Reply::owned(501, [5, 5, 4], format!("Syntax: {syntax}")),
        E::InvalidParameter { param } => {
            Reply::owned(501, [5, 5, 4], format!("Error: invalid parameter {param}"))
        }
        E::UnsupportedParameter { param } => Reply::owned(
            555,
            [5, 5, 4],
            format!(
                "Error: unsupported parameter {}",
                crate::message::sanitize_header_text(&param)
            ),
        ),
        E::ResponseTooLong => Reply::new(500, [5, 5, 2], "Error: line too long"),
        E::NeedsMoreData { .. } | E::InvalidResponse { .. } => {
            Reply::new(500, [5, 5, 2], "Error: command not recognized")
        }
    }
}
