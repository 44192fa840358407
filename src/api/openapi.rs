//! `/v3/openapi.json`: the OpenAPI 3.0 document of every HTTP route
//! (`openapi.json` beside this file). A test reads the routers' sources and
//! fails when a route or method is missing from the document, or when the
//! document names one the routers do not serve.

use super::ApiState;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::OnceLock;

/// Mounted under /v3 without the key check: the document is public.
pub(crate) fn router() -> Router<ApiState> {
    Router::new().route("/openapi.json", get(serve))
}

const DOCUMENT: &str = include_str!("openapi.json");

/// The document with this build's version.
pub(crate) fn document() -> &'static str {
    static RENDERED: OnceLock<String> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let mut doc: serde_json::Value =
            serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON (tested)");
        doc["info"]["version"] = env!("CARGO_PKG_VERSION").into();
        doc.to_string()
    })
}

async fn serve() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], document())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// (method, path) of every `.route(path, method(h).method(h)...)` in
    /// the routers' sources, with the prefix each router is mounted under.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut out = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let file = path.file_name().unwrap().to_str().unwrap();
            // mod.rs mounts the node routes at the root and these at /v3;
            // eas.rs is merged at the root.
            let prefix = match file {
                "mod.rs" | "eas.rs" => "",
                _ => "/v3",
            };
            let mut rest = text.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                let Some(start) = rest.find('"') else { break };
                let after = &rest[start + 1..];
                let end = after.find('"').unwrap();
                let route = &after[..end];
                // The methods: up to the closing parenthesis of .route(.
                let mut depth = 1;
                let mut stop = 0;
                for (i, c) in rest.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                stop = i;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let call = &rest[..stop];
                let full = if route.starts_with("/v3") {
                    route.to_string()
                } else {
                    format!("{prefix}{route}")
                };
                for method in ["get", "post", "put", "delete", "patch"] {
                    let direct = format!("{method}(");
                    let chained = format!(".{method}(");
                    let first = call
                        .split(',')
                        .nth(1)
                        .is_some_and(|m| m.trim_start().starts_with(&direct));
                    let later = call.contains(&chained);
                    if first || later {
                        out.insert((method.to_string(), full.clone()));
                    }
                }
            }
        }
        out
    }

    fn routes_in_document() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.clone(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let source = routes_in_source();
        let document = routes_in_document();
        // The parser must see the routers (a broken parser finds nothing).
        assert!(
            source.contains(&("post".into(), "/v3/domains/{domain}/aliases/bulk".into()))
                && source.contains(&("put".into(), "/v3/domains/{domain}".into()))
                && source.contains(&("post".into(), "/activate".into()))
                && source.len() > 25,
            "{source:#?}"
        );
        let undocumented: Vec<_> = source.difference(&document).collect();
        let unserved: Vec<_> = document.difference(&source).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "openapi.json names routes nobody serves: {unserved:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_with_this_version() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        // Every $ref points at a schema that exists.
        let text = DOCUMENT;
        for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "dangling $ref {name}"
            );
        }
    }
}
