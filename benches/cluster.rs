//! The cluster replica's speed against a real PostgreSQL (the test
//! harness's server: initdb in a temporary directory, fsync off): a fresh
//! node's sync of N static aliases (`EAS_BENCH_SYNC_ALIASES`, default
//! 1,000,000; 2,000 when `cargo test` runs it as a smoke test), with the
//! local replica's size on disk; and change propagation: K aliases
//! (`EAS_BENCH_CHANGES`, default 300) written one transaction each while
//! two replicas follow the feed, the time from each commit until both
//! replicas hold the alias, p50/p99/max. Targets (issue 13): sync of
//! 1,000,000 under 60 s, propagation p99 under 1 s.

/// What the harness's postgres.rs takes from tests/common (its `super`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

pub fn exited(child: &mut Option<std::process::Child>) -> Option<std::process::ExitStatus> {
    let status = child.as_mut().and_then(|c| c.try_wait().ok().flatten())?;
    *child = None;
    Some(status)
}

#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use eas_relay::cluster::Db;
use eas_relay::config::{ClusterConfig, HumanDuration};
use eas_relay::replica::{Replica, Timing};
use eas_relay::store::Store;
use postgres::TestPostgres;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn count(var: &str, bench: usize, smoke: usize) -> usize {
    if let Ok(v) = std::env::var(var) {
        return v.parse().expect("a number");
    }
    if std::env::args().any(|a| a == "--bench") {
        bench
    } else {
        smoke
    }
}

fn config(pg: &TestPostgres) -> ClusterConfig {
    ClusterConfig {
        enabled: true,
        database_url: pg.url(),
        poll_interval: HumanDuration::secs(5),
        ..Default::default()
    }
}

fn replica(pg: &TestPostgres, dir: &std::path::Path, id: &str) -> (Arc<Store>, Arc<Replica>) {
    let store = Arc::new(Store::open(&dir.join(format!("{id}.redb"))).expect("store"));
    let config = config(pg);
    let db = Db::open(&config).expect("db");
    let replica = Replica::new(
        db,
        id.into(),
        store.clone(),
        None,
        Timing::from_config(&config),
    );
    (store, replica)
}

async fn psql(pg: &TestPostgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn fresh_sync(pg: &TestPostgres, dir: &std::path::Path, n: usize) {
    let db = psql(pg).await;
    let began = Instant::now();
    // At most 1,000 aliases a domain, at most 1,000 domains.
    let domains = (n / 1000).clamp(1, 1000);
    db.batch_execute(&format!(
        "INSERT INTO domains (domain, source) SELECT 'd' || g || '.example', 'static' FROM generate_series(0, {domains} - 1) g;
         INSERT INTO static_aliases (domain, local, forwards)
             SELECT 'd' || (g % {domains}) || '.example', 'user' || g, ARRAY['box' || g || '@dest.example']
             FROM generate_series(1, {n}) g;"
    ))
    .await
    .expect("insert");
    println!(
        "inserted {n} aliases into PostgreSQL in {:?}",
        began.elapsed()
    );
    let (store, replica) = replica(pg, dir, "fresh");
    let began = Instant::now();
    replica.start().await.expect("sync");
    let took = began.elapsed();
    let size = std::fs::metadata(dir.join("fresh.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        store
            .alias_get("d0.example", &format!("user{domains}"))
            .unwrap()
            .is_some()
    );
    println!(
        "fresh node sync: {n} aliases in {took:?} ({:.0} aliases/s); replica file {} MB ({} bytes/alias)",
        n as f64 / took.as_secs_f64(),
        size / 1_000_000,
        size / n.max(1) as u64
    );
}

async fn propagation(pg: &TestPostgres, dir: &std::path::Path, k: usize) {
    let db = psql(pg).await;
    db.batch_execute("INSERT INTO domains (domain, source) VALUES ('prop.example', 'static')")
        .await
        .expect("domain");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut followers = Vec::new();
    for id in ["node-a", "node-b"] {
        let (store, replica) = replica(pg, dir, id);
        replica.start().await.expect("start");
        tokio::spawn(replica.run(stopped.clone()));
        followers.push(store);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut times = Vec::with_capacity(k);
    for i in 0..k {
        let local = format!("p{i}");
        db.execute(
            "INSERT INTO static_aliases (domain, local, forwards) VALUES ('prop.example', $1, '{x@dest.example}')",
            &[&local],
        )
        .await
        .expect("insert");
        let committed = Instant::now();
        for store in &followers {
            while store.alias_get("prop.example", &local).unwrap().is_none() {
                assert!(
                    committed.elapsed() < Duration::from_secs(30),
                    "not propagated"
                );
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        times.push(committed.elapsed());
    }
    let _ = stop.send(true);
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "change propagation to both of two nodes, {k} changes: p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        times[times.len() - 1]
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let n = count("EAS_BENCH_SYNC_ALIASES", 1_000_000, 2_000);
        let k = count("EAS_BENCH_CHANGES", 300, 20);
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = TestPostgres::start().await;
        // The schema, as a first node migrates it.
        Db::connect(&config(&pg))
            .await
            .expect("db")
            .migrate()
            .await
            .expect("migrate");
        propagation(&pg, dir.path(), k).await;
        fresh_sync(&pg, dir.path(), n).await;
    });
}
