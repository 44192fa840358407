//! rspamd's HTTP protocol (`POST /checkv2`): the envelope in request
//! headers (`IP`, `Helo`, `From`, `Rcpt`, `Queue-Id`, `User`), the message
//! as the body — at most `scan.max_size` of it, header first, a body in a
//! spool file streamed from the file in chunks, so a large message is
//! never held twice — over a small pool of idle keep-alive connections;
//! the answer (bounded in size) parsed into a [`Verdict`]. The parse is
//! lenient where rspamd's output varies (symbol options of any type) and
//! strict where the verdict is (the action).

use super::verdict::{Action, Verdict, clean_message, clean_name, thresholds};
use crate::spool::{Body, CHUNK};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Largest answer read from rspamd (its JSON with every symbol and URL of
/// a big message stays far below).
const MAX_ANSWER: usize = 1024 * 1024;
/// Most symbols kept from one answer.
const MAX_SYMBOLS: usize = 200;

/// Why a scan produced no verdict.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("cannot connect to rspamd: {0}")]
    Connect(std::io::Error),
    #[error("rspamd HTTP exchange failed: {0}")]
    Http(String),
    #[error("rspamd answered HTTP {0}")]
    Status(u16),
    #[error("rspamd's answer is not a verdict: {0}")]
    Answer(String),
    #[error("rspamd took longer than the scan timeout")]
    Timeout,
    #[error("rspamd failed repeatedly; not asked until the circuit closes")]
    BreakerOpen,
    #[error("too many scans under way; no slot freed within the timeout")]
    Busy,
    #[error("the message body cannot be read: {0}")]
    Body(std::io::Error),
}

impl ScanError {
    /// A failure of rspamd itself (unreachable, hanging, erroring), as
    /// opposed to one of this message (refused as a request, an answer
    /// about it that is not a verdict, its body unreadable) or of the
    /// relay's own load: only the former trips the circuit breaker.
    pub(crate) fn trips_breaker(&self) -> bool {
        match self {
            ScanError::Connect(_) | ScanError::Http(_) | ScanError::Timeout => true,
            ScanError::Status(code) => *code >= 500,
            ScanError::Answer(_)
            | ScanError::Body(_)
            | ScanError::BreakerOpen
            | ScanError::Busy => false,
        }
    }

    /// Whether `scan.fail = "accept"` may forward the message unscanned:
    /// only when rspamd is down (or its circuit open). A failure of this
    /// message, or a relay too busy to scan, is always deferred: a sender
    /// must not be able to pick its message's way around the scan.
    pub(crate) fn may_pass_unscanned(&self) -> bool {
        self.trips_breaker() || matches!(self, ScanError::BreakerOpen)
    }
}

/// What the relay knows of a message's arrival, for rspamd's rules.
pub(crate) struct Envelope<'a> {
    pub(crate) client_ip: IpAddr,
    pub(crate) helo: &'a str,
    /// "" is the null sender.
    pub(crate) mail_from: &'a str,
    pub(crate) recipients: &'a [String],
    pub(crate) queue_id: &'a str,
    /// The authenticated user (submission), when there is one.
    pub(crate) user: Option<&'a str>,
}

/// One rspamd normal worker and the idle connections to it.
pub(crate) struct Rspamd {
    endpoint: String,
    max_size: u64,
    max_idle: usize,
    virus_symbols: Vec<String>,
    idle: Mutex<Vec<SendRequest<ScanBody>>>,
}

