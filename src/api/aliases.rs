//! `/v3/domains/{domain}/aliases`: list (`q`, `alias`, `page`, `limit`),
//! create, show, update, delete, and bulk add/update, in ImprovMX's shapes
//! (`forward` is a comma-separated list). Aliases of chain-governed domains
//! are read-only here (409), except DELETE, which suspends one locally.

use super::{ApiError, ApiJson, ApiQuery, ApiState, Page};
use crate::manage::{BulkBehavior, BulkItem, Removed};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) fn router() -> Router<ApiState> {
    Router::new()
        .route("/domains/{domain}/aliases", get(list).post(create))
        .route("/domains/{domain}/aliases/bulk", post(bulk))
        .route(
            "/domains/{domain}/aliases/{alias}",
            get(show).put(update).delete(remove),
        )
        .route("/aliases/import", post(import))
}

/// eas-relay extension: `alias@domain<TAB>forward` lines in one transaction.
async fn import(State(s): State<ApiState>, body: String) -> Result<Json<Value>, ApiError> {
    let n = s.manage.import_aliases(&body).await?;
    Ok(Json(json!({ "imported": n, "success": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAlias {
    alias: String,
    forward: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasUpdate {
    forward: Option<String>,
    /// eas-relay: false suspends the alias, true resumes it.
    active: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bulk {
    aliases: Vec<BulkItem>,
    #[serde(default)]
    behavior: BulkBehavior,
}

async fn list(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let (total, aliases) =
        s.manage
            .aliases_page(&domain, page.q(), page.alias(), page.page(), page.limit())?;
    Ok(Json(json!({
        "aliases": aliases,
        "total": total,
        "limit": page.limit(),
        "page": page.page(),
        "success": true,
    })))
}

async fn create(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
    ApiJson(body): ApiJson<NewAlias>,
) -> Result<Json<Value>, ApiError> {
    let alias = s
        .manage
        .put_alias(&domain, &body.alias, &body.forward, false)
        .await?;
    Ok(Json(json!({ "alias": alias, "success": true })))
}

/// Each item on its own: `added`, `updated`, `skipped` (exists, with
/// `behavior: "add"`) and `failed` (with `errors` in the API's shape).
async fn bulk(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
    ApiJson(body): ApiJson<Bulk>,
) -> Result<Json<Value>, ApiError> {
    let result = s
        .manage
        .bulk_aliases(&domain, &body.aliases, body.behavior)
        .await?;
    Ok(Json(json!({
        "added": result.added,
        "updated": result.updated,
        "skipped": result.skipped,
        "failed": result.failed,
        "success": true,
    })))
}

async fn show(
    State(s): State<ApiState>,
    Path((domain, alias)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "alias": s.manage.alias(&domain, &alias)?, "success": true }),
    ))
}

async fn update(
    State(s): State<ApiState>,
    Path((domain, alias)): Path<(String, String)>,
    ApiJson(body): ApiJson<AliasUpdate>,
) -> Result<Json<Value>, ApiError> {
    let alias = s
        .manage
        .update_alias(&domain, &alias, body.forward.as_deref(), body.active)
        .await?;
    Ok(Json(json!({ "alias": alias, "success": true })))
}

async fn remove(
    State(s): State<ApiState>,
    Path((domain, alias)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(match s.manage.remove_alias(&domain, &alias).await? {
        Removed::Deleted => json!({ "success": true }),
        Removed::Suspended => json!({ "suspended": true, "success": true }),
    }))
}
