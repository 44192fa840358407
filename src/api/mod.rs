//! The HTTP side: `/health`, `/metrics`, and the admin API under `/v3`
//! (ImprovMX-compatible domains and aliases, plus eas-relay's queue and
//! delivery log), one router per resource, one error type.

mod aliases;
pub mod auth;
mod chain;
pub mod client;
mod domains;
mod eas;
mod error;
pub mod logs;
mod queue;

pub use error::ApiError;

use crate::admin::Admin;
use crate::config::Config;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub config: Arc<Config>,
    pub admin: Arc<Admin>,
    pub keys: Arc<Vec<String>>,
    pub metrics: PrometheusHandle,
    /// None when chain.enabled is off.
    pub activation: Option<Arc<crate::chain::activation::Activation>>,
    /// The shared secret of the activation endpoints, when configured.
    pub activation_secret: Option<Vec<u8>>,
    /// The watcher (for health, chain status and resync), when the chain is on.
    pub watcher: Option<Arc<crate::chain::watcher::Watcher>>,
}

/// The whole HTTP API.
pub fn router(state: ApiState) -> Router {
    let v3 = Router::new()
        .merge(domains::router())
        .merge(aliases::router())
        .merge(logs::router())
        .merge(queue::router())
        .merge(chain::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(eas::router())
        .nest("/v3", v3)
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .with_state(state)
}

async fn health(State(state): State<ApiState>) -> Response {
    let queued = state
        .admin
        .store()
        .queue_due_list()
        .map(|l| l.len())
        .unwrap_or(0);
    let chain = chain::view(&state);
    let stale = chain["stale"].as_bool().unwrap_or(false);
    Json(json!({
        "status": if stale { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "queue": queued,
        "chain": chain,
    }))
    .into_response()
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
        .and_then(auth::presented_key);
    match presented {
        Some(key) if auth::is_valid(&key, &state.keys) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// A JSON body whose errors (malformed, wrong type, unknown field) come
/// back in the API's error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError::invalid("body", rejection.body_text())),
        }
    }
}

/// `page` (from 1) and `limit` query parameters, bounded.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    pub page: Option<usize>,
    pub limit: Option<usize>,
    pub q: Option<String>,
}

impl Page {
    pub fn page(&self) -> usize {
        self.page.unwrap_or(1).max(1)
    }

    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(50).clamp(1, 1000)
    }

    /// The slice of `items` this page shows.
    pub fn slice<T: Clone>(&self, items: &[T]) -> Vec<T> {
        let start = (self.page() - 1).saturating_mul(self.limit());
        items
            .iter()
            .skip(start)
            .take(self.limit())
            .cloned()
            .collect()
    }
}
