//! Session-level tests of the inbound SMTP server, on real parts: a store
//! and a queue (committer thread, real fsyncs, no scheduler, so nothing is
//! delivered) in a temporary directory, the static domain `d.country`, and
//! sessions driven over `tokio::io::duplex` (conversations) or a scripted
//! stream that hands out given chunks, one per read (pipelining, splits,
//! fuzzing).

use super::SmtpContext;
use super::session;
use crate::config::{ByteSize, Config, HumanDuration};
use crate::queue::{Queue, QueueSettings};
use crate::spool::Spool;
use crate::store::{QueueEntry, RcptStatus, Source, Store, parse_queue_id};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const HOST: &str = "relay.test";
const SENDER: &str = "sender@origin.test";
/// Longest any single step may take: a stuck session fails its test
/// instead of hanging the suite.
const WAIT: Duration = Duration::from_secs(10);

fn peer() -> SocketAddr {
    "192.0.2.7:40000".parse().expect("literal address")
}

// ---------------------------------------------------------------------------
// Harness: real store, real queue, the SMTP context.
// ---------------------------------------------------------------------------

struct Harness {
    ctx: Arc<SmtpContext>,
    shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A relay without TLS; `tweak` adjusts the config (limits, timeouts).
    fn new(tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::build(false, tweak)
    }

    /// A relay offering STARTTLS with a self-signed certificate.
    fn with_tls(tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::build(true, tweak)
    }

    fn build(tls: bool, tweak: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            hostname: HOST.into(),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.smtp.starttls = tls;
        // Sessions are tested without DNS: no verdicts, no signatures here
        // (tests/auth.rs and tests/forwarding.rs cover those).
        config.auth.enabled = false;
        config.dkim.enabled = false;
        config.arc.enabled = false;
        config.srs.secrets = vec!["session-test-secret".into()];
        config.srs.domain = "srs.relay.test".into();
        tweak(&mut config);
        let store = Arc::new(Store::open(&config.store_path()).expect("store"));
        store.domain_add("d.country", Source::Static).unwrap();
        store
            .alias_put(
                "d.country",
                "hello",
                vec!["a@dest.test".into()],
                Source::Static,
            )
            .unwrap();
        store
            .alias_put(
                "d.country",
                "team",
                vec!["b@dest.test".into(), "c@dest.test".into()],
                Source::Static,
            )
            .unwrap();
        let spool = Spool::open(&config.spool_dir()).expect("spool");
        let started =
            Queue::start(store.clone(), spool, QueueSettings::from_config(&config)).expect("queue");
        let tls = tls.then(|| {
            let server = crate::tls::server_config(None, None, &config.data_dir, HOST)
                .expect("self-signed certificate");
            tokio_rustls::TlsAcceptor::from(server)
        });
        let srs = config
            .srs
            .enabled
            .then(|| crate::rewrite::srs::Srs::from_config(&config).expect("srs"));
        let forwarding =
            Arc::new(crate::rewrite::pipeline::Forwarding::new(&config).expect("forwarding"));
        let (shutdown, _) = watch::channel(false);
        Harness {
            ctx: Arc::new(SmtpContext {
                guards: crate::smtp::guard::Guards::from_config(&config),
                config: Arc::new(config),
                store,
                queue: started.queue,
                tls,
                srs,
                forwarding,
            }),
            shutdown,
            _dir: dir,
        }
    }

    /// Adds the catch-all `*@d.country -> all@dest.test`.
    fn catch_all(&self) {
        self.ctx
            .store
            .alias_put(
                "d.country",
                "*",
                vec!["all@dest.test".into()],
                Source::Static,
            )
            .unwrap();
    }

    /// Starts a session on a fresh duplex pipe; the greeting is not read.
    fn connect_raw(&self) -> Client<DuplexStream> {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let session = tokio::spawn(session::handle(
            self.ctx.clone(),
            server,
            peer(),
            self.shutdown.subscribe(),
        ));
        Client {
            io: client,
            buf: Vec::new(),
            session: Some(session),
        }
    }

    /// Starts a session and checks its greeting.
    async fn connect(&self) -> Client<DuplexStream> {
        let mut c = self.connect_raw();
        let greeting = c.expect("220 ").await;
        assert_eq!(greeting, format!("220 {HOST} ESMTP eas-relay"));
        c
    }

    /// Runs a whole session over the scripted chunks (one per read, then
    /// EOF) and returns everything the server wrote.
    async fn script(&self, chunks: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
        let written = Arc::new(Mutex::new(Vec::new()));
        let stream = Scripted {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            written: written.clone(),
        };
        timeout(
            WAIT,
            session::handle(self.ctx.clone(), stream, peer(), self.shutdown.subscribe()),
        )
        .await
        .expect("the session ends at EOF");
        std::mem::take(&mut *written.lock().unwrap())
    }

    /// The queue entry and spool file named by a "queued as ID" reply,
    /// read right now (the reply must not come before they are durable).
    fn queued(&self, reply: &str) -> (QueueEntry, Vec<u8>) {
        let id = queue_id(reply).unwrap_or_else(|| panic!("no queue id in {reply:?}"));
        let entry = self
            .ctx
            .store
            .queue_get(id)
            .expect("store read")
            .unwrap_or_else(|| panic!("{reply:?}: no queue entry in the store"));
        let message = self
            .ctx
            .queue
            .spool()
            .read(id)
            .unwrap_or_else(|e| panic!("{reply:?}: no spool file: {e}"));
        assert_eq!(entry.id, id);
        assert_eq!(entry.size, message.len() as u64, "entry size = spool size");
        (entry, message)
    }

    /// How many messages the queue holds.
    fn queue_len(&self) -> usize {
        let (entries, damaged) = self.ctx.store.queue_scan().expect("queue scan");
        assert!(damaged.is_empty());
        entries.len()
    }

    fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }
}

/// The queue id in "250 2.0.0 Ok: queued as 0123456789ABCDEF".
fn queue_id(reply: &str) -> Option<u64> {
    let at = reply.find("queued as ")? + "queued as ".len();
    parse_queue_id(reply.get(at..at + 16)?)
}

/// Replaces every queue id in a transcript with `<ID>`.
fn normalize_ids(transcript: &str) -> String {
    let mut out = String::new();
    let mut rest = transcript;
    while let Some(at) = rest.find("queued as ") {
        let end = at + "queued as ".len();
        out.push_str(&rest[..end]);
        rest = &rest[end..];
        let id = rest.get(..16).expect("16 hex digits after `queued as`");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "queue id {id:?}");
        out.push_str("<ID>");
        rest = &rest[16..];
    }
    out.push_str(rest);
    out
}

/// Splits a spooled message into our Received header and the message as
/// the client sent it.
fn split_trace(message: &[u8]) -> (String, Vec<u8>) {
    assert!(
        message.starts_with(b"Received: from "),
        "the spooled message starts with our trace header: {:?}",
        String::from_utf8_lossy(message)
    );
    let mut at = 0;
    loop {
        let crlf = memchr::memmem::find(&message[at..], b"\r\n").expect("header ends") + at;
        at = crlf + 2;
        if !matches!(message.get(at), Some(b'\t') | Some(b' ')) {
            break;
        }
    }
    (
        String::from_utf8(message[..at].to_vec()).expect("ASCII header"),
        message[at..].to_vec(),
    )
}

