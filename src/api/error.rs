//! The one error type of the HTTP API. Clients see ImprovMX's shape,
//! `{"success": false, "errors": {field: [message]}}`; internal failures
//! are logged here and shown only as "internal error".

use crate::admin::AdminError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    NotFound(String),
    Invalid { field: String, message: String },
    Conflict { field: String, message: String },
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::NotFound(what) => ApiError::NotFound(what),
            AdminError::Invalid { field, message } => ApiError::Invalid { field, message },
            AdminError::Conflict { field, message } => ApiError::Conflict { field, message },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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
            ApiError::Invalid { field, message } => (StatusCode::BAD_REQUEST, field, message),
            ApiError::Conflict { field, message } => (StatusCode::CONFLICT, field, message),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "admin API internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server".into(),
                    "internal error".into(),
                )
            }
        };
        let body = json!({ "success": false, "errors": { field: [message] } });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"eas-relay\""),
            );
        }
        response
    }
}
