//! A relay following a local chain: [`Chain`] (anvil with the test registry
//! and an EAS contract), an in-process [`TestRelay`] whose `[chain]` points at
//! it (directly or through a [`TcpProxy`] the test can cut), and a sink for
//! `dest.test`; plus what the EAS frontend does against the relay
//! (`POST /activate` with the real signature) and the waits a test needs
//! (the watcher's cursor, an RCPT answer).

use super::anvil::{Authorization, Chain, ChainOptions};
use super::proxy::TcpProxy;
use super::relay::TestRelay;
use super::sink::TestSink;
use super::smtp::Client;
use eas_relay::config::{ChainConfig, Config, HumanDuration, RegistryConfig};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The name most tests use (`fsociety.country`).
pub const SLD: &str = "fsociety";
pub const DOMAIN: &str = "fsociety.country";
/// Confirmations the test relays wait for (the default).
pub const CONFIRMATIONS: u64 = 2;
/// Bound of every wait on the watcher.
pub const WATCH_LIMIT: Duration = Duration::from_secs(15);

/// `[chain]` for a relay following `chain` at `rpc_url`: fast polling, the
/// default confirmations, one registry (`country`).
pub fn chain_config(chain: &Chain, rpc_url: &str) -> ChainConfig {
    ChainConfig {
        enabled: true,
        rpc_url: rpc_url.to_string(),
        chain_id: chain.anvil.chain_id(),
        confirmations: CONFIRMATIONS,
        poll_interval: HumanDuration::parse("50ms").unwrap(),
        request_timeout: HumanDuration::parse("2s").unwrap(),
        registries: vec![RegistryConfig {
            tld: "country".into(),
            eas: format!("{:#x}", chain.eas),
            dc: format!("{:#x}", chain.registry),
            eas_events: chain.eas_events,
            log_addresses: Vec::new(),
        }],
        ..ChainConfig::default()
    }
}

/// The body the EAS frontend posts to `/activate`.
pub fn activate_body(auth: &Authorization) -> Value {
    json!({
        "alias": auth.alias,
        "sld": auth.sld,
        "forwardAddress": auth.forward,
        "signature": auth.signature_hex,
    })
}

pub struct ChainRelay {
    pub chain: Chain,
    pub relay: TestRelay,
    pub sink: TestSink,
    /// Between the relay and anvil when started with a proxy.
    pub proxy: Option<TcpProxy>,
}

impl ChainRelay {
    /// anvil + contracts (with events) and a relay following them.
    pub async fn start() -> ChainRelay {
        Self::start_with(ChainOptions::default(), false, |_| {}).await
    }

    /// `options` for the chain; `proxy`: reach anvil through a [`TcpProxy`];
    /// `tweak` may change the relay's config.
    pub async fn start_with(
        options: ChainOptions,
        proxy: bool,
        tweak: impl FnOnce(&mut Config),
    ) -> ChainRelay {
        let chain = Chain::start_with(options).await;
        let proxy = if proxy {
            let target: SocketAddr = format!("127.0.0.1:{}", chain.anvil.port()).parse().unwrap();
            Some(TcpProxy::start(target).await)
        } else {
            None
        };
        let rpc_url = proxy
            .as_ref()
            .map(TcpProxy::url)
            .unwrap_or_else(|| chain.anvil.url());
        let sink = TestSink::start().await;
        let dest = sink.addr.to_string();
        let chain_cfg = chain_config(&chain, &rpc_url);
        let relay = TestRelay::start(|c| {
            c.outbound.routes.insert("dest.test".into(), dest);
            c.chain = chain_cfg;
            tweak(c);
        })
        .await;
        let me = ChainRelay {
            chain,
            relay,
            sink,
            proxy,
        };
        // The watcher has started once it reports a cursor.
        me.wait_for_cursor(0).await;
        me
    }

