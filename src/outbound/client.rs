//! The SMTP client side: greeting, EHLO (HELO fallback), STARTTLS, and one
//! mail transaction with per-recipient replies, pipelined when the server
//! offers PIPELINING. Replies are parsed by smtp-proto's sans-IO receiver.
//! No command leaves with a CR or LF inside it: an address carrying a line
//! break would otherwise smuggle its own commands into the conversation.
//! Every address is written through [`encode_path`], so a local part that
//! needs quoting is quoted and one that no path can carry is refused.

use super::path::{PathError, encode_path};
use super::{DeliveryStatus, Envelope, Payload};
use crate::reply::Reply;
use smtp_proto::response::parser::ResponseReceiver;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A failure of the connection or the conversation (not a remote verdict).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {0} failed: {1}")]
    Connect(String, io::Error),
    #[error("timeout waiting for {0}")]
    Timeout(&'static str),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed by remote")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("remote said: {0}")]
    Rejected(Reply),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("refused to send a command with a line break inside it")]
    LineBreak,
}

impl ClientError {
    /// The reply to record for the recipients when this error ends an attempt.
    pub fn as_reply(&self) -> Reply {
        match self {
            ClientError::Rejected(r) if r.is_transient() => r.clone(),
            ClientError::Rejected(r) => Reply::owned(451, [4, 4, 0], format!("remote said: {r}")),
            ClientError::Timeout(_) => Reply::owned(451, [4, 4, 2], self.to_string()),
            ClientError::Tls(_) => Reply::owned(451, [4, 7, 5], self.to_string()),
            ClientError::Connect(..) => Reply::owned(451, [4, 4, 1], self.to_string()),
            _ => Reply::owned(451, [4, 4, 2], self.to_string()),
        }
    }
}

/// How a transaction ended when it did not produce per-recipient verdicts.
#[derive(Debug)]
pub enum TxnError {
    /// Nothing was handed over: another host (or a fresh connection) may be tried.
    BeforeData(ClientError),
    /// The connection failed after the message was sent: the outcome is
    /// unknown, so the recipients are deferred (a duplicate at worst).
    AfterData(ClientError),
}

/// What a server announced in its EHLO reply.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub esmtp: bool,
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// 0 when no SIZE was announced or no limit given.
    pub size: usize,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Time limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
    pub data: Duration,
}

/// One SMTP connection to a remote host.
pub struct SmtpClient {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    timeouts: Timeouts,
    pub caps: Capabilities,
    /// "name [ip]:port", for logs.
    pub server: String,
    pub host: String,
    pub tls: bool,
    /// Transactions completed on this connection.
    pub sent: usize,
    pub idle_since: Instant,
}

/// Per-recipient verdicts of one transaction.
pub type Verdicts = Vec<(DeliveryStatus, Reply)>;

