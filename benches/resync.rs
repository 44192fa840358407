//! `eas-relay resync` of many activations on a local chain: anvil with the
//! project's contracts, 100,000 `activate` transactions (1,000 names of 100
//! aliases; `cargo bench`, `EAS_BENCH_ACTIVATIONS` overrides; 500 when
//! `cargo test` runs it as a smoke test), the relay's store holding the
//! matching reveals, then the real binary re-reading history from block 1
//! and verifying every alias, timed. Run for the EAS contract with events
//! and for the deployed kind without (changes found in calldata). The
//! target is under 60 s for 100,000.

#[path = "../tests/common/anvil.rs"]
#[allow(dead_code)]
mod anvil;

use alloy::consensus::{SignableTransaction, TxEnvelope, TxLegacy};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, TxKind, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use anvil::{AnvilOptions, Chain, ChainOptions, Mining, YEAR, alias_name, commitment_of};
use eas_relay::store::Store;
use eas_relay::store::{Activated, ChainBinding, NameState, Reveal};
use std::process::Command;
use std::time::{Duration, Instant};

const ALIASES_PER_NAME: usize = 100;
/// Transactions per JSON-RPC batch of eth_sendRawTransaction.
const SEND_BATCH: usize = 500;
/// Transactions sent before mining them.
const WINDOW: usize = 2_000;

fn sld(i: usize) -> String {
    format!("bench{}", i / ALIASES_PER_NAME)
}

fn alias(i: usize) -> String {
    format!("a{i}")
}

fn forward(i: usize) -> String {
    format!("user{i}@dest.example")
}

/// The signature bytes of reveal `i` (the watcher checks commitments and
/// ownership, not signatures: those are checked once, at /activate).
fn signature(i: usize) -> [u8; 65] {
    let mut sig = [0x11u8; 65];
    sig[..8].copy_from_slice(&(i as u64).to_be_bytes());
    sig[64] = 27;
    sig
}

fn hex(bytes: &[u8]) -> String {
    format!("0x{}", alloy::primitives::hex::encode(bytes))
}

/// Sends `calls` (to, calldata) from `from`, signed here with consecutive
/// nonces, in JSON-RPC batches; returns the next nonce.
async fn send_all(
    chain: &Chain,
    from: &PrivateKeySigner,
    mut nonce: u64,
    calls: &[(Address, Vec<u8>)],
) -> u64 {
    let http = alloy::transports::http::reqwest::Client::new();
    for chunk in calls.chunks(SEND_BATCH) {
        let batch: Vec<serde_json::Value> = chunk
            .iter()
            .map(|(to, data)| {
                let mut tx = TxLegacy {
                    chain_id: Some(chain.anvil.chain_id()),
                    nonce,
                    gas_price: 2_000_000_000,
                    gas_limit: 200_000,
                    to: TxKind::Call(*to),
                    value: U256::ZERO,
                    input: data.clone().into(),
                };
                nonce += 1;
                let sig = from.sign_transaction_sync(&mut tx).expect("sign");
                let raw = TxEnvelope::from(tx.into_signed(sig)).encoded_2718();
                serde_json::json!({
                    "jsonrpc": "2.0", "id": nonce, "method": "eth_sendRawTransaction",
                    "params": [hex(&raw)],
                })
            })
            .collect();
        let answers: Vec<serde_json::Value> = http
            .post(chain.anvil.url())
            .json(&batch)
            .send()
            .await
            .expect("send batch")
            .json()
            .await
            .expect("batch answer");
        for a in &answers {
            assert!(a.get("error").is_none(), "refused: {a}");
        }
    }
    nonce
}

/// Mines until every transaction of `from` up to `nonce` is in a block.
async fn mine_until_included(chain: &Chain, from: Address, nonce: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        chain.mine(1).await;
        let mined: alloy::primitives::U64 = chain
            .rpc(
                "eth_getTransactionCount",
                serde_json::json!([from, "latest"]),
            )
            .await;
        if mined.to::<u64>() >= nonce {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "transactions not mined in 10 min"
        );
    }
}

