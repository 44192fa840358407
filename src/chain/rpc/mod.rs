//! The relay's JSON-RPC view of the chain ([`ChainRpc`]): typed reads of
//! EAS / DC state at a block, decoded logs and EAS calls over a block range,
//! and batched state reads for sweeps. Every request has a deadline;
//! failures are typed so the caller can tell an unreachable RPC from a
//! revert or a bad answer.
//!
//! Requests are plain JSON-RPC (`eth_call`, `eth_getLogs`,
//! `eth_getBlockByNumber`) with minimal response types, so that nodes with
//! non-standard block or transaction fields (Harmony) still decode.
//!
//! - `transport`: the HTTP connection, deadlines, batches, log ranges;
//! - `decode`: events, calls, return values and block fields;
//! - `error`: the typed errors and how transport failures are classified.

mod decode;
mod error;
mod transport;

pub use decode::{BlockInfo, ChainEvent, EasCall, StateRead, StateValue};
pub use error::{ChainError, RpcFailure};
pub use transport::At;

use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, Bytes, U64};
use alloy::rpc::client::Waiter;
use alloy::rpc::types::Log as RpcLog;
use alloy::sol_types::SolCall;

use super::bindings::{DC, EAS};
use super::verify::MAINTAINER_ROLE;
use decode::{
    BlockHeader, BlockWithTxs, decode_eas_call, decode_log, decode_returns, known_topics, saturate,
};
use error::classify;
use transport::{CallArgs, Transport, bounded, in_ranges};

/// Request sizes. The defaults suit a public RPC endpoint and a local node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest block range of one `eth_getLogs` (halved while the node
    /// answers "too many results").
    pub max_log_range: u64,
    /// `eth_call`s in one JSON-RPC batch of [`ChainRpc::read_many`].
    pub read_batch: usize,
    /// Blocks in one JSON-RPC batch of [`ChainRpc::eas_calls`].
    pub block_batch: usize,
    /// Batches in flight at once.
    pub in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_log_range: 2_000,
            read_batch: 250,
            block_batch: 20,
            in_flight: 4,
        }
    }
}

/// The relay's one JSON-RPC reader of the chain. Cheap to clone (one
/// shared HTTP connection pool).
#[derive(Debug, Clone)]
pub struct ChainRpc {
    transport: Transport,
    limits: Limits,
}

impl ChainRpc {
    /// A reader of the JSON-RPC endpoint at `rpc_url` (http or https); each
    /// request (or batch) must be answered within `timeout`. Connects lazily.
    pub fn new(rpc_url: &str, timeout: Duration) -> Result<ChainRpc, ChainError> {
        Ok(ChainRpc {
            transport: Transport::new(rpc_url, timeout)?,
            limits: Limits::default(),
        })
    }

    /// The same reader with other request sizes.
    pub fn with_limits(mut self, limits: Limits) -> ChainRpc {
        self.limits = Limits {
            max_log_range: limits.max_log_range.max(1),
            read_batch: limits.read_batch.max(1),
            block_batch: limits.block_batch.max(1),
            in_flight: limits.in_flight.max(1),
        };
        self
    }