impl SmtpClient {
    /// Connects and reads the greeting (which must be 220).
    pub async fn connect(
        host: &str,
        addr: SocketAddr,
        timeouts: Timeouts,
    ) -> Result<SmtpClient, ClientError> {
        let stream = tokio::time::timeout(timeouts.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout("connection"))?
            .map_err(|e| ClientError::Connect(addr.to_string(), e))?;
        let _ = stream.set_nodelay(true);
        let mut client = SmtpClient {
            stream: Stream::Plain(stream),
            buf: Vec::with_capacity(1024),
            pos: 0,
            timeouts,
            caps: Capabilities::default(),
            server: format!("{host} [{}]:{}", addr.ip(), addr.port()),
            host: host.to_string(),
            tls: false,
            sent: 0,
            idle_since: Instant::now(),
        };
        let greeting = client.read_reply(timeouts.command, "greeting").await?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected(greeting));
        }
        Ok(client)
    }

    /// EHLO, falling back to HELO when EHLO is refused.
    pub async fn hello(&mut self, name: &str) -> Result<(), ClientError> {
        let reply = self
            .command(&format!("EHLO {name}\r\n"), "EHLO reply")
            .await?;
        if reply.code == 250 {
            self.caps = parse_capabilities(&reply.text);
            return Ok(());
        }
        if reply.code == 421 {
            return Err(ClientError::Rejected(reply));
        }
        let reply = self
            .command(&format!("HELO {name}\r\n"), "HELO reply")
            .await?;
        if reply.code != 250 {
            return Err(ClientError::Rejected(reply));
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    /// Upgrades the connection with STARTTLS (the caller sends EHLO again).
    pub async fn starttls(
        mut self,
        connector: &tokio_rustls::TlsConnector,
    ) -> Result<SmtpClient, ClientError> {
        let reply = self.command("STARTTLS\r\n", "STARTTLS reply").await?;
        if reply.code != 220 {
            return Err(ClientError::Rejected(reply));
        }
        let Stream::Plain(tcp) = self.stream else {
            return Err(ClientError::Protocol("STARTTLS on a TLS connection".into()));
        };
        let name = rustls_pki_types::ServerName::try_from(self.host.clone())
            .or_else(|_| rustls_pki_types::ServerName::try_from("invalid.invalid".to_string()))
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let tls = tokio::time::timeout(self.timeouts.command, connector.connect(name, tcp))
            .await
            .map_err(|_| ClientError::Timeout("TLS handshake"))?
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(SmtpClient {
            stream: Stream::Tls(Box::new(tls)),
            buf: Vec::with_capacity(1024),
            pos: 0,
            caps: Capabilities::default(),
            tls: true,
            ..self
        })
    }

    /// Sends one message to `rcpts`; returns a verdict per recipient.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        rcpts: &[String],
        payload: &Payload,
    ) -> Result<Verdicts, TxnError> {
        let sender = if envelope.sender.is_empty() {
            String::new()
        } else {
            match encode_path(&envelope.sender, envelope.smtputf8) {
                Ok(path) => path,
                Err(e) => {
                    let text = format!(
                        "the envelope sender cannot be written as an SMTP path ({e}); not sent"
                    );
                    return Ok(all_failed(rcpts, &Reply::owned(550, [5, 1, 7], text)));
                }
            }
        };
        let paths: Vec<Result<String, PathError>> = rcpts
            .iter()
            .map(|r| encode_path(r, envelope.smtputf8))
            .collect();
        if paths.iter().any(Result::is_err) {
            return self
                .send_skipping_unwritable(envelope, rcpts, &paths, payload)
                .await;
        }
        let paths: Vec<String> = paths.into_iter().flatten().collect();
        if self.caps.size > 0 && payload.size > self.caps.size {
            let r = Reply::owned(
                552,
                [5, 3, 4],
                format!(
                    "message of {} bytes exceeds the remote limit of {}",
                    payload.size, self.caps.size
                ),
            );
            return Ok(rcpts
                .iter()
                .map(|_| (DeliveryStatus::Failed, r.clone()))
                .collect());
        }
        if envelope.smtputf8 && !self.caps.smtputf8 {
            let r = Reply::new(
                553,
                [5, 6, 7],
                "the remote server does not support SMTPUTF8",
            );
            return Ok(rcpts
                .iter()
                .map(|_| (DeliveryStatus::Failed, r.clone()))
                .collect());
        }
        let mut mail = format!("MAIL FROM:<{sender}>");
        if self.caps.size > 0 {
            mail.push_str(&format!(" SIZE={}", payload.size));
        }
        if envelope.body_8bit && self.caps.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if envelope.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        let before = TxnError::BeforeData;
        let (mail_reply, rcpt_replies, data_reply) = if self.caps.pipelining {
            check_line(&mail).map_err(before)?;
            let mut batch = mail;
            for path in &paths {
                let rcpt = format!("RCPT TO:<{path}>\r\n");
                check_line(&rcpt).map_err(before)?;
                batch.push_str(&rcpt);
            }
            batch.push_str("DATA\r\n");
            self.write(batch.as_bytes(), self.timeouts.command)
                .await
                .map_err(before)?;
            let mail_reply = self
                .read_reply(self.timeouts.command, "MAIL reply")
                .await
                .map_err(before)?;
            let mut rcpt_replies = Vec::with_capacity(rcpts.len());
            for _ in rcpts {
                rcpt_replies.push(
                    self.read_reply(self.timeouts.command, "RCPT reply")
                        .await
                        .map_err(before)?,
                );
            }
            let data_reply = self
                .read_reply(self.timeouts.command, "DATA reply")
                .await
                .map_err(before)?;
            (mail_reply, rcpt_replies, Some(data_reply))
        } else {
            let mail_reply = self.command(&mail, "MAIL reply").await.map_err(before)?;
            let mut rcpt_replies = Vec::with_capacity(rcpts.len());
            if mail_reply.is_positive() {
                for path in &paths {
                    rcpt_replies.push(
                        self.command(&format!("RCPT TO:<{path}>\r\n"), "RCPT reply")
                            .await
                            .map_err(before)?,
                    );
                }
            }
            (mail_reply, rcpt_replies, None)
        };
        if mail_reply.code == 421 {
            return Err(TxnError::BeforeData(ClientError::Rejected(mail_reply)));
        }
        if !mail_reply.is_positive() {
            if data_reply.as_ref().is_some_and(|r| r.code == 354) {
                self.finish_empty_data().await.map_err(before)?;
            }
            let status = status_of(&mail_reply);
            return Ok(rcpts.iter().map(|_| (status, mail_reply.clone())).collect());
        }
        let mut verdicts: Verdicts = rcpt_replies
            .into_iter()
            .map(|r| {
                (
                    if r.is_positive() {
                        DeliveryStatus::Delivered
                    } else {
                        status_of(&r)
                    },
                    r,
                )
            })
            .collect();
        let accepted = verdicts
            .iter()
            .filter(|(s, _)| *s == DeliveryStatus::Delivered)
            .count();
        if accepted == 0 {
            match data_reply {
                Some(r) if r.code == 354 => self.finish_empty_data().await.map_err(before)?,
                Some(_) => {}
                None => {
                    self.command("RSET\r\n", "RSET reply")
                        .await
                        .map_err(before)?;
                }
            }
            return Ok(verdicts);
        }
        let data_reply = match data_reply {
            Some(r) => r,
            None => self
                .command("DATA\r\n", "DATA reply")
                .await
                .map_err(before)?,
        };
        if data_reply.code != 354 {
            let status = status_of(&data_reply);
            for v in verdicts
                .iter_mut()
                .filter(|(s, _)| *s == DeliveryStatus::Delivered)
            {
                *v = (status, data_reply.clone());
            }
            return Ok(verdicts);
        }
        let after = TxnError::AfterData;
        self.write_payload(payload).await.map_err(after)?;
        let final_reply = self
            .read_reply(self.timeouts.data, "final reply")
            .await
            .map_err(after)?;
        let status = if final_reply.is_positive() {
            DeliveryStatus::Delivered
        } else {
            status_of(&final_reply)
        };
        for v in verdicts
            .iter_mut()
            .filter(|(s, _)| *s == DeliveryStatus::Delivered)
        {
            *v = (status, final_reply.clone());
        }
        self.sent += 1;
        Ok(verdicts)
    }

    /// `send` for the recipients whose address can be written as a path;
    /// the others fail permanently (no valid command can name them).
    async fn send_skipping_unwritable(
        &mut self,
        envelope: &Envelope,
        rcpts: &[String],
        paths: &[Result<String, PathError>],
        payload: &Payload,
    ) -> Result<Verdicts, TxnError> {
        let clean: Vec<String> = rcpts
            .iter()
            .zip(paths)
            .filter(|(_, p)| p.is_ok())
            .map(|(r, _)| r.clone())
            .collect();
        let mut sent = if clean.is_empty() {
            Vec::new()
        } else {
            Box::pin(self.send(envelope, &clean, payload)).await?
        }
        .into_iter();
        let lost = Reply::new(451, [4, 3, 0], "no verdict for this recipient");
        Ok(paths
            .iter()
            .map(|path| match path {
                Err(e) => {
                    let text = format!(
                        "the forwarding address cannot be written as an SMTP path ({e}); not sent"
                    );
                    (DeliveryStatus::Failed, Reply::owned(553, [5, 1, 3], text))
                }
                // One verdict per clean recipient, in order.
                Ok(_) => sent
                    .next()
                    .unwrap_or((DeliveryStatus::Deferred, lost.clone())),
            })
            .collect())
    }

    /// Ends a DATA phase that has nothing to send.
    async fn finish_empty_data(&mut self) -> Result<(), ClientError> {
        self.command(".\r\n", "empty DATA reply").await.map(|_| ())
    }

    /// Says goodbye (best effort, short timeout).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.stream.write_all(b"QUIT\r\n").await;
            let _ = self.stream.flush().await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }

    async fn command(&mut self, line: &str, what: &'static str) -> Result<Reply, ClientError> {
        check_line(line)?;
        self.write(line.as_bytes(), self.timeouts.command).await?;
        self.read_reply(self.timeouts.command, what).await
    }

    /// Streams the message in chunks, dot-stuffed, and the final `.` line.
    /// The data timeout applies to each chunk (RFC 5321 §4.5.3.2.5: per
    /// block of data, not to the whole message).
    async fn write_payload(&mut self, payload: &Payload) -> Result<(), ClientError> {
        use tokio::io::AsyncReadExt;
        let mut reader = payload.reader().await.map_err(ClientError::Io)?;
        let mut stuffer = super::DotStuffer::default();
        let mut chunk = vec![0u8; super::PAYLOAD_CHUNK];
        let mut out = Vec::with_capacity(super::PAYLOAD_CHUNK + super::PAYLOAD_CHUNK / 8);
        loop {
            let n = reader.read(&mut chunk).await.map_err(ClientError::Io)?;
            let Some(read) = chunk.get(..n).filter(|r| !r.is_empty()) else {
                break;
            };
            stuffer.stuff(read, &mut out);
            // A message of one chunk goes out in one write with its final
            // `.` line (one system call, one TLS record).
            if out.len() >= super::PAYLOAD_CHUNK {
                tokio::time::timeout(self.timeouts.data, self.stream.write_all(&out))
                    .await
                    .map_err(|_| ClientError::Timeout("sending"))?
                    .map_err(ClientError::Io)?;
                out.clear();
            }
        }
        stuffer.finish(&mut out);
        self.write(&out, self.timeouts.data).await
    }

    async fn write(&mut self, bytes: &[u8], limit: Duration) -> Result<(), ClientError> {
        tokio::time::timeout(limit, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout("sending"))?
        .map_err(ClientError::Io)
    }

    async fn read_reply(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<Reply, ClientError> {
        let mut receiver = ResponseReceiver::default();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.pos < self.buf.len() {
                let mut bytes = self.buf[self.pos..].iter();
                let result = receiver.parse(&mut bytes);
                self.pos = self.buf.len() - bytes.len();
                match result {
                    Ok(response) => return Ok(Reply::from_remote(&response)),
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                    Err(e) => return Err(ClientError::Protocol(format!("bad reply: {e:?}"))),
                }
            }
            self.buf.clear();
            self.pos = 0;
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| ClientError::Timeout(what))??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

/// The same permanent failure for every recipient.
fn all_failed(rcpts: &[String], reply: &Reply) -> Verdicts {
    vec![(DeliveryStatus::Failed, reply.clone()); rcpts.len()]
}

fn has_line_break(s: &str) -> bool {
    s.contains(['\r', '\n'])
}

/// A command line's only line break must be its final CRLF.
fn check_line(line: &str) -> Result<(), ClientError> {
    match line.strip_suffix("\r\n") {
        Some(body) if !has_line_break(body) => Ok(()),
        _ => Err(ClientError::LineBreak),
    }
}

fn status_of(reply: &Reply) -> DeliveryStatus {
    if reply.is_permanent() {
        DeliveryStatus::Failed
    } else if reply.is_positive() {
        DeliveryStatus::Delivered
    } else {
        DeliveryStatus::Deferred
    }
}

/// Reads the EHLO keywords (lines after the first).
fn parse_capabilities(text: &str) -> Capabilities {
    let mut caps = Capabilities {
        esmtp: true,
        ..Capabilities::default()
    };
    for line in text.lines().skip(1) {
        let mut words = line.split_whitespace();
        let keyword = words.next().unwrap_or("").to_ascii_uppercase();
        match keyword.as_str() {
            "PIPELINING" => caps.pipelining = true,
            "STARTTLS" => caps.starttls = true,
            "8BITMIME" => caps.eight_bit = true,
            "SMTPUTF8" => caps.smtputf8 = true,
            "SIZE" => caps.size = words.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            _ => {}
        }
    }
    caps
}

/// Builds the TLS connector for outbound STARTTLS (any certificate).
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(Arc::clone(&crate::tls::client_config()))
}

