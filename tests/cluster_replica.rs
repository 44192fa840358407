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
use common::proxy::TcpProxy;
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

/// The number of aliases of `domain` a node lists.
async fn alias_total(node: &TestRelay, domain: &str) -> i64 {
    let (status, body) = node
        .api("GET", &format!("/v3/domains/{domain}/aliases"), None)
        .await;
    if status != 200 {
        return -1;
    }
    body["total"].as_i64().unwrap_or(-1)
}

#[tokio::test]
async fn a_new_node_with_an_empty_data_dir_joins_and_serves_every_alias() {
    const N: i64 = 2000;
    let pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    // The schema is there (a first node migrated it), with aliases.
    let first = TestRelay::start(|c| cluster_node(c, &pg, "node-a", &sink)).await;
    wait_health(&first, ("ok", "ok"), RECONNECT_LIMIT).await;
    let db = psql(&pg).await;
    db.batch_execute(&format!(
        "{SHOP};
         INSERT INTO static_aliases (domain, local, forwards)
             SELECT 'shop.example', 'u' || g, ARRAY['box' || g || '@dest.test'] FROM generate_series(1, {N}) g;
         INSERT INTO suspensions (domain, local, suspended_by) VALUES ('shop.example', 'u7', 'op');"
    ))
    .await
    .unwrap();
    let began = Instant::now();
    let joined = TestRelay::start(|c| cluster_node(c, &pg, "node-c", &sink)).await;
    // Its SMTP serves once the snapshot is in: the first answer is right.
    assert!(
        rcpt_reply(joined.smtp, "u1999@shop.example")
            .await
            .starts_with("250")
    );
    eprintln!("a fresh node synced {N} aliases in {:?}", began.elapsed());
    assert_eq!(alias_total(&joined, "shop.example").await, N);
    assert!(
        rcpt_reply(joined.smtp, "u7@shop.example")
            .await
            .starts_with("550")
    );
    assert!(
        rcpt_reply(joined.smtp, "u0@shop.example")
            .await
            .starts_with("550")
    );
    assert_eq!(
        deliver(&sink, joined.smtp, "u42@shop.example", "joined").await,
        vec!["box42@dest.test".to_string()]
    );
    // Stopped, it misses changes that are then pruned from the table: at
    // its next start it cannot catch up from its id, takes a snapshot, and
    // drops what the database no longer holds.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let c = TestRelay::start_in(&data, |c| cluster_node(c, &pg, "node-d", &sink)).await;
    assert!(
        rcpt_reply(c.smtp, "u5@shop.example")
            .await
            .starts_with("250")
    );
    c.stop().await;
    db.batch_execute(
        "DELETE FROM static_aliases WHERE local = 'u5';
         INSERT INTO static_aliases (domain, local, forwards) VALUES ('shop.example', 'late', '{late@dest.test}');
         DELETE FROM changes;",
    )
    .await
    .unwrap();
    let c = TestRelay::start_in(&data, |c| cluster_node(c, &pg, "node-d", &sink)).await;
    assert!(
        rcpt_reply(c.smtp, "late@shop.example")
            .await
            .starts_with("250")
    );
    assert!(
        rcpt_reply(c.smtp, "u5@shop.example")
            .await
            .starts_with("550")
    );
    assert_eq!(alias_total(&c, "shop.example").await, N);
    c.stop().await;
    joined.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn postgres_down_nodes_keep_forwarding_and_catch_up_when_it_is_back() {
    let mut pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let a = TestRelay::start(|c| cluster_node(c, &pg, "node-a", &sink)).await;
    let b_dir = tempfile::tempdir().unwrap();
    let b = TestRelay::start_in(b_dir.path(), |c| cluster_node(c, &pg, "node-b", &sink)).await;
    wait_health(&a, ("ok", "ok"), RECONNECT_LIMIT).await;
    let db = psql(&pg).await;
    db.batch_execute(&format!(
        "{SHOP}; INSERT INTO static_aliases (domain, local, forwards) VALUES ('shop.example', 'known', '{{k@dest.test}}');"
    ))
    .await
    .unwrap();
    wait_rcpt(a.smtp, "known@shop.example", "250", PROPAGATION).await;
    wait_rcpt(b.smtp, "known@shop.example", "250", PROPAGATION).await;
    drop(db);

    pg.stop();
    wait_health(&a, ("degraded", "unreachable"), RECONNECT_LIMIT).await;
    wait_health(&b, ("degraded", "unreachable"), RECONNECT_LIMIT).await;
    assert_eq!(
        deliver(&sink, a.smtp, "known@shop.example", "while down").await,
        vec!["k@dest.test".to_string()]
    );
    // A synced node restarts and serves while the database is down.
    b.stop().await;
    let b = TestRelay::start_in(b_dir.path(), |c| cluster_node(c, &pg, "node-b", &sink)).await;
    assert_eq!(
        deliver(&sink, b.smtp, "known@shop.example", "restarted while down").await,
        vec!["k@dest.test".to_string()]
    );
    assert_eq!(health(&b).await, ("degraded".into(), "unreachable".into()));
    // A node never synced cannot serve anything true: it refuses to start.
    let fresh = tempfile::tempdir().unwrap();
    let mut config = common::relay::test_config(fresh.path());
    cluster_node(&mut config, &pg, "node-new", &sink);
    let listeners = eas_relay::Listeners {
        smtp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let refused = eas_relay::run(config, listeners, std::future::pending::<()>())
        .await
        .expect_err("a node never synced must not start without the database");
    let said = refused.to_string();
    assert!(said.contains("never synced"), "{said}");

    // Back: changes written before the nodes have reconnected arrive by
    // the catch-up from the table (their NOTIFY went to nobody).
    pg.restart().await;
    let db = psql(&pg).await;
    db.batch_execute(
        "INSERT INTO static_aliases (domain, local, forwards) VALUES ('shop.example', 'meanwhile', '{m@dest.test}');
         DELETE FROM static_aliases WHERE local = 'known';",
    )
    .await
    .unwrap();
    for node in [&a, &b] {
        wait_rcpt(node.smtp, "meanwhile@shop.example", "250", RECONNECT_LIMIT).await;
        wait_rcpt(node.smtp, "known@shop.example", "550", PROPAGATION).await;
        wait_health(node, ("ok", "ok"), PROPAGATION).await;
    }
    a.stop().await;
    b.stop().await;
}

/// anvil with the contracts, PostgreSQL, a sink, and two nodes following
/// both; dev account 1 owns `fsociety.country` for a year.
struct ChainCluster {
    chain: Chain,
    /// Between node B and anvil, when started with one.
    proxy: Option<TcpProxy>,
    pg: TestPostgres,
    sink: TestSink,
    a: TestRelay,
    b: TestRelay,
}

const FORWARD: &str = "mr.robot@dest.test";

impl ChainCluster {
    async fn start() -> ChainCluster {
        Self::start_with(false).await
    }

    /// With `proxy_b`, node B reads the chain through a proxy the test can
    /// cut.
    async fn start_with(proxy_b: bool) -> ChainCluster {
        let chain = Chain::start().await;
        let proxy = if proxy_b {
            let anvil: SocketAddr = format!("127.0.0.1:{}", chain.anvil.port()).parse().unwrap();
            Some(TcpProxy::start(anvil).await)
        } else {
            None
        };
        let pg = TestPostgres::start().await;
        let sink = TestSink::start().await;
        let node = |id: &'static str, rpc: String| {
            let config = chain_config(&chain, &rpc);
            let (pg, sink) = (&pg, &sink);
            move |c: &mut Config| {
                cluster_node(c, pg, id, sink);
                c.chain = config;
            }
        };
        let a = TestRelay::start(node("node-a", chain.anvil.url())).await;
        let b_rpc = proxy
            .as_ref()
            .map(TcpProxy::url)
            .unwrap_or_else(|| chain.anvil.url());
        let b = TestRelay::start(node("node-b", b_rpc)).await;
        wait_health(&a, ("ok", "ok"), RECONNECT_LIMIT).await;
        wait_health(&b, ("ok", "ok"), RECONNECT_LIMIT).await;
        chain
            .register(SLD, dev_signer(1).address(), YEAR)
            .await
            .unwrap();
        ChainCluster {
            chain,
            proxy,
            pg,
            sink,
            a,
            b,
        }
    }

    /// Writes a reveal row as the node `origin` would after `/activate`.
    async fn insert_reveal(&self, alias: &str, forward: &str, signature: &str, commitment: &str) {
        psql(&self.pg)
            .await
            .batch_execute(&format!(
                "BEGIN; SET LOCAL eas.origin = 'node-a';
                 INSERT INTO domains (domain, source) VALUES ('{DOMAIN}', 'chain') ON CONFLICT DO NOTHING;
                 INSERT INTO chain_reveals (domain, sld, tld, local, alias, forward, signature, commitment, accepted_by)
                 VALUES ('{DOMAIN}', '{SLD}', 'country', '{}', '{alias}', '{forward}', '{signature}', '{commitment}', 'node-a');
                 COMMIT;",
                alias.to_ascii_lowercase()
            ))
            .await
            .unwrap();
    }

    async fn sql(&self, sql: &str) {
        psql(&self.pg).await.batch_execute(sql).await.unwrap();
    }

    fn nodes(&self) -> [&TestRelay; 2] {
        [&self.a, &self.b]
    }
}

#[tokio::test]
async fn a_reveal_in_postgres_forwards_at_every_node_after_its_own_chain_check() {
    let t = ChainCluster::start().await;
    let owner = dev_signer(1);
    let hello = format!("hello@{DOMAIN}");
    let a = t
        .chain
        .activate(&owner, SLD, "hello", FORWARD)
        .await
        .unwrap();
    t.insert_reveal(
        "hello",
        FORWARD,
        &a.signature_hex,
        &format!("{:#x}", a.commitment),
    )
    .await;
    for node in t.nodes() {
        let took = wait_rcpt(node.smtp, &hello, "250", PROPAGATION).await;
        eprintln!("reveal propagation: {took:?}");
    }
    assert_eq!(
        deliver(&t.sink, t.b.smtp, &hello, "via B").await,
        vec![FORWARD.to_string()]
    );
    // Deactivated on chain: every node's own watcher stops it (the row
    // is still in the database).
    t.chain.deactivate(&owner, SLD, "hello").await.unwrap();
    t.chain.mine(CONFIRMATIONS + 1).await;
    for node in t.nodes() {
        wait_rcpt(node.smtp, &hello, "550", Duration::from_secs(15)).await;
    }
    t.a.stop().await;
    t.b.stop().await;
}

#[tokio::test]
async fn an_attacker_editing_a_reveal_in_the_database_cannot_redirect_mail() {
    let t = ChainCluster::start().await;
    let owner = dev_signer(1);
    let hello = format!("hello@{DOMAIN}");
    let a = t
        .chain
        .activate(&owner, SLD, "hello", FORWARD)
        .await
        .unwrap();
    let commitment = format!("{:#x}", a.commitment);
    t.insert_reveal("hello", FORWARD, &a.signature_hex, &commitment)
        .await;
    for node in t.nodes() {
        wait_rcpt(node.smtp, &hello, "250", PROPAGATION).await;
    }
    // Somebody with write access to the database sends the alias's mail
    // to themselves: no node forwards it anywhere.
    let db = psql(&t.pg).await;
    db.batch_execute("UPDATE chain_reveals SET forward = 'thief@dest.test'")
        .await
        .unwrap();
    for node in t.nodes() {
        wait_rcpt(node.smtp, &hello, "550", PROPAGATION).await;
    }
    // A reveal the owner signed but never activated on chain, and one
    // whose row moved to another alias's key, are refused as well.
    let unsent = common::anvil::authorize(&owner, SLD, "ghost", "ghost@dest.test");
    t.insert_reveal(
        "ghost",
        "ghost@dest.test",
        &unsent.signature_hex,
        &format!("{:#x}", unsent.commitment),
    )
    .await;
    db.batch_execute(&format!(
        "INSERT INTO chain_reveals (domain, sld, tld, local, alias, forward, signature, commitment, accepted_by)
         VALUES ('{DOMAIN}', '{SLD}', 'country', 'other', 'hello', '{FORWARD}', '{}', '{commitment}', 'x')",
        a.signature_hex
    ))
    .await
    .unwrap();
    // The rows after them are applied (the feed goes on).
    db.batch_execute(&format!(
        "{SHOP}; INSERT INTO static_aliases (domain, local, forwards) VALUES ('shop.example', 'after', '{{x@dest.test}}');"
    ))
    .await
    .unwrap();
    for node in t.nodes() {
        wait_rcpt(node.smtp, "after@shop.example", "250", PROPAGATION).await;
        for refused in ["ghost", "other", "hello"] {
            let reply = rcpt_reply(node.smtp, &format!("{refused}@{DOMAIN}")).await;
            assert!(reply.starts_with("550"), "{refused}: {reply}");
        }
    }
    assert!(
        t.sink
            .messages()
            .iter()
            .all(|m| !m.rcpt_to.iter().any(|r| r.starts_with("thief"))),
        "mail reached the thief"
    );
    // The owner's forward written back holds again.
    db.batch_execute(&format!(
        "UPDATE chain_reveals SET forward = '{FORWARD}' WHERE local = 'hello'"
    ))
    .await
    .unwrap();
    for node in t.nodes() {
        wait_rcpt(node.smtp, &hello, "250", PROPAGATION).await;
    }
    t.a.stop().await;
    t.b.stop().await;
}

#[tokio::test]
async fn reconciliation_repairs_what_the_feed_missed_and_nothing_else() {
    use eas_relay::cluster::Db;
    use eas_relay::replica::{Replica, Timing};
    use eas_relay::store::Store;
    let pg = TestPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(&dir.path().join("store.redb")).unwrap());
    let config = eas_relay::config::ClusterConfig {
        enabled: true,
        database_url: pg.url(),
        ..Default::default()
    };
    let timing = Timing::from_config(&config);
    // No chain on this node: a reveal is refused (and stays so while its
    // row is the same: not a difference to repair each time).
    let replica = Replica::new(
        Db::open(&config).unwrap(),
        "n".into(),
        store.clone(),
        None,
        timing,
    );
    replica.start().await.unwrap();
    let db = psql(&pg).await;
    db.batch_execute(&format!(
        "{SHOP};
         INSERT INTO static_aliases (domain, local, forwards) VALUES
             ('shop.example', 'a', '{{a@dest.test,b@dest.test}}'), ('shop.example', 'b', '{{b@dest.test}}');
         INSERT INTO suspensions (domain, local, suspended_by) VALUES ('shop.example', 'b', 'op');
         INSERT INTO domains (domain, source) VALUES ('{DOMAIN}', 'chain');
         INSERT INTO chain_reveals (domain, sld, tld, local, alias, forward, signature, commitment, accepted_by)
         VALUES ('{DOMAIN}', '{SLD}', 'country', 'me', 'Me', 'me@dest.test', '0x' || repeat('ab', 65),
                 '0x' || repeat('cd', 32), 'x');"
    ))
    .await
    .unwrap();
    replica.start().await.unwrap();
    assert!(store.alias_get("shop.example", "a").unwrap().is_some());
    assert!(
        !store
            .alias_get("shop.example", "b")
            .unwrap()
            .unwrap()
            .active
    );
    assert!(store.alias_get(DOMAIN, "me").unwrap().is_none());
    // In step: the digests of both sides agree.
    assert_eq!(replica.reconcile_now().await.unwrap(), 0);
    // Writes that leave no change row (triggers off: what a lost change
    // looks like to a node) are found and repaired, both ways.
    db.batch_execute(
        "ALTER TABLE static_aliases DISABLE TRIGGER static_aliases_change;
         ALTER TABLE suspensions DISABLE TRIGGER suspensions_change;
         INSERT INTO static_aliases (domain, local, forwards) VALUES ('shop.example', 'silent', '{s@dest.test}');
         DELETE FROM static_aliases WHERE local = 'a';
         DELETE FROM suspensions;
         ALTER TABLE static_aliases ENABLE TRIGGER static_aliases_change;
         ALTER TABLE suspensions ENABLE TRIGGER suspensions_change;",
    )
    .await
    .unwrap();
    replica.start().await.unwrap();
    assert!(store.alias_get("shop.example", "silent").unwrap().is_none());
    assert_eq!(replica.reconcile_now().await.unwrap(), 1);
    let silent = store.alias_get("shop.example", "silent").unwrap().unwrap();
    assert_eq!(silent.forwards, vec!["s@dest.test".to_string()]);
    assert!(store.alias_get("shop.example", "a").unwrap().is_none());
    assert!(
        store
            .alias_get("shop.example", "b")
            .unwrap()
            .unwrap()
            .active
    );
    assert_eq!(replica.reconcile_now().await.unwrap(), 0);
}