/// A message of exactly `len` bytes (at least 16), ending in CRLF, without
/// any line that needs dot-stuffing.
fn message_of(len: usize) -> Vec<u8> {
    let mut m = b"Subject: size\r\n\r\n".to_vec();
    assert!(len >= m.len() + 3);
    while m.len() < len {
        let line = (len - m.len()).min(80);
        if line < 3 {
            // too short for a line of its own: grow the previous one
            let end = m.len() - 2;
            m.truncate(end);
            m.extend(std::iter::repeat_n(b'x', line));
            m.extend_from_slice(b"\r\n");
        } else {
            m.extend(std::iter::repeat_n(b'y', line - 2));
            m.extend_from_slice(b"\r\n");
        }
    }
    assert_eq!(m.len(), len);
    m
}

/// Checks that a transcript is only well-formed reply lines, each ending
/// in CRLF, the first one the greeting.
fn check_reply_lines(out: &[u8]) -> Result<(), String> {
    let show = || String::from_utf8_lossy(out).into_owned();
    if !out.starts_with(b"220 ") {
        return Err(format!("no greeting first: {:?}", show()));
    }
    if !out.ends_with(b"\r\n") {
        return Err(format!("output does not end with CRLF: {:?}", show()));
    }
    for line in out[..out.len() - 1].split(|&b| b == b'\n') {
        let ok = line.len() >= 5
            && line[..3].iter().all(u8::is_ascii_digit)
            && matches!(line[3], b' ' | b'-')
            && line.iter().position(|&b| b == b'\r') == Some(line.len() - 1);
        if !ok {
            return Err(format!(
                "bad reply line {:?} in {:?}",
                String::from_utf8_lossy(line),
                show()
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A client that reads like the conversation.
// ---------------------------------------------------------------------------

struct Client<S> {
    io: S,
    buf: Vec<u8>,
    session: Option<JoinHandle<()>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        timeout(WAIT, async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        })
        .await
        .expect("write timed out")
        .expect("write failed");
    }

    /// One CRLF-terminated line (without the CRLF); None at a clean EOF.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf) {
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                assert!(
                    raw.len() >= 2 && raw[raw.len() - 2] == b'\r',
                    "reply line without CRLF: {:?}",
                    String::from_utf8_lossy(&raw)
                );
                let text = String::from_utf8(raw[..raw.len() - 2].to_vec()).expect("UTF-8 reply");
                return Some(text);
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(WAIT, self.io.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no reply within {WAIT:?} (pending: {:?})",
                        String::from_utf8_lossy(&self.buf)
                    )
                })
                .unwrap_or(0);
            if n == 0 {
                assert!(
                    self.buf.is_empty(),
                    "connection closed mid-line: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// All lines of the next reply (multi-line replies handled).
    async fn reply(&mut self) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        loop {
            let line = self
                .line()
                .await
                .unwrap_or_else(|| panic!("connection closed; reply so far: {lines:?}"));
            assert!(
                line.len() >= 4
                    && line[..3].bytes().all(|b| b.is_ascii_digit())
                    && matches!(&line[3..4], " " | "-"),
                "malformed reply line {line:?}"
            );
            let last = &line[3..4] == " ";
            if let Some(first) = lines.first() {
                assert_eq!(&first[..3], &line[..3], "one code per reply");
            }
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// Reads a reply whose last line starts with `prefix` (e.g. "550 5.1.1");
    /// returns that line.
    async fn expect(&mut self, prefix: &str) -> String {
        let lines = self.reply().await;
        let last = lines.last().expect("a reply has a line").clone();
        assert!(
            last.starts_with(prefix),
            "expected {prefix:?}, got {lines:?}"
        );
        last
    }

    async fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send(format!("{line}\r\n")).await;
        self.expect(expect).await
    }

    /// EHLO; returns the extension keywords announced.
    async fn ehlo(&mut self, host: &str) -> Vec<String> {
        self.send(format!("EHLO {host}\r\n")).await;
        let lines = self.reply().await;
        assert_eq!(lines[0], format!("250-{HOST}"), "EHLO reply {lines:?}");
        assert!(lines.iter().all(|l| l.starts_with("250")), "{lines:?}");
        lines[1..].iter().map(|l| l[4..].to_string()).collect()
    }

    async fn mail_from(&mut self, addr: &str, expect: &str) -> String {
        self.cmd(&format!("MAIL FROM:<{addr}>"), expect).await
    }

    async fn rcpt_to(&mut self, addr: &str, expect: &str) -> String {
        self.cmd(&format!("RCPT TO:<{addr}>"), expect).await
    }

    /// DATA, then `message` as given (dot-stuffing and the final ".\r\n"
    /// are the caller's), then the reply to the end of data.
    async fn data(&mut self, message: impl AsRef<[u8]>, expect: &str) -> String {
        self.cmd("DATA", "354 ").await;
        self.send(message).await;
        self.expect(expect).await
    }

    /// A whole transaction that must be queued; returns the final reply.
    async fn transaction(&mut self, rcpt: &str, body: &[u8]) -> String {
        self.mail_from(SENDER, "250 2.1.0").await;
        self.rcpt_to(rcpt, "250 2.1.5").await;
        let mut data = body.to_vec();
        data.extend_from_slice(b".\r\n");
        self.data(data, "250 2.0.0 Ok: queued as ").await
    }

    /// The server has closed the connection and the session task ended.
    async fn closed(&mut self) {
        if let Some(line) = self.line().await {
            panic!("expected the connection to close, got {line:?}");
        }
        if let Some(session) = self.session.take() {
            timeout(WAIT, session)
                .await
                .expect("session task ends")
                .expect("session task did not panic");
        }
    }

    async fn quit(mut self) {
        self.cmd("QUIT", "221 2.0.0").await;
        self.closed().await;
    }
}

// ---------------------------------------------------------------------------
// A deterministic stream: one given chunk per read, then EOF; records writes.
// ---------------------------------------------------------------------------

struct Scripted {
    chunks: VecDeque<Vec<u8>>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = self.chunks.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                chunk.drain(..n);
                self.chunks.push_front(chunk);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.lock().unwrap().extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The reply lines of a transcript, with queue ids normalized.
fn lines_of(out: &[u8]) -> Vec<String> {
    let text = String::from_utf8(out.to_vec()).expect("UTF-8 transcript");
    normalize_ids(&text)
        .split_terminator("\r\n")
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// Greeting, EHLO and the simple verbs.
// ---------------------------------------------------------------------------

const EXTENSIONS: [&str; 6] = [
    "PIPELINING",
    "SIZE 1048576",
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    "CHUNKING",
];

#[tokio::test]
async fn greeting_and_ehlo_extensions() {
    let h = Harness::new(|c| c.smtp.max_message_size = ByteSize(1024 * 1024));
    let mut c = h.connect().await;
    assert_eq!(c.ehlo("client.test").await, EXTENSIONS);
    // EHLO may be repeated; the answer is the same
    assert_eq!(c.ehlo("client.test").await, EXTENSIONS);
    c.quit().await;
}

#[tokio::test]
async fn ehlo_offers_starttls_only_when_configured_and_not_active() {
    let h = Harness::with_tls(|c| c.smtp.max_message_size = ByteSize(1024 * 1024));
    let mut c = h.connect().await;
    let mut expected: Vec<&str> = EXTENSIONS.to_vec();
    expected.insert(5, "STARTTLS");
    assert_eq!(c.ehlo("client.test").await, expected);
    c.quit().await;
}

#[tokio::test]
async fn helo_noop_help_vrfy_quit() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    // HELO: one line, no extensions
    c.send("HELO client.test\r\n").await;
    assert_eq!(c.reply().await, [format!("250 {HOST}")]);
    c.cmd("NOOP", "250 2.0.0").await;
    c.cmd("NOOP with an argument", "250 2.0.0").await;
    c.cmd("HELP", "214 2.0.0").await;
    c.cmd("HELP DATA", "214 2.0.0").await;
    c.cmd("VRFY hello@d.country", "252 2.5.2").await;
    c.cmd("vrfy nobody", "252 2.5.2").await;
    c.quit().await;
}

#[tokio::test]
async fn unimplemented_and_unknown_commands() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.cmd("EXPN team@d.country", "502 5.5.1").await;
    c.cmd("AUTH PLAIN AGFAYg==", "502 5.5.1").await;
    c.cmd("ETRN d.country", "502 5.5.1").await;
    c.cmd("FROBNICATE", "500 5.5.2").await;
    c.cmd("", "500 5.5.2").await;
    // the session is still usable
    c.cmd("NOOP", "250 2.0.0").await;
    c.quit().await;
}

#[tokio::test]
async fn syntax_errors() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.cmd("EHLO", "501 5.5.4").await;
    c.cmd("HELO", "501 5.5.4").await;
    c.ehlo("client.test").await;
    c.cmd("MAIL FROM:sender@origin.test", "501 5.5.4").await;
    c.cmd("MAIL TO:<sender@origin.test>", "501 5.5.4").await;
    c.cmd("MAIL FROM:<no-domain>", "501 5.1.7").await;
    c.cmd("MAIL FROM:<a@b.test> FOO=BAR", "555 5.5.4").await;
    c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME", "504 5.5.4")
        .await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.cmd("RCPT TO:hello@d.country", "501 5.5.4").await;
    c.cmd("RCPT TO:<no-domain>", "501 5.1.3").await;
    c.cmd("BDAT", "501 5.5.4").await;
    c.cmd("BDAT many", "501 5.5.4").await;
    // none of that broke the transaction
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.data("Subject: x\r\n\r\nx\r\n.\r\n", "250 2.0.0").await;
    c.quit().await;
}

// ---------------------------------------------------------------------------
// Command sequence.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn command_sequence_is_enforced() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.mail_from(SENDER, "503 5.5.1").await; // before EHLO
    c.ehlo("client.test").await;
    c.rcpt_to("hello@d.country", "503 5.5.1").await; // before MAIL
    c.cmd("DATA", "503 5.5.1").await; // before MAIL
    c.mail_from(SENDER, "250 2.1.0").await;
    c.mail_from(SENDER, "503 5.5.1").await; // nested
    c.cmd("DATA", "554 5.5.1").await; // no recipient at all
    c.rcpt_to("nobody@d.country", "550 5.1.1").await;
    c.cmd("DATA", "554 5.5.1").await; // no valid recipient
    // the transaction survives and completes
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let reply = c
        .data(
            "Subject: seq\r\n\r\nbody\r\n.\r\n",
            "250 2.0.0 Ok: queued as ",
        )
        .await;
    let (entry, _) = h.queued(&reply);
    assert_eq!(entry.recipients.len(), 1);
    // after the message, a new transaction needs a new MAIL
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    c.quit().await;
    assert_eq!(h.queue_len(), 1);
}

#[tokio::test]
async fn rset_and_ehlo_clear_the_transaction() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.cmd("RSET", "250 2.0.0").await;
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    c.cmd("DATA", "503 5.5.1").await;
    c.mail_from(SENDER, "250 2.1.0").await; // not nested: RSET ended it
    c.rcpt_to("team@d.country", "250 2.1.5").await;
    c.ehlo("client.test").await;
    c.cmd("DATA", "503 5.5.1").await;
    c.mail_from(SENDER, "250 2.1.0").await; // not nested: EHLO ended it
    // RSET outside a transaction is fine too
    c.cmd("RSET", "250 2.0.0").await;
    c.cmd("RSET", "250 2.0.0").await;
    c.quit().await;
    assert_eq!(h.queue_len(), 0);
}

