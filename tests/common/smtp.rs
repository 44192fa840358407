//! An SMTP client for tests that reads like the conversation:
//! `c.rcpt_to("nobody@d.country", "550 5.1.1").await`.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects and checks the greeting.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect SMTP");
        let mut c = Client {
            stream,
            buf: Vec::new(),
        };
        let greeting = c.reply().await;
        assert!(greeting.starts_with("220 "), "greeting: {greeting}");
        c
    }

    /// Connects from the local address `source` (another loopback address
    /// stands for another client network); returns the client and its
    /// first reply (the greeting, or a refusal).
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> (Client, String) {
        let socket = match source {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind source address");
        let stream = socket.connect(addr).await.expect("connect SMTP");
        let mut c = Client {
            stream,
            buf: Vec::new(),
        };
        let first = c.reply().await;
        (c, first)
    }

    /// Reads one (possibly multi-line) reply; panics after 10 s.
    pub async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await.expect("reply line");
            let last = line.len() < 4 || line.as_bytes()[3] == b' ';
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// Reads one line, None on EOF.
    pub async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("reply within 10s")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Sends a command line and checks the reply starts with `expect`.
    pub async fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        let reply = self.reply().await;
        assert!(
            reply.starts_with(expect),
            "`{line}`: expected `{expect}`, got `{reply}`"
        );
        reply
    }

    pub async fn ehlo(&mut self, name: &str) -> String {
        self.cmd(&format!("EHLO {name}"), "250").await
    }

    pub async fn mail_from(&mut self, addr: &str, expect: &str) -> String {
        self.cmd(&format!("MAIL FROM:<{addr}>"), expect).await
    }

    pub async fn rcpt_to(&mut self, addr: &str, expect: &str) -> String {
        self.cmd(&format!("RCPT TO:<{addr}>"), expect).await
    }

    /// DATA, the message (dot-stuffed here), and the final reply.
    pub async fn data(&mut self, message: &[u8], expect: &str) -> String {
        self.cmd("DATA", "354").await;
        let mut stuffed = Vec::new();
        let mut start = true;
        for &b in message {
            if start && b == b'.' {
                stuffed.push(b'.');
            }
            stuffed.push(b);
            start = b == b'\n';
        }
        if !message.ends_with(b"\r\n") {
            stuffed.extend_from_slice(b"\r\n");
        }
        stuffed.extend_from_slice(b".\r\n");
        self.send_raw(&stuffed).await;
        let reply = self.reply().await;
        assert!(
            reply.starts_with(expect),
            "end of data: expected `{expect}`, got `{reply}`"
        );
        reply
    }

    /// One whole transaction; returns the final reply.
    pub async fn send_mail(&mut self, from: &str, to: &[&str], message: &[u8]) -> String {
        self.mail_from(from, "250").await;
        for rcpt in to {
            self.rcpt_to(rcpt, "250").await;
        }
        self.data(message, "250").await
    }

    pub async fn quit(mut self) {
        self.cmd("QUIT", "221").await;
    }
}

/// A small RFC 5322 message.
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{}@client.test>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}
