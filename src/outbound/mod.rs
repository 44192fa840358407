//! Outbound delivery: for one destination domain, find the hosts (route or
//! MX), connect with opportunistic, required or verified STARTTLS, send the message to
//! the domain's recipients and map every reply to delivered / deferred /
//! failed. Connections are reused, and capped per destination and in all.

pub mod client;
pub mod mx;
pub mod network;
pub mod path;
mod pool;

use crate::config::{Config, TlsPolicy};
use crate::reply::Reply;
use client::{SmtpClient, Timeouts, TxnError};
use mx::Router;
use pool::Pool;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The verdict for one recipient after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Delivered,
    /// Temporary failure: retry later.
    Deferred,
    /// Permanent failure: bounce.
    Failed,
}

/// What happened to one recipient.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: DeliveryStatus,
    pub reply: Reply,
    pub server: Option<String>,
}

/// The envelope facts the next hop needs.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub sender: String,
    pub smtputf8: bool,
    pub body_8bit: bool,
}

/// The message for the DATA phase. It is read from its spool file in
/// chunks and dot-stuffed on the way ([`DotStuffer`]) by every destination
/// that takes it, so a delivery holds one chunk of it, never the message.
#[derive(Debug)]
pub struct Payload {
    source: Source,
    /// Size of the message itself (for SIZE=).
    pub size: usize,
}

#[derive(Debug)]
enum Source {
    Memory(Vec<u8>),
    File(std::path::PathBuf),
}

/// Bytes read from the message per write to the destination.
pub const PAYLOAD_CHUNK: usize = 64 * 1024;

impl Payload {
    /// A message held in memory (tests, tools).
    pub fn new(message: &[u8]) -> Payload {
        Payload {
            size: message.len(),
            source: Source::Memory(message.to_vec()),
        }
    }

    /// The message in `path` (a spool file) of `size` bytes.
    pub fn file(path: std::path::PathBuf, size: usize) -> Payload {
        Payload {
            source: Source::File(path),
            size,
        }
    }

    /// The message in spool file `path` (blocking: run it off the async
    /// threads). A message of at most one chunk is read now, in the same
    /// hop as the open (delivery then holds what it would hold as a read
    /// buffer anyway); a larger one is streamed from `path` by each
    /// destination.
    pub fn load(path: std::path::PathBuf) -> std::io::Result<Payload> {
        use std::io::Read;
        let file = std::fs::File::open(&path)?;
        let size = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        if size > PAYLOAD_CHUNK {
            return Ok(Payload::file(path, size));
        }
        let mut bytes = Vec::with_capacity(size);
        // At most one chunk, even if the file grew since the metadata.
        file.take(PAYLOAD_CHUNK as u64 + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() > PAYLOAD_CHUNK {
            return Ok(Payload::file(path, bytes.len()));
        }
        Ok(Payload {
            size: bytes.len(),
            source: Source::Memory(bytes),
        })
    }

    /// A reader of the message bytes (not yet stuffed).
    pub async fn reader(
        &self,
    ) -> std::io::Result<Box<dyn tokio::io::AsyncRead + Unpin + Send + '_>> {
        Ok(match &self.source {
            Source::Memory(bytes) => Box::new(bytes.as_slice()),
            Source::File(path) => Box::new(tokio::fs::File::open(path).await?),
        })
    }
}

/// SMTP transparency (RFC 5321 §4.5.2) for a message written in chunks: a
/// `.` that starts a line gets another, and the end adds the CRLF the
/// message may lack and the final `.` line. Every line ending is written as
/// CRLF and a bare CR or LF counts as one: inbound normalizes them, but a
/// spool file of an older version may hold them, and a `.` after a bare CR
/// sent unstuffed would end the transaction early at a destination that
/// takes CR as a line end (SMTP smuggling).
#[derive(Debug, Clone, Copy)]
pub struct DotStuffer {
    line_start: bool,
    /// The last chunk ended with a CR: a CRLF or a bare CR, the next byte
    /// tells.
    pending_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            line_start: true,
            pending_cr: false,
        }
    }
}