// ---------------------------------------------------------------------------
// Recipients.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn known_aliases_tags_and_case_are_accepted() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.rcpt_to("HeLLo+News@D.Country", "250 2.1.5").await;
    c.rcpt_to("team+x@d.country", "250 2.1.5").await;
    let reply = c
        .data(
            "Subject: r\r\n\r\nbody\r\n.\r\n",
            "250 2.0.0 Ok: queued as ",
        )
        .await;
    let (entry, message) = h.queued(&reply);
    // one copy per destination, whatever recipient reached it
    let dest: Vec<(&str, &str, &str)> = entry
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.rcpt.as_str(), r.alias.as_str()))
        .collect();
    assert_eq!(
        dest,
        [
            ("a@dest.test", "hello@d.country", "hello@d.country"),
            ("b@dest.test", "team+x@d.country", "team@d.country"),
            ("c@dest.test", "team+x@d.country", "team@d.country"),
        ]
    );
    assert!(
        entry
            .recipients
            .iter()
            .all(|r| r.status == RcptStatus::Pending && r.attempts == 0)
    );
    // several recipients: the trace header names none of them
    let (received, _) = split_trace(&message);
    assert!(!received.contains("for <"), "{received}");
    c.quit().await;
}

#[tokio::test]
async fn unknown_and_foreign_recipients_are_refused() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("nobody@d.country", "550 5.1.1").await;
    c.rcpt_to("+tag@d.country", "550 5.1.1").await;
    c.rcpt_to("hello@other.country", "550 5.7.1").await;
    c.rcpt_to("victim@gmail.test", "550 5.7.1").await;
    c.rcpt_to("hello@d.country.evil.test", "550 5.7.1").await;
    c.cmd("DATA", "554 5.5.1").await;
    c.quit().await;
    assert_eq!(h.queue_len(), 0);
}

#[tokio::test]
async fn postmaster_is_accepted_when_configured() {
    let h = Harness::new(|c| c.aliases.postmaster = "ops@ops.test".into());
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("postmaster", "250 2.1.5").await;
    c.rcpt_to("PostMaster@d.country", "250 2.1.5").await;
    c.rcpt_to("postmaster@other.test", "550 5.7.1").await;
    c.quit().await;

    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("postmaster", "550 5.1.1").await;
    c.rcpt_to("postmaster@d.country", "550 5.1.1").await;
    c.quit().await;
}

