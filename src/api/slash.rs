//! Paths under `/v3` before routing: every route also answers with one
//! trailing slash (`GET /v3/domains/d/aliases/`, as the EAS server's
//! ImprovMX client sends it), and a path with an empty segment (`//`) or a
//! percent-encoded slash (`%2F`) is refused with 404 before any route can
//! read it (no domain or alias name holds a `/`), so neither can reach a
//! resource other than the one named.
//!
//! Exactly one trailing slash is removed and nothing else is normalized.

use super::ApiError;
use axum::extract::Request;
use axum::http::uri::{PathAndQuery, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The prefix the rules apply to (the ImprovMX-compatible API).
const PREFIX: &str = "/v3/";

/// What to do with a request's path.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Route it as it came.
    Keep,
    /// Route it without its trailing slash.
    Trim,
    /// It names no route: 404.
    Refuse,
}

fn verdict(path: &str) -> Verdict {
    if !path.starts_with(PREFIX) {
        return Verdict::Keep;
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    // `/v3/` itself: no route, left to the router's own 404.
    if trimmed.len() < PREFIX.len() {
        return Verdict::Keep;
    }
    let encoded_slash = trimmed
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'));
    if trimmed.contains("//") || trimmed.ends_with('/') || encoded_slash {
        return Verdict::Refuse;
    }
    if trimmed.len() < path.len() {
        Verdict::Trim
    } else {
        Verdict::Keep
    }
}

/// The middleware: refuses or rewrites the path, then routes the request.
pub(crate) async fn normalize(mut request: Request, next: Next) -> Response {
    match verdict(request.uri().path()) {
        Verdict::Keep => {}
        Verdict::Refuse => return ApiError::NotFound("route".into()).into_response(),
        Verdict::Trim => trim(request.uri_mut()),
    }
    next.run(request).await
}

/// `uri` without the last character of its path (a `/`), the query kept.
fn trim(uri: &mut Uri) {
    let path = uri.path();
    let path = &path[..path.len().saturating_sub(1)];
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    let Ok(path_and_query) = PathAndQuery::try_from(target) else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(trimmed) = Uri::from_parts(parts) {
        *uri = trimmed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_slash_is_removed_under_v3_only() {
        for (sent, routed) in [
            ("/v3/domains/", "/v3/domains"),
            ("/v3/domains/d.test/aliases/", "/v3/domains/d.test/aliases"),
            ("/v3/domains/?page=2&q=a/", "/v3/domains?page=2&q=a/"),
            ("http://h.test/v3/account/", "http://h.test/v3/account"),
            ("/v3/domains", "/v3/domains"),
            ("/v3/", "/v3/"),
            ("/health/", "/health/"),
            ("/activate/", "/activate/"),
            ("/", "/"),
        ] {
            let mut uri: Uri = sent.parse().unwrap();
            if verdict(uri.path()) == Verdict::Trim {
                trim(&mut uri);
            }
            assert_eq!(uri.to_string(), routed, "{sent}");
        }
    }

    #[test]
    fn empty_segments_and_encoded_slashes_are_refused_under_v3() {
        for path in [
            "/v3//",
            "/v3//domains",
            "/v3/domains//",
            "/v3/domains//aliases",
            "/v3/domains/d.test//aliases/",
            "/v3/domains/d.test%2F",
            "/v3/domains/d.test%2faliases",
            "/v3/domains/d.test/aliases/a%2F/",
        ] {
            assert_eq!(verdict(path), Verdict::Refuse, "{path}");
        }
        for path in [
            "//v3/domains",
            "/v2//x",
            "/health//",
            "/v3/domains/d.test%2e",
        ] {
            assert_ne!(verdict(path), Verdict::Refuse, "{path}");
        }
    }
}
