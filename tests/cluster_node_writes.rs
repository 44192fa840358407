//! A relay node with `[cluster]` against a real PostgreSQL: its admin API
//! and the CLI commit every write in PostgreSQL first, keep the same ids
//! locally, answer 503 with nothing written while PostgreSQL is down, and
//! keep forwarding the aliases the node knows meanwhile.

mod common;

use common::postgres::TestPostgres;
use common::relay::TestRelay;
use common::sink::TestSink;
use common::smtp::Client;
use eas_relay::cluster::Db;
use eas_relay::config::{ClusterConfig, HumanDuration};
use serde_json::json;
use std::time::Duration;

fn cluster_config(url: &str) -> ClusterConfig {
    ClusterConfig {
        enabled: true,
        database_url: url.to_string(),
        node_id: "node-a".into(),
        connect_timeout: HumanDuration::secs(2),
        ..Default::default()
    }
}

async fn migrated(pg: &TestPostgres) -> Db {
    let db = Db::connect(&cluster_config(&pg.url())).await.unwrap();
    db.migrate().await.unwrap();
    db
}

/// A relay node in cluster mode on `pg`, forwarding `dest.test` to `sink`.
async fn cluster_node(pg: &TestPostgres, sink: &TestSink) -> TestRelay {
    let url = pg.url();
    let dest = sink.addr.to_string();
    TestRelay::start(move |c| {
        c.cluster = cluster_config(&url);
        c.outbound.routes.insert("dest.test".into(), dest);
    })
    .await
}

/// The reply to `RCPT TO:<rcpt>` in a fresh session.
async fn rcpt(relay: &TestRelay, rcpt: &str) -> String {
    common::eas::rcpt_reply(relay.smtp, rcpt).await
}

