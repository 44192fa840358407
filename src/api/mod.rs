//! The HTTP side: `/health`, `/metrics`, and the admin API under `/v3`
//! (ImprovMX-compatible domains and aliases, plus eas-relay's queue and
//! delivery log), one router per resource, one error type.

mod account;
mod aliases;
mod chain;
mod domains;
mod eas;
mod error;
mod extract;
pub mod keys;
pub(crate) mod limit;
mod logs;
mod openapi;
mod queue;
pub(crate) mod serve;
mod slash;

pub(crate) use error::ApiError;
pub(crate) use extract::{ApiJson, ApiQuery};

use crate::config::Config;
use crate::manage::Local;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use limit::{RateLimits, Verdict};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) config: Arc<Config>,
    pub(crate) manage: Arc<Local>,
    pub(crate) keys: Arc<Vec<String>>,
    pub(crate) metrics: PrometheusHandle,
    /// None when chain.enabled is off.
    pub(crate) activation: Option<Arc<crate::chain::activation::Activation>>,
    /// The shared secret of the activation endpoints, when configured.
    pub(crate) activation_secret: Option<Vec<u8>>,
    /// The watcher (for health, chain status and resync), when the chain is on.
    pub(crate) watcher: Option<Arc<crate::chain::watcher::Watcher>>,
    /// The zone in Redis (for the domain check), when DNS provisioning is on.
    pub(crate) zone: Option<Arc<crate::provision::Provisioner<crate::provision::RedisZone>>>,
    /// The content scanner (for health), when `scan.enabled` is on.
    pub(crate) scanner: Option<Arc<crate::scan::Scanner>>,
    /// The cluster's database, whose delivery log (every node's) the log
    /// endpoints read, when `cluster.enabled` is on.
    pub(crate) cluster_logs: Option<crate::cluster::Db>,
    pub(crate) limits: Arc<RateLimits>,
}

impl ApiState {
    /// The state of an HTTP API without a chain.
    pub fn new(
        config: Arc<Config>,
        manage: Arc<Local>,
        keys: Vec<String>,
        metrics: PrometheusHandle,
    ) -> ApiState {
        ApiState {
            limits: Arc::new(RateLimits::new(&config.http.rate_limit)),
            config,
            manage,
            keys: Arc::new(keys),
            metrics,
            scanner: None,
            activation: None,
            activation_secret: None,
            watcher: None,
            zone: None,
            cluster_logs: None,
        }
    }
}

/// The whole HTTP API; every `/v3` route also answers with one trailing
/// slash (`slash.rs`). Serve it with [`serve::serve`] (or
/// `into_make_service_with_connect_info::<SocketAddr>()`): the per-network
/// rate limit needs the client's address.
pub fn router(state: ApiState) -> Router {
    let v3 = Router::new()
        .merge(account::router())
        .merge(domains::router())
        .merge(aliases::router())
        .merge(logs::router())
        .merge(queue::router())
        .merge(chain::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        // The document needs no key (it is the same for everyone).
        .merge(openapi::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_ip));
    let eas = eas::router().route_layer(middleware::from_fn_with_state(state.clone(), limit_ip));
    let api = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(eas)
        .nest("/v3", v3)
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .with_state(state.clone());
    // The path check (one trailing slash forgiven under /v3, empty segments
    // and encoded slashes refused) must run before routing, so it wraps the
    // finished router: a router's own layers run after a route is matched.
    // The answer-shaping layers wrap it in turn, so its 404s are shaped too.
    let mut router = Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn(slash::normalize))
        .layer(middleware::map_response(method_not_allowed));
    if state.config.http.security_headers {
        router = router.layer(middleware::map_response(security_headers));
    }
    if let Some(cors) = cors(&state.config.http.cors_origins) {
        router = router.layer(cors);
    }
    router
}

