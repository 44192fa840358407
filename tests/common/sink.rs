//! A destination SMTP server for tests: records every transaction exactly
//! as it arrives (envelope and unstuffed data bytes), answers recipients
//! by rule (accept, 4xx, 5xx), can offer STARTTLS, and counts connections.

use rcgen::generate_simple_self_signed;
use smtp_proto::Request;
use smtp_proto::request::receiver::DataReceiver;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One message as the destination received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
    pub tls: bool,
    pub helo: String,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<Received>>,
    /// (substring of the recipient, reply) rules, first match wins.
    rules: Mutex<Vec<(String, String)>>,
    /// Reply to the final dot instead of 250 (None: accept).
    data_reply: Mutex<Option<String>>,
    connections: AtomicUsize,
    /// Every command line received, in order (without the message data).
    commands: Mutex<Vec<String>>,
    arrived: Notify,
    /// Connection tasks, aborted by `stop` (a stopped host drops its
    /// connections too).
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

pub struct TestSink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Options of a sink.
#[derive(Clone, Default)]
pub struct SinkOptions {
    pub starttls: bool,
    pub pipelining: bool,
    /// Announce SIZE with this limit (0: no SIZE).
    pub size: usize,
    /// Bind this address instead of 127.0.0.1:0.
    pub bind: Option<SocketAddr>,
    /// STARTTLS with this certificate (DER) and key (PKCS#8 DER) instead
    /// of a self-signed one for mx.dest.test.
    pub certificate: Option<(Vec<u8>, Vec<u8>)>,
}

impl TestSink {
    pub async fn start() -> TestSink {
        Self::with(SinkOptions {
            pipelining: true,
            ..SinkOptions::default()
        })
        .await
    }