async fn run(n: usize, eas_events: bool) {
    let started = Instant::now();
    let chain = Chain::start_with(ChainOptions {
        anvil: AnvilOptions {
            mining: Mining::Manual,
            // Full blocks raise an EIP-1559 base fee 12.5% each; from zero
            // it grows by one wei per block instead.
            extra_args: vec!["--base-fee".into(), "0".into()],
            ..AnvilOptions::default()
        },
        eas_events,
        max_num_alias: ALIASES_PER_NAME as u64,
    })
    .await;
    let owner = anvil::dev_signer(1);
    let names = n.div_ceil(ALIASES_PER_NAME);
    let admin = chain.admin.clone();
    let mut nonce: alloy::primitives::U64 = chain
        .rpc(
            "eth_getTransactionCount",
            serde_json::json!([admin.address(), "latest"]),
        )
        .await;
    let registrations: Vec<(Address, Vec<u8>)> = (0..names)
        .map(|k| {
            let data = anvil::TestRegistry::registerCall {
                name: sld(k * ALIASES_PER_NAME),
                owner: owner.address(),
                duration: U256::from(YEAR),
            }
            .abi_encode();
            (chain.registry, data)
        })
        .collect();
    // The admin holds MAINTAINER_ROLE: it sends the activations the owner
    // signed (as the EAS operator's frontend may).
    let activations: Vec<(Address, Vec<u8>)> = (0..n)
        .map(|i| {
            let commitment = commitment_of(&alias(i), &forward(i), &signature(i));
            let data = Chain::activate_calldata(&sld(i), alias_name(&alias(i)), commitment, "");
            (chain.eas, data)
        })
        .collect();
    // In windows: anvil slows down with a very large pending pool.
    let mut next = nonce.to::<u64>();
    for window in registrations
        .chunks(WINDOW)
        .chain(activations.chunks(WINDOW))
    {
        next = send_all(&chain, &admin, next, window).await;
        mine_until_included(&chain, admin.address(), next).await;
    }
    nonce = alloy::primitives::U64::from(next);
    // Past the relay's confirmations (2 by default).
    chain.mine(2).await;
    let head = chain.block_number().await;
    eprintln!(
        "chain: {names} names, {n} activations, {} transactions, head {head}, built in {:.1} s",
        nonce,
        started.elapsed().as_secs_f64()
    );
    // Every activation landed.
    assert_eq!(
        chain.num_alias(&sld(n - 1)).await as usize,
        (n - 1) % ALIASES_PER_NAME + 1
    );

    // The relay's store holds the reveals (as /activate would have left them).
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    {
        let store = Store::open(&data.join("eas-relay.redb")).expect("store");
        let owner_hex = hex(owner.address().as_slice());
        let items: Vec<Activated> = (0..n)
            .map(|i| {
                let commitment =
                    hex(commitment_of(&alias(i), &forward(i), &signature(i)).as_slice());
                Activated {
                    domain: format!("{}.country", sld(i)),
                    local: alias(i),
                    node: anvil::node(&sld(i)).0,
                    alias_hash: alias_name(&alias(i)).0,
                    binding: ChainBinding {
                        tld: "country".into(),
                        sld: sld(i),
                        alias: alias(i),
                        commitment: commitment.clone(),
                        // Not verified yet: resync must find it on chain.
                        observed: hex(&[0; 32]),
                        signer: owner_hex.clone(),
                        checked_block: 0,
                    },
                    reveal: Reveal {
                        forward: forward(i),
                        signature: hex(&signature(i)),
                    },
                    name: NameState {
                        tld: "country".into(),
                        sld: sld(i),
                        owner: owner_hex.clone(),
                        expires: 0,
                        maintainer_allowed: true,
                        checked_block: 0,
                    },
                }
            })
            .collect();
        for chunk in items.chunks(10_000) {
            store.chain_activate_many(chunk).expect("populate");
        }
    }
    let config = dir.path().join("eas-relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[http]
listen = "127.0.0.1:{port}"
[chain]
enabled = true
rpc_url = "{url}"
chain_id = {id}
[[chain.registries]]
tld = "country"
eas = "{eas:#x}"
dc = "{dc:#x}"
eas_events = {eas_events}
"#,
            data = data.display(),
            port = free_port(),
            url = chain.anvil.url(),
            id = chain.anvil.chain_id(),
            eas = chain.eas,
            dc = chain.registry,
        ),
    )
    .expect("config");

    let resync = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_eas-relay"))
        .arg("--config")
        .arg(&config)
        .args(["--json", "resync", "--from-block", "1"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run eas-relay resync");
    let took = resync.elapsed();
    assert!(
        out.status.success(),
        "resync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("resync --json");
    // Every alias is now verified against the chain: commitment, owner, expiry.
    let store = Store::open(&data.join("eas-relay.redb")).expect("store");
    let bindings = store.chain_bindings().expect("bindings");
    let holding = bindings
        .iter()
        .filter(|(_, b)| b.commitment_holds())
        .count();
    let live = store
        .chain_names()
        .expect("names")
        .iter()
        .filter(|(_, s)| s.expires > 0 && s.owner == hex(owner.address().as_slice()))
        .count();
    assert_eq!((holding, live), (n, names), "after resync");
    eprintln!(
        "resync of {n} activations ({}): {:.1} s wall ({} blocks, {} aliases verified; {:.0} activations/s)",
        if eas_events {
            "EAS with events"
        } else {
            "EAS without events: calldata"
        },
        took.as_secs_f64(),
        report["blocks"],
        report["aliases_verified"],
        n as f64 / took.as_secs_f64()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("EAS_BENCH_ACTIVATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 100_000 } else { 500 });
    for eas_events in [true, false] {
        run(n, eas_events).await;
    }
}
