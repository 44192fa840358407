//! A real `clamd` (ClamAV 1.4, Debian's clamav-daemon) for the tests: its
//! own instance on a free loopback TCP port, in the foreground, as the
//! current user, with no local socket and a signature database written
//! for the test (one `.ndb` entry matching the EICAR test file; no
//! downloads, no freshclam). Killed on drop.
//!
//! Start time: about 25 ms to the first `PONG` with this one-signature
//! database ([`TestClamd::started_in`]; `scan_peers`'s ignored timing test
//! prints it), measured on a shared 2-core machine.
//!
//! The EICAR string is built at run time from two pieces ([`eicar`]) so
//! that no virus scanner on a developer machine flags this source file.

use super::free_port;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound of waiting for clamd's first `PONG`.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The name clamd reports for a hit of the test database; clamd appends
/// `.UNOFFICIAL` because the database is not signed by ClamAV.
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature";

/// The 68-byte EICAR anti-virus test file, assembled from two halves.
pub fn eicar() -> Vec<u8> {
    let head = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$";
    let tail = ["EICAR", "STANDARD", "ANTIVIRUS", "TEST", "FILE!$H+H*"].join("-");
    let file = format!("{head}{tail}").into_bytes();
    assert_eq!(file.len(), 68, "EICAR test file length");
    file
}

pub struct TestClamd {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// How long the last start took until clamd answered `PONG`.
    pub started_in: Duration,
}

fn binary() -> PathBuf {
    super::binary(
        "clamd",
        &["/usr/sbin", "/usr/bin", "/usr/local/sbin"],
        "clamav-daemon",
    )
}

impl TestClamd {
    /// Starts clamd on a free port (another port if it was taken).
    pub async fn start() -> TestClamd {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("create db dir");
        // An extended signature: name, any target type (0), any offset,
        // the file's bytes in hex.
        let hex: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            db.join("eas-test.ndb"),
            format!("{EICAR_SIGNATURE}:0:*:{hex}\n"),
        )
        .expect("write eas-test.ndb");
        let mut clamd = TestClamd {
            port: 0,
            dir,
            child: None,
            started_in: Duration::ZERO,
        };
        let mut last = String::new();
        for _ in 0..5 {
            clamd.port = free_port();
            match clamd.spawn().await {
                Ok(()) => return clamd,
                Err(e) => last = e,
            }
        }
        panic!("clamd did not start: {last}");
    }

    fn write_config(&self) -> Result<PathBuf, String> {
        let d = self.dir.path();
        let tmp = d.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        // No `User`: clamd keeps the current user. No `LocalSocket`.
        let conf = format!(
            "Foreground yes\nTCPSocket {}\nTCPAddr 127.0.0.1\nDatabaseDirectory {}\n\
             TemporaryDirectory {}\nLogFile {}\nLogTime yes\nPidFile {}\n",
            self.port,
            d.join("db").display(),
            tmp.display(),
            d.join("clamd.log").display(),
            d.join("clamd.pid").display(),
        );
        let path = d.join("clamd.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        Ok(path)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let conf = self.write_config()?;
        let out =
            std::fs::File::create(self.dir.path().join("clamd.out")).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let child = Command::new(binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("spawn clamd: {e}"))?;
        self.child = Some(child);
        let deadline = started + START_LIMIT;
        loop {
            if let Some(status) = super::exited(&mut self.child) {
                return Err(format!("clamd exited ({status}): {}", self.log()));
            }
            if self.command(b"zPING\0").await.as_deref() == Ok("PONG") {
                self.started_in = started.elapsed();
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no PONG within {START_LIMIT:?}: {}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// clamd's log and its stdout/stderr.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "{}{}",
            read("clamd.log").unwrap_or_default(),
            read("clamd.out").unwrap_or_default()
        )
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Sends one `z`-command (NUL-terminated) and returns the answer up to
    /// its NUL.
    async fn command(&self, request: &[u8]) -> Result<String, String> {
        let mut stream = tokio::net::TcpStream::connect(self.addr())
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(request).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&answer);
        Ok(text.trim_end_matches('\0').to_string())
    }

    /// Scans `data` with `zINSTREAM`; returns clamd's answer such as
    /// `stream: OK` or `stream: Eicar-Test-Signature.UNOFFICIAL FOUND`.
    pub async fn scan(&self, data: &[u8]) -> String {
        let mut request = b"zINSTREAM\0".to_vec();
        let len = u32::try_from(data.len()).expect("chunk fits u32");
        request.extend_from_slice(&len.to_be_bytes());
        request.extend_from_slice(data);
        request.extend_from_slice(&0u32.to_be_bytes());
        self.command(&request).await.expect("clamd INSTREAM")
    }
}

impl Drop for TestClamd {
    fn drop(&mut self) {
        self.kill();
    }
}
