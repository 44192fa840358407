//! Runs the real `eas-relay` binary: a config file in a temporary
//! directory with free loopback ports, the CLI (`eas-relay --config FILE
//! ...`), and `serve` as a child process that is killed when the test ends,
//! even when it ends by a panic (then its log is printed).

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_eas-relay");
/// Admin key written into configs that ask for one.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// A loopback address nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// What varies between the configs tests write.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub retry_initial: &'static str,
    pub retry_max: &'static str,
    /// Put [`ADMIN_KEY`] in `http.admin_keys`; otherwise the node generates
    /// data_dir/admin.key and the CLI reads it from there.
    pub admin_key: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            retry_initial: "200ms",
            retry_max: "1s",
            admin_key: true,
        }
    }
}

/// A config file and data directory for the real binary, with
/// `dest.test` routed to `dest` (where nothing listens until a test
/// binds a sink there).
pub struct NodeFiles {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    pub dest: SocketAddr,
    log: PathBuf,
}

/// What a CLI run printed.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Panics unless the command exited 0; returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        &self.stdout
    }
}

impl NodeFiles {
    pub fn new(options: NodeOptions) -> NodeFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("eas-relay.toml");
        let data_dir = dir.path().join("data");
        let (smtp, http, dest) = (free_addr(), free_addr(), free_addr());
        let keys = if options.admin_key {
            format!("admin_keys = [\"{ADMIN_KEY}\"]\n")
        } else {
            String::new()
        };
        let text = format!(
            r#"hostname = "relay.test"
data_dir = "{data}"

[smtp]
listen = "{smtp}"
shutdown_grace = "2s"

[http]
listen = "{http}"
{keys}
[queue]
retry_initial = "{ri}"
retry_max = "{rm}"

[outbound]
connect_timeout = "2s"
command_timeout = "5s"
# Test destinations listen on loopback.
allow_networks = ["127.0.0.0/8", "::1/128"]

# Tests send DNS queries only to loopback; these have no DNS server.
[auth]
enabled = false

[outbound.routes]
"dest.test" = "{dest}"
"#,
            data = data_dir.display(),
            ri = options.retry_initial,
            rm = options.retry_max,
        );
        std::fs::write(&config, text).expect("write config");
        // It holds the admin key inline: the relay's alone, as it should be.
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))
            .expect("chmod config");
        let log = dir.path().join("node.log");
        NodeFiles {
            dir,
            config,
            data_dir,
            smtp,
            http,
            dest,
            log,
        }
    }

    /// A command for the binary with `--config FILE`, an environment
    /// free of `EAS_RELAY_*` and `RUST_LOG` variables, no stdin.
    pub fn command(&self) -> Command {
        let mut cmd = clean_command();
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// Runs `eas-relay --config FILE args...` to completion (60 s at most).
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_env(args, &[])
    }

    /// Like [`NodeFiles::cli`] with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut cmd = self.command();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd)
    }

    /// Appends TOML (whole new sections) to the config file.
    pub fn append_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(&self.config).expect("read config");
        config.push('\n');
        config.push_str(text);
        std::fs::write(&self.config, config).expect("write config");
    }

    /// Starts `serve` and waits until both its ports answer.
    pub fn start(&self) -> Node {
        self.start_env(&[])
    }

    /// Like [`NodeFiles::start`] with extra environment variables.
    pub fn start_env(&self, env: &[(&str, &str)]) -> Node {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open node log");
        let mut cmd = self.command();
        cmd.envs(env.iter().copied());
        cmd.arg("serve")
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn eas-relay serve");
        let mut node = Node {
            child: Some(child),
            log: self.log.clone(),
        };
        // The node binds its ports before it opens the store, so a
        // connection alone does not mean it is ready: wait for the SMTP
        // greeting and for /health to answer.
        node.wait_ready(self.smtp, b"", b"220 ", Duration::from_secs(30));
        let health = format!(
            "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        );
        node.wait_ready(
            self.http,
            health.as_bytes(),
            b"HTTP/1.1 200 ",
            Duration::from_secs(30),
        );
        node
    }

    /// The node's log so far (every run appends to the same file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.data_dir.join("quarantine")
    }
}

/// A command for the binary with a clean environment (no `EAS_RELAY_*`,
/// no `RUST_LOG`), no stdin.
pub fn clean_command() -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("EAS_RELAY_") || name_str == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.env("RUST_BACKTRACE", "0").stdin(Stdio::null());
    cmd
}

/// Runs a command to completion, killing it after 60 s.
pub fn run(mut cmd: Command) -> CliOutput {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eas-relay");
    let pid = child.id();
    // Read the pipes while waiting (a full pipe would block the child).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for eas-relay"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("eas-relay {cmd:?} did not finish within 60 s");
        }
    };
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `eas-relay serve`; killed (SIGKILL) when dropped.
pub struct Node {
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Waits until a connection to `addr`, after sending `send`, is
    /// answered with something starting with `expect`.
    fn wait_ready(&mut self, addr: SocketAddr, send: &[u8], expect: &[u8], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if answers(addr, send, expect) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "eas-relay serve exited ({status}) before answering on {addr}:\n{}",
                    tail(&self.log, 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "eas-relay serve did not answer on {addr} within {limit:?}:\n{}",
                tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
        }
    }

    /// SIGTERM (a clean shutdown); returns the exit status. Panics (after
    /// a SIGKILL) when the node is still running after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait for node") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "node did not stop within {limit:?} of SIGTERM:\n{}",
                    tail(&self.log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
            if std::thread::panicking() {
                eprintln!(
                    "--- last lines of the node log {} ---\n{}",
                    self.log.display(),
                    tail(&self.log, 60)
                );
            }
        }
    }
}

/// True when `addr` answers `send` with a reply starting with `expect`.
fn answers(addr: SocketAddr, send: &[u8], expect: &[u8]) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if !send.is_empty() && stream.write_all(send).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < expect.len() {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    got.starts_with(expect)
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
