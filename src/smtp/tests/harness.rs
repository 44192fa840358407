//! The harness: a relay on real parts (store, queue, spool in a temporary
//! directory, the static domain `d.country`) and sessions started on it.

use super::client::Client;
use super::scripted::Scripted;
use super::{HOST, WAIT};
use crate::config::Config;
use crate::queue::{Queue, QueueSettings};
use crate::smtp::SmtpContext;
use crate::smtp::session;
use crate::spool::Spool;
use crate::store::{QueueEntry, Source, Store, parse_queue_id};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::DuplexStream;
use tokio::sync::watch;
use tokio::time::timeout;

pub(super) fn peer() -> SocketAddr {
    "192.0.2.7:40000".parse().expect("literal address")
}

pub(super) struct Harness {
    pub(super) ctx: Arc<SmtpContext>,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) _dir: tempfile::TempDir,
}

impl Harness {
    /// A relay without TLS; `tweak` adjusts the config (limits, timeouts).
    pub(super) fn new(tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::build(false, tweak)
    }

    /// A relay offering STARTTLS with a self-signed certificate.
    pub(super) fn with_tls(tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::build(true, tweak)
    }

    pub(super) fn build(tls: bool, tweak: impl FnOnce(&mut Config)) -> Harness {
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
                screen: crate::screen::Screen::from_config(&config)
                    .expect("screen")
                    .map(Arc::new),
                scanner: crate::scan::Scanner::from_config(&config).map(Arc::new),
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
    pub(super) fn catch_all(&self) {
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
    pub(super) fn connect_raw(&self) -> Client<DuplexStream> {
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
    pub(super) async fn connect(&self) -> Client<DuplexStream> {
        let mut c = self.connect_raw();
        let greeting = c.expect("220 ").await;
        assert_eq!(greeting, format!("220 {HOST} ESMTP eas-relay"));
        c
    }

    /// Runs a whole session over the scripted chunks (one per read, then
    /// EOF) and returns everything the server wrote.
    pub(super) async fn script(&self, chunks: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
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
    pub(super) fn queued(&self, reply: &str) -> (QueueEntry, Vec<u8>) {
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
    pub(super) fn queue_len(&self) -> usize {
        let (entries, damaged) = self.ctx.store.queue_scan().expect("queue scan");
        assert!(damaged.is_empty());
        entries.len()
    }

    pub(super) fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }
}

/// The queue id in "250 2.0.0 Ok: queued as 0123456789ABCDEF".
pub(super) fn queue_id(reply: &str) -> Option<u64> {
    let at = reply.find("queued as ")? + "queued as ".len();
    parse_queue_id(reply.get(at..at + 16)?)
}

/// Replaces every queue id in a transcript with `<ID>`.
pub(super) fn normalize_ids(transcript: &str) -> String {
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
pub(super) fn split_trace(message: &[u8]) -> (String, Vec<u8>) {
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
pub(super) fn message_of(len: usize) -> Vec<u8> {
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
pub(super) fn check_reply_lines(out: &[u8]) -> Result<(), String> {
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

/// The reply lines of a transcript, with queue ids normalized.
pub(super) fn lines_of(out: &[u8]) -> Vec<String> {
    let text = String::from_utf8(out.to_vec()).expect("UTF-8 transcript");
    normalize_ids(&text)
        .split_terminator("\r\n")
        .map(str::to_string)
        .collect()
}