#[tokio::test]
async fn bounces_to_srs_addresses_are_verified_at_rcpt() {
    let h = Harness::new(|_| {});
    let srs = h.ctx.srs.as_ref().expect("srs is on");
    let minted = srs.forward("alice@origin.test");
    assert!(minted.ends_with("@srs.relay.test"), "{minted}");
    let mut c = h.connect().await;
    c.ehlo("mx.remote.test").await;
    c.mail_from("", "250 2.1.0").await;
    c.rcpt_to(&minted, "250 2.1.5").await;
    // a forged hash and a made-up address at the SRS domain
    let forged = minted.replacen("SRS0=", "SRS0=x", 1);
    c.rcpt_to(&forged, "550 5.1.1").await;
    c.rcpt_to("SRS0=abcd=ZZ=evil.test=x@srs.relay.test", "550 5.1.1")
        .await;
    c.rcpt_to("anyone@srs.relay.test", "550 5.1.1").await;
    let reply = c
        .data(b"Subject: bounce\r\n\r\nreturned\r\n.\r\n", "250 2.0.0")
        .await;
    let (entry, _) = h.queued(&reply);
    assert_eq!(entry.sender, "");
    assert_eq!(
        entry.envelope_from, None,
        "the null sender is never rewritten"
    );
    assert_eq!(entry.recipients[0].address, "alice@origin.test");
    c.quit().await;
}

#[tokio::test]
async fn forwarded_senders_are_rewritten_except_local_and_null() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    for (sender, rewritten) in [("bob@origin.test", true), ("me@d.country", false)] {
        c.mail_from(sender, "250 2.1.0").await;
        c.rcpt_to("hello@d.country", "250 2.1.5").await;
        let reply = c
            .data(b"Subject: x\r\n\r\nbody\r\n.\r\n", "250 2.0.0")
            .await;
        let (entry, _) = h.queued(&reply);
        assert_eq!(entry.sender, sender, "the original sender is kept for DSNs");
        match &entry.envelope_from {
            Some(srs) if rewritten => {
                assert!(srs.starts_with("SRS0="), "{srs}");
                assert_eq!(h.ctx.srs.as_ref().unwrap().reverse(srs).unwrap(), sender);
            }
            None if !rewritten => {}
            other => panic!("{sender}: unexpected envelope {other:?}"),
        }
    }
    c.quit().await;
}

#[tokio::test]
async fn absurd_bdat_sizes_end_the_session() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.send("BDAT 100000000000000000000005 LAST\r\nhello").await;
    c.expect("421 4.7.0").await;
    assert_eq!(h.queue_len(), 0);
}

#[tokio::test]
async fn relay_tricks_are_refused_even_with_a_catch_all() {
    let h = Harness::new(|_| {});
    // with a catch-all, a trick on the local domain would otherwise match
    h.catch_all();
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.cmd(&format!("MAIL FROM:<{SENDER}> SMTPUTF8"), "250 2.1.0")
        .await;
    for trick in [
        "<@a.country:u@evil.test>",
        "<@evil.test:hello@d.country>",
        "<@a.country,@b.country:hello@d.country>",
        "<u%evil.test@d.country>",
        "<evil!u@d.country>",
        "<evil.test!u@d.country>",
        "<\"u@evil.test\"@d.country>",
        "<\"hello\"@d.country>",
        "<u@[127.0.0.1]>",
        "<u@[IPv6:::1]>",
    ] {
        c.cmd(&format!("RCPT TO:{trick}"), "550 5.7.1").await;
    }
    // an invalid UTF-8 byte must not hide the trick from the check
    c.send(b"RCPT TO:<\"u@evil.test\"\xff@d.country>\r\n").await;
    c.expect("550 5.7.1").await;
    c.send(b"RCPT TO:<u%evil.test@d.country> NOTIFY=NEVER ORCPT=rfc822;u\xff@x.test\r\n")
        .await;
    c.expect("550 5.7.1").await;
    // the catch-all itself works
    c.rcpt_to("anyone@d.country", "250 2.1.5").await;
    c.quit().await;
}

#[tokio::test]
async fn too_many_recipients() {
    let h = Harness::new(|c| {
        c.smtp.max_recipients = 2;
        c.smtp.max_errors = 3;
    });
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.rcpt_to("team@d.country", "250 2.1.5").await;
    // a pipelining client sends all its recipients at once; the extra ones
    // are deferred (it sends them again later), which is not a client
    // error that may end the session and lose the whole transaction
    let mut batch = String::new();
    for i in 0..6 {
        batch.push_str(&format!("RCPT TO:<hello+{i}@d.country>\r\n"));
    }
    batch.push_str("DATA\r\n");
    c.send(batch).await;
    for _ in 0..6 {
        c.expect("452 4.5.3").await;
    }
    c.expect("354 ").await;
    c.send("Subject: many\r\n\r\nbody\r\n.\r\n").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    let (entry, _) = h.queued(&reply);
    let dest: Vec<&str> = entry
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(dest, ["a@dest.test", "b@dest.test", "c@dest.test"]);
    c.quit().await;
}

// ---------------------------------------------------------------------------
// Message size.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn declared_size_over_the_limit_is_refused_at_mail() {
    let h = Harness::new(|c| c.smtp.max_message_size = ByteSize(1024));
    let mut c = h.connect().await;
    assert!(c.ehlo("client.test").await.contains(&"SIZE 1024".into()));
    c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=1025"), "552 5.3.4")
        .await;
    c.cmd(
        &format!("MAIL FROM:<{SENDER}> SIZE=99999999999999999999999"),
        "552 5.3.4",
    )
    .await;
    c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=1024"), "250 2.1.0")
        .await;
    c.quit().await;
}

#[tokio::test]
async fn oversize_data_is_drained_and_the_session_goes_on() {
    let h = Harness::new(|c| c.smtp.max_message_size = ByteSize(1024));
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // exactly at the limit: accepted
    let reply = c.transaction("hello@d.country", &message_of(1024)).await;
    let (_, message) = h.queued(&reply);
    assert_eq!(split_trace(&message).1, message_of(1024));
    // one byte over, with command lines in the body: one 552 at the end,
    // nothing in the body is executed
    let mut big = message_of(1025);
    big.extend_from_slice(b"MAIL FROM:<x@y.test>\r\nRCPT TO:<team@d.country>\r\nQUIT\r\n");
    big.extend_from_slice(&message_of(3000));
    big.extend_from_slice(b".\r\n");
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.data(&big, "552 5.3.4").await;
    // the refused transaction is over; a normal one completes
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    let reply = c
        .transaction("team@d.country", b"Subject: small\r\n\r\nok\r\n")
        .await;
    let (entry, _) = h.queued(&reply);
    assert_eq!(entry.recipients.len(), 2);
    c.quit().await;
    assert_eq!(h.queue_len(), 2);
}