/// Waits until the node's admin API answers (the node connected to
/// PostgreSQL and migrated before it serves).
async fn wait_ready(relay: &TestRelay) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = relay.api("GET", "/v3/domains", None).await;
        if status == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admin_writes_of_a_cluster_node_go_to_postgres_first_and_503_while_it_is_down() {
    let mut pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let relay = cluster_node(&pg, &sink).await;
    wait_ready(&relay).await;

    let (status, body) = relay
        .api(
            "POST",
            "/v3/domains",
            Some(json!({ "domain": "shop.test" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = relay
        .api(
            "POST",
            "/v3/domains/shop.test/aliases",
            Some(json!({ "alias": "sales", "forward": "boss@dest.test" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let local_id = body["alias"]["id"].as_u64().expect("an id");
    let db = Db::connect(&cluster_config(&pg.url())).await.unwrap();
    let client = db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT id, forwards FROM static_aliases WHERE domain = 'shop.test' AND local = 'sales'",
            &[],
        )
        .await
        .unwrap();
    let (pg_id, pg_forwards): (i64, Vec<String>) = (row.get(0), row.get(1));
    assert_eq!(pg_id as u64, local_id, "the same id in PostgreSQL and here");
    assert_eq!(pg_forwards, vec!["boss@dest.test".to_string()]);
    let origins: Vec<String> = client
        .query("SELECT DISTINCT origin FROM changes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(origins, vec!["node-a".to_string()]);
    drop(client);
    db.close();

    // The alias forwards here.
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.send_mail(
        "alice@sender.test",
        &["sales@shop.test"],
        &common::smtp::message("alice@sender.test", "sales@shop.test", "hello", "hi"),
    )
    .await;
    c.quit().await;
    let got = sink.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].rcpt_to, vec!["boss@dest.test".to_string()]);

    // PostgreSQL stops: a write answers 503 and says why, without the
    // password; nothing is written here; mail to known aliases goes on.
    pg.stop();
    let (status, body) = relay
        .api(
            "POST",
            "/v3/domains/shop.test/aliases",
            Some(json!({ "alias": "support", "forward": "help@dest.test" })),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("the cluster database is unreachable:"),
        "{body}"
    );
    assert!(!body.to_string().contains(&pg.password), "{body}");
    assert!(body["errors"]["cluster"].is_array(), "{body}");
    let (status, _) = relay
        .api("GET", "/v3/domains/shop.test/aliases/support", None)
        .await;
    assert_eq!(status, 404, "nothing was written locally");
    for (method, path, body) in [
        (
            "POST",
            "/v3/domains",
            Some(json!({ "domain": "other.test" })),
        ),
        (
            "PUT",
            "/v3/domains/shop.test/aliases/sales",
            Some(json!({ "active": false })),
        ),
        ("DELETE", "/v3/domains/shop.test/aliases/sales", None),
        ("DELETE", "/v3/domains/shop.test", None),
    ] {
        let (status, answer) = relay.api(method, path, body).await;
        assert_eq!(status, 503, "{method} {path}: {answer}");
    }
    assert!(rcpt(&relay, "sales@shop.test").await.starts_with("250"));
    assert!(rcpt(&relay, "support@shop.test").await.starts_with("550"));
    let (status, body) = relay
        .api("GET", "/v3/domains/shop.test/aliases/sales", None)
        .await;
    assert_eq!(
        (status, body["alias"]["active"].as_bool()),
        (200, Some(true))
    );

    // PostgreSQL is back: writes work again (the pool replaces the
    // connections that died with the server).
    pg.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (status, body) = relay
            .api(
                "POST",
                "/v3/domains/shop.test/aliases",
                Some(json!({ "alias": "support", "forward": "help@dest.test" })),
            )
            .await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "writes did not resume: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body["alias"]["id"].as_u64().unwrap() > local_id);
    assert!(rcpt(&relay, "support@shop.test").await.starts_with("250"));
    relay.stop().await;
}

/// The origins of the change rows of `key`, in order.
async fn origins_of(pg: &TestPostgres, key: &str) -> Vec<String> {
    let db = migrated(pg).await;
    let client = db.client().await.unwrap();
    let out = client
        .query(
            "SELECT origin FROM changes WHERE key = $1 ORDER BY id",
            &[&key],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    db.close();
    out
}

#[tokio::test]
async fn the_offline_cli_migrates_a_fresh_database_before_its_first_write() {
    let pg = TestPostgres::start().await;
    // No node ever started: the database has no tables yet.
    let files = common::node::NodeFiles::new(common::node::NodeOptions::default());
    files.append_config(&format!(
        "[cluster]\nenabled = true\ndatabase_url = \"{}\"\nnode_id = \"cli-node\"\nconnect_timeout = \"2s\"\n",
        pg.url()
    ));
    files.cli(&["domain", "add", "fresh.test"]).ok();
    files
        .cli(&["alias", "add", "x@fresh.test", "u@dest.test"])
        .ok();
    assert_eq!(
        origins_of(&pg, "x@fresh.test").await,
        vec!["cli-node".to_string()]
    );
}

#[tokio::test]
async fn the_cli_writes_to_postgres_first_offline_and_online_and_says_when_it_is_down() {
    let mut pg = TestPostgres::start().await;
    // The schema exists (a node migrated it); the offline CLI only writes.
    migrated(&pg).await.close();
    let files = common::node::NodeFiles::new(common::node::NodeOptions::default());
    files.append_config(&format!(
        "[cluster]\nenabled = true\ndatabase_url = \"{}\"\nnode_id = \"cli-node\"\nconnect_timeout = \"2s\"\n",
        pg.url()
    ));
    // Offline: the CLI opens the store and the database itself.
    files.cli(&["domain", "add", "cli.test"]).ok();
    files
        .cli(&["alias", "add", "x@cli.test", "u@dest.test"])
        .ok();
    assert_eq!(
        origins_of(&pg, "x@cli.test").await,
        vec!["cli-node".to_string()]
    );
    pg.stop();
    let out = files.cli(&["alias", "add", "y@cli.test", "u@dest.test"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("the cluster database is unreachable"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains(&pg.password), "{out:#?}");

    // Online: the running node's admin API answers 503, the CLI prints it.
    pg.restart().await;
    let node = files.start();
    files
        .cli(&["alias", "add", "z@cli.test", "u@dest.test"])
        .ok();
    assert_eq!(
        origins_of(&pg, "z@cli.test").await,
        vec!["cli-node".to_string()]
    );
    pg.stop();
    let out = files.cli(&["alias", "add", "w@cli.test", "u@dest.test"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("503") && out.stderr.contains("the cluster database is unreachable"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains(&pg.password), "{out:#?}");
    let listed = files.cli(&["alias", "list", "cli.test"]);
    let listed = listed.ok();
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        vec!["x@cli.test -> u@dest.test", "z@cli.test -> u@dest.test"],
        "nothing written while the database was down"
    );
    drop(node);
}

/// One value of `sql` (a count, an id) in PostgreSQL.
async fn scalar(pg: &TestPostgres, sql: &str) -> i64 {
    let db = migrated(pg).await;
    let client = db.client().await.unwrap();
    let value = client.query_one(sql, &[]).await.unwrap().get(0);
    drop(client);
    db.close();
    value
}

#[tokio::test]
async fn every_admin_write_of_a_cluster_node_is_a_row_in_postgres_with_the_same_id() {
    let pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let relay = cluster_node(&pg, &sink).await;
    wait_ready(&relay).await;
    let ok = |(status, body): (u16, serde_json::Value)| {
        assert_eq!(status, 200, "{body}");
        body
    };
    ok(relay
        .api(
            "POST",
            "/v3/domains",
            Some(json!({ "domain": "shop.test", "notification_email": "ops@dest.test" })),
        )
        .await);
    assert_eq!(
        scalar(
            &pg,
            "SELECT count(*) FROM domains WHERE settings->>'notification_email' = 'ops@dest.test'"
        )
        .await,
        1
    );
    ok(relay
        .api(
            "PUT",
            "/v3/domains/shop.test",
            Some(json!({ "whitelabel": "acme" })),
        )
        .await);
    assert_eq!(
        scalar(
            &pg,
            "SELECT count(*) FROM domains WHERE settings->>'whitelabel' = 'acme'"
        )
        .await,
        1
    );

    // Bulk: one new (added), one the database has (skipped, its id).
    let first = ok(relay
        .api(
            "POST",
            "/v3/domains/shop.test/aliases",
            Some(json!({ "alias": "a", "forward": "u@dest.test" })),
        )
        .await);
    let bulk = ok(relay
        .api(
            "POST",
            "/v3/domains/shop.test/aliases/bulk",
            Some(json!({ "aliases": [
                { "alias": "a", "forward": "x@dest.test" },
                { "alias": "b", "forward": "v@dest.test" },
            ] })),
        )
        .await);
    assert_eq!(bulk["skipped"][0]["id"], first["alias"]["id"], "{bulk}");
    let b_id = bulk["added"][0]["id"].as_i64().expect("added b");
    assert_eq!(
        scalar(&pg, "SELECT id FROM static_aliases WHERE local = 'b'").await,
        b_id
    );
    assert_eq!(
        scalar(
            &pg,
            "SELECT count(*) FROM static_aliases WHERE local = 'a' AND forwards = '{u@dest.test}'"
        )
        .await,
        1,
        "a skipped alias is left as it is"
    );

    // Suspend and resume: a row in suspensions, then none.
    ok(relay
        .api(
            "PUT",
            "/v3/domains/shop.test/aliases/b",
            Some(json!({ "active": false })),
        )
        .await);
    assert_eq!(
        scalar(&pg, "SELECT count(*) FROM suspensions WHERE local = 'b'").await,
        1
    );
    assert!(rcpt(&relay, "b@shop.test").await.starts_with("550"));
    ok(relay
        .api(
            "PUT",
            "/v3/domains/shop.test/aliases/b",
            Some(json!({ "active": true })),
        )
        .await);
    assert_eq!(scalar(&pg, "SELECT count(*) FROM suspensions").await, 0);
    assert!(rcpt(&relay, "b@shop.test").await.starts_with("250"));

    // An import: its domain and aliases, the ids the database gave.
    let (status, body) = relay.import("i@imported.test\tu@dest.test\n").await;
    assert_eq!(status, 200, "{body}");
    let (_, shown) = relay
        .api("GET", "/v3/domains/imported.test/aliases/i", None)
        .await;
    assert_eq!(
        scalar(
            &pg,
            "SELECT id FROM static_aliases WHERE domain = 'imported.test'"
        )
        .await,
        shown["alias"]["id"].as_i64().expect("an id")
    );

    // Removals.
    ok(relay
        .api("DELETE", "/v3/domains/shop.test/aliases/a", None)
        .await);
    assert_eq!(
        scalar(&pg, "SELECT count(*) FROM static_aliases WHERE local = 'a'").await,
        0
    );
    ok(relay.api("DELETE", "/v3/domains/shop.test", None).await);
    assert_eq!(
        scalar(
            &pg,
            "SELECT count(*) FROM domains WHERE domain = 'shop.test'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &pg,
            "SELECT count(*) FROM static_aliases WHERE domain = 'shop.test'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(&pg, "SELECT count(*) FROM changes WHERE origin <> 'node-a'").await,
        0,
        "every change is recorded as the node's"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_node_started_while_postgres_is_down_refuses_writes_until_it_returns() {
    let mut pg = TestPostgres::start().await;
    migrated(&pg).await.close();
    let sink = TestSink::start().await;
    // A node whose replica was synced once (one never synced refuses to
    // start without PostgreSQL: tests/cluster_replica.rs).
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url();
    let dest = sink.addr.to_string();
    let tweak = move |c: &mut eas_relay::config::Config| {
        c.cluster = cluster_config(&url);
        c.outbound.routes.insert("dest.test".into(), dest);
    };
    let first = TestRelay::start_in(dir.path(), tweak.clone()).await;
    wait_ready(&first).await;
    first.stop().await;
    pg.stop();
    let relay = TestRelay::start_in(dir.path(), tweak).await;
    wait_ready(&relay).await;
    let (status, body) = relay
        .api(
            "POST",
            "/v3/domains",
            Some(json!({ "domain": "late.test" })),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let (_, listed) = relay.api("GET", "/v3/domains", None).await;
    assert_eq!(listed["domains"], json!([]), "nothing written here");
    pg.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = relay
            .api(
                "POST",
                "/v3/domains",
                Some(json!({ "domain": "late.test" })),
            )
            .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "writes did not resume: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let db = migrated(&pg).await;
    let n: i64 = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM domains WHERE domain = 'late.test'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    relay.stop().await;
}
