//! The cluster's shared database against a real PostgreSQL
//! (tests/common/postgres.rs): the embedded migrations on an empty
//! database, again (nothing changes), by several nodes at once (the schema
//! is created once); errors that say what is wrong without the password
//! (bad URL, wrong password, no database, server down, TLS not trusted);
//! TLS with a private CA; the nodes' heartbeat; change ids in commit order.

mod common;

use common::postgres::TestPostgres;
use common::test_ca;
use eas_relay::cluster::{ClusterError, Db, HISTORY_TABLE};
use eas_relay::config::{ClusterConfig, HumanDuration};
use std::time::Duration;

fn config(url: &str) -> ClusterConfig {
    ClusterConfig {
        database_url: url.to_string(),
        connect_timeout: HumanDuration::secs(3),
        ..Default::default()
    }
}

/// The tables of the public schema.
async fn tables(db: &Db) -> Vec<String> {
    let client = db.client().await.unwrap();
    let rows = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn history_rows(db: &Db) -> i64 {
    let client = db.client().await.unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {HISTORY_TABLE}"), &[])
        .await
        .unwrap()
        .get(0)
}

const SCHEMA: [&str; 8] = [
    "changes",
    "chain_reveals",
    "delivery_log",
    "dns_work",
    "domains",
    "nodes",
    "static_aliases",
    "suspensions",
];

#[tokio::test]
async fn migrations_apply_on_an_empty_database_and_a_second_run_changes_nothing() {
    let pg = TestPostgres::start().await;
    eprintln!("test PostgreSQL started in {:?}", pg.started_in);
    let db = Db::connect(&config(&pg.url())).await.unwrap();
    assert!(tables(&db).await.is_empty(), "the database starts empty");

    assert_eq!(
        db.migrate().await.unwrap(),
        vec![
            "V1__init".to_string(),
            "V2__change_triggers".to_string(),
            "V3__payload_guard".to_string()
        ]
    );
    let mut want: Vec<String> = SCHEMA.iter().map(|t| t.to_string()).collect();
    want.push(HISTORY_TABLE.to_string());
    want.sort();
    assert_eq!(tables(&db).await, want);

    // The schema works as the issue describes it: a reveal names its
    // domain, and a change row gets its id.
    let client = db.client().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO domains (domain, source) VALUES ('alice.country', 'chain');
             INSERT INTO chain_reveals (domain, sld, tld, local, alias, forward, signature, commitment, accepted_by)
             VALUES ('alice.country', 'alice', 'country', 'me', 'Me', 'me@example.com',
                     '0x' || repeat('ab', 65), '0x' || repeat('cd', 32), 'node-a');",
        )
        .await
        .unwrap();
    let bad = client
        .batch_execute(
            "INSERT INTO chain_reveals (domain, sld, tld, local, alias, forward, signature, commitment, accepted_by)
             VALUES ('alice.country', 'bob', 'country', 'x', 'x', 'x@example.com',
                     '0x' || repeat('ab', 65), '0x' || repeat('cd', 32), 'node-a');",
        )
        .await
        .expect_err("a reveal whose domain is not sld.tld");
    assert_eq!(
        bad.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    let id: i64 = client
        .query_one(
            "SELECT eas_record_change('reveal', 'me@alice.country', '{}'::jsonb, 'node-a')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(id > 0);

    // Again: nothing to apply, nothing changed, the rows are still there.
    assert!(db.migrate().await.unwrap().is_empty());
    assert_eq!(tables(&db).await, want);
    assert_eq!(history_rows(&db).await, 3);
    let reveals: i64 = client
        .query_one("SELECT count(*) FROM chain_reveals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(reveals, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_migrating_at_once_all_succeed_and_the_schema_is_created_once() {
    let pg = TestPostgres::start().await;
    // Four nodes, each with its own pool, start together.
    let mut dbs = Vec::new();
    for _ in 0..4 {
        dbs.push(Db::connect(&config(&pg.url())).await.unwrap());
    }
    let runs: Vec<_> = dbs
        .iter()
        .cloned()
        .map(|db| tokio::spawn(async move { db.migrate().await }))
        .collect();
    let mut applied = 0;
    for run in runs {
        let names = run.await.unwrap().expect("every node's migrate succeeds");
        applied += names.len();
    }
    assert_eq!(applied, 3, "V1 to V3 were applied by exactly one node");
    assert_eq!(history_rows(&dbs[0]).await, 3);
    assert_eq!(tables(&dbs[0]).await.len(), SCHEMA.len() + 1);
    // The lock was released: a later run does not wait forever.
    let again = tokio::time::timeout(Duration::from_secs(10), dbs[3].migrate()).await;
    assert!(again.expect("the lock is free").unwrap().is_empty());
}

fn assert_hidden(e: &ClusterError, secret: &str) {
    let text = e.to_string();
    assert!(
        !text.contains(secret),
        "the error shows the password: {text}"
    );
    let debug = format!("{e:?}");
    assert!(
        !debug.contains(secret),
        "the error shows the password: {debug}"
    );
}

#[tokio::test]
async fn bad_url_wrong_password_no_database_and_server_down_say_so_without_the_password() {
    let mut pg = TestPostgres::start().await;
    let port = pg.port;

    // A URL the driver cannot use.
    let url = format!("postgres://eas:Url5ecret@127.0.0.1:{port}/eas?port=x");
    let e = Db::connect(&config(&url)).await.unwrap_err();
    assert!(matches!(e, ClusterError::Url { .. }), "{e:?}");
    assert!(!e.is_temporary());
    assert_hidden(&e, "Url5ecret");

    // The right user, a wrong password.
    let url = format!("postgres://eas:Wr0ngSecret@127.0.0.1:{port}/eas");
    let e = Db::connect(&config(&url)).await.unwrap_err();
    assert!(matches!(e, ClusterError::Login { .. }), "{e:?}");
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
    assert!(!e.is_temporary());
    assert_hidden(&e, "Wr0ngSecret");

    // No password at all, where the server asks for one.
    let url = format!("postgres://eas@127.0.0.1:{port}/eas");
    let e = Db::connect(&config(&url)).await.unwrap_err();
    assert!(matches!(e, ClusterError::Login { .. }), "{e:?}");
    assert!(e.to_string().contains("password missing"), "{e}");
    assert!(!e.is_temporary());

    // A database that does not exist.
    let e = Db::connect(&config(&pg.url_for("nosuchdb")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClusterError::NoDatabase { database, .. } if database == "nosuchdb"),
        "{e:?}"
    );
    assert_hidden(&e, &pg.password);

    // A pool made while the server was up survives its restart.
    let db = Db::connect(&config(&pg.url())).await.unwrap();
    db.migrate().await.unwrap();
    db.heartbeat("node-a", 1, 0).await.unwrap();

    // Server down: unreachable, temporary, no password.
    pg.stop();
    let e = Db::connect(&config(&pg.url())).await.unwrap_err();
    assert!(matches!(e, ClusterError::Unreachable { .. }), "{e:?}");
    assert!(e.is_temporary());
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert_hidden(&e, &pg.password);
    let e = db.heartbeat("node-a", 2, 0).await.unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
    assert_hidden(&e, &pg.password);

    // Back on the same port: a new pool connects, the old one recovers.
    pg.restart().await;
    Db::connect(&config(&pg.url())).await.unwrap();
    db.heartbeat("node-a", 3, 0).await.unwrap();
    let nodes = db.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].applied_change_id, 3);
}

#[tokio::test]
async fn heartbeats_upsert_one_row_per_node() {
    let pg = TestPostgres::start().await;
    let db = Db::connect(&config(&pg.url())).await.unwrap();
    db.migrate().await.unwrap();
    db.heartbeat("mx1.relay.example", 5, 2).await.unwrap();
    db.heartbeat("mx2.relay.example", 4, 0).await.unwrap();
    let before = db.nodes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    db.heartbeat("mx1.relay.example", 7, 11).await.unwrap();
    let nodes = db.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let mx1 = &nodes[0];
    assert_eq!(mx1.id, "mx1.relay.example");
    assert_eq!((mx1.applied_change_id, mx1.queue_depth), (7, 11));
    assert!(
        mx1.last_seen_ms > before[0].last_seen_ms,
        "{mx1:?} {before:?}"
    );
    assert_eq!(mx1.first_seen_ms, before[0].first_seen_ms);
    assert_eq!(mx1.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(nodes[1], before[1], "the other node's row is untouched");
    let e = db.heartbeat("not a node", 0, 0).await.unwrap_err();
    assert!(matches!(e, ClusterError::NodeId(_)), "{e:?}");
}

#[tokio::test]
async fn change_ids_become_visible_in_commit_order() {
    let pg = TestPostgres::start().await;
    let db = Db::connect(&config(&pg.url())).await.unwrap();
    db.migrate().await.unwrap();
    let record = "SELECT eas_record_change('alias', $1, 'null'::jsonb, 'node-a')";

    // The first writer takes an id and has not committed yet.
    let mut first = db.client().await.unwrap();
    let txn = first.transaction().await.unwrap();
    let first_id: i64 = txn
        .query_one(record, &[&"a@x.example"])
        .await
        .unwrap()
        .get(0);

    // A second writer must wait for it: had it taken id n+1 and committed
    // first, a node that applied n+1 would never see n.
    let second_db = db.clone();
    let second = tokio::spawn(async move {
        let client = second_db.client().await.unwrap();
        let id: i64 = client
            .query_one(record, &[&"b@x.example"])
            .await
            .unwrap()
            .get(0);
        id
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second writer did not wait");
    txn.commit().await.unwrap();
    let second_id = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second writer goes on after the commit")
        .unwrap();
    assert!(second_id > first_id, "{second_id} after {first_id}");
}

#[tokio::test]
async fn tls_with_a_private_ca_through_ca_file() {
    let (ca, cert, key) = test_ca("eas-relay postgres test CA");
    let (other_ca, _, _) = test_ca("eas-relay postgres test CA");
    let pg = TestPostgres::start_tls(&cert, &key).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, other_file) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&ca_file, &ca).unwrap();
    std::fs::write(&other_file, &other_ca).unwrap();
    let tls_url = format!("{}?sslmode=require", pg.url());

    // Trusted through ca_file: the session is encrypted.
    let db = Db::connect(&ClusterConfig {
        ca_file: Some(ca_file.clone()),
        ..config(&tls_url)
    })
    .await
    .unwrap();
    let ssl: bool = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the connection is not TLS");
    db.migrate().await.unwrap();

    // Another CA: the certificate is not trusted, and it is said so.
    let e = Db::connect(&ClusterConfig {
        ca_file: Some(other_file),
        ..config(&tls_url)
    })
    .await
    .unwrap_err();
    assert!(matches!(e, ClusterError::Tls { .. }), "{e:?}");
    assert!(!e.is_temporary());
    assert_hidden(&e, &pg.password);

    // verify-full means the same verified TLS.
    Db::connect(&ClusterConfig {
        ca_file: Some(ca_file.clone()),
        ..config(&format!("{}?sslmode=verify-full", pg.url()))
    })
    .await
    .unwrap();

    // sslmode=require against a server without TLS: refused, not plain.
    let plain = TestPostgres::start().await;
    let e = Db::connect(&ClusterConfig {
        ca_file: Some(ca_file),
        ..config(&format!("{}?sslmode=require", plain.url()))
    })
    .await
    .unwrap_err();
    assert!(matches!(e, ClusterError::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("does not support TLS"), "{e}");
}

#[tokio::test]
async fn a_schema_from_a_newer_or_edited_binary_is_refused_not_changed() {
    let pg = TestPostgres::start().await;
    let db = Db::connect(&config(&pg.url())).await.unwrap();
    db.migrate().await.unwrap();
    let admin = db.client().await.unwrap();

    // A newer node applied V99, which this binary does not have.
    admin
        .batch_execute(&format!(
            "INSERT INTO {HISTORY_TABLE} (version, name, applied_on, checksum) \
             VALUES (99, 'future', '2027-01-01T00:00:00Z', '1')"
        ))
        .await
        .unwrap();
    let e = db.migrate().await.unwrap_err();
    assert!(matches!(e, ClusterError::SchemaNewer { .. }), "{e:?}");
    assert!(e.to_string().contains("upgrade this node"), "{e}");
    assert!(!e.is_temporary());
    admin
        .batch_execute(&format!("DELETE FROM {HISTORY_TABLE} WHERE version = 99"))
        .await
        .unwrap();

    // V1 as applied differs from this binary's V1 (edited after release).
    admin
        .batch_execute(&format!(
            "UPDATE {HISTORY_TABLE} SET checksum = '1' WHERE version = 1"
        ))
        .await
        .unwrap();
    let e = db.migrate().await.unwrap_err();
    assert!(matches!(e, ClusterError::SchemaDiverged { .. }), "{e:?}");
    // Refused, not changed: the history still says what it said, and the
    // lock was released (a failed run's connection left the pool).
    let checksum: String = admin
        .query_one(
            &format!("SELECT checksum FROM {HISTORY_TABLE} WHERE version = 1"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(checksum, "1");
    // The server ends the dropped session as soon as it reads the close.
    let mut free = false;
    for _ in 0..100 {
        free = admin
            .query_one(
                "SELECT pg_try_advisory_lock($1)",
                &[&eas_relay::cluster::MIGRATION_LOCK],
            )
            .await
            .unwrap()
            .get(0);
        if free {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(free, "the migration lock is still held");
}

/// The changes rows the triggers wrote, in id order: (kind, key, payload,
/// origin).
async fn change_rows(db: &Db) -> Vec<(String, String, serde_json::Value, String)> {
    let client = db.client().await.unwrap();
    client
        .query(
            "SELECT kind, key, payload, origin FROM changes ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test]
async fn an_attacker_editing_a_reveal_by_hand_cannot_hide_it_from_the_nodes() {
    let pg = TestPostgres::start().await;
    let db = Db::connect(&config(&pg.url())).await.unwrap();
    db.migrate().await.unwrap();
    let client = db.client().await.unwrap();
    // A node's write names itself; the trigger records the rows' state.
    client
        .batch_execute(
            "BEGIN; SET LOCAL eas.origin = 'node-a';
             INSERT INTO domains (domain, source) VALUES ('alice.country', 'chain');
             INSERT INTO chain_reveals (domain, sld, tld, local, alias, forward, signature, commitment, accepted_by)
             VALUES ('alice.country', 'alice', 'country', 'me', 'Me', 'me@example.com',
                     '0x' || repeat('ab', 65), '0x' || repeat('cd', 32), 'node-a');
             COMMIT;",
        )
        .await
        .unwrap();
    let rows = change_rows(&db).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("domain", "alice.country")
    );
    assert_eq!(rows[0].2["source"], "chain");
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str()),
        ("reveal", "me@alice.country")
    );
    assert_eq!(rows[1].2["forward"], "me@example.com");
    assert_eq!(rows[1].2["alias"], "Me");
    assert_eq!(rows[1].3, "node-a");

    // Somebody with psql rewrites the forward: the change is recorded all
    // the same (no origin), so every node hears of it and checks it.
    client
        .batch_execute("UPDATE chain_reveals SET forward = 'thief@evil.example'")
        .await
        .unwrap();
    // Moving a static alias to another key records the old key's removal.
    client
        .batch_execute(
            "INSERT INTO domains (domain, source) VALUES ('shop.example', 'static');
             INSERT INTO static_aliases (domain, local, forwards) VALUES ('shop.example', 'a', '{x@y.example}');
             UPDATE static_aliases SET local = 'b';
             INSERT INTO suspensions (domain, local, suspended_by) VALUES ('shop.example', 'b', 'op');
             DELETE FROM domains WHERE domain = 'shop.example';",
        )
        .await
        .unwrap();
    let rows = change_rows(&db).await;
    let shown: Vec<(&str, &str, bool, &str)> = rows
        .iter()
        .map(|(k, key, p, o)| (k.as_str(), key.as_str(), p.is_null(), o.as_str()))
        .collect();
    assert_eq!(
        shown[2..],
        [
            ("reveal", "me@alice.country", false, ""),
            ("domain", "shop.example", false, ""),
            ("alias", "a@shop.example", false, ""),
            ("alias", "b@shop.example", false, ""),
            ("alias", "a@shop.example", true, ""),
            ("suspension", "b@shop.example", false, ""),
            // The domain's removal comes first, then each row its
            // cascade removed: a replica applying them in order removes
            // a domain's aliases with it and finds the later rows gone.
            ("domain", "shop.example", true, ""),
            ("alias", "b@shop.example", true, ""),
            ("suspension", "b@shop.example", true, ""),
        ]
    );
    assert_eq!(rows[2].2["forward"], "thief@evil.example");
}