#[tokio::test]
async fn message_at_the_limit_is_accepted_however_its_end_is_split() {
    let h = Harness::new(|c| c.smtp.max_message_size = ByteSize(1024));
    let head = b"EHLO c.test\r\nMAIL FROM:<s@o.test>\r\nRCPT TO:<hello@d.country>\r\nDATA\r\n";
    let mut all = head.to_vec();
    all.extend_from_slice(&message_of(1024));
    all.extend_from_slice(b".\r\nQUIT\r\n");
    let end = all.len() - b"QUIT\r\n".len();
    // split anywhere in the final "\r\n.\r\n" (the ".\r" then waits in the
    // receiver for its "\n")
    for split in end - 5..=end {
        let out = h
            .script([all[..split].to_vec(), all[split..].to_vec()])
            .await;
        let lines = lines_of(&out);
        assert_eq!(
            lines[lines.len() - 2..],
            ["250 2.0.0 Ok: queued as <ID>", "221 2.0.0 Bye"],
            "split at {split}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn oversize_bdat_is_drained_and_the_session_goes_on() {
    let h = Harness::new(|c| {
        c.smtp.max_message_size = ByteSize(1024);
        c.smtp.max_errors = 4;
    });
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // one chunk over the limit; its content looks like commands
    let mut chunk = b"NOOP\r\n".repeat(200);
    chunk.truncate(1100);
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.send(format!("BDAT {} LAST\r\n", chunk.len())).await;
    c.send(&chunk).await;
    c.expect("552 5.3.4").await;
    c.cmd("NOOP", "250 2.0.0").await;
    // over the limit over several chunks, pipelined: every chunk after the
    // limit is refused, and the refusal counts as one error only
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let part = vec![b'z'; 400];
    let mut batch = Vec::new();
    for i in 0..6 {
        let last = if i == 5 { " LAST" } else { "" };
        batch.extend_from_slice(format!("BDAT 400{last}\r\n").as_bytes());
        batch.extend_from_slice(&part);
    }
    c.send(&batch).await;
    c.expect("250 2.0.0 400 octets received").await;
    c.expect("250 2.0.0 400 octets received").await;
    for _ in 2..6 {
        c.expect("552 5.3.4").await;
    }
    c.cmd("DATA", "503 5.5.1").await; // the BDAT transaction ended at LAST
    // the same session completes a normal transaction
    let reply = c
        .transaction("hello@d.country", b"Subject: after\r\n\r\nok\r\n")
        .await;
    h.queued(&reply);
    c.quit().await;
    assert_eq!(h.queue_len(), 1);
}

// ---------------------------------------------------------------------------
// Line length, errors, timeouts.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn long_command_lines_are_refused_and_the_session_goes_on() {
    let h = Harness::new(|c| c.smtp.max_line_length = 512);
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // 512 bytes with the CRLF: accepted
    let fits = format!("NOOP {}", "x".repeat(512 - 5 - 2));
    c.cmd(&fits, "250 2.0.0").await;
    let over = format!("NOOP {}", "x".repeat(512 - 5 - 1));
    c.cmd(&over, "500 5.5.2").await;
    let huge = format!("MAIL FROM:<{}@b.test>", "x".repeat(70_000));
    c.cmd(&huge, "500 5.5.2").await;
    // nothing of the long lines leaked into the next command
    c.mail_from(SENDER, "250 2.1.0").await;
    c.quit().await;
}

#[tokio::test]
async fn long_command_line_split_over_several_reads() {
    let h = Harness::new(|c| c.smtp.max_line_length = 512);
    let chunks = vec![
        b"EHLO c.test\r\nNOOP ".to_vec(),
        vec![b'x'; 300],
        vec![b'x'; 300],
        b"xx\r\nNOOP\r\nMAIL FROM:<".to_vec(),
        vec![b'y'; 400],
        vec![b'y'; 400],
        b"@b.test>\r\nRSET\r\nNOOP ".to_vec(),
        vec![b'z'; 250],
        vec![b'z'; 250],
        b"\r\nQUIT\r\n".to_vec(),
    ];
    let lines = lines_of(&h.script(chunks).await);
    let codes: Vec<&str> = lines.iter().map(|l| &l[..l.len().min(9)]).collect();
    assert_eq!(
        codes,
        [
            "220 relay",
            "250-relay",
            "250-PIPEL",
            "250-SIZE ",
            "250-8BITM",
            "250-SMTPU",
            "250-ENHAN",
            "250 CHUNK",
            "500 5.5.2", // NOOP x{600}
            "250 2.0.0", // NOOP
            "500 5.5.2", // MAIL FROM:<y{800}...
            "250 2.0.0", // RSET
            "250 2.0.0", // NOOP z{500}: 507 bytes fit
            "221 2.0.0",
        ]
    );
}

#[tokio::test]
async fn too_many_errors_end_the_session() {
    let h = Harness::new(|c| c.smtp.max_errors = 3);
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.cmd("FROBNICATE", "500 5.5.2").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("nobody@d.country", "550 5.1.1").await; // rejected recipients count
    c.cmd("NOOP", "250 2.0.0").await; // good commands do not reset the count
    c.cmd("EXPN team", "421 4.7.0").await;
    c.closed().await;
}

#[tokio::test]
async fn idle_session_times_out() {
    let h = Harness::new(|c| {
        c.smtp.command_timeout = HumanDuration(Duration::from_millis(300));
        c.smtp.data_timeout = HumanDuration::secs(30);
    });
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    let start = Instant::now();
    let reply = c.expect("421 4.4.2").await;
    assert!(reply.contains(HOST), "{reply}");
    c.closed().await;
    // (the session's clock started just before the EHLO reply was seen)
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test]
async fn stalled_data_times_out() {
    let h = Harness::new(|c| {
        c.smtp.command_timeout = HumanDuration::secs(30);
        c.smtp.data_timeout = HumanDuration(Duration::from_millis(300));
    });
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    c.send("Subject: stalled\r\n\r\nhalf a mess").await;
    let start = Instant::now();
    c.expect("421 4.4.2").await;
    c.closed().await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(h.queue_len(), 0);
}

// ---------------------------------------------------------------------------
// DATA.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn message_is_durable_before_250() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    let body = b"Subject: durable\r\nMessage-ID: <m1@origin.test>\r\n\r\nhello\r\n";
    let reply = c.transaction("hello@d.country", body).await;
    // read as soon as the 250 is seen
    let (entry, message) = h.queued(&reply);
    let id = queue_id(&reply).unwrap();
    assert_eq!(entry.sender, SENDER);
    assert_eq!(entry.client_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(entry.helo.as_deref(), Some("client.test"));
    assert_eq!(entry.subject.as_deref(), Some("durable"));
    assert_eq!(entry.message_id.as_deref(), Some("<m1@origin.test>"));
    assert!(!entry.smtputf8 && !entry.body_8bit && !entry.is_dsn);
    assert_eq!(entry.recipients.len(), 1);
    assert_eq!(entry.recipients[0].address, "a@dest.test");
    assert!(entry.due.is_some(), "the entry is in the due index");
    let (received, rest) = split_trace(&message);
    assert_eq!(rest, body);
    let expected = format!(
        "Received: from client.test ([192.0.2.7])\r\n\tby {HOST} (eas-relay)\r\n\twith ESMTP id {}\r\n\tfor <hello@d.country>; ",
        crate::store::format_queue_id(id)
    );
    assert!(received.starts_with(&expected), "{received:?}");
    c.quit().await;
}

#[tokio::test]
async fn dots_on_the_first_line_and_empty_messages() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    for (sent, stored) in [
        (&b"..x\r\n.\r\n"[..], &b".x\r\n"[..]),
        (b"..\r\n.\r\n", b".\r\n"),
        (b".\r\n", b""),
        (b"\r\n.\r\n", b"\r\n"),
        (b"a\r\n...\r\n..b\r\n.\r\n", b"a\r\n..\r\n.b\r\n"),
    ] {
        c.mail_from(SENDER, "250 2.1.0").await;
        c.rcpt_to("hello@d.country", "250 2.1.5").await;
        let reply = c.data(sent, "250 2.0.0 Ok: queued as ").await;
        let (_, message) = h.queued(&reply);
        assert_eq!(
            split_trace(&message).1,
            stored,
            "sent {:?}",
            String::from_utf8_lossy(sent)
        );
    }
    c.quit().await;
}

