//! A local EVM chain for the chain tests: the pinned `anvil` binary of
//! `tools/` as a child process on 127.0.0.1 (killed on drop, restartable on
//! the same port with its state), and [`Chain`], the test registry and EAS
//! contracts of `contracts/` deployed on it from `abi/*.bin`, with helpers
//! that do what the EAS frontend and the .country registry do (register,
//! transfer, renew, sign and activate an alias, deactivate...) and control
//! the chain (mine, time travel, snapshot/revert).
//!
//! ```ignore
//! let chain = Chain::start().await;
//! let owner = dev_signer(1);
//! chain.register("fsociety", owner.address(), YEAR).await.unwrap();
//! let a = chain.activate(&owner, "fsociety", "hello", "mr.robot@gmail.com").await.unwrap();
//! assert_eq!(chain.commitment("fsociety", "hello").await, a.commitment);
//! ```
//!
//! Every wait is bounded ([`RPC_TIMEOUT`], [`START_TIMEOUT`]).

use super::free_port;
use std::fs::File;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, TxHash, U256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolConstructor, SolEvent};

/// Bindings generated from the committed ABIs (`scripts/build-contracts.sh`).
pub mod bindings {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        EAS,
        "abi/EAS.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        EASWithoutEvents,
        "abi/EASWithoutEvents.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        TestRegistry,
        "abi/TestRegistry.json"
    );
}
pub use bindings::{EAS, TestRegistry};

/// Creation bytecode (hex) of the contracts, as committed in `abi/`.
pub const EAS_BIN: &str = include_str!("../../abi/EAS.bin");
pub const EAS_WITHOUT_EVENTS_BIN: &str = include_str!("../../abi/EASWithoutEvents.bin");
pub const TEST_REGISTRY_BIN: &str = include_str!("../../abi/TestRegistry.bin");

/// Harmony shard 0, the chain EAS is deployed on (the default chain id here).
pub const HARMONY_CHAIN_ID: u64 = 1_666_600_000;
/// Seconds in a (365-day) year, a convenient registration duration.
pub const YEAR: u64 = 365 * 24 * 3600;
/// The mnemonic anvil is started with (anvil's well-known default).
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
/// Private keys of the first accounts of [`DEV_MNEMONIC`] (public test keys;
/// each starts with 10,000 ETH). The harness checks them against
/// `eth_accounts` at start.
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Bound of anvil's start (until it answers `eth_chainId`) and stop.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound of one JSON-RPC call, and of waiting for a receipt.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(15);

/// Dev account `i` (0 deploys the contracts and is their admin and maintainer).
pub fn dev_signer(i: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_str(DEV_KEYS[i]).expect("dev key")
}

// ---------------------------------------------------------------------------
// EAS arithmetic (DESIGN §2), independent of the relay's own code

/// `node = keccak256(utf8(sld))`.
pub fn node(sld: &str) -> B256 {
    keccak256(sld.as_bytes())
}

/// `aliasName = keccak256(utf8(alias))`.
pub fn alias_name(alias: &str) -> B256 {
    keccak256(alias.as_bytes())
}

/// The text the owner signs (EIP-191 personal_sign) to authorize a forward.
pub fn authorization_message(alias: &str, sld: &str, forward: &str) -> String {
    format!(
        "You are about to authorize forwarding all emails sent to [{alias}@{sld}.country] to [{forward}] instead"
    )
}

/// `commitment = keccak256(utf8(alias) ‖ "|" ‖ utf8(forward) ‖ "|" ‖ sig65)`.
pub fn commitment_of(alias: &str, forward: &str, sig65: &[u8]) -> B256 {
    let mut buf = Vec::with_capacity(alias.len() + forward.len() + 2 + sig65.len());
    buf.extend_from_slice(alias.as_bytes());
    buf.push(b'|');
    buf.extend_from_slice(forward.as_bytes());
    buf.push(b'|');
    buf.extend_from_slice(sig65);
    keccak256(buf)
}

/// EIP-191 personal_sign of `message`: 65 bytes r‖s‖v with v = 27 or 28,
/// what a wallet (MetaMask) returns.
pub fn personal_sign(signer: &PrivateKeySigner, message: &str) -> [u8; 65] {
    signer
        .sign_message_sync(message.as_bytes())
        .expect("sign message")
        .as_bytes()
}