/// CORS for the configured origins (none: no CORS headers at all).
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                HeaderName::from_static(eas::SIGNATURE_HEADER),
            ])
            .expose_headers([
                limit::LIMIT,
                limit::REMAINING,
                limit::RESET,
                axum::http::header::RETRY_AFTER,
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// axum answers an unserved method with an empty 405: give it the API's
/// error body, keeping its `Allow` header.
async fn method_not_allowed(response: Response) -> Response {
    if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let mut shaped = ApiError::MethodNotAllowed.into_response();
    if let Some(allow) = response.headers().get(axum::http::header::ALLOW) {
        shaped
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    shaped
}

/// Headers that keep a browser from doing anything clever with an answer.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// The per-IP limit, before anything else is looked at.
async fn limit_ip(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(limiter) = &state.limits.per_ip else {
        return next.run(request).await;
    };
    // Without a socket (a request handed to the router in-process) every
    // caller shares one budget.
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
            // One budget per network: an IPv6 /64 is one client.
            crate::net::NetKey::of(c.0.ip()).as_ip()
        });
    limited(limiter.check(&ip), next.run(request)).await
}

/// Runs `handler` when the verdict allows it; either way the answer shows
/// the budget.
async fn limited(
    verdict: Verdict,
    handler: impl std::future::Future<Output = Response>,
) -> Response {
    match verdict {
        Verdict::Allowed(budget) => {
            let mut response = handler.await;
            limit::write_budget(response.headers_mut(), budget);
            response
        }
        Verdict::Refused(budget, wait) => {
            let mut response = ApiError::TooManyRequests {
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
            .into_response();
            limit::write_budget(response.headers_mut(), budget);
            response
        }
    }
}

/// `/health`: `"ok"`, `"degraded"` (the chain view is stale, or the content
/// scanner's circuit is open) or, with
/// HTTP 503, `"failing"` (a queue worker died or is stuck: mail is not
/// moving).
async fn health(State(state): State<ApiState>) -> Response {
    let queued = state.manage.store().queue_due_count().unwrap_or(0);
    let chain = chain::view(&state);
    let stale = chain["stale"].as_bool().unwrap_or(false);
    let workers = state
        .manage
        .queue_health()
        .map(|h| h.states())
        .unwrap_or_default();
    let failing = workers
        .iter()
        .any(|(_, s)| *s != crate::queue::health::State::Ok);
    let components: serde_json::Map<String, serde_json::Value> = workers
        .iter()
        .map(|(name, s)| (name.to_string(), json!(s.as_str())))
        .collect();
    // A scanner whose circuit is open: mail is deferred (or forwarded
    // unscanned), not lost, so the node is degraded, not failing.
    let scan = state.scanner.as_ref().map(|s| s.state());
    let scan_down = scan.is_some_and(|s| s != "ok");
    let status = match (failing, stale || scan_down) {
        (true, _) => "failing",
        (false, true) => "degraded",
        (false, false) => "ok",
    };
    let mut body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "queue": queued,
        "chain": chain,
        "components": components,
    });
    if let Some(scan) = scan {
        body["scan"] = json!(scan);
    }
    if state.config.dns_provisioning.enabled {
        // Names waiting for their DNS records: shown, but the relay stays
        // "ok" (mail to them forwards as soon as the records are there).
        let pending = state.manage.store().provision_pending_count().unwrap_or(0);
        body["dns_provision_pending"] = json!(pending);
        // Names whose labels the relay cannot edit (an operator must look).
        let failing = state.manage.store().provision_failing_count().unwrap_or(0);
        body["dns_provision_failing"] = json!(failing);
    }
    let body = Json(body);
    if failing {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    } else {
        body.into_response()
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn require_key(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(keys::presented_key);
    match presented {
        Some(key) if keys::is_valid(&key, &state.keys) => match &state.limits.per_key {
            Some(limiter) => limited(limiter.check(&key), next.run(request)).await,
            None => next.run(request).await,
        },
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// The query of a list: `page` (from 1), `limit` (1 to 100, default 50),
/// and the filters `q`, `is_active` (domains) and `alias` (aliases).
/// Parameters a list does not know are ignored, as ImprovMX does.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Page {
    pub(crate) page: Option<usize>,
    pub(crate) limit: Option<usize>,
    pub(crate) q: Option<String>,
    pub(crate) is_active: Option<String>,
    pub(crate) alias: Option<String>,
}

/// Most items one page holds.
pub(crate) const MAX_LIMIT: usize = 100;

impl Page {
    pub(crate) fn page(&self) -> usize {
        self.page.unwrap_or(1).max(1)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.unwrap_or(50).clamp(1, MAX_LIMIT)
    }

    /// `q`, unless empty.
    pub(crate) fn q(&self) -> Option<&str> {
        self.q.as_deref().filter(|q| !q.is_empty())
    }

    /// `alias`, unless empty.
    pub(crate) fn alias(&self) -> Option<&str> {
        self.alias.as_deref().filter(|a| !a.is_empty())
    }

    /// `is_active`: `1`/`true` or `0`/`false`; absent or empty: no filter.
    pub(crate) fn is_active(&self) -> Result<Option<bool>, ApiError> {
        match self.is_active.as_deref() {
            None | Some("") => Ok(None),
            Some("1" | "true") => Ok(Some(true)),
            Some("0" | "false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid(
                "is_active",
                format!("`{other}` is not 1, 0, true or false"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Queue, QueueSettings};
    use crate::spool::Spool;
    use crate::store::Store;
    use http_body_util::BodyExt;
    use std::time::Duration;

    /// A stuck committer turns `/health` to 503 "failing", naming it; the
    /// other fields stay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_fails_while_the_committer_is_stuck() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.queue.stall_timeout = crate::config::HumanDuration::new(Duration::from_millis(200));
        let config = Arc::new(config);
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let started =
            Queue::start(store.clone(), spool, QueueSettings::from_config(&config)).unwrap();
        let queue = started.queue;
        let manage = Arc::new(Local::new(
            config.clone(),
            store.clone(),
            crate::manage::QueueAccess::Live(queue.clone()),
        ));
        let state = ApiState::new(config, manage, vec![], crate::observe::metrics_handle());
        let get = |state: ApiState| async move {
            let response = health(State(state)).await;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        };
        let (status, body) = get(state.clone()).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("ok")),
            "{body}"
        );

        let txn = store.db().begin_write().unwrap();
        let pending = tokio::spawn({
            let queue = queue.clone();
            async move { queue.retry(None).await }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let body = loop {
            let (status, body) = get(state.clone()).await;
            if status == 503 {
                break body;
            }
            assert!(tokio::time::Instant::now() < deadline, "{body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(body["status"], "failing", "{body}");
        assert_eq!(body["components"]["committer"], "stalled", "{body}");
        assert_eq!(body["components"]["scheduler"], "ok", "{body}");
        assert!(
            body["version"].is_string() && body["queue"].is_u64(),
            "{body}"
        );
        drop(txn);
        assert!(pending.await.unwrap().is_ok());
        // Healthy again once the committer is done with that batch (it
        // answers the batch's waiters just before).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = get(state.clone()).await;
            if status == 200 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
