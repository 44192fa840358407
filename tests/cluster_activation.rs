//! `/activate` and `/deactivate` of a cluster node, against a real chain
//! (anvil with the project's contracts) and a real PostgreSQL: a reveal that
//! passed the chain checks is a row in PostgreSQL (the alias exactly as
//! activated, forward, signature, commitment, the accepting node) with the
//! same id the node shows; while PostgreSQL is down `/activate` answers 503
//! and nothing is stored, mail to known aliases still flows; a deactivation
//! leaves PostgreSQL once the watcher confirmed it, and this node only after
//! PostgreSQL.

mod common;

use common::anvil::{ChainOptions, YEAR, dev_signer};
use common::eas::{CONFIRMATIONS, ChainRelay, DOMAIN, SLD, activate_body};
use common::postgres::TestPostgres;
use eas_relay::cluster::Db;
use eas_relay::config::{ClusterConfig, HumanDuration};
use serde_json::json;
use std::time::{Duration, Instant};

const FORWARD: &str = "mr.robot@dest.test";

fn cluster_config(url: &str) -> ClusterConfig {
    ClusterConfig {
        enabled: true,
        database_url: url.to_string(),
        node_id: "node-a".into(),
        connect_timeout: HumanDuration::secs(2),
        ..Default::default()
    }
}

/// The reveals in PostgreSQL: (id, local, alias, forward, signature,
/// commitment, accepted_by).
async fn reveals(pg: &TestPostgres) -> Vec<(i64, String, String, String, String, String, String)> {
    let db = Db::connect(&cluster_config(&pg.url())).await.unwrap();
    let client = db.client().await.unwrap();
    let rows = client
        .query(
            "SELECT id, local, alias, forward, signature, commitment, accepted_by \
             FROM chain_reveals ORDER BY local",
            &[],
        )
        .await
        .unwrap();
    let out = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect();
    drop(client);
    db.close();
    out
}

#[tokio::test]
async fn activation_on_a_cluster_node_is_committed_in_postgres_first() {
    let mut pg = TestPostgres::start().await;
    let url = pg.url();
    let t = ChainRelay::start_with(ChainOptions::default(), false, move |c| {
        c.cluster = cluster_config(&url);
    })
    .await;
    let owner = dev_signer(1);
    t.chain.register(SLD, owner.address(), YEAR).await.unwrap();
    let hello = t
        .chain
        .activate(&owner, SLD, "Hello", FORWARD)
        .await
        .unwrap();
    t.activated(&hello).await;

    let rows = reveals(&pg).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (id, local, alias, forward, signature, commitment, accepted_by) = rows[0].clone();
    assert_eq!(
        (local.as_str(), alias.as_str(), forward.as_str()),
        ("hello", "Hello", FORWARD),
        "the alias exactly as activated"
    );
    assert_eq!(signature, hello.signature_hex);
    assert_eq!(commitment, format!("{:#x}", hello.commitment));
    assert_eq!(accepted_by, "node-a");
    let aliases = t.aliases_of(SLD).await;
    assert_eq!(
        aliases[0]["id"].as_i64(),
        Some(id),
        "the same id: {aliases}"
    );
    let got = t.deliver(&format!("hello@{DOMAIN}"), "first").await;
    assert_eq!(got.rcpt_to, vec![FORWARD.to_string()]);

    // PostgreSQL down: a valid activation is refused with 503 and stored
    // nowhere; the alias already known still takes mail.
    let team = t
        .chain
        .activate(&owner, SLD, "team", "team@dest.test")
        .await
        .unwrap();
    pg.stop();
    let (status, body) = t.post("/activate", activate_body(&team)).await;
    assert_eq!(
        (status, body),
        (
            503,
            json!({ "error": "the cluster database is unreachable, try again later" })
        )
    );
    assert!(t.rcpt(&format!("team@{DOMAIN}")).await.starts_with("550"));
    assert!(t.rcpt(&format!("hello@{DOMAIN}")).await.starts_with("250"));

    // Back: the same request succeeds and is a row.
    pg.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = t.post("/activate", activate_body(&team)).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "/activate did not resume: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t.rcpt(&format!("team@{DOMAIN}")).await.starts_with("250"));
    let locals: Vec<String> = reveals(&pg).await.into_iter().map(|r| r.1).collect();
    assert_eq!(locals, vec!["hello".to_string(), "team".to_string()]);

    // Deactivated on chain and /deactivate accepted while PostgreSQL is
    // down: the mark waits; nothing is removed here before the database.
    t.chain.deactivate(&owner, SLD, "Hello").await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    assert!(t.rcpt(&format!("hello@{DOMAIN}")).await.starts_with("550"));
    pg.stop();
    assert_eq!(
        t.post("/deactivate", json!({ "sld": SLD, "alias": "hello" }))
            .await,
        (200, json!({ "success": true }))
    );
    t.chain.mine(CONFIRMATIONS + 2).await;
    t.settle().await;
    t.chain.mine(1).await;
    t.settle().await;
    assert_eq!(
        local_aliases(&t).await,
        vec!["hello".to_string(), "team".to_string()],
        "removed here before PostgreSQL took it"
    );
    // Back: the confirmed removal leaves PostgreSQL (the exact alias and
    // its commitment), then this node; the other reveal stays.
    pg.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        t.chain.mine(1).await;
        t.settle().await;
        if local_aliases(&t).await == vec!["team".to_string()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deactivation was not settled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let locals: Vec<String> = reveals(&pg).await.into_iter().map(|r| r.1).collect();
    assert_eq!(locals, vec!["team".to_string()]);
    assert!(t.rcpt(&format!("team@{DOMAIN}")).await.starts_with("250"));
}

/// The local parts of the name's aliases on the node.
async fn local_aliases(t: &ChainRelay) -> Vec<String> {
    let aliases = t.aliases_of(SLD).await;
    aliases
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|a| a["alias"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
