//! `/v3/domains/{domain}/logs[/{alias}]`: the delivery log, newest first,
//! one item per recipient outcome with its event (ImprovMX-style fields).
//! On a cluster node the log is every node's, read from PostgreSQL; when
//! PostgreSQL does not answer, this node's own log is shown instead, said
//! by the `X-Eas-Logs-Source: local` header and a `warning` field.

use super::{ApiError, ApiQuery, ApiState, Page};
use crate::manage::{LogQuery, log_items};
use crate::store::LogEntry;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::time::Duration;

/// The header saying whose log an answer holds: `cluster` (every node's)
/// or `local` (this node's).
pub(crate) const SOURCE_HEADER: &str = "x-eas-logs-source";
/// Bound of reading the cluster's log before answering from this node's.
const CLUSTER_READ_LIMIT: Duration = Duration::from_secs(5);

pub(crate) fn router() -> Router<ApiState> {
    Router::new()
        .route("/domains/{domain}/logs", get(domain_logs))
        .route("/domains/{domain}/logs/{alias}", get(alias_logs))
}

async fn domain_logs(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    logs(&s, &domain, None, &page).await
}

async fn alias_logs(
    State(s): State<ApiState>,
    Path((domain, alias)): Path<(String, String)>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    logs(&s, &domain, Some(&alias), &page).await
}

async fn logs(
    s: &ApiState,
    domain: &str,
    alias: Option<&str>,
    page: &Page,
) -> Result<Response, ApiError> {
    let query = s
        .manage
        .log_query(domain, alias, page.page(), page.limit())?;
    let mut warning = None;
    if let Some(db) = &s.cluster_logs {
        let read = db.list_logs(
            &query.domain,
            query.alias.as_deref(),
            query.offset,
            query.limit,
        );
        match tokio::time::timeout(CLUSTER_READ_LIMIT, read).await {
            Ok(Ok(logs)) => return Ok(answer(&logs, page, "cluster", None)),
            Ok(Err(e)) => warning = Some(e.to_string()),
            Err(_) => warning = Some(format!("no answer within {CLUSTER_READ_LIMIT:?}")),
        }
        tracing::warn!(
            domain = %query.domain,
            reason = warning.as_deref().unwrap_or_default(),
            "the cluster's delivery log is unreachable: answering with this node's own"
        );
    }
    let logs = local(s, query).await?;
    let warning = warning.map(|reason| {
        format!("PostgreSQL is unreachable ({reason}): only this node's delivery log is shown")
    });
    Ok(answer(&logs, page, "local", warning))
}

/// This node's own log (a store read: off the async threads).
async fn local(s: &ApiState, query: LogQuery) -> Result<Vec<LogEntry>, ApiError> {
    let store = s.manage.store().clone();
    tokio::task::spawn_blocking(move || {
        store.log_list(
            &query.domain,
            query.alias.as_deref(),
            query.offset,
            query.limit,
        )
    })
    .await
    .map_err(|e| ApiError::Internal(format!("log read: {e}")))?
    .map_err(|e| ApiError::from(crate::manage::ManageError::from(e)))
}

fn answer(
    logs: &[LogEntry],
    page: &Page,
    source: &'static str,
    warning: Option<String>,
) -> Response {
    let mut body = json!({ "logs": log_items(logs), "page": page.page(), "limit": page.limit(), "success": true });
    if let (Some(warning), Some(map)) = (warning, body.as_object_mut()) {
        map.insert("warning".into(), Value::String(warning));
    }
    ([(SOURCE_HEADER, source)], Json(body)).into_response()
}