    /// The request sizes in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The chain id the node reports (`eth_chainId`).
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        let id: U64 = self.transport.request("eth_chainId", ()).await?;
        Ok(id.to())
    }

    /// The number of the node's latest block.
    pub async fn head(&self) -> Result<u64, ChainError> {
        let n: U64 = self.transport.request("eth_blockNumber", ()).await?;
        Ok(n.to())
    }

    /// The node's latest block: number, hash and timestamp (the chain's
    /// own clock, which decides expiry as much as the wall clock does).
    pub async fn latest(&self) -> Result<BlockInfo, ChainError> {
        let block: Option<BlockHeader> = self
            .transport
            .request("eth_getBlockByNumber", (BlockNumberOrTag::Latest, false))
            .await?;
        let b = block.ok_or(ChainError::Decode {
            what: "latest block",
            detail: "the node has no latest block".into(),
        })?;
        Ok(b.info())
    }

    /// The hash of block `number`, None when the node has no such block.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        Ok(self.block(number).await?.map(|b| b.hash))
    }

    /// Block `number` (hash and timestamp), None when the node has none.
    pub async fn block(&self, number: u64) -> Result<Option<BlockInfo>, ChainError> {
        let block: Option<BlockHeader> = self
            .transport
            .request(
                "eth_getBlockByNumber",
                (BlockNumberOrTag::Number(number), false),
            )
            .await?;
        Ok(block.map(BlockHeader::info))
    }

    /// `EAS.getCommitment(node, alias)`; zero when the alias is not active.
    pub async fn commitment(
        &self,
        eas: Address,
        node: B256,
        alias: B256,
        at: At,
    ) -> Result<B256, ChainError> {
        let call = EAS::getCommitmentCall {
            node,
            aliasName: alias,
        };
        let out = self.transport.call(eas, call.abi_encode(), at).await?;
        decode_returns::<EAS::getCommitmentCall>(&out, "getCommitment")
    }

    /// `EAS.getNumAlias(node)` (saturated at `u64::MAX`).
    pub async fn num_alias(&self, eas: Address, node: B256, at: At) -> Result<u64, ChainError> {
        let out = self
            .transport
            .call(eas, EAS::getNumAliasCall { node }.abi_encode(), at)
            .await?;
        decode_returns::<EAS::getNumAliasCall>(&out, "getNumAlias").map(saturate)
    }

    /// `EAS.getAllowMaintainerAccess(node)`.
    pub async fn maintainer_allowed(
        &self,
        eas: Address,
        node: B256,
        at: At,
    ) -> Result<bool, ChainError> {
        let call = EAS::getAllowMaintainerAccessCall { node };
        let out = self.transport.call(eas, call.abi_encode(), at).await?;
        decode_returns::<EAS::getAllowMaintainerAccessCall>(&out, "getAllowMaintainerAccess")
    }

    /// `EAS.hasRole(MAINTAINER_ROLE, account)`.
    pub async fn is_maintainer(
        &self,
        eas: Address,
        account: Address,
        at: At,
    ) -> Result<bool, ChainError> {
        let call = EAS::hasRoleCall {
            role: MAINTAINER_ROLE,
            account,
        };
        let out = self.transport.call(eas, call.abi_encode(), at).await?;
        decode_returns::<EAS::hasRoleCall>(&out, "hasRole")
    }

    /// `EAS.dc()`: the DC contract the EAS checks ownership with.
    pub async fn dc_of(&self, eas: Address, at: At) -> Result<Address, ChainError> {
        let out = self
            .transport
            .call(eas, EAS::dcCall {}.abi_encode(), at)
            .await?;
        decode_returns::<EAS::dcCall>(&out, "dc")
    }

    /// `DC.ownerOf(sld)`. A registry that reverts for unknown or expired
    /// names gives [`ChainError::Revert`].
    pub async fn owner_of(&self, dc: Address, sld: &str, at: At) -> Result<Address, ChainError> {
        let call = DC::ownerOfCall {
            name: sld.to_string(),
        };
        let out = self.transport.call(dc, call.abi_encode(), at).await?;
        decode_returns::<DC::ownerOfCall>(&out, "ownerOf")
    }

    /// `DC.nameExpires(sld)`, a unix time (saturated at `u64::MAX`).
    pub async fn name_expires(&self, dc: Address, sld: &str, at: At) -> Result<u64, ChainError> {
        let call = DC::nameExpiresCall {
            name: sld.to_string(),
        };
        let out = self.transport.call(dc, call.abi_encode(), at).await?;
        decode_returns::<DC::nameExpiresCall>(&out, "nameExpires").map(saturate)
    }

    /// Decoded logs of interest emitted by `addresses` in [from, to]
    /// (inclusive), in chain order; unknown logs skipped. Queried in ranges
    /// of at most `limits.max_log_range` blocks, halved while the node
    /// refuses a range as too large.
    pub async fn events(
        &self,
        from: u64,
        to: u64,
        addresses: &[Address],
    ) -> Result<Vec<(u64, ChainEvent)>, ChainError> {
        // An empty address list would mean "every contract" to eth_getLogs.
        if addresses.is_empty() || from > to {
            return Ok(Vec::new());
        }
        let logs = in_ranges(from, to, self.limits.max_log_range, |start, end| {
            self.logs(start, end, addresses)
        })
        .await?;
        Ok(logs
            .into_iter()
            .map(|(block, _, event)| (block, event))
            .collect())
    }

    /// One `eth_getLogs`; (block, log index, event) of the logs we know.
    async fn logs(
        &self,
        from: u64,
        to: u64,
        addresses: &[Address],
    ) -> Result<Vec<(u64, u64, ChainEvent)>, ChainError> {
        let filter = serde_json::json!({
            "fromBlock": BlockNumberOrTag::Number(from),
            "toBlock": BlockNumberOrTag::Number(to),
            "address": addresses,
            "topics": [known_topics()],
        });
        let logs: Vec<RpcLog> = self.transport.request("eth_getLogs", [filter]).await?;
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            if log.removed {
                continue;
            }
            let Some(event) = decode_log(&log.inner) else {
                continue;
            };
            let block = log.block_number.ok_or(ChainError::Decode {
                what: "eth_getLogs",
                detail: "log without blockNumber".into(),
            })?;
            out.push((block, log.log_index.unwrap_or(0), event));
        }
        Ok(out)
    }

    /// Decoded calls to `eas` by transactions mined in [from, to] (top-level
    /// calls only; status not checked — the caller re-reads state), in chain
    /// order. Blocks are fetched in JSON-RPC batches of
    /// `limits.block_batch`, `limits.in_flight` batches at once.
    pub async fn eas_calls(
        &self,
        from: u64,
        to: u64,
        eas: Address,
    ) -> Result<Vec<(u64, EasCall)>, ChainError> {
        if from > to {
            return Ok(Vec::new());
        }
        let per = self.limits.block_batch as u64;
        let ranges: Vec<(u64, u64)> = {
            let mut ranges = Vec::new();
            let mut start = from;
            loop {
                let end = start.saturating_add(per - 1).min(to);
                ranges.push((start, end));
                if end == to {
                    break ranges;
                }
                start = end + 1;
            }
        };
        let results = bounded(ranges, self.limits.in_flight, |(start, end)| {
            let rpc = self.clone();
            async move { rpc.block_calls(start, end, eas).await }
        })
        .await?;
        Ok(results.into_iter().flatten().collect())
    }

    /// Blocks [start, end] in one batch → the EAS calls in them.
    async fn block_calls(
        &self,
        start: u64,
        end: u64,
        eas: Address,
    ) -> Result<Vec<(u64, EasCall)>, ChainError> {
        let method = "eth_getBlockByNumber";
        let mut batch = self.transport.batch();
        let mut waiters: Vec<(u64, Waiter<Option<BlockWithTxs>>)> = Vec::new();
        for number in start..=end {
            let waiter = batch
                .add_call(method, &(BlockNumberOrTag::Number(number), true))
                .map_err(|e| classify(e, method))?;
            waiters.push((number, waiter));
        }
        self.transport.send_batch(batch, method).await?;
        let mut out = Vec::new();
        for (number, waiter) in waiters {
            let block = waiter
                .await
                .map_err(|e| classify(e, method))?
                .ok_or(ChainError::BlockNotFound(number))?;
            out.extend(
                block
                    .transactions
                    .iter()
                    .filter(|tx| tx.to == Some(eas))
                    .filter_map(|tx| decode_eas_call(&tx.input))
                    .map(|call| (number, call)),
            );
        }
        Ok(out)
    }

    /// Many state reads at once, answers in the order of `reads`. `eth_call`s
    /// go in JSON-RPC batches of `limits.read_batch`, `limits.in_flight`
    /// batches at once. A read that reverts gives [`StateValue::Reverted`];
    /// any other failure fails the whole call.
    pub async fn read_many(
        &self,
        reads: &[StateRead],
        at: At,
    ) -> Result<Vec<StateValue>, ChainError> {
        let chunks: Vec<Vec<StateRead>> = reads
            .chunks(self.limits.read_batch)
            .map(<[StateRead]>::to_vec)
            .collect();
        let results = bounded(chunks, self.limits.in_flight, |chunk| {
            let rpc = self.clone();
            async move { rpc.read_batch(chunk, at).await }
        })
        .await?;
        Ok(results.into_iter().flatten().collect())
    }

    /// One JSON-RPC batch of `eth_call`s.
    async fn read_batch(
        &self,
        reads: Vec<StateRead>,
        at: At,
    ) -> Result<Vec<StateValue>, ChainError> {
        let method = "eth_call";
        let mut batch = self.transport.batch();
        let mut waiters: Vec<Waiter<Bytes>> = Vec::with_capacity(reads.len());
        for read in &reads {
            let (to, input) = read.encode();
            let args = CallArgs::new(to, input);
            let waiter = batch
                .add_call(method, &(args, at.tag()))
                .map_err(|e| classify(e, method))?;
            waiters.push(waiter);
        }
        self.transport.send_batch(batch, method).await?;
        let mut out = Vec::with_capacity(reads.len());
        for (read, waiter) in reads.iter().zip(waiters) {
            match waiter.await.map_err(|e| classify(e, method)) {
                Ok(bytes) => out.push(read.decode(&bytes)?),
                Err(ChainError::Revert(reason)) => out.push(StateValue::Reverted(reason)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    const EMITTER: Address = address!("0x00000000000000000000000000000000000000ee");
    const ALICE: Address = address!("0x00000000000000000000000000000000000a11ce");

    #[test]
    fn bad_urls_are_refused() {
        let timeout = Duration::from_secs(1);
        assert!(matches!(
            ChainRpc::new("not a url", timeout),
            Err(ChainError::BadUrl { .. })
        ));
        let ws = ChainRpc::new("ws://127.0.0.1:8546", timeout).unwrap_err();
        assert!(ws.to_string().contains("scheme \"ws\""), "{ws}");
        assert!(ChainRpc::new("http://127.0.0.1:8545", timeout).is_ok());
    }

    /// A loopback port with nothing listening on it.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn rpc_down_is_unreachable() {
        let port = closed_port();
        let rpc =
            ChainRpc::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let e = rpc.head().await.unwrap_err();
        assert!(
            matches!(
                e,
                ChainError::Rpc {
                    kind: RpcFailure::Unreachable,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.is_unreachable());
        assert!(e.to_string().contains("eth_blockNumber"), "{e}");
        // Batched reads fail the same way, as one error.
        let reads = vec![
            StateRead::IsMaintainer {
                eas: EMITTER,
                account: ALICE,
            };
            600
        ];
        let e = rpc.read_many(&reads, At::Latest).await.unwrap_err();
        assert!(
            matches!(
                e,
                ChainError::Rpc {
                    kind: RpcFailure::Unreachable,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = rpc.eas_calls(1, 100, EMITTER).await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
    }

    /// Reads one HTTP request (headers and a Content-Length body).
    async fn read_request(stream: &mut tokio::net::TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    return true;
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The node goes away between two requests: the second, sent on the
    /// kept-alive connection of the first, is read and then the connection
    /// closes without an answer (what a stopping anvil does). That is the
    /// node being unreachable, not some other transport failure, whether
    /// the connection is closed or reset.
    #[tokio::test]
    async fn a_node_that_goes_away_mid_connection_is_unreachable() {
        use tokio::io::AsyncWriteExt;
        for reset in [false, true] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let node = tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                drop(listener);
                assert!(read_request(&mut stream).await);
                let body = r#"{"jsonrpc":"2.0","id":0,"result":"0x10"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
                read_request(&mut stream).await;
                if reset {
                    let _ = stream.set_zero_linger();
                }
                drop(stream);
            });
            let rpc =
                ChainRpc::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
            assert_eq!(rpc.head().await.unwrap(), 16);
            let e = rpc.head().await.unwrap_err();
            assert!(
                matches!(
                    e,
                    ChainError::Rpc {
                        kind: RpcFailure::Unreachable,
                        ..
                    }
                ),
                "reset {reset}: {e:?}"
            );
            node.await.unwrap();
        }
    }

    #[tokio::test]
    async fn silent_rpc_times_out() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let timeout = Duration::from_millis(300);
        let rpc = ChainRpc::new(&format!("http://127.0.0.1:{port}"), timeout).unwrap();
        let started = std::time::Instant::now();
        let e = rpc.chain_id().await.unwrap_err();
        assert!(
            matches!(
                e,
                ChainError::Rpc {
                    kind: RpcFailure::Timeout,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        hold.abort();
    }

    #[tokio::test]
    async fn empty_requests_ask_nothing() {
        // Pointed at a closed port: any request would fail.
        let port = closed_port();
        let rpc =
            ChainRpc::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1)).unwrap();
        // No address: eth_getLogs would match every contract, so nothing is asked.
        assert_eq!(rpc.events(1, 10, &[]).await, Ok(vec![]));
        assert_eq!(rpc.events(10, 1, &[EMITTER]).await, Ok(vec![]));
        assert_eq!(rpc.eas_calls(10, 1, EMITTER).await, Ok(vec![]));
        assert_eq!(rpc.read_many(&[], At::Latest).await, Ok(vec![]));
    }
}