impl Rspamd {
    pub(crate) fn new(
        endpoint: String,
        max_size: u64,
        max_idle: usize,
        virus_symbols: Vec<String>,
    ) -> Rspamd {
        Rspamd {
            endpoint,
            max_size,
            max_idle,
            virus_symbols,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Scans one message (the caller bounds the time).
    pub(crate) async fn check(
        &self,
        envelope: &Envelope<'_>,
        header: &[u8],
        body: &Body,
    ) -> Result<Verdict, ScanError> {
        let whole = (header.len() as u64).saturating_add(body.len());
        let length = whole.min(self.max_size);
        let (mut sender, pooled) = self.connection().await?;
        let response = match sender
            .send_request(self.request(envelope, header, body, length)?)
            .await
        {
            Ok(response) => response,
            // A kept-alive connection that rspamd closed meanwhile: the
            // scan is asked again once, on a new connection.
            Err(_) if pooled => {
                sender = self.connect().await?;
                sender
                    .send_request(self.request(envelope, header, body, length)?)
                    .await
                    .map_err(|e| ScanError::Http(e.to_string()))?
            }
            Err(e) => return Err(ScanError::Http(e.to_string())),
        };
        let status = response.status();
        let keep_alive = !response
            .headers()
            .get(hyper::header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER);
        let answer = limited
            .collect()
            .await
            .map_err(|e| ScanError::Http(e.to_string()))?
            .to_bytes();
        if keep_alive {
            self.put_back(sender);
        }
        if !status.is_success() {
            return Err(ScanError::Status(status.as_u16()));
        }
        let mut verdict = self.parse(&answer)?;
        verdict.truncated = whole > length;
        Ok(verdict)
    }

    /// The `/checkv2` request: the envelope in headers, the message (its
    /// first `length` bytes) as the body.
    fn request(
        &self,
        envelope: &Envelope<'_>,
        header: &[u8],
        body: &Body,
        length: u64,
    ) -> Result<hyper::Request<ScanBody>, ScanError> {
        let mut request = hyper::Request::post("/checkv2")
            .header(hyper::header::HOST, self.endpoint.as_str())
            .header(hyper::header::CONTENT_LENGTH, length)
            .header("IP", envelope.client_ip.to_string())
            .header("Queue-Id", envelope.queue_id);
        // Values from the client: control characters dropped, UTF-8 kept
        // (an SMTPUTF8 sender must reach rspamd's SPF check, not vanish).
        for (name, value) in [("Helo", envelope.helo), ("From", envelope.mail_from)] {
            if let Some(value) = header_value(value) {
                request = request.header(name, value);
            }
        }
        for rcpt in envelope.recipients {
            if let Some(value) = header_value(rcpt) {
                request = request.header("Rcpt", value);
            }
        }
        if let Some(user) = envelope.user.and_then(header_value) {
            request = request.header("User", user);
        }
        request
            .body(ScanBody::new(header, body, length)?)
            .map_err(|e| ScanError::Http(e.to_string()))
    }

    /// An idle connection that is still open (true), or a new one.
    async fn connection(&self) -> Result<(SendRequest<ScanBody>, bool), ScanError> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        return Ok((sender, true));
                    }
                }
                None => break,
            }
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<SendRequest<ScanBody>, ScanError> {
        let stream = tokio::net::TcpStream::connect(self.endpoint.as_str())
            .await
            .map_err(ScanError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ScanError::Http(e.to_string()))?;
        tokio::spawn(async move {
            // Ends when rspamd closes it or the sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn put_back(&self, sender: SendRequest<ScanBody>) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(sender);
        }
    }

    /// rspamd's JSON answer as a verdict.
    fn parse(&self, answer: &[u8]) -> Result<Verdict, ScanError> {
        let raw: Answer =
            serde_json::from_slice(answer).map_err(|e| ScanError::Answer(e.to_string()))?;
        // The virus symbol is looked for among all symbols, before the
        // list shown is cut to its first entries.
        let virus = raw
            .symbols
            .iter()
            .find(|(name, _)| {
                self.virus_symbols
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(name.trim()))
            })
            .map(|(name, symbol)| {
                symbol
                    .options
                    .iter()
                    .filter_map(|o| o.as_str())
                    .find_map(clean_name)
                    .or_else(|| clean_name(name))
                    .unwrap_or_else(|| "unnamed".into())
            });
        let mut symbols: Vec<(String, f64)> = raw
            .symbols
            .iter()
            .filter_map(|(name, s)| Some((clean_name(name)?, finite(s.score.as_f64()))))
            .collect();
        symbols.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        symbols.truncate(MAX_SYMBOLS);
        Ok(Verdict {
            action: Action::parse(&raw.action),
            score: finite(raw.score.as_f64()),
            required: finite(raw.required_score.as_f64()),
            thresholds: thresholds(&raw.thresholds),
            symbols,
            virus,
            message: raw.messages.smtp_message.as_deref().and_then(clean_message),
            truncated: false,
            forced: raw.is_skipped,
        })
    }
}

