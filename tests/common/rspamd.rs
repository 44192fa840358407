//! A real `rspamd` (3.4, Debian's package) for the tests: its own instance
//! on a free loopback port with a configuration in a temporary directory,
//! only the normal worker (`/checkv2` and `/ping` over HTTP), stopped and
//! started again on the same port, killed on drop.
//!
//! Configuration: the package's rules (`--var CONFDIR=/etc/rspamd`, whose
//! `common.conf` loads every rule, module and the default actions: reject
//! 15, add header 6, greylist 4) under our own top-level `rspamd.conf`
//! (no controller, proxy or fuzzy worker) and our own `LOCAL_CONFDIR`,
//! `DBDIR`, `RUNDIR`, `LOGDIR`. `override.d` turns off every module that
//! needs Redis or the network (see [`DISABLED_MODULES`]) and leaves only
//! the C filters `chartable,regexp`; `local_addrs = []` so that 127.0.0.x
//! is not local; DNS goes to 127.0.0.1:9 (nothing answers) with a 10 ms
//! timeout and no retransmits. Pass a `Hostname` header ([`envelope`]
//! does) and rspamd skips the PTR lookup: a small message is then scanned
//! in about a millisecond; without it the scan waits for the DNS timeout.
//!
//! Start time: rspamd compiles its hyperscan databases (9628 TLD suffixes
//! and more) at start, about 25 s on a loaded 2-core machine. They are
//! cached in `hs_cache_dir`, a directory shared by every instance under
//! `CARGO_TARGET_TMPDIR`, so every later start takes about a second.
//! Starts within a test binary are serialized so that the first one fills
//! the cache alone.
//!
//! Deterministic outcomes for tests (`enable_test_patterns = true`):
//! - [`GTUBE`] anywhere in a text part: action `reject` (score 15), symbol
//!   `GTUBE`; [`GTUBE_ADD_HEADER`]: `add header` (score 6);
//!   [`GTUBE_REWRITE_SUBJECT`]: `rewrite subject` (the answer carries
//!   `subject`); [`GTUBE_NO_ACTION`]: `no action`, no symbols. These are
//!   rspamd's own pre-results: every other rule is skipped.
//! - [`score_marker`]`(s)` (`EAS-TEST-SCORE=<s>;`) anywhere in the message
//!   adds the symbol [`SCORE_SYMBOL`] with score exactly `s` (a Lua rule
//!   written by this harness), added to the other rules' scores. The
//!   message of [`message`] with [`envelope`] scores -0.1 by itself
//!   (MIME_GOOD), so `score_marker(7.0)` gives 6.9, `add header` with the
//!   default thresholds, and a domain threshold of 5 vs 10 decides it.
//! - With `RspamdOptions { clamd: Some(addr) }` the antivirus module scans
//!   every MIME part with that clamd (`type = "clamav"`): an EICAR
//!   attachment gives symbol `CLAM_VIRUS` and the forced action `reject`.

use super::free_port;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound of waiting for `/ping`: a start with a cold hyperscan cache takes
/// about 25 s on a busy 2-core machine.
const START_LIMIT: Duration = Duration::from_secs(120);

/// GTUBE: rspamd answers `reject`.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// rspamd's test pattern (`enable_test_patterns`) for `add header`.
pub const GTUBE_ADD_HEADER: &str =
    "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// rspamd's test pattern for `rewrite subject`.
pub const GTUBE_REWRITE_SUBJECT: &str =
    "ZJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// rspamd's test pattern for `no action` (other rules skipped).
pub const GTUBE_NO_ACTION: &str =
    "AJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// The symbol of [`score_marker`].
pub const SCORE_SYMBOL: &str = "EAS_TEST_SCORE";

/// Text that makes rspamd add [`SCORE_SYMBOL`] with this score.
pub fn score_marker(score: f64) -> String {
    format!("EAS-TEST-SCORE={score:.2};")
}