#[tokio::test]
async fn bare_lf_or_cr_dot_does_not_end_data() {
    // SMTP smuggling: only CRLF.CRLF ends the data; a bare CR or LF is
    // normalized to CRLF, so it is content and stays content downstream
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    for ending in ["\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r\r\n"] {
        c.mail_from(SENDER, "250 2.1.0").await;
        c.rcpt_to("hello@d.country", "250 2.1.5").await;
        let smuggled = format!(
            "Subject: s\r\n\r\na{ending}MAIL FROM:<admin@d.country>\r\nRCPT TO:<team@d.country>\r\nDATA\r\nsmuggled\r\n.\r\n"
        );
        let reply = c.data(&smuggled, "250 2.0.0 Ok: queued as ").await;
        let (entry, message) = h.queued(&reply);
        assert_eq!(entry.sender, SENDER, "ending {ending:?}");
        let body = String::from_utf8(split_trace(&message).1).unwrap();
        assert!(
            body.contains(
                "MAIL FROM:<admin@d.country>\r\nRCPT TO:<team@d.country>\r\nDATA\r\nsmuggled\r\n"
            ),
            "ending {ending:?}: {body:?}"
        );
        // nothing was executed: the next MAIL is not nested, no other reply
        c.mail_from(SENDER, "250 2.1.0").await;
        c.cmd("RSET", "250 2.0.0").await;
    }
    c.quit().await;
    assert_eq!(h.queue_len(), 5);
}

#[tokio::test]
async fn mail_loops_are_refused_at_end_of_data() {
    let h = Harness::new(|c| c.smtp.max_received_headers = 3);
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    let hops = |n: usize| {
        let mut m = String::new();
        for i in 0..n {
            m.push_str(&format!("Received: from h{i}.test\r\n\tby x; date\r\n"));
        }
        m.push_str("Subject: loop\r\n\r\nReceived: in the body does not count\r\n.\r\n");
        m
    };
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.data(hops(3), "554 5.4.6").await;
    c.mail_from(SENDER, "250 2.1.0").await; // the refused transaction ended
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let reply = c.data(hops(2), "250 2.0.0 Ok: queued as ").await;
    h.queued(&reply);
    c.quit().await;
    assert_eq!(h.queue_len(), 1);
}

// ---------------------------------------------------------------------------
// BDAT (CHUNKING).
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bdat_chunks_make_the_message() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // chunks with and without LAST, ending with BDAT 0 LAST; chunk data is
    // taken verbatim (no dot-unstuffing, "." lines are content)
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let chunks: [&[u8]; 3] = [b"Subject: chunks\r\n", b"\r\n..dots\r\n.\r\n", b"end\r\n"];
    for chunk in chunks {
        c.send(format!("BDAT {}\r\n", chunk.len())).await;
        c.send(chunk).await;
        c.expect(&format!("250 2.0.0 {} octets received", chunk.len()))
            .await;
    }
    c.send("BDAT 0 LAST\r\n").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    let (_, message) = h.queued(&reply);
    assert_eq!(split_trace(&message).1, chunks.concat());

    // one LAST chunk, pipelined with the envelope and QUIT
    let body = b"Subject: one\r\n\r\nsingle chunk\r\n";
    let mut batch = format!(
        "MAIL FROM:<{SENDER}>\r\nRCPT TO:<team@d.country>\r\nBDAT {} LAST\r\n",
        body.len()
    )
    .into_bytes();
    batch.extend_from_slice(body);
    batch.extend_from_slice(b"NOOP\r\n");
    c.send(&batch).await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    c.expect("250 2.0.0").await;
    let (entry, message) = h.queued(&reply);
    assert_eq!(split_trace(&message).1, body);
    assert_eq!(entry.recipients.len(), 2);

    // BDAT 0 LAST alone: an empty message
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    let reply = c.cmd("BDAT 0 LAST", "250 2.0.0 Ok: queued as ").await;
    let (_, message) = h.queued(&reply);
    assert_eq!(split_trace(&message).1, b"");
    c.quit().await;
    assert_eq!(h.queue_len(), 3);
}

#[tokio::test]
async fn bdat_out_of_sequence_is_drained() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // no MAIL: the chunk (which looks like commands) is read and refused
    c.send("BDAT 6\r\nNOOP\r\n").await;
    c.expect("503 5.5.1").await;
    c.send("BDAT 12 LAST\r\nMAIL FROM:<>").await;
    c.expect("503 5.5.1").await;
    c.cmd("NOOP", "250 2.0.0").await;
    // MAIL but no valid recipient
    c.mail_from(SENDER, "250 2.1.0").await;
    c.send("BDAT 6 LAST\r\nRSET\r\n").await;
    c.expect("554 5.5.1").await;
    // a BDAT transaction does not take DATA
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.send("BDAT 3\r\nabc").await;
    c.expect("250 2.0.0 3 octets received").await;
    c.cmd("DATA", "503 5.5.1").await;
    c.send("BDAT 3 LAST\r\ndef").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    assert_eq!(split_trace(&h.queued(&reply).1).1, b"abcdef");
    c.quit().await;
    assert_eq!(h.queue_len(), 1);
}

// ---------------------------------------------------------------------------
// STARTTLS.
// ---------------------------------------------------------------------------

async fn tls_handshake(
    c: Client<DuplexStream>,
) -> Client<tokio_rustls::client::TlsStream<DuplexStream>> {
    assert!(c.buf.is_empty(), "nothing after the 220");
    let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config());
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let tls = timeout(WAIT, connector.connect(name, c.io))
        .await
        .expect("handshake in time")
        .expect("handshake succeeds");
    Client {
        io: tls,
        buf: Vec::new(),
        session: c.session,
    }
}

#[tokio::test]
async fn starttls_upgrades_the_session() {
    let h = Harness::with_tls(|_| {});
    let mut c = h.connect().await;
    assert!(c.ehlo("client.test").await.contains(&"STARTTLS".into()));
    c.mail_from(SENDER, "250 2.1.0").await;
    c.cmd("STARTTLS", "220 2.0.0").await;
    let mut c = tls_handshake(c).await;
    // state is forgotten: EHLO first, and the old transaction is gone
    c.mail_from(SENDER, "503 5.5.1").await;
    let extensions = c.ehlo("client.test").await;
    assert!(!extensions.contains(&"STARTTLS".into()), "{extensions:?}");
    assert!(extensions.contains(&"CHUNKING".into()), "{extensions:?}");
    c.cmd("STARTTLS", "503 5.5.1").await;
    let reply = c
        .transaction("hello@d.country", b"Subject: tls\r\n\r\nsecret\r\n")
        .await;
    let (_, message) = h.queued(&reply);
    let (received, body) = split_trace(&message);
    assert!(received.contains("\twith ESMTPS id "), "{received}");
    assert!(received.contains("(using TLSv1."), "{received}");
    assert_eq!(body, b"Subject: tls\r\n\r\nsecret\r\n");
    c.quit().await;
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    let h = Harness::with_tls(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    // injection: plaintext commands sent with STARTTLS must not run
    c.send(format!(
        "STARTTLS\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<hello@d.country>\r\n"
    ))
    .await;
    c.expect("220 2.0.0").await;
    let mut c = tls_handshake(c).await;
    // no plaintext reply was written before the handshake (it would have
    // broken it), and the injected MAIL did not start a transaction
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    c.ehlo("client.test").await;
    c.rcpt_to("hello@d.country", "503 5.5.1").await;
    c.quit().await;
    assert_eq!(h.queue_len(), 0);
}

#[tokio::test]
async fn starttls_when_not_configured() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    assert!(!c.ehlo("client.test").await.contains(&"STARTTLS".into()));
    c.cmd("STARTTLS", "502 5.5.1").await;
    c.cmd("NOOP", "250 2.0.0").await;
    c.quit().await;
}

