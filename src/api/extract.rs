//! What a request brings, parsed into the handler's type: JSON bodies and
//! query strings. A refusal names the field at fault
//! (`{"errors":{"domain":["missing field `domain`"]}}`, `{"errors":{"page":
//! […]}}`), as ImprovMX clients read it; only a body that is not JSON at
//! all (or is not declared as JSON) is refused on `body`, a query string
//! that cannot be told apart on `query`.

use super::ApiError;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

/// The key of a body error that no one field is at fault for.
const BODY: &str = "body";
/// The key of a query error that no one parameter is at fault for.
const QUERY: &str = "query";
/// Longest field name (or path) shown as a key; anything longer is not one
/// of ours and is refused on `body`.
const MAX_KEY: usize = 128;

/// A JSON body whose errors (malformed, wrong type, missing or unknown
/// field) come back in the API's error shape, keyed by the field.
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // axum's own extractor: content type, body limit, one pass of serde
        // through serde_path_to_error (no second parse, no `Value` copy).
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(refusal(&rejection)),
        }
    }
}

/// The API error for a refused body: on the field serde names when it is a
/// data error, else on `body` with axum's text.
fn refusal(rejection: &JsonRejection) -> ApiError {
    let JsonRejection::JsonDataError(data) = rejection else {
        return ApiError::invalid(BODY, rejection.body_text());
    };
    // axum keeps serde_path_to_error's error as the source of its own; should
    // that ever change, the refusal is still given, keyed `body`.
    match found::<serde_json::Error>(data) {
        Some(error) => data_error(error),
        None => ApiError::invalid(BODY, rejection.body_text()),
    }
}

/// Query parameters whose errors (wrong type) come back in the API's
/// error shape, keyed by the parameter.
pub(crate) struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            // serde_urlencoded's error is serde's own `value::Error`.
            Err(rejection) => Err(
                match found::<serde::de::value::Error>(&rejection)
                    .and_then(|e| field_of(e.path(), &e.inner().to_string()).map(|f| (f, e)))
                {
                    Some((field, e)) => ApiError::invalid(&field, e.inner().to_string()),
                    None => ApiError::invalid(QUERY, rejection.body_text()),
                },
            ),
        }
    }
}

/// serde_path_to_error's error in the source chain of `error`, if there.
fn found<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a serde_path_to_error::Error<E>> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(found) = error.downcast_ref::<serde_path_to_error::Error<E>>() {
            return Some(found);
        }
        source = error.source();
    }
    None
}

/// Reads `T` from JSON bytes (for a handler that takes the body itself),
/// refused the same way as [`ApiJson`].
pub(crate) fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        match e.inner().classify() {
            serde_json::error::Category::Data => data_error(&e),
            _ => ApiError::invalid(BODY, e.inner().to_string()),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::invalid(BODY, e.to_string()))?;
    Ok(value)
}

/// A data error keyed by its field when it can be told, else `body`.
fn data_error(error: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let message = without_position(error.inner());
    match field_of(error.path(), &message) {
        Some(field) => ApiError::invalid(&field, message),
        None => ApiError::invalid(BODY, message),
    }
}

/// serde_json's message without its " at line 1 column 12": the key already
/// says where.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(bare) => bare.to_string(),
        None => text,
    }
}

/// The field a data error is about, as a path (`domain`,
/// `aliases[2].forward`); None when it cannot be told for sure (the error
/// is about the whole body, or a name is not one a struct of ours could
/// have: the client's text is only echoed as a key when it is a plain name).
fn field_of(path: &serde_path_to_error::Path, message: &str) -> Option<String> {
    let mut key = String::new();
    let mut last = None;
    for segment in path.iter() {
        match segment {
            Segment::Map { key: name } if plain(name) => {
                push_name(&mut key, name);
                last = Some(name.as_str());
            }
            Segment::Seq { index } => {
                key.push_str(&format!("[{index}]"));
                last = None;
            }
            _ => return None,
        }
    }
    // serde reports a missing field on the struct that lacks it, with the
    // name only in its message: "missing field `x`". An unknown field is in
    // the path already (serde_path_to_error saw its key), and in the
    // message: "unknown field `x`, expected …" (or ", there are no fields").
    let named = [("missing field `", false), ("unknown field `", true)]
        .iter()
        .find_map(|(prefix, unknown)| Some((message.strip_prefix(prefix)?, *unknown)))
        .map(|(rest, unknown)| match rest.split_once('`') {
            Some((name, after)) if plain(name) && (after.is_empty() || after.starts_with(", ")) => {
                Some((name, unknown))
            }
            // A name with a backquote or odd characters: not told apart.
            _ => None,
        });
    match named {
        Some(Some((name, true))) if last == Some(name) => {}
        Some(Some((name, _))) => push_name(&mut key, name),
        Some(None) => return None,
        None => {}
    }
    (!key.is_empty() && key.len() <= MAX_KEY).then_some(key)
}

fn push_name(key: &mut String, name: &str) {
    if !key.is_empty() {
        key.push('.');
    }
    key.push_str(name);
}

/// A name a field of ours could have: ASCII letters, digits, `_`, `-`.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read by serde only
    struct Item {
        alias: String,
        forward: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        domain: String,
        #[serde(default)]
        active: Option<bool>,
        #[serde(default)]
        items: Vec<Item>,
    }

    /// The key and message a body gets (None: it parsed).
    fn key(body: &str) -> Option<(Option<String>, String)> {
        let mut de = serde_json::Deserializer::from_str(body);
        match serde_path_to_error::deserialize::<_, Outer>(&mut de) {
            Ok(_) => None,
            Err(e) => {
                let message = without_position(e.inner());
                Some((field_of(e.path(), &message), message))
            }
        }
    }

    #[test]
    fn data_errors_are_keyed_by_the_field_at_fault() {
        for (body, expected) in [
            (r#"{}"#, Some("domain")),
            (r#"{"domain": 5}"#, Some("domain")),
            (r#"{"domain": "d", "active": "no"}"#, Some("active")),
            (r#"{"domain": "d", "colour": "red"}"#, Some("colour")),
            (
                r#"{"domain": "d", "items": [{"alias": "a"}]}"#,
                Some("items[0].forward"),
            ),
            (
                r#"{"domain": "d", "items": [{"alias": "a", "forward": "f"}, {"alias": 1, "forward": "f"}]}"#,
                Some("items[1].alias"),
            ),
            (
                r#"{"domain": "d", "items": [{"alias": "a", "forward": "f", "x": 1}]}"#,
                Some("items[0].x"),
            ),
            // The whole body is of the wrong shape.
            (r#"[]"#, None),
            (r#""text""#, None),
            // Unknown names that are not plain names are not echoed as keys.
            (r#"{"domain": "d", "a`, b": 1}"#, None),
            (r#"{"domain": "d", "a b": 1}"#, None),
            (r#"{"domain": "d", "":1}"#, None),
        ] {
            let (field, message) = key(body).unwrap_or_else(|| panic!("{body} parsed"));
            assert_eq!(field.as_deref(), expected, "{body}: {message}");
            assert!(!message.contains(" at line "), "{message}");
        }
        let long = format!(r#"{{"domain": "d", "{}": 1}}"#, "x".repeat(MAX_KEY + 1));
        assert_eq!(key(&long).unwrap().0, None);
    }
}