impl DotStuffer {
    /// Appends the stuffed form of `chunk` to `out`.
    pub fn stuff(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
                if let Some((b'\n', tail)) = rest.split_first() {
                    rest = tail;
                    continue;
                }
            }
            let end = memchr::memchr2(b'\r', b'\n', rest);
            let (text, tail) = rest.split_at(end.unwrap_or(rest.len()));
            if self.line_start && text.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(text);
            if !text.is_empty() {
                self.line_start = false;
            }
            rest = match tail.split_first() {
                Some((b'\r', tail)) => {
                    self.pending_cr = true;
                    tail
                }
                Some((_, tail)) => {
                    self.end_line(out);
                    tail
                }
                None => tail,
            };
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.line_start = true;
    }

    /// Appends the end of the data: CRLF when the message lacks it, then
    /// the `.` line.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.end_line(out);
        }
        if !self.line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The delivery agent shared by every delivery task.
pub struct Outbound {
    router: Router,
    pool: Pool,
    total: Semaphore,
    helo: String,
    tls: TlsPolicy,
    connector: tokio_rustls::TlsConnector,
    timeouts: Timeouts,
}

enum Tried {
    Done(Vec<Attempt>),
    /// Nothing was handed over on this connection; try another.
    Again(Reply),
}

impl Outbound {
    /// Fails only when `tls = "verified"` has no trusted roots to verify with.
    pub fn new(config: &Config) -> Result<Outbound, crate::tls::TlsError> {
        let o = &config.outbound;
        let connector = match o.tls {
            TlsPolicy::Verified => client::verifying_connector(o.tls_ca_file.as_deref())?,
            _ => client::tls_connector(),
        };
        Ok(Outbound {
            router: Router::new(config),
            pool: Pool::new(
                o.idle_timeout.0,
                o.max_messages_per_connection,
                o.max_per_destination,
            ),
            total: Semaphore::new(o.max_connections),
            helo: config.helo_name().to_string(),
            tls: o.tls,
            connector,
            timeouts: Timeouts {
                connect: o.connect_timeout.0,
                command: o.command_timeout.0,
                data: o.data_timeout.0,
            },
        })
    }

    /// Delivers one message to the recipients of one domain. Returns one
    /// attempt per recipient, in order.
    pub async fn deliver(
        &self,
        domain: &str,
        envelope: &Envelope,
        rcpts: &[String],
        payload: &Payload,
    ) -> Vec<Attempt> {
        let limit = self.pool.limit(domain);
        let Ok(_dest) = limit.acquire().await else {
            return defer_all(rcpts, Reply::new(451, [4, 3, 0], "shutting down"), None);
        };
        let Ok(_total) = self.total.acquire().await else {
            return defer_all(rcpts, Reply::new(451, [4, 3, 0], "shutting down"), None);
        };
        if let Some(client) = self.pool.take(domain)
            && let Tried::Done(attempts) = self
                .transact(client, domain, envelope, rcpts, payload)
                .await
        {
            return attempts;
        }
        let hops = match self.router.next_hops(domain).await {
            Ok(hops) => hops,
            Err(e) if e.is_permanent() => return fail_all(rcpts, e.reply()),
            Err(e) => return defer_all(rcpts, e.reply(), None),
        };
        let mut last = Reply::owned(
            451,
            [4, 4, 1],
            format!("no host for {domain} could be reached"),
        );
        let mut last_server = None;
        // Whether every address found was refused as non-public: then the
        // domain cannot be routed (permanent), rather than unreachable.
        let (mut refused, mut only_refused) = (false, true);
        for hop in hops {
            let addrs = match self.router.addresses(&hop.host).await {
                Ok(addrs) => addrs,
                Err(e) => {
                    last = e.reply();
                    only_refused = false;
                    continue;
                }
            };
            for ip in addrs {
                if !self.router.may_connect(&hop, ip) {
                    // Logged for the operator only: the reply names neither
                    // the host nor the address (the sender may see it).
                    metrics::counter!("eas_outbound_refused_addresses_total").increment(1);
                    tracing::debug!(host = %hop.host, %ip, "MX address is not public; not connecting");
                    refused = true;
                    continue;
                }
                only_refused = false;
                let addr = SocketAddr::new(ip, hop.port);
                let client = match self.connect(&hop.host, addr).await {
                    Ok(client) => client,
                    Err(reply) => {
                        metrics::counter!("eas_outbound_connections_total", "result" => "failed")
                            .increment(1);
                        tracing::debug!(host = %hop.host, %addr, %reply, "cannot use host");
                        last = reply;
                        last_server = Some(format!("{} [{}]:{}", hop.host, ip, hop.port));
                        continue;
                    }
                };
                metrics::counter!("eas_outbound_connections_total", "result" => "ok").increment(1);
                last_server = Some(client.server.clone());
                match self
                    .transact(client, domain, envelope, rcpts, payload)
                    .await
                {
                    Tried::Done(attempts) => return attempts,
                    Tried::Again(reply) => last = reply,
                }
            }
        }
        if refused && only_refused {
            return fail_all(rcpts, not_public());
        }
        defer_all(rcpts, last, last_server)
    }

