//! A client that reads like the conversation: `rcpt_to("x@y", "550 5.1.1")`
//! sends the command and checks the reply.

use super::{HOST, SENDER, WAIT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::timeout;

pub(super) struct Client<S> {
    pub(super) io: S,
    pub(super) buf: Vec<u8>,
    pub(super) session: Option<JoinHandle<()>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub(super) async fn send(&mut self, bytes: impl AsRef<[u8]>) {
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
    pub(super) async fn line(&mut self) -> Option<String> {
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
    pub(super) async fn reply(&mut self) -> Vec<String> {
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
    pub(super) async fn expect(&mut self, prefix: &str) -> String {
        let lines = self.reply().await;
        let last = lines.last().expect("a reply has a line").clone();
        assert!(
            last.starts_with(prefix),
            "expected {prefix:?}, got {lines:?}"
        );
        last
    }

    pub(super) async fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send(format!("{line}\r\n")).await;
        self.expect(expect).await
    }

    /// EHLO; returns the extension keywords announced.
    pub(super) async fn ehlo(&mut self, host: &str) -> Vec<String> {
        self.send(format!("EHLO {host}\r\n")).await;
        let lines = self.reply().await;
        assert_eq!(lines[0], format!("250-{HOST}"), "EHLO reply {lines:?}");
        assert!(lines.iter().all(|l| l.starts_with("250")), "{lines:?}");
        lines[1..].iter().map(|l| l[4..].to_string()).collect()
    }

    pub(super) async fn mail_from(&mut self, addr: &str, expect: &str) -> String {
        self.cmd(&format!("MAIL FROM:<{addr}>"), expect).await
    }

    pub(super) async fn rcpt_to(&mut self, addr: &str, expect: &str) -> String {
        self.cmd(&format!("RCPT TO:<{addr}>"), expect).await
    }

    /// DATA, then `message` as given (dot-stuffing and the final ".\r\n"
    /// are the caller's), then the reply to the end of data.
    pub(super) async fn data(&mut self, message: impl AsRef<[u8]>, expect: &str) -> String {
        self.cmd("DATA", "354 ").await;
        self.send(message).await;
        self.expect(expect).await
    }

    /// A whole transaction that must be queued; returns the final reply.
    pub(super) async fn transaction(&mut self, rcpt: &str, body: &[u8]) -> String {
        self.mail_from(SENDER, "250 2.1.0").await;
        self.rcpt_to(rcpt, "250 2.1.5").await;
        let mut data = body.to_vec();
        data.extend_from_slice(b".\r\n");
        self.data(data, "250 2.0.0 Ok: queued as ").await
    }

    /// The server has closed the connection and the session task ended.
    pub(super) async fn closed(&mut self) {
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

    pub(super) async fn quit(mut self) {
        self.cmd("QUIT", "221 2.0.0").await;
        self.closed().await;
    }
}
