//! The relay's JSON-RPC view of the chain: typed reads of EAS / DC state at a
//! block, decoded logs and EAS calls over a block range, and batched state
//! reads for sweeps. Every request has a deadline; failures are typed so the
//! caller can tell an unreachable RPC from a revert or a bad answer.
//!
//! Requests are plain JSON-RPC (`eth_call`, `eth_getLogs`,
//! `eth_getBlockByNumber`) with minimal response types, so that nodes with
//! non-standard block or transaction fields (Harmony) still decode.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, Bytes, U64, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::{BatchRequest, RpcClient, Waiter};
use alloy::rpc::json_rpc::{ErrorPayload, RpcRecv, RpcSend};
use alloy::rpc::types::Log as RpcLog;
use alloy::sol_types::{SolCall, SolEvent, SolInterface, decode_revert_reason};
use alloy::transports::http::reqwest;
use alloy::transports::{TransportError, TransportErrorKind};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::bindings::{BaseRegistrar, DC, EAS};
use super::verify::MAINTAINER_ROLE;

/// The block whose state a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Latest,
    Number(u64),
}

impl At {
    fn tag(self) -> BlockNumberOrTag {
        match self {
            At::Latest => BlockNumberOrTag::Latest,
            At::Number(n) => BlockNumberOrTag::Number(n),
        }
    }
}

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

/// A decoded log of interest. Nodes: Transfer's token id and the registrar's
/// `id` are `keccak256(sld)`, and so is the indexed `string name` topic of
/// DC's events: all are the EAS node of the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEvent {
    AliasActivated {
        node: B256,
        alias: B256,
        commitment: B256,
    },
    AliasDeactivated {
        node: B256,
        alias: B256,
    },
    AllDeactivated {
        node: B256,
    },
    MaintainerAccessToggled {
        node: B256,
        allowed: bool,
    },
    NameTransferred {
        node: B256,
        to: Address,
    },
    NameRenewed {
        node: B256,
    },
    NameRegistered {
        node: B256,
    },
    RoleChanged {
        role: B256,
        account: Address,
        granted: bool,
    },
}

/// A decoded top-level call to the EAS contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EasCall {
    Activate { name: String, alias: B256 },
    Deactivate { name: String, alias: B256 },
    DeactivateAll { name: String },
    ToggleMaintainer { name: String },
    SetPublicAliases { name: String },
}

/// One state read of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRead {
    Commitment {
        eas: Address,
        node: B256,
        alias: B256,
    },
    OwnerOf {
        dc: Address,
        sld: String,
    },
    NameExpires {
        dc: Address,
        sld: String,
    },
    MaintainerAllowed {
        eas: Address,
        node: B256,
    },
    IsMaintainer {
        eas: Address,
        account: Address,
    },
}

/// The answer to one [`StateRead`]: `Hash` for a commitment, `Address` for
/// an owner, `Number` for an expiry, `Bool` for the maintainer reads, and
/// `Reverted` when that one call reverted (e.g. `ownerOf` of a name that
/// does not exist or has expired, for registries that revert there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateValue {
    Hash(B256),
    Address(Address),
    Number(u64),
    Bool(bool),
    Reverted(String),
}

impl StateValue {
    /// A registry or role read that reverts means "nothing there": an
    /// ENS-style registrar's `ownerOf` reverts for an expired or unknown
    /// name, which must stop its aliases, not stall the reader.
    pub fn or_if_reverted(self, nothing: StateValue) -> StateValue {
        match self {
            StateValue::Reverted(_) => nothing,
            v => v,
        }
    }
}

/// Request sizes. The defaults suit a public RPC endpoint and a local node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest block range of one `eth_getLogs` (halved while the node
    /// answers "too many results").
    pub max_log_range: u64,
    /// `eth_call`s in one JSON-RPC batch of [`ChainClient::read_many`].
    pub read_batch: usize,
    /// Blocks in one JSON-RPC batch of [`ChainClient::eas_calls`].
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

/// The chain client. Cheap to clone (one shared HTTP connection pool).
#[derive(Debug, Clone)]
pub struct ChainClient {
    provider: RootProvider,
    timeout: Duration,
    limits: Limits,
}

