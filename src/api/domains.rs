//! `/v3/domains`: list, add, show, delete (ImprovMX shapes).

use super::{ApiError, ApiJson, ApiState, Page};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/domains", get(list).post(add))
        .route("/domains/{domain}", get(show).delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    domain: String,
}

async fn list(
    State(s): State<ApiState>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let mut domains = s.admin.domains()?;
    if let Some(q) = page.q.as_deref().filter(|q| !q.is_empty()) {
        domains.retain(|d| d.domain.contains(&q.to_lowercase()));
    }
    Ok(Json(json!({
        "domains": page.slice(&domains),
        "total": domains.len(),
        "limit": page.limit(),
        "page": page.page(),
        "success": true,
    })))
}

async fn add(
    State(s): State<ApiState>,
    ApiJson(body): ApiJson<NewDomain>,
) -> Result<Json<Value>, ApiError> {
    let domain = s.admin.add_domain(&body.domain)?;
    Ok(Json(json!({ "domain": domain, "success": true })))
}

async fn show(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "domain": s.admin.domain(&domain)?, "success": true }),
    ))
}

async fn remove(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.admin.remove_domain(&domain)?;
    Ok(Json(json!({ "success": true })))
}
