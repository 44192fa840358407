//! The EAS server's endpoints, with its paths, bodies and answers, so the
//! existing frontend can call the relay directly: `POST /activate`,
//! `/deactivate`, `/deactivate-all`, `/check-alias`. Answers are
//! `{success:true}` or `{error}` (plus both hashes on a commitment mismatch).
//! With `chain.activation_secret`, the body must carry its HMAC-SHA256 in
//! `X-EAS-Signature`; the chain checks apply either way.

use super::ApiState;
use crate::chain::activation::{ActivateRequest, Activation, ActivationError, hex};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

pub(crate) fn router() -> Router<ApiState> {
    Router::new()
        .route("/activate", post(activate))
        .route("/deactivate", post(deactivate))
        .route("/deactivate-all", post(deactivate_all))
        .route("/check-alias", post(check_alias))
}

/// Header carrying the hex HMAC-SHA256 of the body.
pub(crate) const SIGNATURE_HEADER: &str = "x-eas-signature";

#[derive(Deserialize)]
struct AliasRequest {
    alias: String,
    sld: String,
    #[serde(default)]
    tld: Option<String>,
}

#[derive(Deserialize)]
struct NameRequest {
    sld: String,
    #[serde(default)]
    tld: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for ActivationError {
    fn into_response(self) -> Response {
        match self {
            ActivationError::Invalid(message) => error(StatusCode::BAD_REQUEST, message),
            ActivationError::InvalidSignature => {
                error(StatusCode::UNAUTHORIZED, "invalid signature")
            }
            ActivationError::Expired => error(StatusCode::UNAUTHORIZED, "domain expired"),
            ActivationError::CommitmentMismatch { actual, expected } => (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "error": "commitment mismatch",
                    "success": false,
                    "actualCommitment": hex(actual.as_slice()),
                    "expectedCommitment": hex(expected.as_slice()),
                })),
            )
                .into_response(),
            ActivationError::NotDeactivated => {
                error(StatusCode::UNAUTHORIZED, "Not deactivated on contract")
            }
            ActivationError::NotAllDeactivated => {
                error(StatusCode::UNAUTHORIZED, "Not all deactivated on contract")
            }
            ActivationError::Chain(e) => {
                tracing::warn!(error = %e, "activation: chain unavailable");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "chain unavailable, try again later",
                )
            }
            ActivationError::Cluster(e) if e.is_refused_write() => {
                tracing::error!(error = %e, "activation: the cluster database refused the write");
                error(StatusCode::INTERNAL_SERVER_ERROR, "cannot process request")
            }
            ActivationError::Cluster(e) => {
                // The caller is anyone: the database's name and address stay
                // in the log.
                tracing::warn!(error = %e, "activation: the cluster database is unreachable");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the cluster database is unreachable, try again later",
                )
            }
            ActivationError::Store(e) => {
                tracing::error!(error = %e, "activation: store failure");
                error(StatusCode::INTERNAL_SERVER_ERROR, "cannot process request")
            }
        }
    }
}

/// A refused request, already answered (boxed: a `Response` is large).
struct Refused(Box<Response>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<ActivationError> for Refused {
    fn from(e: ActivationError) -> Refused {
        Refused(Box::new(e.into_response()))
    }
}

fn refused(status: StatusCode, message: impl Into<String>) -> Refused {
    Refused(Box::new(error(status, message)))
}

/// Checks the HMAC (when configured), parses the JSON body, and hands out
/// the activation logic (refused when the chain is not enabled).
fn accept<'s, T: DeserializeOwned>(
    state: &'s ApiState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(T, &'s Activation), Refused> {
    if let Some(secret) = &state.activation_secret {
        let given = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        let tag = alloy::primitives::hex::decode(given.trim().trim_start_matches("sha256=")).ok();
        if tag.is_none_or(|tag| aws_lc_rs::hmac::verify(&key, body, &tag).is_err()) {
            return Err(refused(
                StatusCode::UNAUTHORIZED,
                "invalid request signature",
            ));
        }
    }
    let request = serde_json::from_slice(body)
        .map_err(|e| refused(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))?;
    let activation = state.activation.as_deref().ok_or_else(|| {
        refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "chain-governed aliases are not enabled on this relay",
        )
    })?;
    Ok((request, activation))
}

fn success() -> Response {
    Json(json!({ "success": true })).into_response()
}

async fn activate(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let (req, activation): (ActivateRequest, _) = accept(&s, &headers, &body)?;
    activation.activate(&req).await?;
    Ok(success())
}

async fn deactivate(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let (req, activation): (AliasRequest, _) = accept(&s, &headers, &body)?;
    activation
        .deactivate(&req.alias, &req.sld, req.tld.as_deref())
        .await?;
    Ok(success())
}

async fn deactivate_all(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let (req, activation): (NameRequest, _) = accept(&s, &headers, &body)?;
    activation
        .deactivate_all(&req.sld, req.tld.as_deref())
        .await?;
    Ok(success())
}

async fn check_alias(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let (req, activation): (AliasRequest, _) = accept(&s, &headers, &body)?;
    let exist = activation.check_alias(&req.alias, &req.sld, req.tld.as_deref())?;
    Ok(Json(json!({ "exist": exist })).into_response())
}