/// A number from rspamd, 0 when absent, not a number or not finite.
fn finite(value: Option<f64>) -> f64 {
    value.filter(|v| v.is_finite()).unwrap_or(0.0)
}

/// A header value from client text: without control characters, UTF-8
/// kept as it is; None when nothing is left.
fn header_value(text: &str) -> Option<hyper::header::HeaderValue> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(1000)
        .collect();
    if clean.is_empty() {
        return None;
    }
    hyper::header::HeaderValue::from_bytes(clean.as_bytes()).ok()
}

/// The parts of rspamd's `/checkv2` answer the relay reads; the rest
/// (URLs, e-mails, timings) is ignored.
#[derive(Deserialize)]
struct Answer {
    action: String,
    /// A pre-result (GTUBE, a module's forced action) ended the scan.
    #[serde(default)]
    is_skipped: bool,
    #[serde(default)]
    score: serde_json::Value,
    #[serde(default)]
    required_score: serde_json::Value,
    #[serde(default)]
    thresholds: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    symbols: BTreeMap<String, Symbol>,
    #[serde(default)]
    messages: Messages,
}

#[derive(Deserialize)]
struct Symbol {
    #[serde(default)]
    score: serde_json::Value,
    #[serde(default)]
    options: Vec<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Messages {
    #[serde(default, deserialize_with = "lenient_string")]
    smtp_message: Option<String>,
}

/// A string, or None for anything else.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// The request body: the header section, then the body up to the length
/// sent. A body in memory is copied once (it is small: large ones are in
/// a file); a body in a file is read one chunk at a time, each read on a
/// blocking thread only when hyper asks for the next chunk — so a scanner
/// that stops reading holds no thread and no more than one chunk.
pub(crate) struct ScanBody {
    ready: VecDeque<Bytes>,
    file: Option<FileReader>,
    length: u64,
}

/// The part of a body still to read from its file.
struct FileReader {
    file: Arc<File>,
    offset: u64,
    rest: u64,
    reading: Option<tokio::task::JoinHandle<std::io::Result<Vec<u8>>>>,
}

impl ScanBody {
    fn new(header: &[u8], body: &Body, length: u64) -> Result<ScanBody, ScanError> {
        let head_len = (header.len() as u64).min(length);
        let head = header.get(..head_len as usize).unwrap_or(header);
        let rest = length.saturating_sub(head_len);
        let mut ready = VecDeque::from([Bytes::copy_from_slice(head)]);
        let mut file = None;
        match body.file_handle() {
            None => {
                if let Body::Memory(bytes) = body {
                    let part = bytes.get(..rest as usize).unwrap_or(bytes);
                    ready.push_back(Bytes::copy_from_slice(part));
                }
            }
            Some(handle) => {
                file = Some(FileReader {
                    file: Arc::new(handle.map_err(ScanError::Body)?),
                    offset: 0,
                    rest,
                    reading: None,
                });
            }
        }
        Ok(ScanBody {
            ready,
            file,
            length,
        })
    }
}

impl FileReader {
    /// The next chunk of the file, read on a blocking thread.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        if self.rest == 0 {
            return Poll::Ready(None);
        }
        let reading = self.reading.get_or_insert_with(|| {
            let file = self.file.clone();
            let (offset, want) = (self.offset, self.rest.min(CHUNK as u64) as usize);
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let n = file.read_at(&mut buf, offset)?;
                if n == 0 {
                    // Shorter than its length: never sent as if whole.
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.truncate(n);
                Ok(buf)
            })
        });
        let done = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(done) => done,
        };
        self.reading = None;
        let chunk = match done {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
            Err(e) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
        };
        self.offset = self.offset.saturating_add(chunk.len() as u64);
        self.rest = self.rest.saturating_sub(chunk.len() as u64);
        Poll::Ready(Some(Ok(Bytes::from(chunk))))
    }
}

impl http_body::Body for ScanBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(bytes) = self.ready.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        match &mut self.file {
            Some(file) => file.poll_chunk(cx).map(|c| c.map(|c| c.map(Frame::data))),
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    fn rspamd() -> Rspamd {
        Rspamd::new("127.0.0.1:1".into(), 1 << 20, 1, vec!["CLAM_VIRUS".into()])
    }