#[tokio::test]
async fn a_node_that_cannot_reach_the_chain_waits_to_check_a_reveal_and_does_not_refuse_it() {
    let t = ChainCluster::start_with(true).await;
    let owner = dev_signer(1);
    let (hello, later) = (format!("hello@{DOMAIN}"), format!("later@{DOMAIN}"));
    let a = t
        .chain
        .activate(&owner, SLD, "hello", FORWARD)
        .await
        .unwrap();
    t.insert_reveal(
        "hello",
        FORWARD,
        &a.signature_hex,
        &format!("{:#x}", a.commitment),
    )
    .await;
    for node in t.nodes() {
        wait_rcpt(node.smtp, &hello, "250", PROPAGATION).await;
    }
    // B cannot ask the chain: the next reveal waits there, and so do the
    // rows after it (they are applied in order); A forwards it.
    t.proxy.as_ref().unwrap().cut();
    let l = t
        .chain
        .activate(&owner, SLD, "later", FORWARD)
        .await
        .unwrap();
    t.insert_reveal(
        "later",
        FORWARD,
        &l.signature_hex,
        &format!("{:#x}", l.commitment),
    )
    .await;
    t.sql(&format!(
        "{SHOP}; INSERT INTO static_aliases (domain, local, forwards) VALUES ('shop.example', 'behind', '{{x@dest.test}}');"
    ))
    .await;
    wait_rcpt(t.a.smtp, &later, "250", PROPAGATION).await;
    wait_rcpt(t.a.smtp, "behind@shop.example", "250", PROPAGATION).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rcpt_reply(t.b.smtp, &later).await.starts_with("550"));
    assert!(
        rcpt_reply(t.b.smtp, "behind@shop.example")
            .await
            .starts_with("550")
    );
    // What B knew is not refused for it.
    assert!(rcpt_reply(t.b.smtp, &hello).await.starts_with("250"));
    // The chain back: checked, applied, and the rows after it too.
    t.proxy.as_ref().unwrap().restore();
    wait_rcpt(t.b.smtp, &later, "250", Duration::from_secs(10)).await;
    wait_rcpt(t.b.smtp, "behind@shop.example", "250", PROPAGATION).await;
    t.a.stop().await;
    t.b.stop().await;
}

