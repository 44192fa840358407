//! How much disk the local store takes per alias, and how fast RCPT reads
//! it, at 1,000,000 aliases (`cargo bench --bench store_size`;
//! `EAS_BENCH_ALIASES` overrides; 2,000 when `cargo test` runs it as a
//! smoke test). Two fresh stores are filled the way the relay fills them:
//! one with chain-governed aliases through `chain_activate_many` (alias
//! record with its binding, reveal, alias index, name state, node), one
//! with static aliases through `alias_put_many`, both in batches of 10,000
//! (10 aliases per name, hashes random as on chain, so the index is
//! written in random key order). For each: the file size after the load,
//! redb's own count of stored bytes and pages per table, the file size
//! after `Database::compact()` and again after `Store::compact` (the alias
//! tables rewritten in key order, then compacted), and `Store::lookup`
//! p50/p99 of random hits after each, the store reopened and warmed as
//! `serve` does.

use eas_relay::store::{Activated, ChainBinding, NameState, Reveal, Source, Store};
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::time::{Duration, Instant};

const ALIASES_PER_NAME: usize = 10;
const BATCH: usize = 10_000;
const OWNER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

/// A small deterministic generator (no rand dependency for a benchmark).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn sld(i: usize) -> String {
    format!("name{}", i / ALIASES_PER_NAME)
}

fn domain(i: usize) -> String {
    format!("{}.country", sld(i))
}

fn alias(i: usize) -> String {
    format!("alias{i}")
}

fn forward(i: usize) -> String {
    format!("user{i}@dest.example")
}

/// Activation `i`, its hashes drawn from `rng` (the node is the same for
/// the aliases of one name: drawn per name from a generator of its own).
fn activation(i: usize, rng: &mut XorShift) -> Activated {
    let node =
        XorShift(0x51ED_2701 ^ ((i / ALIASES_PER_NAME) as u64 * 0x9E37_79B9 + 1)).bytes::<32>();
    let commitment = hex(&rng.bytes::<32>());
    let mut signature = rng.bytes::<65>();
    signature[64] = 27;
    Activated {
        domain: domain(i),
        local: alias(i),
        node,
        alias_hash: rng.bytes::<32>(),
        binding: ChainBinding {
            tld: "country".into(),
            sld: sld(i),
            alias: alias(i),
            commitment: commitment.clone(),
            observed: commitment,
            signer: OWNER.into(),
            checked_block: 19_000_000 + i as u64,
        },
        reveal: Reveal {
            forward: forward(i),
            signature: hex(&signature),
        },
        name: NameState {
            tld: "country".into(),
            sld: sld(i),
            owner: OWNER.into(),
            expires: 4_000_000_000,
            maintainer_allowed: true,
            checked_block: 19_000_000 + i as u64,
        },
    }
}

fn fill_chain(store: &Store, n: usize) {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for start in (0..n).step_by(BATCH) {
        let items: Vec<Activated> = (start..(start + BATCH).min(n))
            .map(|i| activation(i, &mut rng))
            .collect();
        store.chain_activate_many(&items).expect("activate");
    }
}