    /// POSTs JSON to an EAS endpoint (no admin key: they are public).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        super::http::request(self.relay.http, "POST", path, None, Some(body)).await
    }

    /// `POST /activate` with what the frontend sends for `auth`.
    pub async fn activate(&self, auth: &Authorization) -> (u16, Value) {
        self.post("/activate", activate_body(auth)).await
    }

    /// `POST /activate` that must succeed.
    pub async fn activated(&self, auth: &Authorization) {
        let (status, body) = self.activate(auth).await;
        assert_eq!(
            (status, &body),
            (200, &json!({ "success": true })),
            "activate {}@{}",
            auth.alias,
            auth.sld
        );
    }

    /// `POST /deactivate` of `alias@sld.country` that must succeed; the
    /// name then has no alias left here once the watcher has confirmed the
    /// deactivation (the caller has let the chain confirm it).
    pub async fn deactivated(&self, sld: &str, alias: &str) {
        assert_eq!(
            self.post("/deactivate", json!({ "sld": sld, "alias": alias }))
                .await,
            (200, json!({ "success": true })),
            "/deactivate {alias}@{sld}"
        );
        let deadline = Instant::now() + WATCH_LIMIT;
        loop {
            let aliases = self.aliases_of(sld).await;
            if aliases == json!([]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{alias}@{sld} still there {WATCH_LIMIT:?} after /deactivate: {aliases}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The aliases of `sld.country` (admin API).
    pub async fn aliases_of(&self, sld: &str) -> Value {
        let (_, body) = self
            .relay
            .api("GET", &format!("/v3/domains/{sld}.country/aliases"), None)
            .await;
        body["aliases"].clone()
    }

    /// The watcher's view (`GET /v3/chain/status`).
    pub async fn chain_status(&self) -> Value {
        let (status, body) = self.relay.api("GET", "/v3/chain/status", None).await;
        assert_eq!(status, 200, "{body}");
        body["chain"].clone()
    }

    /// Waits until the watcher's cursor has reached `block`.
    pub async fn wait_for_cursor(&self, block: u64) -> Value {
        let deadline = Instant::now() + WATCH_LIMIT;
        loop {
            let view = self.chain_status().await;
            if view["cursor"].as_u64().unwrap_or(0) >= block
                && view["head"].as_u64().unwrap_or(0) > 0
            {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "the watcher did not reach block {block} within {WATCH_LIMIT:?}: {view}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the watcher has processed everything the chain has now
    /// (head − confirmations).
    pub async fn settle(&self) -> u64 {
        let target = self
            .chain
            .block_number()
            .await
            .saturating_sub(CONFIRMATIONS);
        self.wait_for_cursor(target).await;
        target
    }

    /// The reply to `RCPT TO:<rcpt>` in a fresh session.
    pub async fn rcpt(&self, rcpt: &str) -> String {
        rcpt_reply(self.relay.smtp, rcpt).await
    }

    /// Waits until `RCPT TO:<rcpt>` is answered with `expect` (a prefix).
    pub async fn wait_rcpt(&self, rcpt: &str, expect: &str) {
        let deadline = Instant::now() + WATCH_LIMIT;
        loop {
            let reply = self.rcpt(rcpt).await;
            if reply.starts_with(expect) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "RCPT TO:<{rcpt}> still answers `{reply}` after {WATCH_LIMIT:?}, expected `{expect}`"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends one message to `rcpt` and returns what the sink received.
    pub async fn deliver(&self, rcpt: &str, subject: &str) -> super::sink::Received {
        let before = self.sink.messages().len();
        let mut c = Client::connect(self.relay.smtp).await;
        c.ehlo("client.test").await;
        c.send_mail(
            "alice@sender.test",
            &[rcpt],
            &super::smtp::message("alice@sender.test", rcpt, subject, "hi"),
        )
        .await;
        c.quit().await;
        let got = self.sink.wait_for(before + 1, WATCH_LIMIT).await;
        got[before].clone()
    }
}

/// The reply to `RCPT TO:<rcpt>` in a fresh session at `smtp`.
pub async fn rcpt_reply(smtp: SocketAddr, rcpt: &str) -> String {
    let mut c = Client::connect(smtp).await;
    c.ehlo("client.test").await;
    c.mail_from("alice@sender.test", "250").await;
    c.send_raw(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()).await;
    let reply = c.reply().await;
    c.send_raw(b"QUIT\r\n").await;
    reply
}
