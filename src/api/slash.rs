//! Paths under `/v3` before routing: every route also answers with one
//! trailing slash (`GET /v3/domains/d/aliases/`, as the EAS server's
//! ImprovMX client sends it), and a path with an empty segment (`//`) is
//! refused with 404 before a route could read an empty name from it.
//!
//! Exactly one trailing slash is removed and nothing else is normalized. A
//! percent-encoded slash (`%2F`) is never a separator: the router matches
//! the raw path, so it stays inside its segment; a route decodes it into
//! the name, which the name checks refuse (400 on that field, the answer
//! the CLI prints for such a name whether or not a node runs).

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
    if trimmed.contains("//") || trimmed.ends_with('/') {
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
    fn empty_segments_are_refused_under_v3_and_encoded_slashes_kept() {
        for path in [
            "/v3//",
            "/v3//domains",
            "/v3/domains//",
            "/v3/domains//aliases",
            "/v3/domains/d.test//aliases/",
            "/v3/domains/d.test/aliases/a//",
        ] {
            assert_eq!(verdict(path), Verdict::Refuse, "{path}");
        }
        for path in ["//v3/domains", "/v2//x", "/health//"] {
            assert_ne!(verdict(path), Verdict::Refuse, "{path}");
        }
        // An encoded slash is not a separator, and not trimmed either.
        assert_eq!(verdict("/v3/domains/d.test%2F"), Verdict::Keep);
        assert_eq!(verdict("/v3/domains/d.test%2faliases"), Verdict::Keep);
    }
}
