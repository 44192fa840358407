//! `/v3/account`: who the caller is and the relay's limits, in ImprovMX's
//! shape (the billing fields ImprovMX has are null: there is no billing).

use super::{ApiError, ApiState};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub(crate) fn router() -> Router<ApiState> {
    Router::new().route("/account", get(account))
}

async fn account(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let domains = s
        .manage
        .store()
        .domain_count()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let config = &s.config;
    let per_minute = config.http.rate_limit.per_key;
    Ok(Json(json!({
        "account": {
            "email": null,
            "company_name": config.hostname,
            "created": null,
            "billing_email": null,
            "cancels_on": null,
            "card_brand": null,
            "company_details": null,
            "company_vat": null,
            "country": null,
            "last4": null,
            "lock_reason": null,
            "locked": false,
            "password": false,
            "premium": true,
            "privacy_level": 0,
            "renew_date": null,
            "plan": {
                "name": "eas-relay",
                "display": format!("eas-relay {}", env!("CARGO_PKG_VERSION")),
                "kind": "self-hosted",
                "price": 0,
                "yearly": false,
                "aliases_limit": null,
                "domains_limit": null,
                "daily_quota": null,
            },
            "limits": {
                // Nothing caps domains, aliases or daily volume here.
                "domains": null,
                "aliases": null,
                "daily_quota": null,
                "destinations": config.aliases.max_destinations,
                "ratelimit": if per_minute == 0 { Value::Null } else { json!(per_minute.div_ceil(60)) },
                "ratelimit_per_minute": per_minute,
                "recipients_per_message": config.smtp.max_recipients,
                "message_size": config.smtp.max_message_size.0,
            },
            "domains": domains,
        },
        "success": true,
    })))
}
