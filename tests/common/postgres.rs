//! A real PostgreSQL for the tests: `initdb` in a temporary directory as
//! an unprivileged user (the `postgres` system user the Debian package
//! creates when the tests run as root, which initdb refuses; else the
//! current user), then `postgres` on a free loopback port with its socket
//! in that directory (no system service, fsync off), a database and a user
//! with a password (SCRAM over TCP; only the socket trusts the superuser).
//! `stop()` and `restart()` on the same port, killed on drop. A server may
//! also speak TLS (`start_tls`) with a certificate the test made.
//!
//! initdb takes about a second: it runs once per PostgreSQL version and
//! user into a template under `CARGO_TARGET_TMPDIR`, and every server
//! starts from a copy of it (`cp -a`, ownership kept).

use super::free_port;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound of waiting for the server to accept connections.
const START_LIMIT: Duration = Duration::from_secs(30);
/// The database and login the relay uses.
pub const DATABASE: &str = "eas";
pub const USER: &str = "eas";

pub struct TestPostgres {
    pub port: u16,
    /// The login's password (random per server).
    pub password: String,
    dir: tempfile::TempDir,
    /// (uid, gid) the server runs as; None: the current user.
    owner: Option<(u32, u32)>,
    tls: bool,
    child: Option<Child>,
    /// How long `start` took (initdb, first start, user and database).
    pub started_in: Duration,
}

/// The newest installed server's bin directory (Debian keeps each major
/// version in /usr/lib/postgresql/<version>/bin, off the PATH).
pub fn bin_dir() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    match versions.into_iter().max() {
        Some(v) => PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")),
        None => panic!(
            "PostgreSQL is not installed (scripts/test installs the Debian package `postgresql`)"
        ),
    }
}

/// The uid and gid of `name` (from `id`: no libc user database calls).
fn ids_of(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, name])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "no user {name:?} (the postgresql package creates it)"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

fn random_password() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rng.random_range(0..32)]))
        .collect()
}

/// `cp -a from to`: the tree with its modes and owners (PostgreSQL refuses
/// a data directory others may read, or owned by another user).
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

impl TestPostgres {
    /// Starts a server on a free port, with the database and login.
    pub async fn start() -> TestPostgres {
        Self::start_with(None).await
    }

    /// As [`TestPostgres::start`], the server also speaking TLS with
    /// `cert_pem` (the chain) and `key_pem`.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> TestPostgres {
        Self::start_with(Some((cert_pem, key_pem))).await
    }

    async fn start_with(tls: Option<(&str, &str)>) -> TestPostgres {
        let began = Instant::now();
        // SAFETY: geteuid cannot fail and touches no memory of ours.
        let root = unsafe { libc::geteuid() } == 0;
        let mut pg = TestPostgres {
            port: 0,
            password: random_password(),
            dir: tempfile::tempdir().expect("temp dir"),
            owner: root.then(|| ids_of("postgres")),
            tls: tls.is_some(),
            child: None,
            started_in: Duration::ZERO,
        };
        if let Some((uid, gid)) = pg.owner {
            std::os::unix::fs::chown(pg.dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        pg.fresh_data();
        if let Some((cert, key)) = tls {
            pg.write_owned("server.crt", cert);
            pg.write_owned("server.key", key);
        }
        let mut last = String::new();
        let mut started = false;
        for _ in 0..5 {
            pg.port = free_port();
            match pg.spawn().await {
                Ok(()) => {
                    started = true;
                    break;
                }
                Err(e) => last = e,
            }
        }
        assert!(started, "postgres did not start: {last}");
        let admin = pg.superuser().await;
        // Two statements: CREATE DATABASE refuses the implicit transaction
        // of a multi-statement query.
        admin
            .batch_execute(&format!(
                "CREATE ROLE {USER} LOGIN PASSWORD '{}'",
                pg.password
            ))
            .await
            .expect("create the login");
        admin
            .batch_execute(&format!("CREATE DATABASE {DATABASE} OWNER {USER}"))
            .await
            .expect("create the database");
        pg.started_in = began.elapsed();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command that runs as the server's user.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(bin_dir().join(program));
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            // Set before exec; std drops root's supplementary groups too.
            command.uid(uid).gid(gid);
        }
        command
    }

    /// `initdb` into `data` (inside this server's directory, which the
    /// server's user owns).
    fn initdb(&self, data: &Path) {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(data)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The data directory of a fresh cluster: a copy of the template,
    /// which is made (initdb here, then copied into place under a
    /// temporary name and renamed, so that test binaries running at once
    /// never see half a template) when missing.
    fn fresh_data(&self) {
        let bin = bin_dir();
        let version = bin
            .parent()
            .and_then(|p| p.file_name())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        // SAFETY: geteuid cannot fail and touches no memory of ours.
        let uid = self
            .owner
            .map_or_else(|| unsafe { libc::geteuid() }, |(uid, _)| uid);
        let template = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("postgres-template-{version}-{uid}"));
        // The tests of this binary make it once; other binaries may race.
        static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
        if !template.join("PG_VERSION").exists() {
            let made = self.dir.path().join("template");
            self.initdb(&made);
            let _ = std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR"));
            let staging =
                template.with_extension(format!("tmp{}-{}", std::process::id(), random_password()));
            let _ = std::fs::remove_dir_all(&staging);
            copy_tree(&made, &staging);
            std::fs::remove_dir_all(&made).expect("remove the made template");
            // Another binary may have won the race: its template is as good.
            if std::fs::rename(&staging, &template).is_err() {
                let _ = std::fs::remove_dir_all(&staging);
            }
        }
        drop(making);
        copy_tree(&template, &self.data());
    }

    /// Writes `name` into the data directory, 0600 and owned by the
    /// server's user (PostgreSQL refuses a key others may read).
    fn write_owned(&self, name: &str, text: &str) {
        let path = self.data().join(name);
        std::fs::write(&path, text).expect("write into the data dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown");
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "shared_buffers=16MB"])
            .args(["-c", "max_connections=60"]);
        if self.tls {
            command.args(["-c", "ssl=on"]);
        }
        let child = command
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn postgres: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = super::exited(&mut self.child) {
                return Err(format!("postgres exited ({status}): {}", self.log()));
            }
            if self.try_superuser().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill_with(libc::SIGKILL);
                return Err(format!("no answer within {START_LIMIT:?}: {}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` to the server and waits (at most 10 s) for it to end;
    /// kills it if it does not.
    fn kill_with(&mut self, signal: libc::c_int) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the server (fast shutdown: clients are disconnected). Its
    /// data stays for `restart`.
    pub fn stop(&mut self) {
        self.kill_with(libc::SIGINT);
    }

    /// Starts the server again on the same port (the URLs stay valid).
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match self.spawn().await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("postgres restart: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// `postgres://eas:<password>@127.0.0.1:<port>/eas`.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// The URL of the login to another database of this server.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The socket directory (the superuser's way in).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    async fn try_superuser(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.dir.path())
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A superuser connection over the socket (to inspect or break things).
    pub async fn superuser(&self) -> tokio_postgres::Client {
        self.try_superuser().await.expect("superuser connection")
    }

    /// A new empty database owned by the login; its URL.
    pub async fn create_database(&self, name: &str) -> String {
        self.superuser()
            .await
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {USER}"))
            .await
            .expect("create database");
        self.url_for(name)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // Immediate shutdown: the server ends its backends and exits.
        self.kill_with(libc::SIGQUIT);
    }
}