fn fill_static(store: &Store, n: usize) {
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        for name in (start..end).step_by(ALIASES_PER_NAME) {
            store
                .domain_add(&domain(name), Source::Static)
                .expect("domain");
        }
        let items = (start..end).map(|i| (domain(i), alias(i), vec![forward(i)]));
        store
            .alias_put_many(items, Source::Static)
            .expect("aliases");
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The tables that grow with the aliases, by name and key type (redb
/// checks both when a table is opened).
const STR_TABLES: [&str; 4] = ["domains", "aliases", "chain_reveals", "chain_names"];
const BYTES_TABLES: [&str; 2] = ["chain_alias_index", "chain_nodes"];

/// redb's accounting of the store at `path`: per table, stored bytes
/// (keys and values), leaf and branch pages; then the whole file.
fn report_tables(path: &Path, n: usize) {
    let db = redb::Database::open(path).expect("open");
    let txn = db.begin_read().expect("read");
    let line = |name: &str, s: redb::TableStats| {
        let pages = s.leaf_pages() + s.branch_pages();
        eprintln!(
            "  {name:<18} stored {:>9} ({:>5.0} B/alias), {:>7} pages = {:>9} ({:>5.0} B/alias), fill {:>3.0} %",
            mb(s.stored_bytes()),
            s.stored_bytes() as f64 / n as f64,
            pages,
            mb(pages * 4096),
            (pages * 4096) as f64 / n as f64,
            100.0 * s.stored_bytes() as f64 / (s.leaf_pages().max(1) * 4096) as f64,
        );
    };
    for name in STR_TABLES {
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(name);
        if let Ok(t) = txn.open_table(def) {
            line(name, t.stats().expect("stats"));
        }
    }
    for name in BYTES_TABLES {
        let def: TableDefinition<&[u8], &str> = TableDefinition::new(name);
        if let Ok(t) = txn.open_table(def) {
            line(name, t.stats().expect("stats"));
        }
    }
    drop(txn);
    let w = db.begin_write().expect("write");
    let s = w.stats().expect("stats");
    eprintln!(
        "  all tables         stored {}, allocated pages {} = {}, leaf {}, branch {}, fragmented {}",
        mb(s.stored_bytes()),
        s.allocated_pages(),
        mb(s.allocated_pages() * s.page_size() as u64),
        s.leaf_pages(),
        s.branch_pages(),
        mb(s.fragmented_bytes()),
    );
    w.abort().expect("abort");
}

/// Compacts the store at `path` (redb's `compact`, as a closed store);
/// returns how long it took.
fn compact(path: &Path) -> Duration {
    let started = Instant::now();
    let mut db = redb::Database::open(path).expect("open");
    // compact() moves pages down and truncates; repeated until it has
    // nothing left to move.
    while db.compact().expect("compact") {}
    started.elapsed()
}

fn percentiles(store: &Store, n: usize, samples: usize) -> (Duration, Duration, Duration) {
    let mut rng = XorShift(42);
    let keys: Vec<(String, String)> = (0..samples)
        .map(|_| {
            let i = rng.below(n);
            (domain(i), alias(i))
        })
        .collect();
    let mut times = Vec::with_capacity(samples);
    for (domain, local) in &keys {
        let started = Instant::now();
        let found = store
            .lookup(domain, &[local.as_str(), "*"])
            .expect("lookup");
        times.push(started.elapsed());
        assert!(matches!(found.hit, Some((0, _))), "{domain} {local}");
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.5), at(0.99), at(0.999))
}

fn run(kind: &str, n: usize, samples: usize, fill: fn(&Store, usize)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = Store::open(&path).expect("store");
    let started = Instant::now();
    fill(&store, n);
    let filled = started.elapsed();
    drop(store);
    let before = file_size(&path);
    eprintln!(
        "{kind}: {n} aliases loaded in {:.1} s; file {} ({:.0} B/alias)",
        filled.as_secs_f64(),
        mb(before),
        before as f64 / n as f64
    );
    report_tables(&path, n);
    let took = compact(&path);
    let after = file_size(&path);
    eprintln!(
        "{kind}: compacted in {:.1} s; file {} ({:.0} B/alias)",
        took.as_secs_f64(),
        mb(after),
        after as f64 / n as f64
    );
    report_tables(&path, n);
    lookups(kind, &path, n, samples);
    // Store::compact: the alias tables rewritten in key order, then
    // compacted again.
    let started = Instant::now();
    let mut store = Store::open(&path).expect("store");
    let (from, to) = store.compact().expect("Store::compact");
    drop(store);
    eprintln!(
        "{kind}: Store::compact (repack in key order + compact) in {:.1} s; file {} -> {} ({:.0} B/alias)",
        started.elapsed().as_secs_f64(),
        mb(from),
        mb(to),
        to as f64 / n as f64
    );
    report_tables(&path, n);
    lookups(kind, &path, n, samples);
}

/// Opens the store as `serve` does (default cache, prewarmed) and prints
/// the lookup percentiles.
fn lookups(kind: &str, path: &Path, n: usize, samples: usize) {
    let store = Store::open(path).expect("store");
    store.prewarm().expect("prewarm");
    let (p50, p99, p999) = percentiles(&store, n, samples);
    eprintln!(
        "{kind}: Store::lookup of {samples} random hits among {n}: p50 {p50:?}, p99 {p99:?}, p99.9 {p999:?}"
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("EAS_BENCH_ALIASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 2_000 });
    let samples = if full { 200_000 } else { 2_000 };
    let only = std::env::var("EAS_BENCH_STORE").unwrap_or_default();
    if only.is_empty() || only == "chain" {
        run("chain", n, samples, fill_chain);
    }
    if only.is_empty() || only == "static" {
        run("static", n, samples, fill_static);
    }
}
