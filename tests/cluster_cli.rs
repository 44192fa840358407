//! `eas-relay cluster init` and `eas-relay cluster status` (the real
//! binary) against a real PostgreSQL: a store with domains, static
//! aliases, a suspension, a chain reveal and delivery-log rows is copied
//! (counts printed), a second run changes nothing and says so, a key
//! PostgreSQL holds with other values refuses the copy, a running node's
//! store is refused; status lists two nodes with their lag, in text and
//! JSON, and says clearly when PostgreSQL is unreachable.

mod common;

use common::api::activate_on_chain;
use common::node::{NodeFiles, NodeOptions};
use common::postgres::TestPostgres;
use common::relay::TestRelay;
use common::sink::TestSink;
use common::smtp::{Client, message};
use eas_relay::cluster::Db;
use eas_relay::config::{ClusterConfig, HumanDuration};
use eas_relay::store::Store;
use std::time::Duration;

fn db_config(pg: &TestPostgres) -> ClusterConfig {
    ClusterConfig {
        database_url: pg.url(),
        connect_timeout: HumanDuration::secs(2),
        ..Default::default()
    }
}

async fn count(db: &Db, sql: &str) -> i64 {
    db.client()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// Every table `cluster init` writes, counted.
async fn counts(db: &Db) -> [i64; 6] {
    [
        count(db, "SELECT count(*) FROM domains").await,
        count(db, "SELECT count(*) FROM static_aliases").await,
        count(db, "SELECT count(*) FROM chain_reveals").await,
        count(db, "SELECT count(*) FROM suspensions").await,
        count(db, "SELECT count(*) FROM delivery_log").await,
        count(db, "SELECT count(*) FROM changes").await,
    ]
}

/// A single node's store with two domains (one chain-governed), two static
/// aliases (one suspended), a reveal and two delivery-log rows.
async fn single_node_data(files: &NodeFiles, pg_url: &str) {
    {
        let store = Store::open(&files.data_dir.join("eas-relay.redb")).unwrap();
        activate_on_chain(&store, "alice", "Hello", "alice@dest.test");
    }
    let sink = TestSink::start().await;
    let sink_addr = sink.addr.to_string();
    let relay = TestRelay::start_in(&files.data_dir, move |c| {
        c.outbound.routes.insert("dest.test".into(), sink_addr);
    })
    .await;
    relay.alias("hello", "shop.test", "u@dest.test").await;
    relay
        .alias("sales", "shop.test", "a@dest.test,b@dest.test")
        .await;
    let (status, body) = relay
        .api(
            "PUT",
            "/v3/domains/shop.test/aliases/sales",
            Some(serde_json::json!({ "active": false })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for subject in ["one", "two"] {
        let mut c = Client::connect(relay.smtp).await;
        c.ehlo("client.test").await;
        let msg = message("s@example.org", "hello@shop.test", subject, "hi");
        let reply = c
            .send_mail("s@example.org", &["hello@shop.test"], &msg)
            .await;
        assert!(reply.starts_with("250"), "{reply}");
        c.quit().await;
    }
    sink.wait_for(2, Duration::from_secs(20)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = relay.api("GET", "/v3/domains/shop.test/logs", None).await;
        if body["logs"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While the node runs, init refuses: the store is its.
    files.append_config(&format!(
        "[cluster]\ndatabase_url = \"{pg_url}\"\nnode_id = \"node-a\"\n"
    ));
    let out = files.cli(&["cluster", "init"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("stop the node first"), "{out:#?}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_init_copies_a_store_once_and_refuses_different_data() {
    let pg = TestPostgres::start().await;
    let files = NodeFiles::new(NodeOptions::default());
    single_node_data(&files, &pg.url()).await;

    let out = files.cli(&["cluster", "init"]);
    let text = out.ok();
    for line in [
        "domains             2 copied        0 already there",
        "aliases             2 copied        0 already there",
        "reveals             1 copied        0 already there",
        "suspensions         1 copied        0 already there",
        "log rows            2 copied        0 already there",
    ] {
        assert!(text.contains(line), "{line:?} missing in:\n{text}");
    }
    assert!(
        text.contains("migrated: V1__init, V2__change_triggers, V3__payload_guard"),
        "{text}"
    );
    let db = Db::connect(&db_config(&pg)).await.unwrap();
    let after_first = counts(&db).await;
    assert_eq!(&after_first[..5], &[2, 2, 1, 1, 2]);
    // The rows hold what the store held.
    let client = db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT forwards, id FROM static_aliases WHERE domain = 'shop.test' AND local = 'sales'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Vec<String>>(0),
        vec!["a@dest.test".to_string(), "b@dest.test".to_string()]
    );
    let reveal = client
        .query_one(
            "SELECT alias, forward, signature, accepted_by, sld, tld FROM chain_reveals",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        reveal.get::<_, String>(0),
        "Hello",
        "the alias exactly as activated"
    );
    assert_eq!(reveal.get::<_, String>(1), "alice@dest.test");
    assert_eq!(reveal.get::<_, String>(2), format!("0x{}", "22".repeat(65)));
    assert_eq!(reveal.get::<_, String>(3), "node-a");
    assert_eq!(
        (reveal.get::<_, String>(4), reveal.get::<_, String>(5)),
        ("alice".to_string(), "country".to_string())
    );
    let suspended: String = client
        .query_one("SELECT local || '@' || domain FROM suspensions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(suspended, "sales@shop.test");
    let origins: Vec<String> = client
        .query("SELECT DISTINCT origin FROM changes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        origins,
        vec!["node-a".to_string()],
        "change rows name the node"
    );
    let logs = db.list_logs("shop.test", None, 0, 10).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert!(logs.iter().all(|l| l.forward == "u@dest.test"));

    // Twice: nothing changes, and it says so.
    let out = files.cli(&["cluster", "init"]);
    let text = out.ok();
    assert!(text.contains("nothing changed"), "{text}");
    assert!(
        text.contains("domains             0 copied        2 already there"),
        "{text}"
    );
    assert!(
        text.contains("log rows            0 copied        2 already there"),
        "{text}"
    );
    assert_eq!(
        counts(&db).await,
        after_first,
        "no row, no change row added"
    );
    let out = files.cli(&["--json", "cluster", "init"]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(json["unchanged"], true);
    assert_eq!(json["aliases"]["present"], 2);

    // PostgreSQL holds other values for a key: refused, nothing written.
    client
        .batch_execute(
            "UPDATE static_aliases SET forwards = ARRAY['evil@elsewhere.test'] \
             WHERE domain = 'shop.test' AND local = 'hello'",
        )
        .await
        .unwrap();
    client
        .batch_execute("DELETE FROM suspensions")
        .await
        .unwrap();
    let before = counts(&db).await;
    let out = files.cli(&["cluster", "init"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("different data for 1 key")
            && out.stderr.contains("alias hello@shop.test")
            && out.stderr.contains("evil@elsewhere.test"),
        "{}",
        out.stderr
    );
    assert_eq!(
        counts(&db).await,
        before,
        "the suspension was not copied back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_lists_nodes_with_their_lag() {
    let mut pg = TestPostgres::start().await;
    let files = NodeFiles::new(NodeOptions::default());
    files.append_config(&format!(
        "[cluster]\ndatabase_url = \"{}\"\nconnect_timeout = \"1s\"\n",
        pg.url()
    ));
    let db = Db::connect(&db_config(&pg)).await.unwrap();
    db.migrate().await.unwrap();
    let out = files.cli(&["cluster", "status"]);
    assert!(out.ok().contains("no node has reported yet"), "{out:#?}");
    // Three changes; node-a applied all, node-b one.
    db.client()
        .await
        .unwrap()
        .batch_execute(
            "INSERT INTO domains (domain, source) VALUES ('a.test', 'static'), ('b.test', 'static'), ('c.test', 'static')",
        )
        .await
        .unwrap();
    let max = count(&db, "SELECT max(id) FROM changes").await;
    db.heartbeat("node-a", max as u64, 4).await.unwrap();
    db.heartbeat("node-b", (max - 2) as u64, 0).await.unwrap();

    let out = files.cli(&["cluster", "status"]);
    let text = out.ok();
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no {id} in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let a = line("node-a");
    let b = line("node-b");
    // NODE, LAST SEEN, AGE, APPLIED, LAG, QUEUE, VERSION
    assert_eq!(a[3..6], [max.to_string().as_str(), "0", "4"], "{text}");
    assert_eq!(
        b[3..6],
        [(max - 2).to_string().as_str(), "2", "0"],
        "{text}"
    );
    assert!(a[2].ends_with('s'), "age {}", a[2]);
    assert_eq!(a[6], env!("CARGO_PKG_VERSION"));

    let out = files.cli(&["--json", "cluster", "status"]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(json["max_change_id"], max);
    assert_eq!(json["nodes"][0]["id"], "node-a");
    assert_eq!(json["nodes"][0]["lag"], 0);
    assert_eq!(json["nodes"][1]["id"], "node-b");
    assert_eq!(json["nodes"][1]["lag"], 2);
    assert_eq!(json["nodes"][0]["queue_depth"], 4);

    pg.stop();
    let out = files.cli(&["cluster", "status"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("is unreachable") && !out.stderr.contains(&pg.password),
        "{}",
        out.stderr
    );
}
