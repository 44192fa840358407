//! The HTTP API router built in-process (no socket, no network): a store
//! and a spool in a temporary directory, an [`Admin`] on them, and requests
//! handed to the router with `tower::ServiceExt::oneshot`, each with the
//! client address the per-IP rate limit reads (`ConnectInfo`).

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use eas_relay::api::{ApiState, router};
use eas_relay::config::Config;
use eas_relay::manage::{Local, QueueAccess};
use eas_relay::spool::Spool;
use eas_relay::store::Store;
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tower::ServiceExt;

/// The admin key every [`Api`] accepts.
pub const KEY: &str = "test-admin-key-0123456789";
/// A second accepted key (its own per-key budget).
pub const KEY2: &str = "second-admin-key-9876543210";
/// The client address of requests that do not choose one.
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No Authorization header.
    None,
    /// `Basic base64("api:KEY")`.
    Basic64,
    /// `Basic api:KEY`, unencoded (some ImprovMX clients send that).
    BasicRaw,
    /// `Bearer KEY`.
    Bearer,
    /// `Bearer` with a key the API does not know.
    Wrong,
    /// `Bearer` with this key.
    BearerOf(&'static str),
    /// This Authorization header value, as is.
    Header(String),
}

impl Auth {
    fn header(&self) -> Option<String> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        match self {
            Auth::None => None,
            Auth::Basic64 => Some(format!("Basic {}", b64(&format!("api:{KEY}")))),
            Auth::BasicRaw => Some(format!("Basic api:{KEY}")),
            Auth::Bearer => Some(format!("Bearer {KEY}")),
            Auth::Wrong => Some("Bearer not-the-key-000000000000".into()),
            Auth::BearerOf(key) => Some(format!("Bearer {key}")),
            Auth::Header(value) => Some(value.clone()),
        }
    }
}

/// Status, headers and body (JSON; a body that is not JSON comes back as
/// a JSON string, an empty one as `null`).
pub type Answer = (StatusCode, HeaderMap, Value);

/// The config of an API under test: a known key, no DNS query leaving the
/// machine (a closed loopback port), no DKIM keys to load.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        hostname: "relay.test".into(),
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.http.admin_keys = vec![KEY.into(), KEY2.into()];
    c.outbound.nameservers = vec!["127.0.0.1:9".parse().unwrap()];
    c.dkim.enabled = false;
    c.arc.enabled = false;
    c.auth.enabled = false;
    c
}

/// The router of one API, with its store (the test may write it directly).
pub struct Api {
    pub router: Router,
    pub admin: Arc<Local>,
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    _dir: tempfile::TempDir,
}

impl Api {
    /// An API with the default test config.
    pub fn new() -> Api {
        Api::with(|_| {})
    }

    /// An API whose config `tweak` may change first.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let config = Arc::new(config);
        let store = Arc::new(Store::open(&dir.path().join("eas-relay.redb")).expect("store"));
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir_all(&spool_dir).unwrap();
        let spool = Spool::open(&spool_dir).expect("spool");
        let admin = Arc::new(Local::new(
            config.clone(),
            store.clone(),
            QueueAccess::Offline(spool),
        ));
        let keys = config.http.admin_keys.clone();
        let state = ApiState::new(
            config.clone(),
            admin.clone(),
            keys,
            eas_relay::observe::metrics_handle(),
        );
        Api {
            router: router(state),
            admin,
            store,
            config,
            _dir: dir,
        }
    }

    /// One request from the default client address.
    pub async fn call(&self, method: Method, path: &str, auth: Auth, body: Option<&str>) -> Answer {
        self.call_from(CLIENT, method, path, auth, body).await
    }

    /// One request from client address `ip`.
    pub async fn call_from(
        &self,
        ip: IpAddr,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<&str>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(value) = auth.header() {
            request = request.header(header::AUTHORIZATION, value);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.send(ip, request.body(body).unwrap()).await
    }

    /// Hands a request (with any headers) to the router, from `ip`.
    pub async fn send(&self, ip: IpAddr, mut request: Request<Body>) -> Answer {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (parts.status, parts.headers, value)
    }

    /// GET with the key (Bearer).
    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Auth::Bearer, None).await
    }

    /// A request with the key (Bearer) and a JSON body.
    pub async fn json(&self, method: Method, path: &str, body: &Value) -> Answer {
        self.call(method, path, Auth::Bearer, Some(&body.to_string()))
            .await
    }

    /// A request with the key that must succeed (200, `success: true`);
    /// returns its body.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let text = body.map(|b| b.to_string());
        let (status, _, value) = self
            .call(method.clone(), path, Auth::Bearer, text.as_deref())
            .await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {value}");
        assert_eq!(value["success"], true, "{method} {path}: {value}");
        value
    }

    /// Adds a static domain through the API.
    pub async fn add_domain(&self, domain: &str) -> Value {
        self.ok(
            Method::POST,
            "/v3/domains",
            Some(serde_json::json!({ "domain": domain })),
        )
        .await
    }

    /// Adds an alias through the API.
    pub async fn add_alias(&self, domain: &str, alias: &str, forward: &str) -> Value {
        self.ok(
            Method::POST,
            &format!("/v3/domains/{domain}/aliases"),
            Some(serde_json::json!({ "alias": alias, "forward": forward })),
        )
        .await
    }
}

impl Default for Api {
    fn default() -> Api {
        Api::new()
    }
}

/// Asserts the API's error shape: `status`, `success: false`, `code`, and
/// `errors.{field}` a list of one message, equal to `error`. Returns the
/// message.
#[track_caller]
pub fn assert_error(answer: &Answer, status: StatusCode, field: &str) -> String {
    let (got, _, body) = answer;
    assert_eq!(*got, status, "status; body: {body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], status.as_u16(), "{body}");
    let messages = body["errors"][field]
        .as_array()
        .unwrap_or_else(|| panic!("no errors.{field} in {body}"));
    assert_eq!(messages.len(), 1, "{body}");
    let message = messages[0].as_str().expect("message is a string");
    assert!(!message.is_empty(), "{body}");
    assert_eq!(body["error"], message, "{body}");
    assert_eq!(
        body["errors"].as_object().map(|o| o.len()),
        Some(1),
        "one field in errors: {body}"
    );
    message.to_string()
}

/// A header as text (panics when absent).
#[track_caller]
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Puts a chain-governed alias `local@sld.country -> forward` into the
/// store, as a verified activation would (the domain becomes
/// chain-governed).
pub fn activate_on_chain(store: &Store, sld: &str, local: &str, forward: &str) {
    use alloy::primitives::keccak256;
    use eas_relay::store::{Activated, ChainBinding, NameState, Reveal};
    let owner = format!("0x{}", "11".repeat(20));
    let commitment = format!("0x{}", "ab".repeat(32));
    let activated = Activated {
        domain: format!("{sld}.country"),
        local: local.to_lowercase(),
        node: keccak256(sld.as_bytes()).0,
        alias_hash: keccak256(local.as_bytes()).0,
        binding: ChainBinding {
            tld: "country".into(),
            sld: sld.into(),
            alias: local.into(),
            commitment: commitment.clone(),
            observed: commitment,
            signer: owner.clone(),
            checked_block: 1,
        },
        reveal: Reveal {
            forward: forward.into(),
            signature: format!("0x{}", "22".repeat(65)),
        },
        name: NameState {
            tld: "country".into(),
            sld: sld.into(),
            owner,
            expires: unix_now() + 365 * 86_400,
            maintainer_allowed: false,
            checked_block: 1,
        },
    };
    store.chain_activate(&activated).expect("chain_activate");
}