// ---------------------------------------------------------------------------
// SMTPUTF8.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn non_ascii_addresses_need_smtputf8() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from("üser@bücher.test", "553 5.6.7").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hellö@d.country", "553 5.6.7").await;
    c.cmd("RSET", "250 2.0.0").await;
    c.send(b"MAIL FROM:<\xfcser@b.test> SMTPUTF8\r\n").await;
    c.expect("501 5.1.7").await;
    c.cmd("MAIL FROM:<üser@bücher.test> SMTPUTF8", "250 2.1.0")
        .await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.rcpt_to("hellö@d.country", "550 5.1.1").await; // allowed, but unknown
    // invalid UTF-8 is not an address (smtp-proto would decode it lossily,
    // and the catch-all would take it)
    h.catch_all();
    c.send(b"RCPT TO:<hell\xff@d.country>\r\n").await;
    c.expect("501 5.1.3").await;
    let body = "Subject: grüße\r\n\r\nÄ\r\n".as_bytes();
    let mut data = body.to_vec();
    data.extend_from_slice(b".\r\n");
    let reply = c.data(data, "250 2.0.0 Ok: queued as ").await;
    let (entry, message) = h.queued(&reply);
    assert_eq!(entry.sender, "üser@bücher.test");
    assert!(entry.smtputf8 && entry.body_8bit);
    let (received, rest) = split_trace(&message);
    assert!(received.contains("\twith UTF8SMTP id "), "{received}");
    assert_eq!(rest, body);
    c.quit().await;
}

// ---------------------------------------------------------------------------
// Shutdown.
// ---------------------------------------------------------------------------

/// Gives the session task every chance to act on what it has seen.
async fn let_session_run() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn shutdown_closes_idle_sessions() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    h.shut_down();
    c.expect("421 4.3.0").await;
    c.closed().await;
    // a session that starts after the shutdown is told at once
    let mut late = h.connect().await;
    late.expect("421 4.3.0").await;
    late.closed().await;
}

#[tokio::test]
async fn shutdown_lets_a_message_in_data_finish() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    c.send("Subject: last one\r\n\r\nfirst half\r\n").await;
    h.shut_down();
    let_session_run().await;
    c.send("second half\r\n.\r\n").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    let (_, message) = h.queued(&reply);
    assert_eq!(
        split_trace(&message).1,
        b"Subject: last one\r\n\r\nfirst half\r\nsecond half\r\n"
    );
    c.expect("421 4.3.0").await;
    c.closed().await;
}

#[tokio::test]
async fn shutdown_lets_a_bdat_message_finish() {
    let h = Harness::new(|_| {});
    let mut c = h.connect().await;
    c.ehlo("client.test").await;
    c.mail_from(SENDER, "250 2.1.0").await;
    c.rcpt_to("hello@d.country", "250 2.1.5").await;
    c.send("BDAT 6\r\nfirst ").await;
    c.expect("250 2.0.0 6 octets received").await;
    h.shut_down();
    let_session_run().await;
    c.send("BDAT 6 LAST\r\nsecond").await;
    let reply = c.expect("250 2.0.0 Ok: queued as ").await;
    assert_eq!(split_trace(&h.queued(&reply).1).1, b"first second");
    c.expect("421 4.3.0").await;
    c.closed().await;
}

// ---------------------------------------------------------------------------
// Pipelining: the same bytes give the same answers however they are split.
// ---------------------------------------------------------------------------

const PIPELINED_DATA: &[u8] = b"EHLO client.test\r\n\
MAIL FROM:<sender@origin.test>\r\n\
RCPT TO:<hello@d.country>\r\n\
RCPT TO:<team@d.country>\r\n\
DATA\r\n\
Subject: pipelined\r\n\
\r\n\
line one\r\n\
..dot-stuffed line\r\n\
.\r\n\
RSET\r\n\
NOOP\r\n\
QUIT\r\n";

const PIPELINED_DATA_MESSAGE: &[u8] =
    b"Subject: pipelined\r\n\r\nline one\r\n.dot-stuffed line\r\n";

const PIPELINED_BDAT: &[u8] = b"EHLO client.test\r\n\
MAIL FROM:<sender@origin.test>\r\n\
RCPT TO:<hello@d.country>\r\n\
RCPT TO:<team@d.country>\r\n\
BDAT 20\r\n\
Subject: chunked\r\n\r\n\
BDAT 14 LAST\r\n\
..x\r\n.\r\nbody\r\n\
RSET\r\n\
NOOP\r\n\
QUIT\r\n";

const PIPELINED_BDAT_MESSAGE: &[u8] = b"Subject: chunked\r\n\r\n..x\r\n.\r\nbody\r\n";

/// Runs `script` whole and split in two at every byte boundary; every run
/// must give the same replies and queue the same message.
async fn check_every_split(script: &[u8], expected_message: &[u8], expected_replies: &[&str]) {
    let h = Harness::new(|_| {});
    let whole = h.script([script.to_vec()]).await;
    let lines = lines_of(&whole);
    assert_eq!(lines, expected_replies);
    let mut all_ids = Vec::new();
    let transcript = String::from_utf8(whole.clone()).unwrap();
    all_ids.push(queue_id(&transcript).expect("queued"));
    for split in 1..script.len() {
        let out = h
            .script([script[..split].to_vec(), script[split..].to_vec()])
            .await;
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            normalize_ids(&text),
            normalize_ids(&transcript),
            "split at {split}: {:?} | {:?}",
            String::from_utf8_lossy(&script[..split]),
            String::from_utf8_lossy(&script[split..])
        );
        all_ids.push(queue_id(&text).expect("queued"));
    }
    assert_eq!(all_ids.len(), script.len());
    all_ids.sort_unstable();
    all_ids.dedup();
    assert_eq!(all_ids.len(), script.len(), "one message per run");
    assert_eq!(h.queue_len(), script.len());
    for id in all_ids {
        let reply = format!("queued as {}", crate::store::format_queue_id(id));
        let (entry, message) = h.queued(&reply);
        assert_eq!(entry.sender, "sender@origin.test");
        let dest: Vec<&str> = entry
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(dest, ["a@dest.test", "b@dest.test", "c@dest.test"]);
        assert_eq!(split_trace(&message).1, expected_message);
    }
}

fn ehlo_lines() -> Vec<&'static str> {
    vec![
        "250-relay.test",
        "250-PIPELINING",
        "250-SIZE 26214400",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
        "250 CHUNKING",
    ]
}

#[tokio::test]
async fn pipelined_data_transaction_gives_the_same_answers_for_every_split() {
    let mut expected = vec!["220 relay.test ESMTP eas-relay"];
    expected.extend(ehlo_lines());
    expected.extend([
        "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK",
        "250 2.1.5 Recipient OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Ok: queued as <ID>",
        "250 2.0.0 Ok",
        "250 2.0.0 Ok",
        "221 2.0.0 Bye",
    ]);
    check_every_split(PIPELINED_DATA, PIPELINED_DATA_MESSAGE, &expected).await;
}