#[tokio::test]
async fn an_attacker_writing_poison_rows_in_the_database_cannot_stop_the_feed() {
    let pg = TestPostgres::start().await;
    let sink = TestSink::start().await;
    let a = TestRelay::start(|c| cluster_node(c, &pg, "node-a", &sink)).await;
    wait_health(&a, ("ok", "ok"), RECONNECT_LIMIT).await;
    let db = psql(&pg).await;
    // Rows no node can take: JSON nested past serde_json's limit, a
    // number out of range, a payload of megabytes (compressible, so small
    // on disk), a domain whose settings are huge (a table row: read by a
    // snapshot too), and an id past the sequence (i64::MAX: no row would
    // ever come after it).
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    db.batch_execute(&format!(
        "INSERT INTO changes (kind, key, payload, origin) VALUES
           ('domain', 'deep.example', '{deep}'::jsonb, ''),
           ('domain', 'num.example', '{{\"domain\":\"num.example\",\"active\":1e400}}'::jsonb, ''),
           ('alias', 'x@big.example', jsonb_build_object('pad', repeat('a', 5000000)), '');
         INSERT INTO domains (domain, source, settings)
           VALUES ('huge.example', 'static', jsonb_build_object('whitelabel', repeat('b', 200000)));
         INSERT INTO changes (id, kind, key, payload, origin)
           VALUES (9223372036854775807, 'domain', 'max.example', 'null'::jsonb, '');",
    ))
    .await
    .unwrap();
    // A real change after them arrives all the same.
    db.batch_execute(&format!(
        "{SHOP}; INSERT INTO static_aliases (domain, local, forwards)
                 VALUES ('shop.example', 'sales', '{{boss@dest.test}}');"
    ))
    .await
    .unwrap();
    wait_rcpt(a.smtp, "sales@shop.example", "250", PROPAGATION).await;
    assert_eq!(health(&a).await, ("ok".to_string(), "ok".to_string()));
    // And the next one (the feed did not stop at i64::MAX).
    db.batch_execute(
        "INSERT INTO static_aliases (domain, local, forwards)
         VALUES ('shop.example', 'next', '{boss@dest.test}')",
    )
    .await
    .unwrap();
    wait_rcpt(a.smtp, "next@shop.example", "250", PROPAGATION).await;
    // A node joining takes its snapshot past the huge row and serves.
    let b = TestRelay::start(|c| cluster_node(c, &pg, "node-b", &sink)).await;
    wait_health(&b, ("ok", "ok"), RECONNECT_LIMIT).await;
    wait_rcpt(b.smtp, "next@shop.example", "250", PROPAGATION).await;
    a.stop().await;
    b.stop().await;
}
