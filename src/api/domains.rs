//! `/v3/domains`: list (`q`, `is_active`, `page`, `limit`), add, show,
//! update, delete, and `/check` (the DNS records the relay needs, looked up
//! live), in ImprovMX's shapes.

use super::{ApiError, ApiJson, ApiQuery, ApiState, Page};
use crate::manage::DomainUpdate;
use crate::provision::{Outcome, Provisioner, RedisZone};
use crate::zone::{self, Check};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) fn router() -> Router<ApiState> {
    Router::new()
        .route("/domains", get(list).post(add))
        .route("/domains/{domain}", get(show).put(update).delete(remove))
        .route("/domains/{domain}/check", get(check))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    domain: String,
    /// Accepted as ImprovMX does; kept with the domain.
    #[serde(default)]
    notification_email: Option<String>,
    #[serde(default)]
    whitelabel: Option<String>,
}

async fn list(
    State(s): State<ApiState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let active = page.is_active()?;
    let (total, domains) = s
        .manage
        .domains_page(page.q(), active, page.page(), page.limit())?;
    Ok(Json(json!({
        "domains": domains,
        "total": total,
        "limit": page.limit(),
        "page": page.page(),
        "success": true,
    })))
}

async fn add(
    State(s): State<ApiState>,
    ApiJson(body): ApiJson<NewDomain>,
) -> Result<Json<Value>, ApiError> {
    let settings = DomainUpdate {
        notification_email: body.notification_email.map(Some),
        whitelabel: body.whitelabel.map(Some),
        ..DomainUpdate::default()
    };
    // All or nothing: the name, then the settings, are checked before the
    // domain is added.
    crate::manage::parse_domain(&body.domain)?;
    settings.check()?;
    let mut domain = s.manage.add_domain(&body.domain).await?;
    if settings.notification_email.is_some() || settings.whitelabel.is_some() {
        domain = s.manage.update_domain(&domain.domain, settings).await?;
    }
    Ok(Json(json!({ "domain": domain, "success": true })))
}

async fn show(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "domain": s.manage.domain(&domain)?, "success": true }),
    ))
}

async fn update(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
    ApiJson(body): ApiJson<DomainUpdate>,
) -> Result<Json<Value>, ApiError> {
    let domain = s.manage.update_domain(&domain, body).await?;
    Ok(Json(json!({ "domain": domain, "success": true })))
}

async fn remove(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.manage.remove_domain(&domain).await?;
    Ok(Json(json!({ "success": true })))
}

/// The records the relay needs for `domain`, looked up now through
/// `outbound.nameservers`: ImprovMX's `records` summary (`mx`, `spf`,
/// `dkim1`, `dkim2`, `dmarc`, each `{expected, values, valid}`), plus every
/// check with what is wrong (`checks`, as `eas-relay dns check` prints them);
/// with DNS provisioning on, whether the zone in Redis holds the records
/// (`zone`).
async fn check(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let name = s.manage.domain(&domain)?.domain;
    let config = s.config.clone();
    let plan = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || zone::Plan::load(&config, &name))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(e.to_string()))?
    };
    let resolver =
        crate::dns::resolver(&s.config.outbound.nameservers).map_err(ApiError::Internal)?;
    let checks = zone::check(&plan, &resolver).await;
    let summary = |kind: &str, name: &str| {
        checks
            .iter()
            .find(|c| c.check == kind && c.name == name)
            .map(record)
            .unwrap_or(Value::Null)
    };
    let dkim: Vec<&Check> = checks.iter().filter(|c| c.check == "DKIM").collect();
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.required && !c.is_ok())
        .map(|c| {
            format!(
                "{} {}: expected {}, found {}",
                c.check, c.name, c.expected, c.found
            )
        })
        .collect();
    let zone = match &s.zone {
        Some(p) => zone_state(p, &name).await,
        None => Value::Null,
    };
    let mut body = json!({
        "records": {
            "mx": summary("MX", &name),
            "spf": summary("SPF", &name),
            "dkim1": dkim.first().map_or(Value::Null, |c| record(c)),
            "dkim2": dkim.get(1).map_or(Value::Null, |c| record(c)),
            "dmarc": summary("DMARC", &format!("_dmarc.{name}")),
            "valid": zone::passed(&checks),
            "error": if failed.is_empty() { Value::Null } else { json!(failed.join("; ")) },
            "provider": Value::Null,
            "advanced": false,
        },
        "checks": checks,
        "success": true,
    });
    if !zone.is_null() {
        body["zone"] = zone;
    }
    Ok(Json(body))
}

/// Whether the zone in Redis holds `domain`'s records: `ok` true, or
/// false with the labels still to write, or null with why it is not known
/// (the reason in detail goes to the log only).
async fn zone_state(p: &Provisioner<RedisZone>, domain: &str) -> Value {
    match p.provision(domain, true).await {
        Ok(Outcome::Unchanged) => json!({ "ok": true, "missing": [] }),
        Ok(Outcome::Written(changes)) => json!({
            "ok": false,
            "missing": changes.iter().map(|c| c.label).collect::<Vec<_>>(),
        }),
        Ok(Outcome::NotOurZone) => {
            json!({ "ok": null, "error": "not under dns_provisioning.tld_zones" })
        }
        Err(e) => {
            tracing::warn!(%domain, error = %e, "cannot read the zone for the domain check");
            json!({ "ok": null, "error": "the zone could not be read" })
        }
    }
}

fn record(c: &Check) -> Value {
    json!({
        "name": c.name,
        "expected": c.expected,
        "values": c.found,
        "valid": c.is_ok(),
    })
}
