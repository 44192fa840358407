//! `/v3/chain` (an eas-relay extension): the watcher's status, and resync
//! (re-read history from a block and verify every alias again).

use super::{ApiError, ApiState};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) fn router() -> Router<ApiState> {
    Router::new()
        .route("/chain/status", get(status))
        .route("/chain/resync", post(resync))
}

/// The chain part of `/health` and `/v3/chain/status`.
pub(crate) fn view(state: &ApiState) -> Value {
    let Some(watcher) = &state.watcher else {
        return json!({ "enabled": false });
    };
    let h = &watcher.health;
    let load = |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
    crate::chain::watcher::status_view(
        &state.config.chain,
        load(&h.head),
        load(&h.cursor),
        load(&h.last_ok_ms),
        h.last_error.lock().expect("health lock").clone(),
    )
}

async fn status(State(s): State<ApiState>) -> Json<Value> {
    Json(json!({ "chain": view(&s), "success": true }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Resync {
    from_block: Option<u64>,
}

/// Moves the watcher's cursor back; it then reads history forward and
/// verifies every alias (progress: `/v3/chain/status`).
async fn resync(
    State(s): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: Resync = if body.iter().all(u8::is_ascii_whitespace) {
        Resync::default()
    } else {
        super::extract::from_slice(&body)?
    };
    let Some(watcher) = &s.watcher else {
        return Err(ApiError::Conflict {
            field: "chain".into(),
            message: "chain.enabled is off".into(),
        });
    };
    let from = body.from_block.unwrap_or(s.config.chain.start_block);
    watcher
        .rewind_to(from)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    watcher.request_sweep();
    Ok(Json(json!({ "from_block": from, "success": true })))
}
