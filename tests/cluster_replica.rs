//! Several relay nodes following one PostgreSQL (issue 13), end to end:
//! a real PostgreSQL (tests/common/postgres.rs), in-process nodes each with
//! its own data dir and ports, rows written into the database with plain
//! SQL (as any writer, a node or somebody with psql, would), mail over SMTP
//! to a sink. Reveals are checked by every node against a real chain
//! (anvil with the project's contracts).

mod common;

use common::anvil::{Chain, YEAR, dev_signer};
use common::eas::{CONFIRMATIONS, DOMAIN, SLD, chain_config, rcpt_reply};
use common::postgres::TestPostgres;
use common::relay::TestRelay;
use common::sink::TestSink;
use common::smtp::Client;
use eas_relay::config::{Config, HumanDuration};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How soon a change must forward at every node.
const PROPAGATION: Duration = Duration::from_secs(2);
/// Bound of the waits that include a reconnection (backoff up to 10 s).
const RECONNECT_LIMIT: Duration = Duration::from_secs(20);

/// `[cluster]` of node `id` on `pg`, with the sink as `dest.test`'s MX.
fn cluster_node(c: &mut Config, pg: &TestPostgres, id: &str, sink: &TestSink) {
    c.cluster.enabled = true;
    c.cluster.database_url = pg.url();
    c.cluster.node_id = id.to_string();
    c.cluster.connect_timeout = HumanDuration::secs(2);
    c.cluster.poll_interval = HumanDuration::parse("1s").unwrap();
    c.cluster.heartbeat_interval = HumanDuration::parse("500ms").unwrap();
    c.outbound
        .routes
        .insert("dest.test".into(), sink.addr.to_string());
}

/// A login to the cluster's database, as an operator's psql.
async fn psql(pg: &TestPostgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Waits until `RCPT TO:<rcpt>` at `smtp` is answered with `expect` (a
/// prefix); returns how long that took.
async fn wait_rcpt(smtp: SocketAddr, rcpt: &str, expect: &str, limit: Duration) -> Duration {
    let began = Instant::now();
    loop {
        let reply = rcpt_reply(smtp, rcpt).await;
        if reply.starts_with(expect) {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < limit,
            "RCPT TO:<{rcpt}> at {smtp} still answers `{reply}` after {limit:?}, expected `{expect}`"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends one message to `rcpt` through `smtp`; returns what the sink got.
async fn deliver(sink: &TestSink, smtp: SocketAddr, rcpt: &str, subject: &str) -> Vec<String> {
    let before = sink.messages().len();
    let mut c = Client::connect(smtp).await;
    c.ehlo("client.test").await;
    c.send_mail(
        "alice@sender.test",
        &[rcpt],
        &common::smtp::message("alice@sender.test", rcpt, subject, "hi"),
    )
    .await;
    c.quit().await;
    let got = sink.wait_for(before + 1, Duration::from_secs(15)).await;
    got[before].rcpt_to.clone()
}

/// `/health` of a node: (status, cluster).
async fn health(node: &TestRelay) -> (String, String) {
    let (_, body) = common::http::request(node.http, "GET", "/health", None, None).await;
    (
        body["status"].as_str().unwrap_or("").to_string(),
        body["cluster"].as_str().unwrap_or("").to_string(),
    )
}

async fn wait_health(node: &TestRelay, want: (&str, &str), limit: Duration) {
    let began = Instant::now();
    loop {
        let got = health(node).await;
        if (got.0.as_str(), got.1.as_str()) == want {
            return;
        }
        assert!(
            began.elapsed() < limit,
            "health still {got:?} after {limit:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SHOP: &str = "INSERT INTO domains (domain, source) VALUES ('shop.example', 'static')";

#[tokio::test]
async fn a_static_alias_written_in_postgres_forwards_at_every_node_within_2s() {
    let pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let a = TestRelay::start(|c| cluster_node(c, &pg, "node-a", &sink)).await;
    let b = TestRelay::start(|c| cluster_node(c, &pg, "node-b", &sink)).await;
    wait_health(&a, ("ok", "ok"), RECONNECT_LIMIT).await;
    wait_health(&b, ("ok", "ok"), RECONNECT_LIMIT).await;
    let db = psql(&pg).await;
    db.batch_execute(&format!(
        "BEGIN; SET LOCAL eas.origin = 'node-a'; {SHOP};
         INSERT INTO static_aliases (domain, local, forwards) VALUES ('shop.example', 'sales', '{{boss@dest.test}}');
         COMMIT;"
    ))
    .await
    .unwrap();
    let at_a = wait_rcpt(a.smtp, "sales@shop.example", "250", PROPAGATION).await;
    let at_b = wait_rcpt(b.smtp, "sales@shop.example", "250", PROPAGATION).await;
    eprintln!("static alias propagation: A {at_a:?}, B {at_b:?}");
    assert_eq!(
        deliver(&sink, b.smtp, "sales@shop.example", "via B").await,
        vec!["boss@dest.test".to_string()]
    );
    // The database's id is the alias's id on every node.
    let id: i64 = db
        .query_one("SELECT id FROM static_aliases WHERE local = 'sales'", &[])
        .await
        .unwrap()
        .get(0);
    for node in [&a, &b] {
        let (status, body) = node
            .api("GET", "/v3/domains/shop.example/aliases/sales", None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["alias"]["id"].as_i64(), Some(id), "{body}");
    }
    // A suspension stops it everywhere; lifting it brings it back.
    db.batch_execute(
        "INSERT INTO suspensions (domain, local, suspended_by) VALUES ('shop.example', 'sales', 'op')",
    )
    .await
    .unwrap();
    wait_rcpt(a.smtp, "sales@shop.example", "550", PROPAGATION).await;
    wait_rcpt(b.smtp, "sales@shop.example", "550", PROPAGATION).await;
    db.batch_execute("DELETE FROM suspensions").await.unwrap();
    wait_rcpt(b.smtp, "sales@shop.example", "250", PROPAGATION).await;
    // An edit of the forward arrives; the domain's removal takes its
    // aliases with it.
    db.batch_execute("UPDATE static_aliases SET forwards = '{other@dest.test}'")
        .await
        .unwrap();
    let began = Instant::now();
    loop {
        let (_, body) = a
            .api("GET", "/v3/domains/shop.example/aliases/sales", None)
            .await;
        if body["alias"]["forward"] == "other@dest.test" {
            break;
        }
        assert!(began.elapsed() < PROPAGATION, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.batch_execute("DELETE FROM domains").await.unwrap();
    wait_rcpt(a.smtp, "sales@shop.example", "550", PROPAGATION).await;
    wait_rcpt(b.smtp, "sales@shop.example", "550", PROPAGATION).await;
    // Every node reports itself with the change it applied.
    let newest: i64 = db
        .query_one("SELECT max(id) FROM changes", &[])
        .await
        .unwrap()
        .get(0);
    let began = Instant::now();
    loop {
        let rows = db
            .query("SELECT id, applied_change_id FROM nodes ORDER BY id", &[])
            .await
            .unwrap();
        let seen: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if seen == [("node-a".into(), newest), ("node-b".into(), newest)] {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(5), "{seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop().await;
    b.stop().await;
}
