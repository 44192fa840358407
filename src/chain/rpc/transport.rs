//! The JSON-RPC transport to the chain's node: one HTTP connection pool,
//! a deadline on every request and batch, JSON-RPC batches, a bounded
//! number of batches in flight, and `eth_getLogs` block ranges that shrink
//! while the node refuses them as too large.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, Bytes};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::{BatchRequest, RpcClient};
use alloy::rpc::json_rpc::{RpcRecv, RpcSend};
use alloy::transports::http::reqwest;
use serde::Serialize;
use tokio::task::JoinSet;

use super::error::{ChainError, RpcFailure, classify, range_too_large};

/// The block whose state a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Latest,
    Number(u64),
}

impl At {
    pub(super) fn tag(self) -> BlockNumberOrTag {
        match self {
            At::Latest => BlockNumberOrTag::Latest,
            At::Number(n) => BlockNumberOrTag::Number(n),
        }
    }
}

/// `eth_call` arguments. The input goes in both `input` and `data`: newer
/// nodes read `input`, older geth forks (Harmony) only `data`; equal values
/// are accepted by both.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CallArgs {
    to: Address,
    input: Bytes,
    data: Bytes,
}

impl CallArgs {
    pub(super) fn new(to: Address, input: Vec<u8>) -> CallArgs {
        let input = Bytes::from(input);
        CallArgs {
            to,
            input: input.clone(),
            data: input,
        }
    }
}

/// The HTTP JSON-RPC connection to the node. Cheap to clone (the pool is
/// shared).
#[derive(Debug, Clone)]
pub(super) struct Transport {
    provider: RootProvider,
    timeout: Duration,
}

impl Transport {
    /// A transport to the JSON-RPC endpoint at `rpc_url` (http or https); each
    /// request (or batch) must be answered within `timeout`. Connects lazily.
    pub(super) fn new(rpc_url: &str, timeout: Duration) -> Result<Transport, ChainError> {
        let bad = |reason: String| ChainError::BadUrl {
            url: rpc_url.to_string(),
            reason,
        };
        let url: reqwest::Url = rpc_url.parse().map_err(|e| bad(format!("{e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "scheme {:?} is not supported (use http or https)",
                url.scheme()
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| bad(format!("HTTP client: {e}")))?;
        let client = RpcClient::new_http_with_client(http, url);
        Ok(Transport {
            provider: RootProvider::new(client),
            timeout,
        })
    }

    /// A new, empty JSON-RPC batch.
    pub(super) fn batch(&self) -> BatchRequest<'_> {
        BatchRequest::new(self.provider.client())
    }

    /// Sends a batch within the timeout.
    pub(super) async fn send_batch(
        &self,
        batch: BatchRequest<'_>,
        method: &str,
    ) -> Result<(), ChainError> {
        match tokio::time::timeout(self.timeout, batch.send()).await {
            Err(_) => Err(self.timed_out(method)),
            Ok(result) => result.map_err(|e| classify(e, method)),
        }
    }

    /// `eth_call` of `input` on `to` at `at`.
    pub(super) async fn call(
        &self,
        to: Address,
        input: Vec<u8>,
        at: At,
    ) -> Result<Bytes, ChainError> {
        self.request("eth_call", (CallArgs::new(to, input), at.tag()))
            .await
    }

    /// One JSON-RPC request within the timeout.
    pub(super) async fn request<P: RpcSend, R: RpcRecv>(
        &self,
        method: &'static str,
        params: P,
    ) -> Result<R, ChainError> {
        let call = self.provider.client().request(method, params);
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(self.timed_out(method)),
            Ok(result) => result.map_err(|e| classify(e, method)),
        }
    }

    fn timed_out(&self, method: &str) -> ChainError {
        ChainError::Rpc {
            kind: RpcFailure::Timeout,
            method: method.to_string(),
            detail: format!("no answer within {:?}", self.timeout),
        }
    }
}