    async fn sent(body: ScanBody) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn only_max_size_is_sent_and_a_file_body_is_streamed() {
        let header = b"Subject: x\r\n\r\n".to_vec();
        let text: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        // In memory, cut at the length.
        let body = ScanBody::new(&header, &Body::Memory(text.clone()), 1000).unwrap();
        assert_eq!(body.size_hint().exact(), Some(1000));
        let got = sent(body).await;
        assert_eq!(got.len(), 1000);
        assert_eq!(&got[..header.len()], &header[..]);
        assert_eq!(&got[header.len()..], &text[..1000 - header.len()]);
        // In a file: read in chunks, up to the length only.
        let dir = tempfile::tempdir().unwrap();
        let spool = crate::spool::Spool::open(dir.path()).unwrap();
        let mut file = spool.incoming().unwrap();
        file.append(&text).unwrap();
        let body = Body::File(file);
        let length = 200_000u64;
        let mut scan = ScanBody::new(&header, &body, length).unwrap();
        let mut frames = 0;
        let mut got = Vec::new();
        while let Some(frame) = scan.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= CHUNK.max(header.len()));
            got.extend_from_slice(&data);
            frames += 1;
        }
        assert_eq!(got.len() as u64, length);
        assert_eq!(
            &got[header.len()..],
            &text[..length as usize - header.len()]
        );
        assert!(frames > 3, "streamed in chunks, got {frames} frames");
    }

    #[test]
    fn only_a_dead_scanner_may_let_a_message_pass_unscanned() {
        let down = [
            ScanError::Connect(std::io::ErrorKind::ConnectionRefused.into()),
            ScanError::Timeout,
            ScanError::Http("reset".into()),
            ScanError::Status(503),
        ];
        for e in &down {
            assert!(e.trips_breaker() && e.may_pass_unscanned(), "{e}");
        }
        assert!(ScanError::BreakerOpen.may_pass_unscanned());
        // The message's own failures and the relay's load: deferred.
        let mine = [
            ScanError::Status(400),
            ScanError::Answer("not JSON".into()),
            ScanError::Body(std::io::ErrorKind::UnexpectedEof.into()),
            ScanError::Busy,
        ];
        for e in &mine {
            assert!(!e.trips_breaker() && !e.may_pass_unscanned(), "{e}");
        }
    }

    #[test]
    fn an_answer_becomes_a_verdict_with_the_virus_named() {
        let answer = br#"{"is_skipped":false,"score":16.5,"required_score":15.0,
            "action":"reject","thresholds":{"reject":15.0,"add header":6.0},
            "symbols":{"CLAM_VIRUS":{"name":"CLAM_VIRUS","score":0.0,"options":["Eicar-Test-Signature"]},
                       "BAYES_SPAM":{"name":"BAYES_SPAM","score":5.5}},
            "messages":{"smtp_message":"Virus found"},"urls":[]}"#;
        let v = rspamd().parse(answer).unwrap();
        assert_eq!(v.action, Action::Reject);
        assert_eq!(v.score, 16.5);
        assert_eq!(v.virus.as_deref(), Some("Eicar-Test-Signature"));
        assert_eq!(v.symbols.first().map(|s| s.0.as_str()), Some("BAYES_SPAM"));
        assert_eq!(v.message.as_deref(), Some("Virus found"));
        assert_eq!(v.thresholds.len(), 2);
    }

    #[test]
    fn a_hostile_answer_is_an_error_or_made_harmless_never_a_panic() {
        for answer in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"score\":1}",
            b"{\"action\":5}",
            b"\xff\xfe",
        ] {
            assert!(rspamd().parse(answer).is_err(), "{answer:?}");
        }
        let v = rspamd()
            .parse(br#"{"action":"reject","score":1e400,"symbols":{"\r\nX":{"score":-1e999}}}"#);
        // 1e400 is not a JSON number serde accepts as f64: refused whole.
        assert!(v.is_err() || v.is_ok_and(|v| v.score.is_finite()));
        let v = rspamd()
            .parse(br#"{"action":"no action","symbols":{"\r\n":{"score":1},"A\r\nB":{"score":2}}}"#)
            .unwrap();
        assert_eq!(v.symbols, vec![("AB".to_string(), 2.0)]);
    }
}