    /// Connects, greets and negotiates TLS per policy.
    async fn connect(&self, host: &str, addr: SocketAddr) -> Result<SmtpClient, Reply> {
        let mut client = SmtpClient::connect(host, addr, self.timeouts)
            .await
            .map_err(|e| e.as_reply())?;
        client.hello(&self.helo).await.map_err(|e| e.as_reply())?;
        match self.tls {
            TlsPolicy::Disabled => Ok(client),
            _ if client.caps.starttls => match client.starttls(&self.connector).await {
                Ok(mut tls) => {
                    tls.hello(&self.helo).await.map_err(|e| e.as_reply())?;
                    Ok(tls)
                }
                // A failed verification is a failed handshake: never plain text.
                Err(e) if self.tls != TlsPolicy::Opportunistic => Err(e.as_reply()),
                Err(e) => {
                    // Opportunistic: a broken TLS stack must not stop mail.
                    // INFO names no host, address or TLS error (which can
                    // quote the host name): the MX says where an alias
                    // forwards. Those are for DEBUG, like every other line
                    // here that names a destination.
                    tracing::info!("STARTTLS failed, retrying in plain text");
                    tracing::debug!(%host, %addr, error = %e, "STARTTLS failed, retrying in plain text");
                    let mut plain = SmtpClient::connect(host, addr, self.timeouts)
                        .await
                        .map_err(|e| e.as_reply())?;
                    plain.hello(&self.helo).await.map_err(|e| e.as_reply())?;
                    Ok(plain)
                }
            },
            TlsPolicy::Required | TlsPolicy::Verified => Err(Reply::owned(
                451,
                [4, 7, 4],
                format!("TLS is required but {host} does not offer STARTTLS"),
            )),
            TlsPolicy::Opportunistic => Ok(client),
        }
    }

    async fn transact(
        &self,
        mut client: SmtpClient,
        domain: &str,
        envelope: &Envelope,
        rcpts: &[String],
        payload: &Payload,
    ) -> Tried {
        let server = client.server.clone();
        match client.send(envelope, rcpts, payload).await {
            Ok(verdicts) => {
                if let Some(extra) = self.pool.put(domain, client) {
                    tokio::spawn(extra.quit());
                }
                Tried::Done(
                    verdicts
                        .into_iter()
                        .map(|(status, reply)| Attempt {
                            status,
                            reply,
                            server: Some(server.clone()),
                        })
                        .collect(),
                )
            }
            Err(TxnError::BeforeData(e)) => Tried::Again(e.as_reply()),
            Err(TxnError::AfterData(e)) => {
                let reply = Reply::owned(
                    451,
                    [4, 4, 2],
                    format!("connection lost after the message was sent ({e}); will retry"),
                );
                Tried::Done(defer_all(rcpts, reply, Some(server)))
            }
        }
    }

    /// Closes idle connections past their time (call periodically).
    pub async fn reap_idle(&self) {
        for client in self.pool.reap() {
            client.quit().await;
        }
    }

    /// Closes every idle connection (at shutdown).
    pub async fn close_idle(&self) {
        for client in self.pool.drain() {
            client.quit().await;
        }
    }