/// `eth_call` arguments. The input goes in both `input` and `data`: newer
/// nodes read `input`, older geth forks (Harmony) only `data`; equal values
/// are accepted by both.
#[derive(Debug, Clone, Serialize)]
struct CallArgs {
    to: Address,
    input: Bytes,
    data: Bytes,
}

/// The only block fields the relay needs.
#[derive(Debug, Deserialize)]
struct BlockHeader {
    hash: B256,
    number: U64,
    timestamp: U64,
}

/// A block's place and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub number: u64,
    pub hash: B256,
    /// Unix seconds.
    pub timestamp: u64,
}

#[derive(Debug, Deserialize)]
struct BlockWithTxs {
    #[serde(default)]
    transactions: Vec<TxLite>,
}

#[derive(Debug, Deserialize)]
struct TxLite {
    #[serde(default)]
    to: Option<Address>,
    input: Bytes,
}

impl ChainClient {
    /// A client of the JSON-RPC endpoint at `rpc_url` (http or https); each
    /// request (or batch) must be answered within `timeout`. Connects lazily.
    pub fn new(rpc_url: &str, timeout: Duration) -> Result<ChainClient, ChainError> {
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
        Ok(ChainClient {
            provider: RootProvider::new(client),
            timeout,
            limits: Limits::default(),
        })
    }

    /// The same client with other request sizes.
    pub fn with_limits(mut self, limits: Limits) -> ChainClient {
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
        let id: U64 = self.request("eth_chainId", ()).await?;
        Ok(id.to())
    }

    /// The number of the node's latest block.
    pub async fn head(&self) -> Result<u64, ChainError> {
        let n: U64 = self.request("eth_blockNumber", ()).await?;
        Ok(n.to())
    }

    /// The node's latest block: number, hash and timestamp (the chain's
    /// own clock, which decides expiry as much as the wall clock does).
    pub async fn latest(&self) -> Result<BlockInfo, ChainError> {
        let block: Option<BlockHeader> = self
            .request("eth_getBlockByNumber", (BlockNumberOrTag::Latest, false))
            .await?;
        let b = block.ok_or(ChainError::Decode {
            what: "latest block",
            detail: "the node has no latest block".into(),
        })?;
        Ok(BlockInfo {
            number: b.number.to(),
            hash: b.hash,
            timestamp: b.timestamp.to(),
        })
    }

