//! The typed writes of `cluster::claims` against a real PostgreSQL
//! (tests/common/postgres.rs): each one transaction, recorded in `changes`
//! as the writing node's, ids from the database's sequence. A node and the
//! CLI using them: tests/cluster_node_writes.rs.

mod common;

use common::postgres::TestPostgres;
use eas_relay::cluster::{AliasClaim, AliasWrite, Db, DomainRemoval, RevealClaim};
use eas_relay::config::{ClusterConfig, HumanDuration};
use eas_relay::store::{DomainRecord, Source};
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

/// (kind, key, removed, origin) of every change row, in order.
async fn changes(db: &Db) -> Vec<(String, String, bool, String)> {
    let client = db.client().await.unwrap();
    client
        .query(
            "SELECT kind, key, payload = 'null'::jsonb, origin FROM changes ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn change(kind: &str, key: &str, removed: bool) -> (String, String, bool, String) {
    (kind.into(), key.into(), removed, "node-a".into())
}

fn forwards(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn each_write_is_one_transaction_recorded_as_the_writing_node() {
    let pg = TestPostgres::start().await;
    let db = migrated(&pg).await;
    let me = "node-a";
    let mut record = DomainRecord::new(1, Source::Static);
    assert!(db.claim_domain_add(me, "shop.test", &record).await.unwrap());
    assert!(!db.claim_domain_add(me, "shop.test", &record).await.unwrap());
    record.active = false;
    record.notification_email = Some("ops@shop.test".into());
    assert!(
        db.claim_domain_update(me, "shop.test", &record)
            .await
            .unwrap()
    );
    assert!(
        !db.claim_domain_update(me, "nope.test", &record)
            .await
            .unwrap()
    );
    let client = db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT source, active, settings FROM domains WHERE domain = 'shop.test'",
            &[],
        )
        .await
        .unwrap();
    let (source, active, settings): (String, bool, serde_json::Value) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!((source.as_str(), active), ("static", false));
    assert_eq!(settings, json!({ "notification_email": "ops@shop.test" }));

    // Create, then create again (exists, unchanged), replace, upsert.
    let a = match db
        .claim_static_alias(
            me,
            "shop.test",
            "a",
            &forwards(&["u@dest.test"]),
            AliasWrite::Create,
        )
        .await
        .unwrap()
    {
        AliasClaim::Written(row) => row,
        other => panic!("{other:?}"),
    };
    assert!(a.id > 0);
    let again = db
        .claim_static_alias(
            me,
            "shop.test",
            "a",
            &forwards(&["x@dest.test"]),
            AliasWrite::Create,
        )
        .await
        .unwrap();
    assert_eq!(again, AliasClaim::Exists(a.clone()));
    let missing = db
        .claim_static_alias(
            me,
            "shop.test",
            "b",
            &forwards(&["x@dest.test"]),
            AliasWrite::Replace,
        )
        .await
        .unwrap();
    assert_eq!(missing, AliasClaim::Missing);
    let no_domain = db
        .claim_static_alias(
            me,
            "gone.test",
            "a",
            &forwards(&["x@dest.test"]),
            AliasWrite::Upsert,
        )
        .await
        .unwrap();
    assert_eq!(no_domain, AliasClaim::NoDomain);
    // A suspension ends when the alias is written again (as locally).
    assert!(
        db.claim_alias_active(me, "shop.test", "a", false, "why")
            .await
            .unwrap()
    );
    let replaced = db
        .claim_static_alias(
            me,
            "shop.test",
            "a",
            &forwards(&["v@dest.test", "w@dest.test"]),
            AliasWrite::Replace,
        )
        .await
        .unwrap();
    let AliasClaim::Written(replaced) = replaced else {
        panic!("{replaced:?}")
    };
    assert_eq!(replaced.id, a.id, "a replaced alias keeps its id");
    assert_eq!(replaced.forwards, forwards(&["v@dest.test", "w@dest.test"]));
    let suspended: i64 = client
        .query_one("SELECT count(*) FROM suspensions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(suspended, 0);

    // An import: its domain added and both aliases, one transaction.
    let items = vec![
        (
            "new.test".to_string(),
            "x".to_string(),
            forwards(&["u@dest.test"]),
        ),
        (
            "new.test".to_string(),
            "y".to_string(),
            forwards(&["u@dest.test"]),
        ),
    ];
    let claims = db
        .claim_static_aliases(me, &["new.test".to_string()], &items, AliasWrite::Upsert)
        .await
        .unwrap();
    let ids: Vec<u64> = claims
        .iter()
        .map(|c| match c {
            AliasClaim::Written(r) => r.id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(ids[0] > a.id && ids[1] > ids[0], "{ids:?}");
    assert!(
        db.claim_static_alias_remove(me, "new.test", "x")
            .await
            .unwrap()
    );
    assert!(
        !db.claim_static_alias_remove(me, "new.test", "x")
            .await
            .unwrap()
    );
    assert_eq!(
        db.claim_domain_remove(me, "new.test").await.unwrap(),
        DomainRemoval::Removed
    );
    assert_eq!(
        db.claim_domain_remove(me, "new.test").await.unwrap(),
        DomainRemoval::Missing
    );

    assert_eq!(
        changes(&db).await,
        vec![
            change("domain", "shop.test", false),
            change("domain", "shop.test", false),
            change("alias", "a@shop.test", false),
            change("suspension", "a@shop.test", false),
            change("alias", "a@shop.test", false),
            change("suspension", "a@shop.test", true),
            change("domain", "new.test", false),
            change("alias", "x@new.test", false),
            change("alias", "y@new.test", false),
            change("alias", "x@new.test", true),
            change("domain", "new.test", true),
            change("alias", "y@new.test", true),
        ]
    );
}

fn reveal<'a>(forward: &'a str, commitment: &'a str, signature: &'a str) -> RevealClaim<'a> {
    RevealClaim {
        domain: "alice.country",
        sld: "alice",
        tld: "country",
        local: "me",
        alias: "Me",
        forward,
        signature,
        commitment,
    }
}

#[tokio::test]
async fn a_reveal_is_put_in_place_and_removed_only_for_its_own_commitment() {
    let pg = TestPostgres::start().await;
    let db = migrated(&pg).await;
    // A static domain of the same name becomes chain-governed.
    db.claim_domain_add(
        "node-a",
        "alice.country",
        &DomainRecord::new(1, Source::Static),
    )
    .await
    .unwrap();
    let first = format!("0x{}", "cd".repeat(32));
    let second = format!("0x{}", "ef".repeat(32));
    let signature = format!("0x{}", "ab".repeat(65));
    let id = db
        .claim_reveal("node-a", &reveal("me@example.com", &first, &signature))
        .await
        .unwrap();
    let again = db
        .claim_reveal("node-b", &reveal("new@example.com", &second, &signature))
        .await
        .unwrap();
    assert_eq!(
        id, again,
        "a re-activation replaces the row, keeping its id"
    );
    let client = db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT d.source, r.alias, r.forward, r.commitment, r.accepted_by \
             FROM chain_reveals r JOIN domains d USING (domain)",
            &[],
        )
        .await
        .unwrap();
    let got: (String, String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(
        got,
        (
            "chain".into(),
            "Me".into(),
            "new@example.com".into(),
            second.clone(),
            "node-b".into()
        )
    );
    // A node that still holds the domain as static (it was, before this
    // activation) cannot remove it now that the chain governs it.
    assert_eq!(
        db.claim_domain_remove("node-c", "alice.country")
            .await
            .unwrap(),
        DomainRemoval::ChainGoverned
    );
    // A deactivation read for the old commitment leaves the new one.
    let stale = [("alice.country", "me", "Me", first.as_str())];
    assert_eq!(db.claim_reveals_remove("node-a", &stale).await.unwrap(), 0);
    let current = [("alice.country", "me", "Me", second.as_str())];
    assert_eq!(
        db.claim_reveals_remove("node-a", &current).await.unwrap(),
        1
    );
    let left: i64 = client
        .query_one("SELECT count(*) FROM chain_reveals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let kinds: Vec<(String, bool, String)> = changes(&db)
        .await
        .into_iter()
        .filter(|c| c.0 == "reveal")
        .map(|(_, _, removed, origin)| ("reveal".into(), removed, origin))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("reveal".into(), false, "node-a".into()),
            ("reveal".into(), false, "node-b".into()),
            ("reveal".into(), true, "node-a".into()),
        ]
    );
}

#[tokio::test]
async fn a_session_holding_the_change_lock_cannot_hang_every_write() {
    let pg = TestPostgres::start().await;
    let db = migrated(&pg).await;
    // Somebody's psql left inside a transaction that wrote a change: the
    // change lock is held until it ends.
    let mut holder = db.client().await.unwrap();
    let open = holder.transaction().await.unwrap();
    open.batch_execute("INSERT INTO domains (domain, source) VALUES ('held.test', 'static')")
        .await
        .unwrap();
    let record = DomainRecord::new(1, Source::Static);
    let began = std::time::Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(15),
        db.claim_domain_add("node-a", "shop.test", &record),
    )
    .await
    .expect("the write gives up by itself")
    .expect_err("the lock is not had");
    let waited = began.elapsed();
    assert!(e.is_temporary(), "a 503, not a 500: {e:?}");
    assert!(!e.is_refused_write(), "{e:?}");
    assert!(
        waited < Duration::from_secs(10),
        "the write gave up after its lock_timeout, not never: {waited:?}"
    );
    // Once the session ends, writes go through again.
    open.rollback().await.unwrap();
    assert!(
        db.claim_domain_add("node-a", "shop.test", &record)
            .await
            .unwrap()
    );
}
