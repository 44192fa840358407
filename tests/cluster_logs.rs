//! The cluster's delivery log against a real PostgreSQL
//! (tests/common/postgres.rs) and in-process nodes: mail through node A
//! and node B appears in either node's log API; PostgreSQL stopped — mail
//! is still delivered, the rows wait in the node's outbox and the API
//! answers from the node's own log (and says so); PostgreSQL back — the
//! rows appear, once; a restart (clean, or the real binary killed with
//! SIGKILL) with a non-empty outbox loses nothing; a node started while
//! PostgreSQL is down sends its log when it returns; a bounded outbox drops
//! its oldest rows and counts them; retention deletes PostgreSQL's old rows.

mod common;

use common::postgres::TestPostgres;
use common::relay::TestRelay;
use common::sink::TestSink;
use common::smtp::{Client, message};
use eas_relay::cluster::Db;
use eas_relay::config::{ClusterConfig, HumanDuration};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const DOMAIN: &str = "shop.test";

fn cluster(pg: &TestPostgres, node_id: &str) -> ClusterConfig {
    ClusterConfig {
        enabled: true,
        database_url: pg.url(),
        node_id: node_id.into(),
        connect_timeout: HumanDuration::secs(1),
        ..Default::default()
    }
}

/// A cluster node named `id` forwarding `hello@shop.test` to the sink, in
/// `dir` (a fresh directory when None); `outbox_max` bounds its outbox.
async fn node(
    pg: &TestPostgres,
    id: &str,
    sink: &TestSink,
    dir: Option<&Path>,
    outbox_max: u64,
) -> TestRelay {
    let sink = sink.addr.to_string();
    let mut config = cluster(pg, id);
    config.log_outbox_max = outbox_max;
    let tweak = move |c: &mut eas_relay::config::Config| {
        c.cluster = config;
        c.outbound.routes.insert("dest.test".into(), sink);
    };
    // The alias is in PostgreSQL (when it answers): every node's replica
    // takes it from there.
    seed(pg).await;
    let relay = match dir {
        Some(dir) => TestRelay::start_in(dir, tweak).await,
        None => TestRelay::start(tweak).await,
    };
    wait_api(&relay).await;
    relay
}