    /// How often `reap_idle` should run.
    pub fn reap_interval(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// The reply when every address of a domain's mail servers is internal.
fn not_public() -> Reply {
    Reply::new(
        550,
        [5, 4, 4],
        "the destination's mail servers have no public address; not delivered",
    )
}

fn fail_all(rcpts: &[String], reply: Reply) -> Vec<Attempt> {
    rcpts
        .iter()
        .map(|_| Attempt {
            status: DeliveryStatus::Failed,
            reply: reply.clone(),
            server: None,
        })
        .collect()
}

fn defer_all(rcpts: &[String], reply: Reply, server: Option<String>) -> Vec<Attempt> {
    rcpts
        .iter()
        .map(|_| Attempt {
            status: DeliveryStatus::Deferred,
            reply: reply.clone(),
            server: server.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole message stuffed at once (what the chunks must add up to):
    /// any CR, LF or CRLF is one line end, written CRLF.
    fn stuffed_whole(message: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        let mut line_start = true;
        let mut bytes = message.iter().copied().peekable();
        while let Some(b) = bytes.next() {
            match b {
                b'\r' | b'\n' => {
                    if b == b'\r' && bytes.peek() == Some(&b'\n') {
                        bytes.next();
                    }
                    data.extend_from_slice(b"\r\n");
                    line_start = true;
                    continue;
                }
                b'.' if line_start => data.push(b'.'),
                _ => {}
            }
            data.push(b);
            line_start = false;
        }
        if !line_start {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        data
    }

    fn stuffed(chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        for chunk in chunks {
            stuffer.stuff(chunk, &mut out);
        }
        stuffer.finish(&mut out);
        out
    }

    #[test]
    fn dot_stuffing_and_terminator() {
        assert_eq!(
            stuffed(&[b".a\r\nb\r\n..c\r\n"]),
            b"..a\r\nb\r\n...c\r\n.\r\n"
        );
        assert_eq!(stuffed(&[b"no newline"]), b"no newline\r\n.\r\n");
        assert_eq!(stuffed(&[]), b".\r\n");
        assert_eq!(stuffed(&[b"a\r", b"\n", b".b\r\n"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuffed(&[b"a\r", b"\n"]), b"a\r\n.\r\n");
        assert_eq!(Payload::new(b"x\r\n").size, 3);
    }

    proptest::proptest! {
        /// Stuffing in chunks, cut anywhere, equals stuffing the whole.
        #[test]
        fn chunked_stuffing_is_whole_stuffing(
            msg in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just(b'.'), proptest::prelude::Just(b'\r'),
                proptest::prelude::Just(b'\n'), proptest::prelude::any::<u8>()
            ], 0..200),
            cut_a in 0usize..200,
            cut_b in 0usize..200,
        ) {
            let a = cut_a.min(msg.len());
            let b = cut_b.min(msg.len()).max(a);
            let got = stuffed(&[&msg[..a], &msg[a..b], &msg[b..]]);
            proptest::prop_assert_eq!(got, stuffed_whole(&msg));
        }
    }

    #[test]
    fn a_dot_after_a_bare_line_ending_is_stuffed() {
        for (message, data) in [
            (&b"a\r.\r\nMAIL"[..], &b"a\r\n..\r\nMAIL\r\n.\r\n"[..]),
            (b"a\n.\r\nMAIL", b"a\r\n..\r\nMAIL\r\n.\r\n"),
            (b"a\r\n.\nMAIL", b"a\r\n..\r\nMAIL\r\n.\r\n"),
            (b"a\r", b"a\r\n.\r\n"),
            (b"\n", b"\r\n.\r\n"),
        ] {
            assert_eq!(stuffed(&[message]), data, "{message:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Whatever the message holds, the data phase ends at its last five
        /// bytes and only there, for a reader that ends data at CRLF.CRLF,
        /// LF.LF, CR.CR or any mix.
        #[test]
        fn the_data_phase_ends_only_at_its_end(
            message in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just(b'\r'),
                proptest::prelude::Just(b'\n'),
                proptest::prelude::Just(b'.'),
                proptest::prelude::any::<u8>(),
            ], 0..64),
        ) {
            let data = stuffed(&[&message]);
            proptest::prop_assert!(data.ends_with(b"\r\n.\r\n") || data == b".\r\n");
            let lone_dots = data
                .split(|b| *b == b'\r' || *b == b'\n')
                .filter(|line| *line == b".")
                .count();
            proptest::prop_assert_eq!(lone_dots, 1);
            for (i, &b) in data.iter().enumerate() {
                match b {
                    b'\r' => proptest::prop_assert_eq!(data.get(i + 1), Some(&b'\n')),
                    b'\n' => proptest::prop_assert!(i > 0 && data[i - 1] == b'\r'),
                    _ => {}
                }
            }
        }
    }
}
