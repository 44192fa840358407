//! `/v3/domains/{domain}/logs[/{alias}]`: the delivery log, newest first,
//! one item per recipient outcome with its event (ImprovMX-style fields).

use super::{ApiError, ApiQuery, ApiState, Page};
use crate::manage::log_items;
use crate::store::LogEntry;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub(crate) fn router() -> Router<ApiState> {
    Router::new()
        .route("/domains/{domain}/logs", get(domain_logs))
        .route("/domains/{domain}/logs/{alias}", get(alias_logs))
}

async fn domain_logs(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let logs = s.manage.logs(&domain, None, page.page(), page.limit())?;
    Ok(Json(render(&logs, &page)))
}

async fn alias_logs(
    State(s): State<ApiState>,
    Path((domain, alias)): Path<(String, String)>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let logs = s
        .manage
        .logs(&domain, Some(&alias), page.page(), page.limit())?;
    Ok(Json(render(&logs, &page)))
}

fn render(logs: &[LogEntry], page: &Page) -> Value {
    json!({ "logs": log_items(logs), "page": page.page(), "limit": page.limit(), "success": true })
}
