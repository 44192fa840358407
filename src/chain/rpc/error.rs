//! How a chain read fails: the typed [`ChainError`] and the classification
//! of alloy's transport errors into unreachable (no connection, no answer
//! in time), refused (a JSON-RPC error, a revert) and malformed (an answer
//! that does not decode), so callers can tell an RPC that is down from one
//! that is wrong.

use alloy::primitives::Bytes;
use alloy::rpc::json_rpc::ErrorPayload;
use alloy::sol_types::decode_revert_reason;
use alloy::transports::http::reqwest;
use alloy::transports::{TransportError, TransportErrorKind};

/// How a request failed to get an answer from the RPC node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcFailure {
    /// No connection could be made (refused, no route, DNS, TLS).
    Unreachable,
    /// No answer within the client's timeout.
    Timeout,
    /// The server answered with a non-success HTTP status.
    Http(u16),
    /// The connection broke or another transport-level failure.
    Transport,
}

impl std::fmt::Display for RpcFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcFailure::Unreachable => f.write_str("unreachable"),
            RpcFailure::Timeout => f.write_str("timed out"),
            RpcFailure::Http(status) => write!(f, "HTTP status {status}"),
            RpcFailure::Transport => f.write_str("transport error"),
        }
    }
}

/// Why a chain read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The configured RPC URL is not an http(s) URL.
    #[error("invalid RPC URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The RPC node could not be asked (the chain is unreadable right now).
    #[error("RPC {kind} ({method}): {detail}")]
    Rpc {
        kind: RpcFailure,
        method: String,
        detail: String,
    },
    /// The node answered with a JSON-RPC error that is not a revert.
    #[error("RPC error {code} ({method}): {message}")]
    Server {
        code: i64,
        method: String,
        message: String,
    },
    /// The contract call reverted (decoded reason, or the raw revert data).
    #[error("call reverted: {0}")]
    Revert(String),
    /// The node's answer could not be decoded as expected.
    #[error("cannot decode {what}: {detail}")]
    Decode { what: &'static str, detail: String },
    /// A block in the requested range does not exist (yet).
    #[error("block {0} not found")]
    BlockNotFound(u64),
}

impl ChainError {
    /// True when the node could not be reached or did not answer in time:
    /// the chain is unreadable, not wrong.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ChainError::Rpc { .. })
    }
}

/// Is the JSON-RPC error a revert of the called contract?
fn is_revert(payload: &ErrorPayload) -> bool {
    // geth/anvil: code 3 with the revert data; others: -32000 "execution reverted".
    payload.code == 3 || payload.message.to_ascii_lowercase().contains("revert")
}

/// The reason of a revert: the decoded `Error(string)`/`Panic(uint)`, else
/// the raw revert data, else the node's message.
fn revert_reason(payload: &ErrorPayload) -> String {
    let data = payload.as_revert_data().or_else(|| {
        // Some nodes put the data in `data` without "revert" in the message.
        payload
            .try_data_as::<Bytes>()
            .and_then(Result::ok)
            .filter(|d| !d.is_empty())
    });
    match data {
        Some(data) => decode_revert_reason(&data).unwrap_or_else(|| format!("revert data {data}")),
        None => payload.message.to_string(),
    }
}

/// Maps an alloy transport error of `method` to a [`ChainError`].
pub(super) fn classify(error: TransportError, method: &str) -> ChainError {
    use alloy::rpc::json_rpc::RpcError;
    let rpc = |kind: RpcFailure, detail: String| ChainError::Rpc {
        kind,
        method: method.to_string(),
        detail,
    };
    match error {
        RpcError::ErrorResp(payload) => {
            if is_revert(&payload) {
                ChainError::Revert(revert_reason(&payload))
            } else {
                ChainError::Server {
                    code: payload.code,
                    method: method.to_string(),
                    message: payload.message.to_string(),
                }
            }
        }
        RpcError::NullResp => ChainError::Decode {
            what: "response",
            detail: format!("{method}: null result"),
        },
        RpcError::DeserError { err, text } => ChainError::Decode {
            what: "response",
            detail: format!("{method}: {err}: {}", truncate(&text, 200)),
        },
        RpcError::Transport(kind) => match kind {
            TransportErrorKind::HttpError(http) => rpc(
                RpcFailure::Http(http.status),
                truncate(&http.body, 200).to_string(),
            ),
            TransportErrorKind::HttpErrorWithRetryAfter { error, .. } => rpc(
                RpcFailure::Http(error.status),
                truncate(&error.body, 200).to_string(),
            ),
            TransportErrorKind::Custom(inner) => {
                let kind = match inner.downcast_ref::<reqwest::Error>() {
                    Some(e) if e.is_timeout() => RpcFailure::Timeout,
                    Some(e) if e.is_connect() => RpcFailure::Unreachable,
                    _ if connection_lost(inner.as_ref()) => RpcFailure::Unreachable,
                    _ => RpcFailure::Transport,
                };
                rpc(kind, error_chain(inner.as_ref()))
            }
            other => rpc(RpcFailure::Transport, other.to_string()),
        },
        other => rpc(RpcFailure::Transport, other.to_string()),
    }
}