/// Modules turned off (`enabled = false` in override.d): they need Redis,
/// DNS or HTTP to the internet.
pub const DISABLED_MODULES: &[&str] = &[
    "arc",
    "asn",
    "aws_s3",
    "bimi",
    "clickhouse",
    "dcc",
    "dkim",
    "dkim_signing",
    "dmarc",
    "elastic",
    "external_services",
    "fuzzy_check",
    "greylist",
    "hfilter",
    "history_redis",
    "metadata_exporter",
    "metric_exporter",
    "mx_check",
    "neural",
    "p0f",
    "phishing",
    "ratelimit",
    "rbl",
    "replies",
    "reputation",
    "rspamd_update",
    "spamtrap",
    "spf",
    "surbl",
    "url_redirector",
];

/// The Lua rule of [`score_marker`]: weight times the symbol's score 1.0.
const SCORE_RULE: &str = r#"
rspamd_config:register_symbol{
  name = 'EAS_TEST_SCORE',
  score = 1.0,
  group = 'eas_test',
  description = 'eas-relay test marker: EAS-TEST-SCORE=<number>; in the message',
  callback = function(task)
    local v = tostring(task:get_content()):match('EAS%-TEST%-SCORE=(%-?%d+%.?%d*);')
    if v then task:insert_result('EAS_TEST_SCORE', tonumber(v)) end
  end,
}
"#;

#[derive(Debug, Clone, Default)]
pub struct RspamdOptions {
    /// Enable the antivirus module with this clamd.
    pub clamd: Option<SocketAddr>,
}

pub struct TestRspamd {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// How long the last start or restart took until `/ping` answered.
    pub started_in: Duration,
}

/// Serializes starts in one test binary (see the module comment).
static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn binary() -> PathBuf {
    super::binary(
        "rspamd",
        &["/usr/bin", "/usr/sbin", "/usr/local/bin"],
        "rspamd",
    )
}

/// The hyperscan cache shared by every instance (compiling it is most of
/// a cold start).
fn hs_cache_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rspamd-hs-cache");
    std::fs::create_dir_all(&dir).expect("create the rspamd hyperscan cache dir");
    dir
}

/// The headers of a `/checkv2` request for a message from 192.0.2.10
/// (`Hostname` given: no PTR lookup).
pub fn envelope() -> Vec<(&'static str, &'static str)> {
    vec![
        ("IP", "192.0.2.10"),
        ("Hostname", "mail.example.org"),
        ("Helo", "mail.example.org"),
        ("From", "alice@example.org"),
        ("Rcpt", "bob@example.net"),
        ("Queue-Id", "EASTEST1"),
    ]
}

