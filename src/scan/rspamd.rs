//! rspamd's HTTP protocol (`POST /checkv2`): the envelope in request
//! headers (`IP`, `Helo`, `From`, `Rcpt`, `Queue-Id`, `User`), the message
//! as the body — at most `scan.max_size` of it, header first, a body in a
//! spool file streamed from the file in chunks, so a large message is
//! never held twice — over a small pool of idle keep-alive connections;
//! the answer (bounded in size) parsed into a [`Verdict`].

use super::verdict::{Action, Verdict, clean_message, clean_name, thresholds};
use crate::spool::{Body, CHUNK};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

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
    #[error("the message body cannot be read: {0}")]
    Body(std::io::Error),
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
        let scan_body = ScanBody::start(header, body, length)?;
        let mut request = hyper::Request::post("/checkv2")
            .header(hyper::header::HOST, self.endpoint.as_str())
            .header(hyper::header::CONTENT_LENGTH, length)
            .header("IP", envelope.client_ip.to_string())
            .header("Queue-Id", envelope.queue_id);
        // Values from the client: only what is a valid header value goes
        // (smtp-proto hands over UTF-8; control characters are dropped).
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
        let request = request
            .body(scan_body)
            .map_err(|e| ScanError::Http(e.to_string()))?;
        let mut sender = self.connection().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ScanError::Http(e.to_string()))?;
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

    /// An idle connection that is still open, or a new one.
    async fn connection(&self) -> Result<SendRequest<ScanBody>, ScanError> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                None => break,
            }
        }
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
        let mut symbols: Vec<(String, f64, Vec<String>)> = raw
            .symbols
            .into_iter()
            .take(MAX_SYMBOLS)
            .filter_map(|(name, s)| {
                let score = if s.score.is_finite() { s.score } else { 0.0 };
                Some((clean_name(&name)?, score, s.options))
            })
            .collect();
        symbols.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let virus = symbols
            .iter()
            .find(|(name, _, _)| {
                self.virus_symbols
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(name))
            })
            .map(|(name, _, options)| {
                options
                    .iter()
                    .find_map(|o| clean_name(o))
                    .unwrap_or_else(|| name.clone())
            });
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        Ok(Verdict {
            action: Action::parse(&raw.action),
            score: finite(raw.score),
            required: finite(raw.required_score),
            thresholds: thresholds(&raw.thresholds),
            symbols: symbols.into_iter().map(|(n, s, _)| (n, s)).collect(),
            virus,
            message: raw.messages.smtp_message.as_deref().and_then(clean_message),
            truncated: false,
            forced: raw.is_skipped,
        })
    }
}

/// A header value from client text: printable, without control characters;
/// None when nothing printable is left.
fn header_value(text: &str) -> Option<hyper::header::HeaderValue> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(1000)
        .collect();
    if clean.is_empty() {
        return None;
    }
    hyper::header::HeaderValue::from_str(&clean).ok()
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
    score: f64,
    #[serde(default)]
    required_score: f64,
    #[serde(default)]
    thresholds: BTreeMap<String, f64>,
    #[serde(default)]
    symbols: BTreeMap<String, Symbol>,
    #[serde(default)]
    messages: Messages,
}

#[derive(Deserialize)]
struct Symbol {
    #[serde(default)]
    score: f64,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Deserialize, Default)]
struct Messages {
    smtp_message: Option<String>,
}

/// The request body: the header section, then the body up to the length
/// sent, in chunks from a channel fed by a reader (a blocking task for a
/// body in a file), so at most a few chunks are in memory at a time.
pub(crate) struct ScanBody {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    length: u64,
}

impl ScanBody {
    fn start(header: &[u8], body: &Body, length: u64) -> Result<ScanBody, ScanError> {
        let (tx, chunks) = mpsc::channel(4);
        let head_len = (header.len() as u64).min(length);
        let head = header.get(..head_len as usize).unwrap_or(header);
        let mut rest = length.saturating_sub(head_len);
        // Capacity 4 and at most two sends here: neither can fail for
        // lack of room.
        let _ = tx.try_send(Ok(Bytes::copy_from_slice(head)));
        match body.file_handle() {
            None => {
                if let Body::Memory(bytes) = body {
                    let part = bytes.get(..rest as usize).unwrap_or(bytes);
                    let _ = tx.try_send(Ok(Bytes::copy_from_slice(part)));
                }
            }
            Some(file) => {
                let file = file.map_err(ScanError::Body)?;
                tokio::task::spawn_blocking(move || {
                    let mut offset = 0u64;
                    while rest > 0 {
                        let want = rest.min(CHUNK as u64) as usize;
                        let mut buf = vec![0u8; want];
                        let read = match file.read_at(&mut buf, offset) {
                            Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                            Ok(n) => Ok(n),
                            Err(e) => Err(e),
                        };
                        let n = match read {
                            Ok(n) => n,
                            Err(e) => {
                                let _ = tx.blocking_send(Err(e));
                                return;
                            }
                        };
                        buf.truncate(n);
                        offset = offset.saturating_add(n as u64);
                        rest = rest.saturating_sub(n as u64);
                        // The request was dropped (timeout): stop reading.
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return;
                        }
                    }
                });
            }
        }
        Ok(ScanBody { chunks, length })
    }
}

impl http_body::Body for ScanBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(Frame::data)))
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
        let body = ScanBody::start(&header, &Body::Memory(text.clone()), 1000).unwrap();
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
        let mut scan = ScanBody::start(&header, &body, length).unwrap();
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