/// Runs `job` over `items` with at most `in_flight` at once and
/// returns the results in the order of `items`; the first error aborts
/// the rest.
pub(super) async fn bounded<I, T, F, Fut>(
    items: Vec<I>,
    in_flight: usize,
    job: F,
) -> Result<Vec<T>, ChainError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = Result<T, ChainError>> + Send + 'static,
{
    let total = items.len();
    let mut done: BTreeMap<usize, T> = BTreeMap::new();
    let mut set: JoinSet<(usize, Result<T, ChainError>)> = JoinSet::new();
    let mut pending = items.into_iter().enumerate();
    loop {
        while set.len() < in_flight {
            let Some((index, item)) = pending.next() else {
                break;
            };
            let fut = job(item);
            set.spawn(async move { (index, fut.await) });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        match joined {
            Ok((index, Ok(value))) => {
                done.insert(index, value);
            }
            Ok((_, Err(e))) => return Err(e),
            Err(join) => {
                // A panic in a job is a bug; surface it where it happened.
                if join.is_panic() {
                    std::panic::resume_unwind(join.into_panic());
                }
                return Err(ChainError::Rpc {
                    kind: RpcFailure::Transport,
                    method: "batch".into(),
                    detail: format!("request task cancelled: {join}"),
                });
            }
        }
    }
    debug_assert_eq!(done.len(), total);
    Ok(done.into_values().collect())
}

/// Runs `fetch` over [from, to] in consecutive ranges of at most `max`
/// blocks and concatenates the results (each sorted by block and log index).
/// A range the node refuses as too large is halved and retried; after a
/// success the range grows back (doubling) up to `max`.
pub(super) async fn in_ranges<F, Fut, T>(
    from: u64,
    to: u64,
    max: u64,
    mut fetch: F,
) -> Result<Vec<(u64, u64, T)>, ChainError>
where
    F: FnMut(u64, u64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(u64, u64, T)>, ChainError>>,
{
    let max = max.max(1);
    let mut span = max;
    let mut start = from;
    let mut out = Vec::new();
    loop {
        let end = start.saturating_add(span - 1).min(to);
        match fetch(start, end).await {
            Ok(mut items) => {
                items.sort_by_key(|(block, index, _)| (*block, *index));
                out.extend(items);
                if end == to {
                    return Ok(out);
                }
                start = end + 1;
                span = span.saturating_mul(2).min(max);
            }
            Err(e) if end > start && range_too_large(&e) => {
                // Half of the end - start + 1 blocks asked, at least one.
                span = (end - start).div_ceil(2).max(1);
                tracing::debug!(start, span, error = %e, "eth_getLogs range too large: halving");
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn too_many() -> ChainError {
        ChainError::Server {
            code: -32000,
            method: "eth_getLogs".into(),
            message: "query returned more than 10000 results".into(),
        }
    }

    #[tokio::test]
    async fn log_ranges_halve_and_grow_back() {
        // A node that refuses ranges of more than 3 blocks; one item per block.
        let mut asked = Vec::new();
        let out = in_ranges(10, 40, 8, |start, end| {
            asked.push((start, end));
            let result = if end - start + 1 > 3 {
                Err(too_many())
            } else {
                // Out of order within the range: in_ranges sorts.
                Ok((start..=end).rev().map(|b| (b, 0, b * 10)).collect())
            };
            async move { result }
        })
        .await
        .unwrap();
        let blocks: Vec<u64> = out.iter().map(|(b, _, _)| *b).collect();
        assert_eq!(blocks, (10..=40).collect::<Vec<_>>());
        assert!(out.iter().all(|(b, _, v)| *v == b * 10));
        assert!(asked.iter().all(|(s, e)| e - s < 8), "{asked:?}");
        assert_eq!(asked[0], (10, 17));
        assert_eq!(asked[1], (10, 13));
        assert_eq!(asked[2], (10, 11));
        // Successful ranges tile [10, 40] exactly.
        let ok: Vec<(u64, u64)> = asked.iter().copied().filter(|(s, e)| e - s < 3).collect();
        assert_eq!(ok.first().map(|r| r.0), Some(10));
        assert_eq!(ok.last().map(|r| r.1), Some(40));
        assert!(ok.windows(2).all(|w| w[1].0 == w[0].1 + 1), "{ok:?}");
    }

    #[tokio::test]
    async fn log_range_errors_end_the_walk() {
        // Too large even for one block: the error, no endless halving.
        let mut calls = 0;
        let e = in_ranges(5, 9, 4, |_, _| {
            calls += 1;
            async { Err::<Vec<(u64, u64, ())>, _>(too_many()) }
        })
        .await
        .unwrap_err();
        assert_eq!(e, too_many());
        assert_eq!(calls, 3, "4 blocks, 2 blocks, 1 block");
        // Any other error at once.
        let mut calls = 0;
        let e = in_ranges(5, 9, 4, |_, _| {
            calls += 1;
            async { Err::<Vec<(u64, u64, ())>, _>(ChainError::BlockNotFound(5)) }
        })
        .await
        .unwrap_err();
        assert_eq!((e, calls), (ChainError::BlockNotFound(5), 1));
        // One range of one block.
        let out = in_ranges(7, 7, 2_000, |s, e| async move { Ok(vec![(s, 0, e)]) })
            .await
            .unwrap();
        assert_eq!(out, vec![(7, 0, 7)]);
    }
}