/// A well-formed text/plain message with `body`, matching [`envelope`].
pub fn message(body: &str) -> Vec<u8> {
    format!(
        "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: test\r\n\
         Date: Thu, 03 Dec 2026 15:00:00 +0000\r\nMessage-ID: <t1@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// A multipart message with a text part and `data` as a base64 attachment.
pub fn message_with_attachment(filename: &str, data: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    format!(
        "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: file\r\n\
         Date: Thu, 03 Dec 2026 15:00:00 +0000\r\nMessage-ID: <t2@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n\
         --b1\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"{filename}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b1--\r\n"
    )
    .into_bytes()
}

impl TestRspamd {
    /// Starts rspamd on a free port (another port if it was taken).
    pub async fn start(opts: RspamdOptions) -> TestRspamd {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut rspamd = TestRspamd {
            port: 0,
            dir,
            child: None,
            started_in: Duration::ZERO,
        };
        let mut last = String::new();
        for _ in 0..5 {
            rspamd.port = free_port();
            rspamd.write_config(&opts).expect("write rspamd config");
            match rspamd.spawn().await {
                Ok(()) => return rspamd,
                Err(e) => last = e,
            }
        }
        panic!("rspamd did not start: {last}");
    }

    fn write_config(&self, opts: &RspamdOptions) -> std::io::Result<()> {
        let d = self.dir.path();
        for sub in ["local/local.d", "local/override.d", "db", "run", "log"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        std::fs::write(
            d.join("rspamd.conf"),
            format!(
                r#".include "$CONFDIR/common.conf"
lua = "$LOCAL_CONFDIR/eas_test.lua";
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{}";
    count = 1;
    mime = true;
}}
"#,
                self.port
            ),
        )?;
        std::fs::write(d.join("local/eas_test.lua"), SCORE_RULE)?;
        std::fs::write(
            d.join("local/override.d/options.inc"),
            format!(
                r#"filters = "chartable,regexp";
local_addrs = [];
enable_test_patterns = true;
hs_cache_dir = "{}";
dns {{
  nameserver = ["127.0.0.1:9"];
  timeout = 0.01s;
  retransmits = 0;
  sockets = 1;
}}
"#,
                hs_cache_dir().display()
            ),
        )?;
        for module in DISABLED_MODULES {
            std::fs::write(
                d.join(format!("local/override.d/{module}.conf")),
                "enabled = false;\n",
            )?;
        }
        let antivirus = d.join("local/local.d/antivirus.conf");
        match opts.clamd {
            Some(addr) => std::fs::write(
                antivirus,
                format!(
                    r#"clamav {{
  type = "clamav";
  servers = "{addr}";
  action = "reject";
  symbol = "CLAM_VIRUS";
  scan_mime_parts = true;
  scan_text_mime = true;
  log_clean = true;
}}
"#
                ),
            )?,
            None => {
                let _ = std::fs::remove_file(antivirus);
            }
        }
        Ok(())
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let _serial = STARTING.lock().await;
        let d = self.dir.path();
        let out = std::fs::File::create(d.join("rspamd.out")).map_err(|e| e.to_string())?;
        let var = |name: &str, sub: &str| format!("{name}={}", d.join(sub).display());
        let started = Instant::now();
        let mut command = Command::new(binary());
        command
            // -f: foreground; -i: workers may run as root (tests run as root).
            .args(["-f", "-i", "-c"])
            .arg(d.join("rspamd.conf"))
            .args(["--var", "CONFDIR=/etc/rspamd"])
            .args(["--var", &var("LOCAL_CONFDIR", "local")])
            .args(["--var", &var("DBDIR", "db")])
            .args(["--var", &var("RUNDIR", "run")])
            .args(["--var", &var("LOGDIR", "log")])
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out);
        // Its own process group: the main process and its workers are
        // killed together (a worker outliving its main keeps the port).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(|e| format!("spawn rspamd: {e}"))?;
        self.child = Some(child);
        let deadline = started + START_LIMIT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.kill();
                return Err(format!("rspamd exited ({status}):\n{}", self.log_tail()));
            }
            if let Ok((200, body)) = self.get("/ping").await
                && body.trim() == "pong"
            {
                self.started_in = started.elapsed();
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "no pong within {START_LIMIT:?}:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The last 40 lines of rspamd's log and its stdout/stderr.
    pub fn log_tail(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        let log = format!(
            "{}{}",
            read("log/rspamd.log").unwrap_or_default(),
            read("rspamd.out").unwrap_or_default()
        );
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group id is the main process's id (process_group(0)).
            if let Ok(pgid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) with a negative pid signals that process
                // group only; no memory is involved.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops rspamd (main process and workers); returns once its port
    /// refuses connections.
    pub fn stop(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr()).is_ok() {
            assert!(Instant::now() < deadline, "rspamd's port still open");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts rspamd again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match self.spawn().await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("rspamd restart: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let (status, body) = http(self.addr(), "GET", path, &[], b"").await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// POSTs `message` to `/checkv2` with these headers (such as
    /// [`envelope`]); returns the status and the JSON answer.
    pub async fn check(&self, headers: &[(&str, &str)], message: &[u8]) -> (u16, Value) {
        let (status, body) = http(self.addr(), "POST", "/checkv2", headers, message)
            .await
            .expect("POST /checkv2");
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, json)
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`, so the
/// body ends at EOF); returns the status and the body. rspamd answers with
/// a Content-Length, never chunked.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of the response head"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, response[split + 4..].to_vec()))
}

impl Drop for TestRspamd {
    fn drop(&mut self) {
        self.kill();
    }
}
