//! `eas-relay chain status` and `eas-relay resync` run as the real binary,
//! against a real chain, through a running node and on the store directly.

mod common;

use common::anvil::{Chain, YEAR, dev_signer};
use common::eas::{DOMAIN, SLD, activate_body, rcpt_reply};
use common::node::{NodeFiles, NodeOptions};
use serde_json::{Value, json};
use std::time::Duration;

const FORWARD: &str = "mr.robot@dest.test";

fn chain_section(chain: &Chain) -> String {
    format!(
        r#"[chain]
enabled = true
rpc_url = "{url}"
chain_id = {id}
poll_interval = "50ms"

[[chain.registries]]
tld = "country"
eas = "{eas:#x}"
dc = "{dc:#x}"
"#,
        url = chain.anvil.url(),
        id = chain.anvil.chain_id(),
        eas = chain.eas,
        dc = chain.registry,
    )
}

fn status_json(files: &NodeFiles) -> Value {
    let out = files.cli(&["--json", "chain", "status"]);
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_status_and_resync_through_the_node_and_offline() {
    let chain = Chain::start().await;
    let owner = dev_signer(1);
    chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let a = chain.activate(&owner, SLD, "hello", FORWARD).await.unwrap();
    let files = NodeFiles::new(NodeOptions::default());
    files.append_config(&chain_section(&chain));
    files.cli(&["config", "check"]).ok();

    // No node yet: the store is read directly, the head asked of the chain.
    let offline = status_json(&files);
    assert_eq!(offline["enabled"], true);
    assert_eq!(offline["head"], json!(chain.block_number().await));
    assert_eq!(offline["last_error"], Value::Null);

    let mut node = files.start();
    let (status, body) = common::http::request(
        files.http,
        "POST",
        "/activate",
        None,
        Some(activate_body(&a)),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({ "success": true })));
    let hello = format!("hello@{DOMAIN}");
    assert!(rcpt_reply(files.smtp, &hello).await.starts_with("250"));

    // Through the node: the watcher's own view.
    chain.mine(3).await;
    let head = chain.block_number().await;
    let mut view = status_json(&files);
    for _ in 0..100 {
        if view["cursor"].as_u64() >= Some(head - 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        view = status_json(&files);
    }
    assert_eq!(view["head"], json!(head), "{view}");
    assert_eq!(view["cursor"], json!(head - 2), "{view}");
    assert_eq!(view["lag"], json!(2), "{view}");
    assert_eq!(view["stale"], false, "{view}");
    let (_, metrics) = common::http::raw(files.http, "GET", "/metrics", None, "").await;
    for line in [
        format!("eas_chain_head {head}"),
        format!("eas_chain_cursor {}", head - 2),
        "eas_chain_stale 0".to_string(),
        "eas_chain_activations_total 1".to_string(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    let text = files.cli(&["chain", "status"]);
    let text = text.ok();
    assert!(text.contains(&format!("head:       {head}")), "{text}");
    assert!(
        text.contains("lag:        2 blocks (following head - 2)"),
        "{text}"
    );
    assert!(text.contains("last error: none"), "{text}");

    let out = files.cli(&["resync", "--from-block", "1"]);
    assert!(out.ok().starts_with("resynced blocks 1.."), "{out:?}");

    // The node stops; the chain moves on; resync on the store alone.
    node.terminate(Duration::from_secs(10));
    chain.deactivate(&owner, SLD, "hello").await.unwrap();
    chain.mine(2).await;
    let out = files.cli(&["--json", "resync", "--from-block", "1"]);
    let done: Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(done["from_block"], 1);
    assert_eq!(done["to_block"], json!(chain.block_number().await - 2));
    assert_eq!(done["aliases_verified"], 1);

    // A node that does not follow the chain answers from what resync
    // stored: the deactivation is known.
    let _node = files.start_env(&[("EAS_RELAY_CHAIN__ENABLED", "false")]);
    assert!(
        rcpt_reply(files.smtp, &hello)
            .await
            .starts_with("550 5.1.1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_commands_explain_what_is_wrong() {
    let files = NodeFiles::new(NodeOptions::default());
    for args in [&["chain", "status"][..], &["resync"][..]] {
        let out = files.cli(args);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("chain.enabled"), "{out:?}");
    }
    // Enabled, but nothing answers at the RPC URL.
    let dead = common::node::free_addr();
    files.append_config(&format!(
        "[chain]\nenabled = true\nrpc_url = \"http://{dead}\"\nrequest_timeout = \"1s\"\n\n\
         [[chain.registries]]\ntld = \"country\"\neas = \"0x{eas}\"\n",
        eas = "11".repeat(20)
    ));
    let view = status_json(&files);
    let error = view["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("unreachable") || error.contains("refused"),
        "{view}"
    );
    let out = files.cli(&["resync"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("eas-relay: "), "{out:?}");
}
