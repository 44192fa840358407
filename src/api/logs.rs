//! `/v3/domains/{domain}/logs[/{alias}]`: the delivery log, newest first,
//! one item per recipient outcome with its event (ImprovMX-style fields).

use super::{ApiError, ApiQuery, ApiState, Page};
use crate::store::{LogEntry, LogOutcome, format_queue_id};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/domains/{domain}/logs", get(domain_logs))
        .route("/domains/{domain}/logs/{alias}", get(alias_logs))
}

async fn domain_logs(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let logs = s.admin.logs(&domain, None, page.page(), page.limit())?;
    Ok(Json(render(&logs, &page)))
}

async fn alias_logs(
    State(s): State<ApiState>,
    Path((domain, alias)): Path<(String, String)>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let logs = s
        .admin
        .logs(&domain, Some(&alias), page.page(), page.limit())?;
    Ok(Json(render(&logs, &page)))
}

fn render(logs: &[LogEntry], page: &Page) -> Value {
    json!({ "logs": items(logs), "page": page.page(), "limit": page.limit(), "success": true })
}

/// The API's rendering of log entries (the CLI prints from it too).
pub fn items(logs: &[LogEntry]) -> Vec<Value> {
    logs.iter()
        .map(|l| {
            let status = match l.outcome {
                LogOutcome::Delivered => "DELIVERED",
                LogOutcome::Deferred => "SOFT-BOUNCE",
                LogOutcome::Bounced => "HARD-BOUNCE",
            };
            json!({
                "id": l.id.to_string(),
                "created": l.time,
                "queueId": format_queue_id(l.queue_id),
                "messageId": l.message_id,
                "subject": l.subject,
                "sender": { "email": l.sender },
                "alias": l.alias,
                "recipient": { "email": if l.recipient.is_empty() { &l.alias } else { &l.recipient } },
                "forward": { "email": l.forward },
                "events": [{
                    "code": l.code,
                    "status": status,
                    "message": l.message,
                    "server": l.server,
                    "created": l.time,
                }],
            })
        })
        .collect()
}