/// `hello@shop.test → u@dest.test` in PostgreSQL, unless it is down.
async fn seed(pg: &TestPostgres) {
    // The schema first, as a node would (seeding precedes the first node).
    match Db::connect(&cluster(pg, "seed")).await {
        Ok(db) => {
            let _ = db.migrate().await;
        }
        Err(_) => return,
    }
    let Ok((client, connection)) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await
    else {
        return;
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute(&format!(
            "INSERT INTO domains (domain, source) VALUES ('{DOMAIN}', 'static') ON CONFLICT DO NOTHING;
             INSERT INTO static_aliases (domain, local, forwards)
             VALUES ('{DOMAIN}', 'hello', '{{u@dest.test}}') ON CONFLICT DO NOTHING;"
        ))
        .await
        .ok();
}

async fn wait_api(relay: &TestRelay) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(relay.http),
        )
        .await
        {
            let (status, _) = relay.api("GET", "/v3/domains", None).await;
            if status == 200 {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "node API not up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(relay: &TestRelay, subject: &str) {
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    let msg = message("s@example.org", "hello@shop.test", subject, "hi");
    let reply = c
        .send_mail("s@example.org", &["hello@shop.test"], &msg)
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    c.quit().await;
}

/// The node's answer for the domain's log: (body, its source header).
async fn logs(relay: &TestRelay, path: &str) -> (Value, String) {
    let bearer = format!("Bearer {}", relay.key);
    let auth = [("Authorization", bearer.as_str())];
    let (status, text) = raw_logs(relay, path, &auth).await;
    assert_eq!(status, 200, "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let source = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-eas-logs-source: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (serde_json::from_str(body).expect("JSON body"), source)
}

/// A GET whose whole response (head and body, not chunked) is returned.
async fn raw_logs(relay: &TestRelay, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(relay.http).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn subjects(body: &Value) -> Vec<String> {
    let mut out: Vec<String> = body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

/// Waits until the node's log API answers from the node's own log (the
/// cluster's unreachable) with `want` subjects (the sink may get a message
/// a moment before its log row is committed).
async fn wait_local(relay: &TestRelay, want: &[&str]) -> Value {
    let path = format!("/v3/domains/{DOMAIN}/logs");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (body, source) = logs(relay, &path).await;
        if subjects(&body) == want {
            assert_eq!(source, "local", "{body}");
            assert!(
                body["warning"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("PostgreSQL is unreachable"),
                "{body}"
            );
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "local log never showed {want:?}: {source} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the node's log API (from the cluster) shows `want` subjects.
async fn wait_logs(relay: &TestRelay, want: &[&str]) -> Value {
    let path = format!("/v3/domains/{DOMAIN}/logs");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (body, source) = logs(relay, &path).await;
        if source == "cluster" && subjects(&body) == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "log never showed {want:?}: {source} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pg_rows(pg: &TestPostgres) -> Vec<(String, String)> {
    let db = Db::connect(&cluster(pg, "reader")).await.unwrap();
    let c = db.client().await.unwrap();
    let rows = c
        .query(
            "SELECT node_id, coalesce(subject, '') FROM delivery_log ORDER BY 2",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_mail_through_node_a_and_node_b_appear_via_either_node() {
    let pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let a = node(&pg, "node-a", &sink, None, 1000).await;
    let b = node(&pg, "node-b", &sink, None, 1000).await;
    send(&a, "via A").await;
    send(&b, "via B").await;
    sink.wait_for(2, WAIT).await;

    let from_a = wait_logs(&a, &["via A", "via B"]).await;
    let from_b = wait_logs(&b, &["via A", "via B"]).await;
    assert_eq!(
        from_a["logs"], from_b["logs"],
        "both nodes show the same log"
    );
    for item in from_a["logs"].as_array().unwrap() {
        assert_eq!(item["alias"], "hello@shop.test");
        assert_eq!(item["forward"]["email"], "u@dest.test");
        assert_eq!(item["events"][0]["status"], "DELIVERED");
        assert_eq!(item["events"][0]["code"], 250);
    }
    // The alias filter works on the cluster's log too.
    let (one, source) = logs(&a, &format!("/v3/domains/{DOMAIN}/logs/HELLO")).await;
    assert_eq!(source, "cluster");
    assert_eq!(one["logs"].as_array().unwrap().len(), 2);
    let (none, _) = logs(&a, &format!("/v3/domains/{DOMAIN}/logs/other")).await;
    assert_eq!(none["logs"], serde_json::json!([]));
    // Pagination.
    let (page, _) = logs(&b, &format!("/v3/domains/{DOMAIN}/logs?limit=1&page=2")).await;
    assert_eq!(page["logs"].as_array().unwrap().len(), 1);
    assert_eq!(page["logs"][0], from_a["logs"][1]);

    // The same items as the node's own log renders (the shape of today):
    // A's own row, read with PostgreSQL gone, equals the cluster's.
    assert_eq!(
        pg_rows(&pg).await,
        vec![
            ("node-a".to_string(), "via A".to_string()),
            ("node-b".to_string(), "via B".to_string())
        ]
    );
    let mut pg = pg;
    pg.stop();
    let local = wait_local(&a, &["via A"]).await;
    let cluster_item = from_a["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["subject"] == "via A")
        .unwrap();
    assert_eq!(&local["logs"][0], cluster_item);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_mail_delivered_rows_buffered_then_flushed_once() {
    let mut pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let a = node(&pg, "node-a", &sink, None, 1000).await;
    pg.stop();
    send(&a, "while down 1").await;
    send(&a, "while down 2").await;
    sink.wait_for(2, WAIT).await;
    // The API answers from the node's own log, and says so.
    wait_local(&a, &["while down 1", "while down 2"]).await;
    // Still buffered after a while (nothing lost, nothing sent).
    tokio::time::sleep(Duration::from_secs(1)).await;

    pg.restart().await;
    wait_logs(&a, &["while down 1", "while down 2"]).await;
    let rows = pg_rows(&pg).await;
    assert_eq!(rows.len(), 2, "{rows:?}");

    // The same rows sent again (a removal lost in a crash) are one row.
    let db = Db::connect(&cluster(&pg, "node-a")).await.unwrap();
    let sent = db.list_logs(DOMAIN, None, 0, 10).await.unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(db.insert_logs("node-a", &sent).await.unwrap(), 0);
    assert_eq!(pg_rows(&pg).await.len(), 2, "no duplicates");
    // Another node's rows with the same ids are its own.
    assert_eq!(db.insert_logs("node-z", &sent).await.unwrap(), 2);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_non_empty_outbox_loses_nothing() {
    let mut pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(&pg, "node-a", &sink, Some(dir.path()), 1000).await;
    pg.stop();
    send(&a, "before restart 1").await;
    send(&a, "before restart 2").await;
    sink.wait_for(2, WAIT).await;
    wait_local(&a, &["before restart 1", "before restart 2"]).await;
    a.stop().await;
    {
        // The rows are in the stopped node's store, waiting.
        let store = eas_relay::store::Store::open(&dir.path().join("eas-relay.redb")).unwrap();
        assert_eq!(store.log_outbox_len().unwrap(), 2);
    }
    pg.restart().await;
    let a = node(&pg, "node-a", &sink, Some(dir.path()), 1000).await;
    wait_logs(&a, &["before restart 1", "before restart 2"]).await;
    assert_eq!(pg_rows(&pg).await.len(), 2);
    a.stop().await;
    let store = eas_relay::store::Store::open(&dir.path().join("eas-relay.redb")).unwrap();
    assert_eq!(
        store.log_outbox_len().unwrap(),
        0,
        "the outbox is empty once sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_drops_its_oldest_rows_and_counts_them() {
    let mut pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let a = node(&pg, "node-a", &sink, None, 2).await;
    pg.stop();
    for n in 1..=3 {
        send(&a, &format!("full {n}")).await;
        sink.wait_for(n, WAIT).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, text) = raw_logs(&a, "/metrics", &[]).await;
        let dropped = text
            .lines()
            .find_map(|l| l.strip_prefix("eas_cluster_log_outbox_dropped_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if dropped >= 1.0 {
            assert_eq!(dropped, 1.0, "one row dropped");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no drop counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pg.restart().await;
    // The newest two reach PostgreSQL; the node's own log keeps all three.
    wait_logs(&a, &["full 2", "full 3"]).await;
    pg.stop();
    wait_local(&a, &["full 1", "full 2", "full 3"]).await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_rows_of_every_node_in_postgres() {
    let pg = TestPostgres::start().await;
    let db = Db::connect(&cluster(&pg, "node-a")).await.unwrap();
    db.migrate().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let row = |id: u64, time: u64| eas_relay::store::LogEntry {
        id,
        time,
        queue_id: id,
        sender: "s@example.org".into(),
        alias: "hello@shop.test".into(),
        recipient: "hello@shop.test".into(),
        forward: "u@dest.test".into(),
        subject: Some(format!("row {id}")),
        message_id: None,
        outcome: eas_relay::store::LogOutcome::Delivered,
        code: 250,
        message: "ok".into(),
        server: None,
        spam: None,
    };
    let day = 86_400_000;
    let old: Vec<_> = (1..=5).map(|id| row(id, now - 10 * day)).collect();
    let new: Vec<_> = (6..=7).map(|id| row(id, now - day)).collect();
    assert_eq!(db.insert_logs("node-a", &old).await.unwrap(), 5);
    assert_eq!(db.insert_logs("node-b", &old[..2]).await.unwrap(), 2);
    assert_eq!(db.insert_logs("node-b", &new).await.unwrap(), 2);
    // Batches of 2: every old row of both nodes goes, the newer stay.
    assert_eq!(db.purge_logs(now - 7 * day, 2).await.unwrap(), 7);
    let left = db.list_logs(DOMAIN, None, 0, 100).await.unwrap();
    let subjects: Vec<_> = left.iter().filter_map(|l| l.subject.clone()).collect();
    assert_eq!(subjects, vec!["row 7", "row 6"], "newest first");
    assert_eq!(db.purge_logs(now - 7 * day, 2).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_while_postgres_is_down_and_sends_its_log_when_it_returns() {
    let mut pg = TestPostgres::start().await;
    Db::connect(&cluster(&pg, "setup"))
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let sink = TestSink::start().await;
    // A node whose replica was synced once (a node never synced refuses
    // to start without PostgreSQL: tests/cluster_replica.rs).
    let dir = tempfile::tempdir().unwrap();
    node(&pg, "node-a", &sink, Some(dir.path()), 1000)
        .await
        .stop()
        .await;
    pg.stop();
    let a = node(&pg, "node-a", &sink, Some(dir.path()), 1000).await;
    send(&a, "started without postgres").await;
    sink.wait_for(1, WAIT).await;
    wait_local(&a, &["started without postgres"]).await;
    pg.restart().await;
    wait_logs(&a, &["started without postgres"]).await;
    assert_eq!(
        pg_rows(&pg).await,
        vec![("node-a".to_string(), "started without postgres".to_string())]
    );
    a.stop().await;
}

/// The real binary killed (SIGKILL) with rows in its outbox: after a
/// restart they reach PostgreSQL, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_sends_its_outbox_after_a_restart() {
    use common::node::{ADMIN_KEY, NodeFiles, NodeOptions};
    let mut pg = TestPostgres::start().await;
    let files = NodeFiles::new(NodeOptions::default());
    files.append_config(&format!(
        "[cluster]\nenabled = true\ndatabase_url = \"{}\"\nnode_id = \"node-k\"\nconnect_timeout = \"1s\"\n",
        pg.url()
    ));
    let sink = TestSink::with(common::sink::SinkOptions {
        pipelining: true,
        bind: Some(files.dest),
        ..Default::default()
    })
    .await;
    let mut node = files.start();
    let http = files.http;
    let api = |method: &'static str, path: String, body: Option<Value>| async move {
        common::http::request(http, method, &path, Some(ADMIN_KEY), body).await
    };
    let (status, body) = api(
        "POST",
        "/v3/domains".into(),
        Some(serde_json::json!({ "domain": DOMAIN })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        "POST",
        format!("/v3/domains/{DOMAIN}/aliases"),
        Some(serde_json::json!({ "alias": "hello", "forward": "u@dest.test" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    pg.stop();
    for n in 1..=3 {
        let mut c = Client::connect(files.smtp).await;
        c.ehlo("client.test").await;
        let subject = format!("killed {n}");
        let msg = message("s@example.org", "hello@shop.test", &subject, "hi");
        let reply = c
            .send_mail("s@example.org", &["hello@shop.test"], &msg)
            .await;
        assert!(reply.starts_with("250"), "{reply}");
        c.quit().await;
    }
    sink.wait_for(3, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = api("GET", format!("/v3/domains/{DOMAIN}/logs"), None).await;
        if body["logs"].as_array().map(Vec::len) == Some(3) {
            assert!(body["warning"].is_string(), "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.kill();
    pg.restart().await;
    let _node = files.start();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = pg_rows(&pg).await;
        if rows.len() == 3 {
            assert!(rows.iter().all(|(node, _)| node == "node-k"), "{rows:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_putting_a_nul_in_the_subject_cannot_block_the_cluster_log() {
    let pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let a = node(&pg, "node-a", &sink, None, 1000).await;
    // PostgreSQL's text refuses NUL: unescaped, this row would fail its
    // batch on every retry and nothing after it would ever be sent.
    send(&a, "nul\0here").await;
    send(&a, "after it").await;
    sink.wait_for(2, WAIT).await;
    wait_logs(&a, &["after it", "nul\u{FFFD}here"]).await;
    // Straight through the database layer as well (cluster init's path),
    // with a NUL in every text column and in the spam verdict's symbols.
    let db = Db::connect(&cluster(&pg, "node-z")).await.unwrap();
    let row = eas_relay::store::LogEntry {
        id: 1,
        time: 1,
        queue_id: 1,
        sender: "s\0@example.org".into(),
        alias: "hello@shop.test".into(),
        recipient: "hello@shop.test".into(),
        forward: "u@dest.test".into(),
        subject: Some("\0".into()),
        message_id: Some("<\0@x>".into()),
        outcome: eas_relay::store::LogOutcome::Refused,
        code: 550,
        message: "no\0".into(),
        server: Some("\0".into()),
        spam: Some(
            serde_json::from_value(serde_json::json!({
                "score": 20.0, "required": 15.0, "action": "reject", "symbols": "X\u{0}Y(5)"
            }))
            .unwrap(),
        ),
    };
    assert_eq!(db.insert_logs("node-z", &[row]).await.unwrap(), 1);
    a.stop().await;
}