/// Whether a request got no answer because the node refused, reset or
/// closed the connection: the node is gone (or going), not wrong. A node
/// that stops takes the pooled keep-alive connection of the previous
/// request with it, and the next request on it fails as a reset or an
/// incomplete message rather than as a connect error, depending on who
/// notices first; both mean the node cannot be reached.
fn connection_lost(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::NotConnected
                    | ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled() || h.is_closed())
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// An error and its sources, "a: b: c" (reqwest's own Display hides the
/// cause, e.g. "connection refused").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Does the error say the `eth_getLogs` range returned too much (so a
/// smaller range may succeed)? Node wordings differ: geth "query returned
/// more than 10000 results", Infura -32005 "limit exceeded", others "block
/// range is too large", "response size exceeded", "query timeout exceeded".
pub(super) fn range_too_large(error: &ChainError) -> bool {
    match error {
        ChainError::Server { code, message, .. } => {
            let m = message.to_ascii_lowercase();
            *code == -32005
                || [
                    "more than",
                    "too many",
                    "too large",
                    "limit",
                    "exceed",
                    "range",
                    "size",
                ]
                .iter()
                .any(|w| m.contains(w))
        }
        ChainError::Rpc {
            kind: RpcFailure::Http(413),
            ..
        } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolError;
    use serde_json::value::RawValue;

    fn payload(code: i64, message: &'static str, data: Option<&str>) -> TransportError {
        alloy::rpc::json_rpc::RpcError::ErrorResp(ErrorPayload {
            code,
            message: message.into(),
            data: data.map(|d| RawValue::from_string(d.to_string()).unwrap()),
        })
    }

    #[test]
    fn json_rpc_errors_are_classified() {
        // anvil/geth: code 3, Error(string) revert data.
        let reason = alloy::sol_types::Revert::from("EAS: not owner").abi_encode();
        let data = format!("\"{}\"", Bytes::from(reason));
        assert_eq!(
            classify(
                payload(3, "execution reverted: EAS: not owner", Some(&data)),
                "eth_call"
            ),
            ChainError::Revert("revert: EAS: not owner".into())
        );
        // A bare revert without data.
        assert_eq!(
            classify(payload(-32000, "execution reverted", None), "eth_call"),
            ChainError::Revert("execution reverted".into())
        );
        // A custom error: the raw data is kept.
        let custom = classify(
            payload(3, "execution reverted", Some("\"0x7e27328900000000\"")),
            "eth_call",
        );
        assert_eq!(
            custom,
            ChainError::Revert("revert data 0x7e27328900000000".into())
        );
        // Not a revert.
        let server = classify(payload(-32602, "invalid params", None), "eth_call");
        assert!(matches!(server, ChainError::Server { code: -32602, .. }));
        assert!(!server.is_unreachable());
        assert!(!range_too_large(&server));
    }

    #[test]
    fn too_many_results_is_recognized() {
        for (code, message) in [
            (-32005, "limit exceeded"),
            (-32000, "query returned more than 10000 results"),
            (-32602, "block range is too large"),
            (-32000, "Log response size exceeded."),
            (-32600, "exceed maximum block range: 1024"),
        ] {
            let e = ChainError::Server {
                code,
                method: "eth_getLogs".into(),
                message: message.into(),
            };
            assert!(range_too_large(&e), "{message}");
        }
        assert!(!range_too_large(&ChainError::Revert("x".into())));
    }
}
