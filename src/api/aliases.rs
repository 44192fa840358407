//! `/v3/domains/{domain}/aliases`: list, create, show, update, delete
//! (ImprovMX shapes; `forward` is a comma-separated list).

use super::{ApiError, ApiJson, ApiState, Page};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/domains/{domain}/aliases", get(list).post(create))
        .route(
            "/domains/{domain}/aliases/{alias}",
            get(show).put(update).delete(remove),
        )
        .route("/aliases/import", axum::routing::post(import))
}

/// eas-relay extension: `alias@domain<TAB>forward` lines in one transaction.
async fn import(State(s): State<ApiState>, body: String) -> Result<Json<Value>, ApiError> {
    let n = s.admin.import_aliases(&body)?;
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
    forward: String,
}

async fn list(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let mut aliases = s.admin.aliases(&domain)?;
    if let Some(q) = page.q.as_deref().filter(|q| !q.is_empty()) {
        let q = q.to_lowercase();
        aliases.retain(|a| a.alias.contains(&q) || a.forward.to_lowercase().contains(&q));
    }
    Ok(Json(json!({
        "aliases": page.slice(&aliases),
        "total": aliases.len(),
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
        .admin
        .put_alias(&domain, &body.alias, &body.forward, false)?;
    Ok(Json(json!({ "alias": alias, "success": true })))
}

async fn show(
    State(s): State<ApiState>,
    Path((domain, alias)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "alias": s.admin.alias(&domain, &alias)?, "success": true }),
    ))
}

async fn update(
    State(s): State<ApiState>,
    Path((domain, alias)): Path<(String, String)>,
    ApiJson(body): ApiJson<AliasUpdate>,
) -> Result<Json<Value>, ApiError> {
    let alias = s.admin.put_alias(&domain, &alias, &body.forward, true)?;
    Ok(Json(json!({ "alias": alias, "success": true })))
}

async fn remove(
    State(s): State<ApiState>,
    Path((domain, alias)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    s.admin.remove_alias(&domain, &alias)?;
    Ok(Json(json!({ "success": true })))
}