/// Builds the TLS connector that verifies certificates and host names.
pub fn verifying_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_rustls::TlsConnector, crate::tls::TlsError> {
    crate::tls::verifying_client_config(ca_file).map(tokio_rustls::TlsConnector::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_ehlo_text() {
        let caps = parse_capabilities(
            "mx.test greets you\nPIPELINING\nSIZE 1000\n8BITMIME\nstarttls\nSMTPUTF8\nCHUNKING",
        );
        assert!(caps.pipelining && caps.starttls && caps.eight_bit && caps.smtputf8);
        assert_eq!(caps.size, 1000);
        let caps = parse_capabilities("mx.test");
        assert!(!caps.pipelining && caps.esmtp);
    }

    #[test]
    fn command_lines_with_inner_line_breaks_are_refused() {
        assert!(check_line("RCPT TO:<a@b.test>\r\n").is_ok());
        assert!(check_line(".\r\n").is_ok());
        for bad in [
            "RCPT TO:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n",
            "RCPT TO:<a@b.test\n>\r\n",
            "RCPT TO:<a@b.test\r>\r\n",
            "RCPT TO:<a@b.test>",
            "RCPT TO:<a@b.test>\n",
        ] {
            assert!(
                matches!(check_line(bad), Err(ClientError::LineBreak)),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever an address holds, its RCPT line is written only when it
        /// is one line.
        #[test]
        fn any_address_is_one_command_or_none(addr in "\\PC{0,40}|[a-z@.\r\n>]{0,20}") {
            let line = format!("RCPT TO:<{addr}>\r\n");
            proptest::prop_assert_eq!(check_line(&line).is_ok(), !has_line_break(&addr));
        }
    }
}
