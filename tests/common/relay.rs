//! Runs a whole relay in-process on loopback port 0 (SMTP and HTTP), with
//! its data in a temporary directory, and stops it cleanly.

use eas_relay::config::{Config, HumanDuration};
use eas_relay::{Listeners, run};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct TestRelay {
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    pub config: Config,
    pub key: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), eas_relay::RunError>>>,
    _dir: Option<tempfile::TempDir>,
}

/// A config for tests: data in `dir`, fast retries, a known admin key.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config {
        hostname: "relay.test".into(),
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.http.admin_keys = vec!["test-admin-key-0123456789".into()];
    c.queue.retry_initial = HumanDuration::parse("200ms").unwrap();
    c.queue.retry_max = HumanDuration::parse("1s").unwrap();
    c.outbound.connect_timeout = HumanDuration::parse("2s").unwrap();
    c.outbound.command_timeout = HumanDuration::parse("5s").unwrap();
    c.smtp.shutdown_grace = HumanDuration::parse("2s").unwrap();
    // Test destinations listen on loopback, which the relay refuses to
    // deliver to through MX records unless allowed.
    c.outbound.allow_networks = vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
    // Inbound verification queries DNS; tests about it turn it on with a
    // DNS server on loopback (no query may leave the machine).
    c.auth.enabled = false;
    c
}

impl TestRelay {
    /// Starts a relay whose config `tweak` may change (data dir is a fresh
    /// temporary directory).
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestRelay {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        Self::start_with(config, Some(dir)).await
    }

    /// Starts a relay (as [`TestRelay::start`]) whose store `seed` fills
    /// before the relay opens it: what a cluster node's replica would hold.
    pub async fn start_seeded(
        tweak: impl FnOnce(&mut Config),
        seed: impl FnOnce(&Path),
    ) -> TestRelay {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        seed(&config.store_path());
        Self::start_with(config, Some(dir)).await
    }

    /// Starts a relay on an existing data directory (restart tests).
    pub async fn start_in(data_dir: &Path, tweak: impl FnOnce(&mut Config)) -> TestRelay {
        let mut config = test_config(data_dir);
        tweak(&mut config);
        Self::start_with(config, None).await
    }

    async fn start_with(config: Config, dir: Option<tempfile::TempDir>) -> TestRelay {
        let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (smtp_addr, http_addr) = (smtp.local_addr().unwrap(), http.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(config.clone(), Listeners { smtp, http }, async move {
            let _ = stopped.await;
        }));
        TestRelay {
            smtp: smtp_addr,
            http: http_addr,
            key: config.http.admin_keys[0].clone(),
            config,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// Stops the relay and waits until it has released everything.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("relay task").expect("relay ran");
        }
    }

    /// Calls the admin API; returns (status, JSON body).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        super::http::request(self.http, method, path, Some(&self.key), body).await
    }

    /// `POST /v3/aliases/import` with `text` (alias lines, not JSON);
    /// returns (status, body).
    pub async fn import(&self, text: &str) -> (u16, String) {
        let bearer = format!("Bearer {}", self.key);
        super::http::raw(self.http, "POST", "/v3/aliases/import", Some(&bearer), text).await
    }

    /// Adds `domain` and an alias `local@domain -> forward` via the admin API.
    pub async fn alias(&self, local: &str, domain: &str, forward: &str) {
        let (status, body) = self
            .api(
                "POST",
                "/v3/domains",
                Some(serde_json::json!({ "domain": domain })),
            )
            .await;
        assert!(
            status == 200 || status == 409,
            "add domain: {status} {body}"
        );
        let (status, body) = self
            .api(
                "POST",
                &format!("/v3/domains/{domain}/aliases"),
                Some(serde_json::json!({ "alias": local, "forward": forward })),
            )
            .await;
        assert_eq!(status, 200, "add alias: {body}");
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