/// What the EAS frontend produces for one alias: the signed text, the
/// signature (send it to the relay's `/activate` as `signature_hex`) and the
/// commitment it puts on chain.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub sld: String,
    pub alias: String,
    pub forward: String,
    pub message: String,
    pub signature: Bytes,
    /// `0x` + 130 hex digits.
    pub signature_hex: String,
    pub commitment: B256,
}

/// Signs the authorization text of `alias@sld.country → forward` with `signer`.
pub fn authorize(
    signer: &PrivateKeySigner,
    sld: &str,
    alias: &str,
    forward: &str,
) -> Authorization {
    let message = authorization_message(alias, sld, forward);
    let sig = personal_sign(signer, &message);
    Authorization {
        sld: sld.to_string(),
        alias: alias.to_string(),
        forward: forward.to_string(),
        message,
        signature: Bytes::copy_from_slice(&sig),
        signature_hex: format!("0x{}", hex(&sig)),
        commitment: commitment_of(alias, forward, &sig),
    }
}

/// An [`Authorization`] sent on chain with `activate`.
#[derive(Debug, Clone)]
pub struct Activation {
    pub auth: Authorization,
    pub receipt: TransactionReceipt,
}

impl std::ops::Deref for Activation {
    type Target = Authorization;
    fn deref(&self) -> &Authorization {
        &self.auth
    }
}

/// The events of type `E` in a receipt (any emitting contract).
pub fn events<E: SolEvent>(receipt: &TransactionReceipt) -> Vec<E> {
    receipt
        .logs()
        .iter()
        .filter(|log| log.topic0() == Some(&E::SIGNATURE_HASH))
        .map(|log| E::decode_log_data(log.data()).expect("decode event"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    alloy::primitives::hex::encode(bytes)
}

fn unhex(s: &str) -> Vec<u8> {
    alloy::primitives::hex::decode(s.trim()).expect("hex")
}

// ---------------------------------------------------------------------------
// The anvil process

/// The repository root (where `tools/` and `abi/` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The anvil binary: `$EAS_ANVIL` if set, else the one of the platform
/// package `@foundry-rs/anvil-<os>-<arch>` in `tools/node_modules` (installed
/// by `tools/install.sh`, which this runs when it is missing).
pub fn anvil_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EAS_ANVIL") {
        return PathBuf::from(path);
    }
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let root = repo_root();
    let path = root
        .join("tools/node_modules/@foundry-rs")
        .join(format!("anvil-{os}-{arch}"))
        .join("bin/anvil");
    if !path.exists() {
        let status = Command::new(root.join("tools/install.sh"))
            .status()
            .expect("run tools/install.sh");
        assert!(status.success(), "tools/install.sh failed: {status}");
    }
    assert!(
        path.exists(),
        "no anvil at {} (tools/package.json pins @foundry-rs/anvil-linux-amd64; \
         on another platform set EAS_ANVIL to an anvil 1.x binary)",
        path.display()
    );
    path
}

/// How anvil makes blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mining {
    /// A block per transaction, at once (anvil's default).
    Auto,
    /// Only on `evm_mine`/`anvil_mine` ([`Chain::mine`]); `--no-mining`.
    Manual,
    /// A block every N seconds (`--block-time N`).
    Interval(u64),
}

#[derive(Debug, Clone)]
pub struct AnvilOptions {
    pub chain_id: u64,
    pub mining: Mining,
    /// Genesis block timestamp (`--timestamp`); default: now.
    pub genesis_timestamp: Option<u64>,
    /// More command-line arguments.
    pub extra_args: Vec<String>,
}