#[tokio::test]
async fn pipelined_bdat_transaction_gives_the_same_answers_for_every_split() {
    let mut expected = vec!["220 relay.test ESMTP eas-relay"];
    expected.extend(ehlo_lines());
    expected.extend([
        "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK",
        "250 2.1.5 Recipient OK",
        "250 2.0.0 20 octets received",
        "250 2.0.0 Ok: queued as <ID>",
        "250 2.0.0 Ok",
        "250 2.0.0 Ok",
        "221 2.0.0 Bye",
    ]);
    check_every_split(PIPELINED_BDAT, PIPELINED_BDAT_MESSAGE, &expected).await;
}

// ---------------------------------------------------------------------------
// Fuzzing.
// ---------------------------------------------------------------------------

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config as PropConfig, RngSeed, TestRunner};

    /// Deterministic runs: the same cases every time, unless
    /// PROPTEST_CASES / PROPTEST_RNG_SEED ask for a longer or other run.
    fn runner(cases: u32) -> TestRunner {
        let mut config = PropConfig {
            failure_persistence: None,
            ..PropConfig::default()
        };
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = cases;
        }
        if config.rng_seed == RngSeed::Random {
            config.rng_seed = RngSeed::Fixed(0x5e55_1011);
        }
        TestRunner::new(config)
    }

    fn fuzz_harness() -> Harness {
        Harness::with_tls(|c| {
            c.smtp.max_line_length = 512;
            c.smtp.max_message_size = ByteSize(2048);
            c.smtp.max_recipients = 3;
            c.smtp.max_errors = 8;
        })
    }

    const TOKENS: &[&str] = &[
        "EHLO x.test\r\n",
        "HELO x.test\r\n",
        "MAIL FROM:<a@b.test>\r\n",
        "MAIL FROM:<> SIZE=10 SMTPUTF8 BODY=8BITMIME\r\n",
        "RCPT TO:<hello@d.country>\r\n",
        "RCPT TO:<team+x@d.country>\r\n",
        "RCPT TO:<@x.test:u@evil.test>\r\n",
        "DATA\r\n",
        "BDAT 5\r\n",
        "BDAT 3 LAST\r\n",
        "BDAT 0 LAST\r\n",
        "BDAT 99999\r\n",
        "STARTTLS\r\n",
        "RSET\r\n",
        "NOOP\r\n",
        "VRFY x\r\n",
        "QUIT\r\n",
        ".\r\n",
        "..\r\n",
        "\r\n",
        "\n.\n",
        "\r\n.\r\n",
        "\r",
        "\n",
        ".",
    ];

    /// The transcript is reply lines; after "220 2.0.0" to STARTTLS only
    /// the TLS handshake speaks (a record: alert or handshake).
    fn check(out: &[u8]) -> Result<(), TestCaseError> {
        const READY: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";
        let (plain, tls) = match memchr::memmem::find(out, READY) {
            Some(at) => out.split_at(at + READY.len()),
            None => (out, &[][..]),
        };
        check_reply_lines(plain).map_err(TestCaseError::fail)?;
        prop_assert!(
            tls.is_empty() || matches!(tls[0], 0x15 | 0x16),
            "plaintext after STARTTLS: {:?}",
            String::from_utf8_lossy(tls)
        );
        Ok(())
    }

    #[test]
    fn arbitrary_bytes_never_break_the_session() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let h = fuzz_harness();
        let input = (
            prop::collection::vec(any::<u8>(), 0..1500),
            prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        );
        runner(256)
            .run(&input, |(bytes, splits)| {
                let chunks = split_at(&bytes, &splits);
                let out = rt.block_on(h.script(chunks));
                check(&out)
            })
            .unwrap();
    }

    #[test]
    fn pipelined_transactions_mixed_with_garbage() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let h = fuzz_harness();
        let garbage = prop_oneof![
            prop::collection::vec(any::<u8>(), 1..40),
            prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
        ];
        let input = (
            prop::sample::select(vec![PIPELINED_DATA, PIPELINED_BDAT]),
            prop::collection::vec((any::<prop::sample::Index>(), garbage), 0..6),
            prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        );
        runner(256)
            .run(&input, |(script, inserts, splits)| {
                let mut bytes = script.to_vec();
                for (at, junk) in inserts {
                    let at = at.index(bytes.len() + 1);
                    bytes.splice(at..at, junk);
                }
                let chunks = split_at(&bytes, &splits);
                let out = rt.block_on(h.script(chunks));
                check(&out)
            })
            .unwrap();
    }

    /// Well-formed transactions split anywhere, several times, always give
    /// the same answers.
    #[test]
    fn pipelined_transactions_split_anywhere() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let h = Harness::new(|_| {});
        let whole_data = normalize_ids(
            &String::from_utf8(rt.block_on(h.script([PIPELINED_DATA.to_vec()]))).unwrap(),
        );
        let whole_bdat = normalize_ids(
            &String::from_utf8(rt.block_on(h.script([PIPELINED_BDAT.to_vec()]))).unwrap(),
        );
        let input = (
            any::<bool>(),
            prop::collection::vec(any::<prop::sample::Index>(), 1..12),
        );
        runner(64)
            .run(&input, |(bdat, splits)| {
                let (script, whole) = if bdat {
                    (PIPELINED_BDAT, &whole_bdat)
                } else {
                    (PIPELINED_DATA, &whole_data)
                };
                let out = rt.block_on(h.script(split_at(script, &splits)));
                let text = normalize_ids(&String::from_utf8(out).unwrap());
                prop_assert_eq!(&text, whole);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn request_parser_never_panics() {
        let tokens: Vec<Vec<u8>> = TOKENS
            .iter()
            .map(|t| t.as_bytes().to_vec())
            .chain(
                [
                    "MAIL",
                    "RCPT",
                    "FROM:",
                    "TO:",
                    "<",
                    ">",
                    "@",
                    "\"",
                    "\\",
                    ":",
                    ",",
                    " ",
                    "SIZE=",
                    "BODY=",
                    "NOTIFY=",
                    "ORCPT=",
                    "rfc822;",
                    "BDAT",
                    "LAST",
                    "AUTH",
                    "99999999999999999999999",
                    "0",
                    "=",
                    "[",
                    "]",
                    "%",
                    "!",
                    "\u{fc}",
                ]
                .iter()
                .map(|t| t.as_bytes().to_vec()),
            )
            .collect();
        let line = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(prop::sample::select(tokens), 0..16).prop_map(|t| t.concat()),
        ];
        let input = (line, any::<bool>());
        runner(4096)
            .run(&input, |(mut line, lf)| {
                if lf {
                    line.extend_from_slice(b"\r\n");
                }
                let _ = smtp_proto::Request::parse(&mut line.iter());
                Ok(())
            })
            .unwrap();
    }

    /// Splits `bytes` at the given positions (sorted, deduplicated).
    fn split_at(bytes: &[u8], at: &[prop::sample::Index]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = at.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in cuts {
            chunks.push(bytes[from..cut].to_vec());
            from = cut;
        }
        chunks.push(bytes[from..].to_vec());
        chunks
    }
}
