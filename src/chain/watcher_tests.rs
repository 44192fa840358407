//! The watcher against a node whose block numbers are hostile: a head of
//! `u64::MAX`, a head below the cursor. Range arithmetic must neither panic
//! nor wrap round (which would move the cursor back to the first blocks
//! and re-read the chain for ever), and every step must end.

use super::*;
use crate::store::{ChainUpdate, Cursor};
use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::atomic::AtomicU64;

/// The hash the fake node gives block `n`.
fn hash_of(n: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&n.to_be_bytes());
    h[31] = 1;
    h
}

fn quantity(n: u64) -> String {
    format!("{n:#x}")
}

/// A JSON-RPC node that has every block up to its head (which the test may
/// change), none after, and no logs.
async fn fake_node(head: Arc<AtomicU64>) -> String {
    let answer = move |Json(req): Json<Value>| {
        let head = head.clone();
        async move {
            let head = head.load(Ordering::SeqCst);
            let block = |n: u64| {
                if n > head {
                    Value::Null
                } else {
                    json!({
                        "hash": alloy::primitives::hex::encode_prefixed(hash_of(n)),
                        "number": quantity(n),
                        "timestamp": quantity(1_000),
                    })
                }
            };
            let result = match req["method"].as_str().unwrap_or("") {
                "eth_chainId" => json!("0x1"),
                "eth_blockNumber" => json!(quantity(head)),
                "eth_getBlockByNumber" => match req["params"][0].as_str().unwrap_or("") {
                    "latest" => block(head),
                    n => u64::from_str_radix(n.trim_start_matches("0x"), 16)
                        .map_or(Value::Null, block),
                },
                "eth_getLogs" => json!([]),
                _ => Value::Null,
            };
            Json(json!({ "jsonrpc": "2.0", "id": req["id"], "result": result }))
        }
    };
    let app = axum::Router::new().route("/", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    watcher: Watcher,
    head: Arc<AtomicU64>,
}

async fn fixture(head: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let head = Arc::new(AtomicU64::new(head));
    let url = fake_node(head.clone()).await;
    let config = ChainConfig {
        enabled: true,
        rpc_url: url.clone(),
        max_block_range: 1000,
        ..ChainConfig::default()
    };
    let rpc = ChainRpc::new(&url, Duration::from_secs(10)).unwrap();
    let registries = Arc::new(Registries::from_config(&config));
    let watcher = Watcher::new(rpc, store.clone(), registries, config);
    Fixture {
        _dir: dir,
        store,
        watcher,
        head,
    }
}

fn place_cursor(store: &Store, number: u64) {
    store
        .chain_apply(&ChainUpdate {
            cursor: Some((
                Cursor {
                    number,
                    hash: hash_of(number),
                },
                vec![(number, hash_of(number))],
            )),
            ..ChainUpdate::default()
        })
        .unwrap();
}

/// Steps until idle (bounded), returning every step's outcome.
async fn steps_until_idle(watcher: &Watcher) -> Vec<Step> {
    let mut seen = Vec::new();
    for _ in 0..10 {
        let step = watcher.step().await.unwrap();
        seen.push(step);
        if matches!(step, Step::Idle { .. }) {
            return seen;
        }
    }
    panic!("the watcher never went idle: {seen:?}");
}

#[tokio::test]
async fn a_head_of_u64_max_neither_panics_nor_wraps_round() {
    let f = fixture(u64::MAX).await;
    // A cursor a few blocks below: the next range would overflow.
    place_cursor(&f.store, u64::MAX - 5);
    let steps = steps_until_idle(&f.watcher).await;
    let target = u64::MAX - f.watcher.config.confirmations;
    assert_eq!(steps[0], Step::Advanced { to: target, target });
    assert_eq!(f.store.chain_cursor().unwrap().unwrap().number, target);

    // A fresh node told head = u64::MAX starts there, and goes idle.
    let f = fixture(u64::MAX).await;
    steps_until_idle(&f.watcher).await;
    assert_eq!(f.store.chain_cursor().unwrap().unwrap().number, target);
}

#[tokio::test]
async fn a_head_below_the_cursor_rewinds_once_and_goes_idle() {
    let f = fixture(5_000).await;
    place_cursor(&f.store, 4_000);
    steps_until_idle(&f.watcher).await;
    // The node now reports a head far below the cursor (and has no block
    // at the cursor any more): the watcher goes back once, never below 0,
    // and then waits.
    f.head.store(100, Ordering::SeqCst);
    let steps = f.watcher.step().await;
    assert!(
        matches!(steps, Ok(Step::Rewound { .. }) | Err(_)),
        "{steps:?}"
    );
    // The same node, a head just below the cursor but with its block: idle.
    let f = fixture(5_000).await;
    place_cursor(&f.store, 4_999);
    assert_eq!(
        f.watcher.step().await.unwrap(),
        Step::Idle { cursor: 4_999 }
    );
    f.head.store(4_999, Ordering::SeqCst);
    assert_eq!(
        f.watcher.step().await.unwrap(),
        Step::Idle { cursor: 4_999 }
    );
}

proptest::proptest! {
    /// Any cursor, target and range size: the range starts right after the
    /// cursor, ends at most at the target, holds at most `max` blocks (at
    /// least one), and exists exactly when the cursor is below the target.
    #[test]
    fn ranges_are_bounded_and_never_wrap(cursor: u64, target: u64, max: u64) {
        match next_range(cursor, target, max) {
            Some((from, to)) => {
                proptest::prop_assert!(cursor < target);
                proptest::prop_assert_eq!(from, cursor + 1);
                proptest::prop_assert!(from <= to && to <= target);
                proptest::prop_assert!(to - from < max.max(1));
            }
            None => proptest::prop_assert!(cursor >= target),
        }
    }
}
