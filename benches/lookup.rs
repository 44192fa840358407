//! RCPT-time alias lookup (`recipients::recipient`: exact alias, `+tag`,
//! catch-all, with the chain rule checked from the store) against a store
//! holding many chain-governed aliases: 1,000,000 under `cargo bench`
//! (`EAS_BENCH_ALIASES` overrides), 10,000 when `cargo test` runs it as a
//! smoke test. The store is then reopened and warmed as `serve` does
//! (default `store.cache_size`, `store.prewarm`). Criterion measures the
//! mean; a second pass times 200,000 single lookups of random aliases and
//! prints the percentiles (the target is p99 < 50 µs).

use criterion::Criterion;
use eas_relay::address::Mailbox;
use eas_relay::recipients::{self, Resolution};
use eas_relay::store::Store;
use eas_relay::store::{Activated, ChainBinding, NameState, Reveal};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ALIASES_PER_NAME: usize = 10;
const OWNER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

/// A small deterministic generator (no rand dependency for a benchmark).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn domain(i: usize) -> String {
    format!("name{}.country", i / ALIASES_PER_NAME)
}

fn alias(i: usize) -> String {
    format!("alias{i}")
}

fn activation(i: usize) -> Activated {
    let sld = format!("name{}", i / ALIASES_PER_NAME);
    let commitment = format!("0x{:064x}", i);
    Activated {
        domain: domain(i),
        local: alias(i),
        node: [(i / ALIASES_PER_NAME % 251) as u8; 32],
        alias_hash: {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(i as u64).to_be_bytes());
            h
        },
        binding: ChainBinding {
            tld: "country".into(),
            sld: sld.clone(),
            alias: alias(i),
            commitment: commitment.clone(),
            observed: commitment,
            signer: OWNER.into(),
            checked_block: 1,
        },
        reveal: Reveal {
            forward: format!("user{i}@dest.example"),
            signature: format!("0x{}1b", "11".repeat(64)),
        },
        name: NameState {
            tld: "country".into(),
            sld,
            owner: OWNER.into(),
            expires: 4_000_000_000,
            maintainer_allowed: true,
            checked_block: 1,
        },
    }
}

fn populate(store: &Store, n: usize) {
    let started = Instant::now();
    let batch = 10_000;
    for start in (0..n).step_by(batch) {
        let items: Vec<Activated> = (start..(start + batch).min(n)).map(activation).collect();
        store.chain_activate_many(&items).expect("populate");
    }
    eprintln!(
        "populated {n} chain aliases ({} names) in {:.1} s",
        n.div_ceil(ALIASES_PER_NAME),
        started.elapsed().as_secs_f64()
    );
}

fn mailbox(local: &str, domain: &str) -> Mailbox {
    Mailbox::parse(&format!("{local}@{domain}")).expect("address")
}

fn lookup(store: &Store, rcpt: &Mailbox) -> Resolution {
    recipients::recipient(store, rcpt, "", true).expect("lookup")
}

fn percentiles(store: &Store, n: usize, samples: usize) {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let rcpts: Vec<Mailbox> = (0..samples)
        .map(|_| {
            let i = rng.below(n);
            mailbox(&alias(i), &domain(i))
        })
        .collect();
    let mut times: Vec<Duration> = Vec::with_capacity(samples);
    for rcpt in &rcpts {
        let started = Instant::now();
        let r = lookup(store, rcpt);
        times.push(started.elapsed());
        assert!(matches!(r, Resolution::Forward { .. }), "{r:?}");
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    eprintln!(
        "{samples} random hits among {n} aliases: p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        times[times.len() - 1]
    );
}

/// This process's resident memory, as /proc says.
fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l["VmRSS:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("EAS_BENCH_ALIASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 10_000 });
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("store.redb")).expect("store");
    populate(&store, n);
    drop(store);
    // As `serve` starts: open with the default cache, warm it.
    let path = dir.path().join("store.redb");
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let store = Store::open(&path).expect("store");
    let started = Instant::now();
    let (entries, bytes) = store.prewarm().expect("prewarm");
    eprintln!(
        "store file {:.0} MB; prewarm read {entries} entries ({:.0} MB) in {:.1} s; RSS {}",
        size as f64 / 1e6,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        rss()
    );

    let mut c = Criterion::default().configure_from_args();
    let mut rng = XorShift(42);
    let hits: Vec<Mailbox> = (0..4096)
        .map(|_| {
            let i = rng.below(n);
            mailbox(&alias(i), &domain(i))
        })
        .collect();
    let tagged: Vec<Mailbox> = hits
        .iter()
        .map(|m| mailbox(&format!("{}+news", m.local), &m.domain))
        .collect();
    let misses: Vec<Mailbox> = hits.iter().map(|m| mailbox("nobody", &m.domain)).collect();
    for (name, rcpts) in [("hit", &hits), ("plus_tag_hit", &tagged), ("miss", &misses)] {
        let mut k = 0;
        c.bench_function(&format!("rcpt_lookup/{name}/{n}_aliases"), |b| {
            b.iter(|| {
                k = (k + 1) % rcpts.len();
                black_box(lookup(&store, &rcpts[k]))
            })
        });
    }
    c.final_summary();
    percentiles(&store, n, if full { 200_000 } else { 2_000 });
    eprintln!("RSS after the lookups: {}", rss());
}
