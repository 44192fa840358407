//! The one error type of the HTTP API. Clients see ImprovMX's shape,
//! `{"success": false, "errors": {field: [message]}}` (plus `code` and
//! `error`, which some ImprovMX clients read); internal failures are logged
//! here and shown only as "internal error". A write a cluster node cannot
//! commit in the shared database is 503 with why (no password, no SQL).

use crate::manage::ManageError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub(crate) enum ApiError {
    Unauthorized,
    NotFound(String),
    Invalid {
        field: String,
        message: String,
    },
    Conflict {
        field: String,
        message: String,
    },
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// Over a rate limit: wait this many seconds.
    TooManyRequests {
        retry_after: u64,
    },
    /// A dependency cannot take the request now (cluster mode: the shared
    /// database); `message` says which, without secrets.
    Unavailable {
        field: String,
        message: String,
    },
    Internal(String),
}

impl ApiError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> ApiError {
        match e {
            ManageError::NotFound(what) => ApiError::NotFound(what),
            ManageError::Invalid { field, message } => ApiError::Invalid { field, message },
            ManageError::Conflict { field, message } => ApiError::Conflict { field, message },
            e @ ManageError::ClusterDown(_) => {
                tracing::warn!(error = %e, "admin API: write refused, the cluster database is unreachable");
                ApiError::Unavailable {
                    field: "cluster".into(),
                    message: e.to_string(),
                }
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match self {
            ApiError::TooManyRequests { retry_after } => Some(retry_after),
            _ => None,
        };
        let (status, field, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "authorization".to_string(),
                "missing or invalid API key".to_string(),
            ),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "resource".into(),
                format!("{what} not found"),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method".into(),
                "method not allowed on this route (see Allow)".into(),
            ),
            ApiError::Invalid { field, message } => (StatusCode::BAD_REQUEST, field, message),
            ApiError::Conflict { field, message } => (StatusCode::CONFLICT, field, message),
            ApiError::TooManyRequests { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit".into(),
                format!("too many requests, retry in {retry_after} s"),
            ),
            ApiError::Unavailable { field, message } => {
                (StatusCode::SERVICE_UNAVAILABLE, field, message)
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "admin API internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server".into(),
                    "internal error".into(),
                )
            }
        };
        // `errors` is ImprovMX's shape for refused input; some clients read
        // `error` and `code` instead (401, 404, 429): both are given.
        let body = json!({
            "success": false,
            "code": status.as_u16(),
            "error": message,
            "errors": { field: [message] },
        });
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"eas-relay\""),
            );
        }
        response
    }
}