    /// The hash of block `number`, None when the node has no such block.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        Ok(self.block(number).await?.map(|b| b.hash))
    }

    /// Block `number` (hash and timestamp), None when the node has none.
    pub async fn block(&self, number: u64) -> Result<Option<BlockInfo>, ChainError> {
        let block: Option<BlockHeader> = self
            .request(
                "eth_getBlockByNumber",
                (BlockNumberOrTag::Number(number), false),
            )
            .await?;
        Ok(block.map(|b| BlockInfo {
            number: b.number.to(),
            hash: b.hash,
            timestamp: b.timestamp.to(),
        }))
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
        let out = self.call(eas, call.abi_encode(), at).await?;
        decode_returns::<EAS::getCommitmentCall>(&out, "getCommitment")
    }

    /// `EAS.getNumAlias(node)` (saturated at `u64::MAX`).
    pub async fn num_alias(&self, eas: Address, node: B256, at: At) -> Result<u64, ChainError> {
        let out = self
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
        let out = self.call(eas, call.abi_encode(), at).await?;
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
        let out = self.call(eas, call.abi_encode(), at).await?;
        decode_returns::<EAS::hasRoleCall>(&out, "hasRole")
    }

    /// `EAS.dc()`: the DC contract the EAS checks ownership with.
    pub async fn dc_of(&self, eas: Address, at: At) -> Result<Address, ChainError> {
        let out = self.call(eas, EAS::dcCall {}.abi_encode(), at).await?;
        decode_returns::<EAS::dcCall>(&out, "dc")
    }

    /// `DC.ownerOf(sld)`. A registry that reverts for unknown or expired
    /// names gives [`ChainError::Revert`].
    pub async fn owner_of(&self, dc: Address, sld: &str, at: At) -> Result<Address, ChainError> {
        let call = DC::ownerOfCall {
            name: sld.to_string(),
        };
        let out = self.call(dc, call.abi_encode(), at).await?;
        decode_returns::<DC::ownerOfCall>(&out, "ownerOf")
    }

    /// `DC.nameExpires(sld)`, a unix time (saturated at `u64::MAX`).
    pub async fn name_expires(&self, dc: Address, sld: &str, at: At) -> Result<u64, ChainError> {
        let call = DC::nameExpiresCall {
            name: sld.to_string(),
        };
        let out = self.call(dc, call.abi_encode(), at).await?;
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
        let logs: Vec<RpcLog> = self.request("eth_getLogs", [filter]).await?;
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
        let results = self
            .bounded(ranges, move |client, (start, end)| async move {
                client.block_calls(start, end, eas).await
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
        let mut batch = BatchRequest::new(self.provider.client());
        let mut waiters: Vec<(u64, Waiter<Option<BlockWithTxs>>)> = Vec::new();
        for number in start..=end {
            let waiter = batch
                .add_call(method, &(BlockNumberOrTag::Number(number), true))
                .map_err(|e| classify(e, method))?;
            waiters.push((number, waiter));
        }
        self.send_batch(batch, method).await?;
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
        let results = self
            .bounded(chunks, move |client, chunk| async move {
                client.read_batch(chunk, at).await
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
        let mut batch = BatchRequest::new(self.provider.client());
        let mut waiters: Vec<Waiter<Bytes>> = Vec::with_capacity(reads.len());
        for read in &reads {
            let (to, input) = read.encode();
            let input = Bytes::from(input);
            let args = CallArgs {
                to,
                input: input.clone(),
                data: input,
            };
            let waiter = batch
                .add_call(method, &(args, at.tag()))
                .map_err(|e| classify(e, method))?;
            waiters.push(waiter);
        }
        self.send_batch(batch, method).await?;
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

    /// Runs `job` over `items` with at most `limits.in_flight` at once and
    /// returns the results in the order of `items`; the first error aborts
    /// the rest.
    async fn bounded<I, T, F, Fut>(&self, items: Vec<I>, job: F) -> Result<Vec<T>, ChainError>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(ChainClient, I) -> Fut,
        Fut: std::future::Future<Output = Result<T, ChainError>> + Send + 'static,
    {
        let total = items.len();
        let mut done: BTreeMap<usize, T> = BTreeMap::new();
        let mut set: JoinSet<(usize, Result<T, ChainError>)> = JoinSet::new();
        let mut pending = items.into_iter().enumerate();
        loop {
            while set.len() < self.limits.in_flight {
                let Some((index, item)) = pending.next() else {
                    break;
                };
                let fut = job(self.clone(), item);
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

    /// Sends a batch within the timeout.
    async fn send_batch(&self, batch: BatchRequest<'_>, method: &str) -> Result<(), ChainError> {
        match tokio::time::timeout(self.timeout, batch.send()).await {
            Err(_) => Err(self.timed_out(method)),
            Ok(result) => result.map_err(|e| classify(e, method)),
        }
    }

    /// `eth_call` of `input` on `to` at `at`.
    async fn call(&self, to: Address, input: Vec<u8>, at: At) -> Result<Bytes, ChainError> {
        let input = Bytes::from(input);
        let args = CallArgs {
            to,
            input: input.clone(),
            data: input,
        };
        self.request("eth_call", (args, at.tag())).await
    }

    /// One JSON-RPC request within the timeout.
    async fn request<P: RpcSend, R: RpcRecv>(
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

impl StateRead {
    /// The contract called and the calldata.
    fn encode(&self) -> (Address, Vec<u8>) {
        match self {
            StateRead::Commitment { eas, node, alias } => (
                *eas,
                EAS::getCommitmentCall {
                    node: *node,
                    aliasName: *alias,
                }
                .abi_encode(),
            ),
            StateRead::OwnerOf { dc, sld } => {
                (*dc, DC::ownerOfCall { name: sld.clone() }.abi_encode())
            }
            StateRead::NameExpires { dc, sld } => {
                (*dc, DC::nameExpiresCall { name: sld.clone() }.abi_encode())
            }
            StateRead::MaintainerAllowed { eas, node } => (
                *eas,
                EAS::getAllowMaintainerAccessCall { node: *node }.abi_encode(),
            ),
            StateRead::IsMaintainer { eas, account } => (
                *eas,
                EAS::hasRoleCall {
                    role: MAINTAINER_ROLE,
                    account: *account,
                }
                .abi_encode(),
            ),
        }
    }

    /// The typed answer from the call's return data.
    fn decode(&self, out: &[u8]) -> Result<StateValue, ChainError> {
        Ok(match self {
            StateRead::Commitment { .. } => StateValue::Hash(decode_returns::<
                EAS::getCommitmentCall,
            >(out, "getCommitment")?),
            StateRead::OwnerOf { .. } => {
                StateValue::Address(decode_returns::<DC::ownerOfCall>(out, "ownerOf")?)
            }
            StateRead::NameExpires { .. } => StateValue::Number(saturate(decode_returns::<
                DC::nameExpiresCall,
            >(
                out, "nameExpires"
            )?)),
            StateRead::MaintainerAllowed { .. } => {
                StateValue::Bool(decode_returns::<EAS::getAllowMaintainerAccessCall>(
                    out,
                    "getAllowMaintainerAccess",
                )?)
            }
            StateRead::IsMaintainer { .. } => {
                StateValue::Bool(decode_returns::<EAS::hasRoleCall>(out, "hasRole")?)
            }
        })
    }
}

/// Runs `fetch` over [from, to] in consecutive ranges of at most `max`
/// blocks and concatenates the results (each sorted by block and log index).
/// A range the node refuses as too large is halved and retried; after a
/// success the range grows back (doubling) up to `max`.
async fn in_ranges<F, Fut, T>(
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

/// The return value of `C` from `out` (strictly: a value that does not fit
/// its type, e.g. an address with high bits set, is refused).
fn decode_returns<C: SolCall>(out: &[u8], what: &'static str) -> Result<C::Return, ChainError> {
    if out.is_empty() {
        return Err(ChainError::Decode {
            what,
            detail: "empty return data (no contract at that address?)".into(),
        });
    }
    C::abi_decode_returns_validate(out).map_err(|e| ChainError::Decode {
        what,
        detail: e.to_string(),
    })
}

fn saturate(value: U256) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// topic0 of every event [`decode_log`] knows.
fn known_topics() -> [B256; 11] {
    [
        EAS::AliasActivated::SIGNATURE_HASH,
        EAS::AliasDeactivated::SIGNATURE_HASH,
        EAS::AllDeactivated::SIGNATURE_HASH,
        EAS::MaintainerAccessToggled::SIGNATURE_HASH,
        EAS::RoleGranted::SIGNATURE_HASH,
        EAS::RoleRevoked::SIGNATURE_HASH,
        BaseRegistrar::Transfer::SIGNATURE_HASH,
        BaseRegistrar::NameRegistered::SIGNATURE_HASH,
        BaseRegistrar::NameRenewed::SIGNATURE_HASH,
        DC::NameRented::SIGNATURE_HASH,
        DC::NameRenewed::SIGNATURE_HASH,
    ]
}

/// The event of interest in a log, None for any other log (including a
/// known topic0 with the wrong topic count, e.g. an ERC-20 `Transfer`).
pub fn decode_log(log: &alloy::primitives::Log) -> Option<ChainEvent> {
    let data = &log.data;
    let topic0 = *data.topics().first()?;
    let event = match topic0 {
        EAS::AliasActivated::SIGNATURE_HASH => {
            let e = EAS::AliasActivated::decode_log_data_validate(data).ok()?;
            ChainEvent::AliasActivated {
                node: e.node,
                alias: e.aliasName,
                commitment: e.commitment,
            }
        }
        EAS::AliasDeactivated::SIGNATURE_HASH => {
            let e = EAS::AliasDeactivated::decode_log_data_validate(data).ok()?;
            ChainEvent::AliasDeactivated {
                node: e.node,
                alias: e.aliasName,
            }
        }
        EAS::AllDeactivated::SIGNATURE_HASH => {
            let e = EAS::AllDeactivated::decode_log_data_validate(data).ok()?;
            ChainEvent::AllDeactivated { node: e.node }
        }
        EAS::MaintainerAccessToggled::SIGNATURE_HASH => {
            let e = EAS::MaintainerAccessToggled::decode_log_data_validate(data).ok()?;
            ChainEvent::MaintainerAccessToggled {
                node: e.node,
                allowed: e.allowed,
            }
        }
        EAS::RoleGranted::SIGNATURE_HASH => {
            let e = EAS::RoleGranted::decode_log_data_validate(data).ok()?;
            ChainEvent::RoleChanged {
                role: e.role,
                account: e.account,
                granted: true,
            }
        }
        EAS::RoleRevoked::SIGNATURE_HASH => {
            let e = EAS::RoleRevoked::decode_log_data_validate(data).ok()?;
            ChainEvent::RoleChanged {
                role: e.role,
                account: e.account,
                granted: false,
            }
        }
        BaseRegistrar::Transfer::SIGNATURE_HASH => {
            let e = BaseRegistrar::Transfer::decode_log_data_validate(data).ok()?;
            ChainEvent::NameTransferred {
                node: e.tokenId.into(),
                to: e.to,
            }
        }
        BaseRegistrar::NameRegistered::SIGNATURE_HASH => {
            let e = BaseRegistrar::NameRegistered::decode_log_data_validate(data).ok()?;
            ChainEvent::NameRegistered { node: e.id.into() }
        }
        BaseRegistrar::NameRenewed::SIGNATURE_HASH => {
            let e = BaseRegistrar::NameRenewed::decode_log_data_validate(data).ok()?;
            ChainEvent::NameRenewed { node: e.id.into() }
        }
        DC::NameRenewed::SIGNATURE_HASH => {
            let e = DC::NameRenewed::decode_log_data_validate(data).ok()?;
            ChainEvent::NameRenewed { node: e.name }
        }
        DC::NameRented::SIGNATURE_HASH => {
            let e = DC::NameRented::decode_log_data_validate(data).ok()?;
            ChainEvent::NameRegistered { node: e.name }
        }
        _ => return None,
    };
    Some(event)
}

/// The EAS call in a transaction's input, None for any other input.
pub fn decode_eas_call(input: &[u8]) -> Option<EasCall> {
    use EAS::EASCalls as C;
    Some(match C::abi_decode(input).ok()? {
        C::activate(c) => EasCall::Activate {
            name: c.name,
            alias: c.aliasName,
        },
        C::deactivate(c) => EasCall::Deactivate {
            name: c.name,
            alias: c.aliasName,
        },
        C::deactivateAll(c) => EasCall::DeactivateAll { name: c.name },
        C::toggleMaintainerAccess(c) => EasCall::ToggleMaintainer { name: c.name },
        C::setPublicAliases(c) => EasCall::SetPublicAliases { name: c.name },
        _ => return None,
    })
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
fn classify(error: TransportError, method: &str) -> ChainError {
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
fn range_too_large(error: &ChainError) -> bool {
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
    use crate::chain::verify::{alias_hash, node};
    use alloy::primitives::{LogData, address};
    use alloy::sol_types::{SolError, SolValue};
    use serde_json::value::RawValue;

    const EMITTER: Address = address!("0x00000000000000000000000000000000000000ee");
    const ALICE: Address = address!("0x00000000000000000000000000000000000a11ce");

    fn log_of<E: SolEvent>(event: &E) -> alloy::primitives::Log {
        alloy::primitives::Log {
            address: EMITTER,
            data: event.encode_log_data(),
        }
    }

    #[test]
    fn every_event_decodes_back() {
        let n = node("fsociety");
        let a = alias_hash("hello");
        let c = B256::repeat_byte(0x42);
        let id = U256::from_be_bytes(n.0);
        let cases: Vec<(alloy::primitives::Log, ChainEvent)> = vec![
            (
                log_of(&EAS::AliasActivated {
                    node: n,
                    aliasName: a,
                    commitment: c,
                }),
                ChainEvent::AliasActivated {
                    node: n,
                    alias: a,
                    commitment: c,
                },
            ),
            (
                log_of(&EAS::AliasDeactivated {
                    node: n,
                    aliasName: a,
                }),
                ChainEvent::AliasDeactivated { node: n, alias: a },
            ),
            (
                log_of(&EAS::AllDeactivated { node: n }),
                ChainEvent::AllDeactivated { node: n },
            ),
            (
                log_of(&EAS::MaintainerAccessToggled {
                    node: n,
                    allowed: false,
                }),
                ChainEvent::MaintainerAccessToggled {
                    node: n,
                    allowed: false,
                },
            ),
            (
                log_of(&EAS::RoleGranted {
                    role: MAINTAINER_ROLE,
                    account: ALICE,
                    sender: EMITTER,
                }),
                ChainEvent::RoleChanged {
                    role: MAINTAINER_ROLE,
                    account: ALICE,
                    granted: true,
                },
            ),
            (
                log_of(&EAS::RoleRevoked {
                    role: MAINTAINER_ROLE,
                    account: ALICE,
                    sender: EMITTER,
                }),
                ChainEvent::RoleChanged {
                    role: MAINTAINER_ROLE,
                    account: ALICE,
                    granted: false,
                },
            ),
            (
                log_of(&BaseRegistrar::Transfer {
                    from: Address::ZERO,
                    to: ALICE,
                    tokenId: id,
                }),
                ChainEvent::NameTransferred { node: n, to: ALICE },
            ),
            (
                log_of(&BaseRegistrar::NameRegistered {
                    id,
                    owner: ALICE,
                    expires: U256::from(1_900_000_000u64),
                }),
                ChainEvent::NameRegistered { node: n },
            ),
            (
                log_of(&BaseRegistrar::NameRenewed {
                    id,
                    expires: U256::from(1_900_000_000u64),
                }),
                ChainEvent::NameRenewed { node: n },
            ),
            // DC's events index the name string: the topic is keccak256(name).
            (
                log_of(&DC::NameRented {
                    name: n,
                    renter: ALICE,
                    price: U256::from(5),
                }),
                ChainEvent::NameRegistered { node: n },
            ),
            (
                log_of(&DC::NameRenewed {
                    name: n,
                    renter: ALICE,
                    price: U256::from(5),
                }),
                ChainEvent::NameRenewed { node: n },
            ),
        ];
        assert_eq!(cases.len(), known_topics().len());
        for (log, expected) in cases {
            assert!(known_topics().contains(&log.data.topics()[0]));
            assert_eq!(decode_log(&log), Some(expected));
        }
    }

    #[test]
    fn dc_name_topic_is_the_node() {
        // What a real DC emits for `NameRented("fsociety", ...)`: the indexed
        // string's topic is keccak256 of its bytes, the EAS node.
        let topics = vec![
            DC::NameRented::SIGNATURE_HASH,
            alloy::primitives::keccak256("fsociety"),
            ALICE.into_word(),
        ];
        let data = U256::from(7).abi_encode();
        let log = alloy::primitives::Log {
            address: EMITTER,
            data: LogData::new(topics, data.into()).unwrap(),
        };
        assert_eq!(
            decode_log(&log),
            Some(ChainEvent::NameRegistered {
                node: node("fsociety")
            })
        );
    }

    #[test]
    fn other_logs_are_skipped() {
        // ERC-20 Transfer: same topic0, value in data, 3 topics.
        let erc20 = alloy::primitives::Log {
            address: EMITTER,
            data: LogData::new(
                vec![
                    BaseRegistrar::Transfer::SIGNATURE_HASH,
                    ALICE.into_word(),
                    ALICE.into_word(),
                ],
                U256::from(1).abi_encode().into(),
            )
            .unwrap(),
        };
        assert_eq!(decode_log(&erc20), None);
        // Unknown topic0, no topics at all.
        let unknown = alloy::primitives::Log {
            address: EMITTER,
            data: LogData::new(vec![B256::repeat_byte(1)], Bytes::new()).unwrap(),
        };
        assert_eq!(decode_log(&unknown), None);
        let anonymous = alloy::primitives::Log {
            address: EMITTER,
            data: LogData::new(vec![], Bytes::new()).unwrap(),
        };
        assert_eq!(decode_log(&anonymous), None);
        // Known event with truncated data.
        let mut short = log_of(&EAS::AliasActivated {
            node: B256::ZERO,
            aliasName: B256::ZERO,
            commitment: B256::ZERO,
        });
        short.data =
            LogData::new(short.data.topics().to_vec(), Bytes::from(vec![0u8; 16])).unwrap();
        assert_eq!(decode_log(&short), None);
        // A bool that is neither 0 nor 1 is not a MaintainerAccessToggled.
        let bad_bool = alloy::primitives::Log {
            address: EMITTER,
            data: LogData::new(
                vec![EAS::MaintainerAccessToggled::SIGNATURE_HASH, B256::ZERO],
                U256::from(2).abi_encode().into(),
            )
            .unwrap(),
        };
        assert_eq!(decode_log(&bad_bool), None);
    }

    #[test]
    fn eas_calls_decode_back() {
        let a = alias_hash("hello");
        let name = "fsociety".to_string();
        let cases = [
            (
                EAS::activateCall {
                    name: name.clone(),
                    aliasName: a,
                    commitment: B256::repeat_byte(9),
                    publicAlias: "hello".into(),
                }
                .abi_encode(),
                EasCall::Activate {
                    name: name.clone(),
                    alias: a,
                },
            ),
            (
                EAS::deactivateCall {
                    name: name.clone(),
                    aliasName: a,
                }
                .abi_encode(),
                EasCall::Deactivate {
                    name: name.clone(),
                    alias: a,
                },
            ),
            (
                EAS::deactivateAllCall { name: name.clone() }.abi_encode(),
                EasCall::DeactivateAll { name: name.clone() },
            ),
            (
                EAS::toggleMaintainerAccessCall { name: name.clone() }.abi_encode(),
                EasCall::ToggleMaintainer { name: name.clone() },
            ),
            (
                EAS::setPublicAliasesCall {
                    name: name.clone(),
                    aliases: vec!["a".into(), "b".into()],
                }
                .abi_encode(),
                EasCall::SetPublicAliases { name: name.clone() },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(decode_eas_call(&input), Some(expected));
        }
        // Other EAS functions, plain transfers, garbage, truncated input.
        let grant = EAS::grantRoleCall {
            role: MAINTAINER_ROLE,
            account: ALICE,
        }
        .abi_encode();
        assert_eq!(decode_eas_call(&grant), None);
        assert_eq!(decode_eas_call(&[]), None);
        assert_eq!(decode_eas_call(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]), None);
        let activate = EAS::activateCall {
            name,
            aliasName: a,
            commitment: B256::ZERO,
            publicAlias: String::new(),
        }
        .abi_encode();
        assert_eq!(decode_eas_call(&activate[..activate.len() - 8]), None);
    }

    #[test]
    fn state_reads_encode_and_decode() {
        let eas = EMITTER;
        let n = node("fsociety");
        let a = alias_hash("hello");
        let c = B256::repeat_byte(7);

        let read = StateRead::Commitment {
            eas,
            node: n,
            alias: a,
        };
        let (to, input) = read.encode();
        assert_eq!(to, eas);
        let call = EAS::getCommitmentCall::abi_decode(&input).unwrap();
        assert_eq!((call.node, call.aliasName), (n, a));
        let out = EAS::getCommitmentCall::abi_encode_returns(&c);
        assert_eq!(read.decode(&out), Ok(StateValue::Hash(c)));

        let read = StateRead::OwnerOf {
            dc: EMITTER,
            sld: "fsociety".into(),
        };
        let (_, input) = read.encode();
        assert_eq!(
            DC::ownerOfCall::abi_decode(&input).unwrap().name,
            "fsociety"
        );
        let out = DC::ownerOfCall::abi_encode_returns(&ALICE);
        assert_eq!(read.decode(&out), Ok(StateValue::Address(ALICE)));
        // An address word with high bits set is not an address.
        assert!(matches!(
            read.decode(B256::repeat_byte(0xff).as_slice()),
            Err(ChainError::Decode {
                what: "ownerOf",
                ..
            })
        ));

        let read = StateRead::NameExpires {
            dc: EMITTER,
            sld: "fsociety".into(),
        };
        let out = DC::nameExpiresCall::abi_encode_returns(&U256::from(1_900_000_000u64));
        assert_eq!(read.decode(&out), Ok(StateValue::Number(1_900_000_000)));
        let out = DC::nameExpiresCall::abi_encode_returns(&U256::MAX);
        assert_eq!(read.decode(&out), Ok(StateValue::Number(u64::MAX)));

        let read = StateRead::MaintainerAllowed { eas, node: n };
        let out = EAS::getAllowMaintainerAccessCall::abi_encode_returns(&true);
        assert_eq!(read.decode(&out), Ok(StateValue::Bool(true)));

        let read = StateRead::IsMaintainer {
            eas,
            account: ALICE,
        };
        let (_, input) = read.encode();
        let call = EAS::hasRoleCall::abi_decode(&input).unwrap();
        assert_eq!((call.role, call.account), (MAINTAINER_ROLE, ALICE));
        let out = EAS::hasRoleCall::abi_encode_returns(&false);
        assert_eq!(read.decode(&out), Ok(StateValue::Bool(false)));

        // No contract at the address: empty return data.
        assert!(matches!(
            read.decode(&[]),
            Err(ChainError::Decode { what: "hasRole", ref detail }) if detail.contains("no contract")
        ));
    }

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

    #[test]
    fn bad_urls_are_refused() {
        let timeout = Duration::from_secs(1);
        assert!(matches!(
            ChainClient::new("not a url", timeout),
            Err(ChainError::BadUrl { .. })
        ));
        let ws = ChainClient::new("ws://127.0.0.1:8546", timeout).unwrap_err();
        assert!(ws.to_string().contains("scheme \"ws\""), "{ws}");
        assert!(ChainClient::new("http://127.0.0.1:8545", timeout).is_ok());
    }

    /// A loopback port with nothing listening on it.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn rpc_down_is_unreachable() {
        let port = closed_port();
        let client =
            ChainClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let e = client.head().await.unwrap_err();
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
        let e = client.read_many(&reads, At::Latest).await.unwrap_err();
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
        let e = client.eas_calls(1, 100, EMITTER).await.unwrap_err();
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
            let client =
                ChainClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5))
                    .unwrap();
            assert_eq!(client.head().await.unwrap(), 16);
            let e = client.head().await.unwrap_err();
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
        let client = ChainClient::new(&format!("http://127.0.0.1:{port}"), timeout).unwrap();
        let started = std::time::Instant::now();
        let e = client.chain_id().await.unwrap_err();
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
        let client =
            ChainClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1)).unwrap();
        // No address: eth_getLogs would match every contract, so nothing is asked.
        assert_eq!(client.events(1, 10, &[]).await, Ok(vec![]));
        assert_eq!(client.events(10, 1, &[EMITTER]).await, Ok(vec![]));
        assert_eq!(client.eas_calls(10, 1, EMITTER).await, Ok(vec![]));
        assert_eq!(client.read_many(&[], At::Latest).await, Ok(vec![]));
    }

    /// Selectors of the EAS calls the watcher decodes, to aim the fuzzer at
    /// the decoders behind them rather than at "unknown selector".
    fn eas_selectors() -> Vec<[u8; 4]> {
        vec![
            EAS::activateCall::SELECTOR,
            EAS::deactivateCall::SELECTOR,
            EAS::deactivateAllCall::SELECTOR,
            EAS::toggleMaintainerAccessCall::SELECTOR,
            EAS::setPublicAliasesCall::SELECTOR,
        ]
    }

    proptest::proptest! {
        /// Anyone can send any calldata to the EAS address: the decoder
        /// answers None or a call, never panics.
        #[test]
        fn eas_calldata_never_panics(
            selector in proptest::sample::select(eas_selectors()),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut input = selector.to_vec();
            input.extend_from_slice(&body);
            let _ = decode_eas_call(&input);
            let _ = decode_eas_call(&raw);
        }

        /// Any contract can emit logs with our topics and any data.
        #[test]
        fn logs_never_panic(
            topic0 in proptest::sample::select(known_topics().to_vec()),
            topics in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 0..4),
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let mut all = vec![topic0];
            all.extend(topics.into_iter().map(B256::from));
            let log = alloy::primitives::Log {
                address: EMITTER,
                data: LogData::new_unchecked(all, data.into()),
            };
            let _ = decode_log(&log);
        }
    }
}