    pub async fn with(options: SinkOptions) -> TestSink {
        let bind = options
            .bind
            .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let listener = TcpListener::bind(bind).await.expect("bind sink");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let acceptor = options.starttls.then(|| {
            let (cert, key) = options.certificate.clone().unwrap_or_else(|| {
                let c = generate_simple_self_signed(vec!["mx.dest.test".into()]).unwrap();
                (c.cert.der().to_vec(), c.signing_key.serialize_der())
            });
            let key = rustls_pki_types::PrivateKeyDer::try_from(key).unwrap();
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.into()], key)
            .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let task = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        break;
                    };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let shared = shared.clone();
                    let acceptor = acceptor.clone();
                    let options = options.clone();
                    let handle = tokio::spawn({
                        let shared = shared.clone();
                        async move { serve(stream, shared, acceptor, options).await }
                    });
                    shared.tasks.lock().unwrap().push(handle.abort_handle());
                }
            })
        };
        TestSink { addr, shared, task }
    }

    /// Recipients containing `pattern` get `reply` (e.g. "550 5.1.1 no such user").
    pub fn rule(&self, pattern: &str, reply: &str) {
        self.shared
            .rules
            .lock()
            .unwrap()
            .push((pattern.to_string(), reply.to_string()));
    }

    pub fn clear_rules(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Answers the end of data with `reply` instead of 250.
    pub fn data_reply(&self, reply: Option<&str>) {
        *self.shared.data_reply.lock().unwrap() = reply.map(str::to_string);
    }

    pub fn messages(&self) -> Vec<Received> {
        self.shared.messages.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The command lines received so far, on every connection.
    pub fn commands(&self) -> Vec<String> {
        self.shared.commands.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived; panics after `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "sink {}: expected {n} messages, got {}: {:#?}",
                    self.addr,
                    got.len(),
                    got
                );
            }
        }
    }

    /// Stops listening and drops every open connection; returns the address.
    pub fn stop(self) -> SocketAddr {
        self.task.abort();
        for task in self.shared.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        self.addr
    }
}

impl Drop for TestSink {
    fn drop(&mut self) {
        self.task.abort();
        for task in self.shared.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Gone,
}

async fn serve(
    stream: TcpStream,
    shared: Arc<Shared>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    options: SinkOptions,
) {
    let mut conn = Conn {
        io: Stream::Plain(stream),
        buf: Vec::new(),
        tls: false,
    };
    if conn
        .write("220 mx.dest.test ESMTP test sink\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut helo = String::new();
    let mut txn: Option<Received> = None;
    let mut accepted = 0usize;
    loop {
        let Some(line) = conn.line().await else {
            return;
        };
        shared
            .commands
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&line).trim_end().to_string());
        let request = Request::parse(&mut line.iter()).map(|r| r.into_owned());
        let reply = match request {
            Ok(Request::Ehlo { host }) => {
                helo = host;
                let mut r = String::from("250-mx.dest.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n");
                if options.pipelining {
                    r.push_str("250-PIPELINING\r\n");
                }
                if options.size > 0 {
                    r.push_str(&format!("250-SIZE {}\r\n", options.size));
                }
                if acceptor.is_some() && !conn.tls {
                    r.push_str("250-STARTTLS\r\n");
                }
                r.push_str("250 ENHANCEDSTATUSCODES\r\n");
                r
            }
            Ok(Request::Helo { host }) => {
                helo = host;
                "250 mx.dest.test\r\n".into()
            }
            Ok(Request::StartTls) if acceptor.is_some() && !conn.tls => {
                if conn.write("220 2.0.0 go ahead\r\n").await.is_err() {
                    return;
                }
                let Stream::Plain(plain) = std::mem::replace(&mut conn.io, Stream::Gone) else {
                    return;
                };
                let Ok(tls) = acceptor.as_ref().unwrap().accept(plain).await else {
                    return;
                };
                conn = Conn {
                    io: Stream::Tls(Box::new(tls)),
                    buf: Vec::new(),
                    tls: true,
                };
                txn = None;
                continue;
            }
            Ok(Request::Mail { from }) => {
                txn = Some(Received {
                    mail_from: from.address,
                    rcpt_to: Vec::new(),
                    data: Vec::new(),
                    tls: conn.tls,
                    helo: helo.clone(),
                });
                accepted = 0;
                "250 2.1.0 ok\r\n".into()
            }
            Ok(Request::Rcpt { to }) => {
                let rule = shared
                    .rules
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(p, _)| to.address.contains(p.as_str()))
                    .map(|(_, r)| r.clone());
                match (rule, txn.as_mut()) {
                    (Some(reply), _) => format!("{reply}\r\n"),
                    (None, Some(t)) => {
                        t.rcpt_to.push(to.address);
                        accepted += 1;
                        "250 2.1.5 ok\r\n".into()
                    }
                    (None, None) => "503 5.5.1 need MAIL\r\n".into(),
                }
            }
            Ok(Request::Data) => {
                if txn.is_none() || accepted == 0 {
                    "554 5.5.1 no valid recipients\r\n".into()
                } else {
                    if conn.write("354 go ahead\r\n").await.is_err() {
                        return;
                    }
                    let Some(data) = conn.data().await else {
                        return;
                    };
                    let mut t = txn.take().unwrap();
                    let reply = shared.data_reply.lock().unwrap().clone();
                    match reply {
                        Some(r) => format!("{r}\r\n"),
                        None => {
                            t.data = data;
                            shared.messages.lock().unwrap().push(t);
                            shared.arrived.notify_waiters();
                            "250 2.0.0 queued\r\n".into()
                        }
                    }
                }
            }
            Ok(Request::Rset) => {
                txn = None;
                "250 2.0.0 ok\r\n".into()
            }
            Ok(Request::Noop { .. }) => "250 2.0.0 ok\r\n".into(),
            Ok(Request::Quit) => {
                let _ = conn.write("221 2.0.0 bye\r\n").await;
                return;
            }
            _ => "500 5.5.2 what\r\n".into(),
        };
        if conn.write(&reply).await.is_err() {
            return;
        }
    }
}

struct Conn {
    io: Stream,
    buf: Vec<u8>,
    tls: bool,
}

impl Conn {
    async fn write(&mut self, s: &str) -> std::io::Result<()> {
        match &mut self.io {
            Stream::Plain(io) => {
                io.write_all(s.as_bytes()).await?;
                io.flush().await
            }
            Stream::Tls(io) => {
                io.write_all(s.as_bytes()).await?;
                io.flush().await
            }
            Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let read = async {
            match &mut self.io {
                Stream::Plain(io) => io.read(&mut chunk).await,
                Stream::Tls(io) => io.read(&mut chunk).await,
                Stream::Gone => Ok(0),
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                return Some(self.buf.drain(..=pos).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn data(&mut self) -> Option<Vec<u8>> {
        let mut receiver = DataReceiver::new();
        let mut scratch = Vec::new();
        receiver.ingest(&mut b"\r\n".iter(), &mut scratch);
        let mut out = Vec::new();
        loop {
            let pending = std::mem::take(&mut self.buf);
            let mut it = pending.iter();
            let done = receiver.ingest(&mut it, &mut out);
            self.buf = it.as_slice().to_vec();
            if done {
                return Some(out);
            }
            if !self.fill().await {
                return None;
            }
        }
    }
}
