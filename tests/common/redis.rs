//! A real `redis-server` for the tests: started on a free loopback port
//! with its own temporary directory (no persistence, no system service),
//! stopped and started again on the same port, killed on drop; plus a
//! client to read and write the zone as CoreDNS and other writers do. A
//! server may also listen with TLS (`start_tls`: Debian's redis-server is
//! built with it) beside its plain port, which the helpers keep using.

use super::free_port;
use redis::AsyncCommands;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound of waiting for the server to answer.
const START_LIMIT: Duration = Duration::from_secs(10);

pub struct TestRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// (TLS port, certificate PEM file, key PEM file).
    tls: Option<(u16, PathBuf, PathBuf)>,
}

fn binary() -> PathBuf {
    super::binary(
        "redis-server",
        &["/usr/bin", "/usr/local/bin", "/usr/sbin"],
        "redis-server",
    )
}

impl TestRedis {
    /// Starts a server on a free port (another port if it was taken).
    pub async fn start() -> TestRedis {
        Self::start_with(None).await
    }

    /// Starts a server that also listens with TLS, presenting `cert_pem`
    /// (the chain) with `key_pem`; clients need no certificate.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> TestRedis {
        Self::start_with(Some((cert_pem, key_pem))).await
    }

    async fn start_with(tls: Option<(&str, &str)>) -> TestRedis {
        let mut redis = TestRedis {
            port: 0,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            tls: None,
        };
        if let Some((cert, key)) = tls {
            let (c, k) = (
                redis.dir.path().join("cert.pem"),
                redis.dir.path().join("key.pem"),
            );
            std::fs::write(&c, cert).expect("write cert.pem");
            std::fs::write(&k, key).expect("write key.pem");
            redis.tls = Some((0, c, k));
        }
        let mut last = String::new();
        for _ in 0..5 {
            redis.port = free_port();
            if let Some((port, _, _)) = redis.tls.as_mut() {
                *port = free_port();
            }
            match redis.spawn().await {
                Ok(()) => return redis,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let log =
            std::fs::File::create(self.dir.path().join("redis.log")).map_err(|e| e.to_string())?;
        let mut command = Command::new(binary());
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some((port, cert, key)) = &self.tls {
            command
                .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = super::exited(&mut self.child) {
                return Err(format!("redis-server exited ({status}): {}", self.log()));
            }
            if let Ok(mut con) = self.try_connection().await {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut con).await;
                if pong.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no answer within {START_LIMIT:?}: {}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (its data is gone: nothing is saved).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port (the relay's URL stays).
    pub async fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match self.spawn().await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server restart: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The `rediss://` URL of the TLS port (a server from `start_tls`).
    pub fn tls_url(&self) -> String {
        let (port, _, _) = self.tls.as_ref().expect("started with start_tls");
        format!("rediss://127.0.0.1:{port}")
    }

    async fn try_connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    /// A connection of another client (as CoreDNS or an operator).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.try_connection().await.expect("connect to redis")
    }

    pub async fn hget(&self, key: &str, field: &str) -> Option<String> {
        self.connection()
            .await
            .hget(key, field)
            .await
            .expect("HGET")
    }

    pub async fn hset(&self, key: &str, field: &str, value: &str) {
        let _: i64 = self
            .connection()
            .await
            .hset(key, field, value)
            .await
            .expect("HSET");
    }

    /// Every field of the hash `key`.
    pub async fn hgetall(&self, key: &str) -> std::collections::BTreeMap<String, String> {
        self.connection().await.hgetall(key).await.expect("HGETALL")
    }

    /// Waits until `field` of `key` satisfies `ok`; returns its value.
    pub async fn wait_field(
        &self,
        key: &str,
        field: &str,
        limit: Duration,
        ok: impl Fn(&Option<String>) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.hget(key, field).await;
            if ok(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{key} {field} = {value:?} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
