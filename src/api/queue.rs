//! `/v3/queue` (an eas-relay extension): list, show, retry, drop.

use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

pub(crate) fn router() -> Router<ApiState> {
    Router::new()
        .route("/queue", get(list))
        .route("/queue/retry", post(retry_all))
        .route("/queue/{id}", get(show).delete(remove))
        .route("/queue/{id}/retry", post(retry))
}

async fn list(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let queue = s.manage.queue()?;
    Ok(Json(
        json!({ "queue": queue, "total": queue.len(), "success": true }),
    ))
}

async fn show(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "message": s.manage.queue_entry(&id)?, "success": true }),
    ))
}

async fn retry(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let n = s.manage.retry(Some(&id)).await?;
    Ok(Json(json!({ "retried": n, "success": true })))
}

async fn retry_all(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let n = s.manage.retry(None).await?;
    Ok(Json(json!({ "retried": n, "success": true })))
}

async fn remove(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.manage.drop_message(&id).await?;
    Ok(Json(json!({ "success": true })))
}