impl Default for AnvilOptions {
    fn default() -> Self {
        AnvilOptions {
            chain_id: HARMONY_CHAIN_ID,
            mining: Mining::Auto,
            genesis_timestamp: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running anvil. Killed (SIGKILL) on drop; its log is printed when the
/// test panicked.
pub struct Anvil {
    options: AnvilOptions,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    state: PathBuf,
    log: PathBuf,
    starts: u32,
    /// How long the last start took until the RPC answered.
    pub startup: Duration,
}

impl Anvil {
    /// Starts anvil with the default options (chain id 1666600000, automine).
    pub async fn start() -> Anvil {
        Anvil::start_with(AnvilOptions::default()).await
    }

    pub async fn start_with(options: AnvilOptions) -> Anvil {
        let binary = anvil_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state.json");
        let log = dir.path().join("anvil.log");
        let mut anvil = Anvil {
            options,
            port: 0,
            child: None,
            dir,
            state,
            log,
            starts: 0,
            startup: Duration::ZERO,
        };
        // A free port can be taken between probing and anvil's bind: retry.
        let mut last = String::new();
        for _ in 0..5 {
            anvil.port = free_port();
            match anvil.spawn(&binary).await {
                Ok(()) => return anvil,
                Err(e) => last = e,
            }
        }
        panic!("anvil did not start: {last}");
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--chain-id",
            &self.options.chain_id.to_string(),
            "--mnemonic",
            DEV_MNEMONIC,
            "--accounts",
            &DEV_KEYS.len().to_string(),
            // Loads the file when it exists, dumps to it on SIGTERM.
            "--state",
            &self.state.to_string_lossy(),
            // eth_call at old blocks keeps working after a restart.
            "--preserve-historical-states",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        match self.options.mining {
            Mining::Auto => {}
            Mining::Manual => args.push("--no-mining".into()),
            Mining::Interval(secs) => {
                args.push("--block-time".into());
                args.push(secs.to_string());
            }
        }
        args.extend(self.options.extra_args.iter().cloned());
        if let Some(ts) = self.options.genesis_timestamp {
            args.push("--timestamp".into());
            args.push(ts.to_string());
        }
        args
    }

    async fn spawn(&mut self, binary: &Path) -> Result<(), String> {
        let started = Instant::now();
        self.starts += 1;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("anvil log");
        let mut child = Command::new(binary)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
        let probe = ProviderBuilder::new().connect_http(self.endpoint());
        loop {
            if let Some(status) = child.try_wait().expect("try_wait anvil") {
                return Err(format!("anvil exited ({status}): {}", self.log_tail()));
            }
            if let Ok(Ok(id)) =
                tokio::time::timeout(Duration::from_millis(500), probe.get_chain_id()).await
            {
                assert_eq!(id, self.options.chain_id, "anvil chain id");
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer within {START_TIMEOUT:?}: {}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
        self.startup = started.elapsed();
        // The keys the helpers use are anvil's accounts.
        let accounts = tokio::time::timeout(RPC_TIMEOUT, probe.get_accounts())
            .await
            .expect("eth_accounts timed out")
            .expect("eth_accounts");
        for (i, account) in accounts.iter().enumerate() {
            assert_eq!(*account, dev_signer(i).address(), "dev account {i}");
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT` (the same across restarts).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// [`Anvil::url`] as the URL type of alloy's HTTP transport.
    pub fn endpoint(&self) -> alloy::transports::http::reqwest::Url {
        self.url().parse().expect("anvil url")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn chain_id(&self) -> u64 {
        self.options.chain_id
    }

    pub fn mining(&self) -> Mining {
        self.options.mining
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("try_wait anvil").is_none(),
            None => false,
        }
    }

    /// Stops anvil gracefully (SIGTERM): it dumps its state (blocks,
    /// transactions, accounts, historical states) to its state file. The
    /// chain is unreachable until [`Anvil::resume`].
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("sh")
            .args(["-c", "kill -TERM \"$1\"", "sh", &child.id().to_string()])
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -TERM anvil: {status}");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if child.try_wait().expect("try_wait anvil").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("anvil did not stop within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(self.state.exists(), "anvil wrote no state file on SIGTERM");
    }

    /// Starts anvil again on the same port from its dumped state.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "anvil is running");
        let binary = anvil_binary();
        if let Err(e) = self.spawn(&binary).await {
            panic!("anvil did not restart on port {}: {e}", self.port);
        }
    }

    /// [`Anvil::stop`] then [`Anvil::resume`]: same port, same chain.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.resume().await;
    }

    /// Kills anvil at once (SIGKILL, no state dump).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The state file anvil loads at start and dumps at [`Anvil::stop`].
    pub fn state_file(&self) -> &Path {
        &self.state
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// anvil's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let start = log.len().saturating_sub(4000);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(0);
        log[start..].to_string()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- anvil log (port {}, {} starts) ----\n{}",
                self.port,
                self.starts,
                self.log_tail()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The contracts on the chain

#[derive(Debug, Clone)]
pub struct ChainOptions {
    pub anvil: AnvilOptions,
    /// Deploy `EAS` (emits alias events) or `EASWithoutEvents` (like the
    /// deployed contract).
    pub eas_events: bool,
    pub max_num_alias: u64,
}

impl Default for ChainOptions {
    fn default() -> Self {
        ChainOptions {
            anvil: AnvilOptions::default(),
            eas_events: true,
            max_num_alias: 10,
        }
    }
}

/// anvil with a `TestRegistry` (the DC) and an EAS deployed by
/// [`dev_signer`]`(0)`, which holds DEFAULT_ADMIN_ROLE and MAINTAINER_ROLE.
pub struct Chain {
    pub anvil: Anvil,
    pub registry: Address,
    pub eas: Address,
    pub eas_events: bool,
    /// The deployer: admin and maintainer of the EAS.
    pub admin: PrivateKeySigner,
    manual: AtomicBool,
    /// How long deploying both contracts took.
    pub deploy_time: Duration,
}

type TxResult = Result<TransactionReceipt, String>;

impl Chain {
    /// anvil (chain id 1666600000, automine) with `TestRegistry` and `EAS`
    /// (with events, 10 aliases per name).
    pub async fn start() -> Chain {
        Chain::start_with(ChainOptions::default()).await
    }

    pub async fn start_with(options: ChainOptions) -> Chain {
        let anvil = Anvil::start_with(options.anvil.clone()).await;
        let manual = options.anvil.mining == Mining::Manual;
        let mut chain = Chain {
            anvil,
            registry: Address::ZERO,
            eas: Address::ZERO,
            eas_events: options.eas_events,
            admin: dev_signer(0),
            manual: AtomicBool::new(manual),
            deploy_time: Duration::ZERO,
        };
        let started = Instant::now();
        let admin = chain.admin.clone();
        chain.registry = chain.deploy_registry(&admin).await;
        chain.eas = chain
            .deploy_eas(
                &admin,
                chain.registry,
                options.max_num_alias,
                options.eas_events,
            )
            .await;
        chain.deploy_time = started.elapsed();
        chain
    }

    /// A provider without a wallet (reads, raw RPC).
    pub fn provider(&self) -> DynProvider {
        ProviderBuilder::new()
            .connect_http(self.anvil.endpoint())
            .erased()
    }

    /// A provider that signs transactions with `signer` (nonce, gas and
    /// chain id filled from the node at each send).
    pub fn provider_for(&self, signer: &PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .wallet(EthereumWallet::new(signer.clone()))
            .connect_http(self.anvil.endpoint())
            .erased()
    }

    /// A JSON-RPC call with a bounded wait.
    pub async fn rpc<R>(&self, method: &'static str, params: serde_json::Value) -> R
    where
        R: serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + Unpin + 'static,
    {
        tokio::time::timeout(
            RPC_TIMEOUT,
            self.provider().raw_request::<_, R>(method.into(), params),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} timed out"))
        .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// A new account with 100 ETH (`anvil_setBalance`).
    pub async fn funded_account(&self) -> PrivateKeySigner {
        let signer = PrivateKeySigner::random();
        let wei = U256::from(100u64) * U256::from(10u64).pow(U256::from(18u64));
        let _: serde_json::Value = self
            .rpc(
                "anvil_setBalance",
                serde_json::json!([signer.address(), wei]),
            )
            .await;
        signer
    }

    // ---- transactions ----

    /// Sends a transaction from `from` and returns its hash without waiting
    /// for a block. An `Err` is the node's refusal (e.g. the revert reason of
    /// the gas estimate: "execution reverted: EAS: not owner or maintainer").
    pub async fn send_no_wait(
        &self,
        from: &PrivateKeySigner,
        tx: TransactionRequest,
    ) -> Result<TxHash, String> {
        let provider = self.provider_for(from);
        let pending = tokio::time::timeout(RPC_TIMEOUT, provider.send_transaction(tx))
            .await
            .map_err(|_| "send_transaction timed out".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(*pending.tx_hash())
    }

    /// Sends a transaction and waits for its receipt (with manual mining it
    /// mines one block first). A receipt with status 0 is an `Err` too.
    pub async fn send(&self, from: &PrivateKeySigner, tx: TransactionRequest) -> TxResult {
        let hash = self.send_no_wait(from, tx).await?;
        if self.manual.load(Ordering::SeqCst) {
            self.mine(1).await;
        }
        let receipt = self.receipt(hash).await;
        if receipt.status() {
            Ok(receipt)
        } else {
            Err(format!("transaction {hash} reverted"))
        }
    }

    /// Calls `to` with `data` from `from`.
    pub async fn call_tx(
        &self,
        from: &PrivateKeySigner,
        to: Address,
        data: impl Into<Bytes>,
    ) -> TxResult {
        self.send(
            from,
            TransactionRequest::default().with_to(to).with_input(data),
        )
        .await
    }

    /// The receipt of a mined transaction (bounded wait).
    pub async fn receipt(&self, hash: TxHash) -> TransactionReceipt {
        let provider = self.provider();
        let deadline = Instant::now() + RPC_TIMEOUT;
        loop {
            if let Ok(Ok(Some(receipt))) =
                tokio::time::timeout(RPC_TIMEOUT, provider.get_transaction_receipt(hash)).await
            {
                return receipt;
            }
            assert!(
                Instant::now() < deadline,
                "no receipt for {hash} within {RPC_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Deploys `bin_hex` with ABI-encoded constructor arguments.
    pub async fn deploy(
        &self,
        deployer: &PrivateKeySigner,
        bin_hex: &str,
        args: Vec<u8>,
    ) -> Address {
        let mut code = unhex(bin_hex);
        code.extend_from_slice(&args);
        let receipt = self
            .send(
                deployer,
                TransactionRequest::default().with_deploy_code(code),
            )
            .await
            .expect("deploy");
        receipt.contract_address.expect("contract address")
    }

    pub async fn deploy_registry(&self, deployer: &PrivateKeySigner) -> Address {
        self.deploy(deployer, TEST_REGISTRY_BIN, Vec::new()).await
    }

    /// Deploys `EAS` (`events`) or `EASWithoutEvents` over the registry `dc`.
    pub async fn deploy_eas(
        &self,
        deployer: &PrivateKeySigner,
        dc: Address,
        max_num_alias: u64,
        events: bool,
    ) -> Address {
        let args = EAS::constructorCall {
            _dc: dc,
            _maxNumAlias: U256::from(max_num_alias),
        }
        .abi_encode();
        let bin = if events {
            EAS_BIN
        } else {
            EAS_WITHOUT_EVENTS_BIN
        };
        self.deploy(deployer, bin, args).await
    }

    // ---- the registry (DC) ----

    /// Registers `sld` for `owner` for `duration` seconds (sent by the admin;
    /// the name must be new or expired).
    pub async fn register(&self, sld: &str, owner: Address, duration: u64) -> TxResult {
        let data = TestRegistry::registerCall {
            name: sld.into(),
            owner,
            duration: U256::from(duration),
        }
        .abi_encode();
        self.call_tx(&self.admin, self.registry, data).await
    }

    /// The owner gives `sld` to `to`.
    pub async fn transfer(&self, owner: &PrivateKeySigner, sld: &str, to: Address) -> TxResult {
        let data = TestRegistry::transferCall {
            name: sld.into(),
            to,
        }
        .abi_encode();
        self.call_tx(owner, self.registry, data).await
    }

    /// Extends `sld` by `duration` seconds (sent by the admin).
    pub async fn renew(&self, sld: &str, duration: u64) -> TxResult {
        let data = TestRegistry::renewCall {
            name: sld.into(),
            duration: U256::from(duration),
        }
        .abi_encode();
        self.call_tx(&self.admin, self.registry, data).await
    }

    pub async fn owner_of(&self, sld: &str) -> Address {
        let registry = TestRegistry::new(self.registry, self.provider());
        registry.ownerOf(sld.into()).call().await.expect("ownerOf")
    }

    pub async fn name_expires(&self, sld: &str) -> u64 {
        let registry = TestRegistry::new(self.registry, self.provider());
        let expires = registry
            .nameExpires(sld.into())
            .call()
            .await
            .expect("nameExpires");
        expires.to::<u64>()
    }

    // ---- EAS ----

    /// What the EAS frontend does: `owner` personal_signs the authorization
    /// text, the commitment is computed from the signature, and `owner` sends
    /// `activate(sld, keccak(alias), commitment, "")`.
    pub async fn activate(
        &self,
        owner: &PrivateKeySigner,
        sld: &str,
        alias: &str,
        forward: &str,
    ) -> Result<Activation, String> {
        self.activate_as(owner, owner, sld, alias, forward, "")
            .await
    }

    /// `signer` signs the text, `sender` (the owner or a maintainer) sends
    /// `activate` with `public_alias`.
    pub async fn activate_as(
        &self,
        sender: &PrivateKeySigner,
        signer: &PrivateKeySigner,
        sld: &str,
        alias: &str,
        forward: &str,
        public_alias: &str,
    ) -> Result<Activation, String> {
        let auth = authorize(signer, sld, alias, forward);
        let receipt = self
            .activate_raw(
                sender,
                sld,
                alias_name(alias),
                auth.commitment,
                public_alias,
            )
            .await?;
        Ok(Activation { auth, receipt })
    }

    /// The calldata of `activate`.
    pub fn activate_calldata(
        sld: &str,
        alias_name: B256,
        commitment: B256,
        public_alias: &str,
    ) -> Vec<u8> {
        EAS::activateCall {
            name: sld.into(),
            aliasName: alias_name,
            commitment,
            publicAlias: public_alias.into(),
        }
        .abi_encode()
    }

    /// `activate` with any commitment.
    pub async fn activate_raw(
        &self,
        sender: &PrivateKeySigner,
        sld: &str,
        alias_name: B256,
        commitment: B256,
        public_alias: &str,
    ) -> TxResult {
        let data = Chain::activate_calldata(sld, alias_name, commitment, public_alias);
        self.call_tx(sender, self.eas, data).await
    }

    pub async fn deactivate(&self, sender: &PrivateKeySigner, sld: &str, alias: &str) -> TxResult {
        let data = EAS::deactivateCall {
            name: sld.into(),
            aliasName: alias_name(alias),
        }
        .abi_encode();
        self.call_tx(sender, self.eas, data).await
    }

    pub async fn deactivate_all(&self, sender: &PrivateKeySigner, sld: &str) -> TxResult {
        let data = EAS::deactivateAllCall { name: sld.into() }.abi_encode();
        self.call_tx(sender, self.eas, data).await
    }

    /// The owner flips whether maintainers may manage the name's aliases.
    pub async fn toggle_maintainer_access(&self, owner: &PrivateKeySigner, sld: &str) -> TxResult {
        let data = EAS::toggleMaintainerAccessCall { name: sld.into() }.abi_encode();
        self.call_tx(owner, self.eas, data).await
    }

    pub async fn set_public_aliases(
        &self,
        sender: &PrivateKeySigner,
        sld: &str,
        aliases: &[&str],
    ) -> TxResult {
        let data = EAS::setPublicAliasesCall {
            name: sld.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
        .abi_encode();
        self.call_tx(sender, self.eas, data).await
    }

    /// The admin grants MAINTAINER_ROLE to `account`.
    pub async fn grant_maintainer(&self, account: Address) -> TxResult {
        let data = EAS::grantRoleCall {
            role: maintainer_role(),
            account,
        }
        .abi_encode();
        self.call_tx(&self.admin, self.eas, data).await
    }

    /// The admin revokes MAINTAINER_ROLE from `account`.
    pub async fn revoke_maintainer(&self, account: Address) -> TxResult {
        let data = EAS::revokeRoleCall {
            role: maintainer_role(),
            account,
        }
        .abi_encode();
        self.call_tx(&self.admin, self.eas, data).await
    }

    fn eas_view(&self) -> EAS::EASInstance<DynProvider> {
        EAS::new(self.eas, self.provider())
    }

    /// `getCommitment(node(sld), keccak(alias))` at the latest block.
    pub async fn commitment(&self, sld: &str, alias: &str) -> B256 {
        self.eas_view()
            .getCommitment(node(sld), alias_name(alias))
            .call()
            .await
            .expect("getCommitment")
    }

    /// `getCommitment` at block `number` (needs the historical state).
    pub async fn commitment_at(&self, sld: &str, alias: &str, number: u64) -> B256 {
        self.eas_view()
            .getCommitment(node(sld), alias_name(alias))
            .block(number.into())
            .call()
            .await
            .expect("getCommitment at block")
    }

    pub async fn num_alias(&self, sld: &str) -> u64 {
        let n = self
            .eas_view()
            .getNumAlias(node(sld))
            .call()
            .await
            .expect("getNumAlias");
        n.to::<u64>()
    }

    pub async fn allow_maintainer_access(&self, sld: &str) -> bool {
        self.eas_view()
            .getAllowMaintainerAccess(node(sld))
            .call()
            .await
            .expect("getAllowMaintainerAccess")
    }

    pub async fn public_aliases(&self, sld: &str) -> Vec<String> {
        self.eas_view()
            .getPublicAliases(node(sld))
            .call()
            .await
            .expect("getPublicAliases")
    }

    pub async fn is_maintainer(&self, account: Address) -> bool {
        self.eas_view()
            .hasRole(maintainer_role(), account)
            .call()
            .await
            .expect("hasRole")
    }

    /// The contract's own `verify` (reverts → `Err` with the reason).
    pub async fn verify(&self, auth: &Authorization) -> Result<(), String> {
        let msg_hash = alloy::primitives::eip191_hash_message(auth.message.as_bytes());
        self.eas_view()
            .verify(
                auth.sld.clone(),
                msg_hash,
                auth.alias.clone(),
                auth.forward.clone(),
                auth.signature.clone(),
            )
            .call()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    // ---- chain control ----

    /// Mines `n` blocks at once (`anvil_mine`).
    pub async fn mine(&self, n: u64) {
        let _: serde_json::Value = self.rpc("anvil_mine", serde_json::json!([n])).await;
    }

    /// Moves time forward by `secs` and mines a block carrying the new time.
    pub async fn increase_time(&self, secs: u64) {
        let _: serde_json::Value = self
            .rpc("evm_increaseTime", serde_json::json!([secs]))
            .await;
        self.mine(1).await;
    }

    /// The next block's timestamp (`evm_setNextBlockTimestamp`).
    pub async fn set_next_block_timestamp(&self, ts: u64) {
        let _: serde_json::Value = self
            .rpc("evm_setNextBlockTimestamp", serde_json::json!([ts]))
            .await;
    }

    /// Turns automine on or off (`evm_setAutomine`); [`Chain::send`] mines a
    /// block itself while it is off. (A restarted anvil is back to the
    /// [`Mining`] it was started with.)
    pub async fn set_automine(&self, on: bool) {
        let _: serde_json::Value = self.rpc("evm_setAutomine", serde_json::json!([on])).await;
        self.manual.store(!on, Ordering::SeqCst);
    }

    /// `evm_snapshot`: an id for [`Chain::revert`].
    pub async fn snapshot(&self) -> U256 {
        self.rpc("evm_snapshot", serde_json::json!([])).await
    }

    /// `evm_revert` to a snapshot (consumed); blocks after it are gone, so
    /// the next blocks at those heights have other hashes (a reorg).
    pub async fn revert(&self, id: U256) -> bool {
        self.rpc("evm_revert", serde_json::json!([id])).await
    }

    pub async fn block_number(&self) -> u64 {
        tokio::time::timeout(RPC_TIMEOUT, self.provider().get_block_number())
            .await
            .expect("eth_blockNumber timed out")
            .expect("eth_blockNumber")
    }

    /// (number, hash, timestamp) of the latest block.
    pub async fn latest_block(&self) -> (u64, B256, u64) {
        let block = tokio::time::timeout(
            RPC_TIMEOUT,
            self.provider()
                .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest),
        )
        .await
        .expect("eth_getBlockByNumber timed out")
        .expect("eth_getBlockByNumber")
        .expect("latest block");
        (
            block.header.number,
            block.header.hash,
            block.header.timestamp,
        )
    }

    /// The hash of block `number`, if it exists.
    pub async fn block_hash(&self, number: u64) -> Option<B256> {
        tokio::time::timeout(
            RPC_TIMEOUT,
            self.provider().get_block_by_number(number.into()),
        )
        .await
        .expect("eth_getBlockByNumber timed out")
        .expect("eth_getBlockByNumber")
        .map(|b| b.header.hash)
    }

    /// The latest block's timestamp (the chain's "now").
    pub async fn now(&self) -> u64 {
        self.latest_block().await.2
    }
}

/// `keccak256("MAINTAINER_ROLE")`.
pub fn maintainer_role() -> B256 {
    keccak256("MAINTAINER_ROLE")
}
