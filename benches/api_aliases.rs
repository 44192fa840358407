//! `GET /v3/domains/{d}/aliases` on a domain with 10,000 aliases (100
//! under `cargo test`, as a smoke test): the relay's HTTP router served by
//! axum on loopback, the store on disk, one keep-alive connection, the way
//! an admin client pages through a large domain. Criterion measures the
//! mean per request; a second pass times 2,000 requests of each kind and
//! prints the percentiles (the target is p99 < 5 ms for a page).

use criterion::Criterion;
use eas_relay::api::{self, ApiState};
use eas_relay::config::Config;
use eas_relay::manage::{Local, QueueAccess};
use eas_relay::spool::Spool;
use eas_relay::store::{Source, Store};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "bench-key-0123456789abcdef";
const DOMAIN: &str = "big.example";

struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Client {
            sender,
            host: addr.to_string(),
        }
    }

    /// GETs `path`; returns the body's length (after checking it is a page).
    async fn get(&mut self, path: &str) -> usize {
        let request = hyper::Request::get(path)
            .header("host", &self.host)
            .header("authorization", format!("Bearer {KEY}"))
            .body(Empty::new())
            .expect("request");
        self.sender.ready().await.expect("connection ready");
        let response = self.sender.send_request(request).await.expect("send");
        assert_eq!(response.status(), 200, "{path}");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(body.starts_with(b"{\"aliases\":["), "{path}");
        body.len()
    }
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{label}: {} requests, p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = if full { 10_000 } else { 100 };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.http.rate_limit.per_key = 0;
    config.http.rate_limit.per_ip = 0;
    let config = Arc::new(config);
    let store = Arc::new(Store::open(&config.store_path()).expect("store"));
    store.domain_add(DOMAIN, Source::Static).expect("domain");
    store
        .alias_put_many(
            (0..n).map(|i| {
                (
                    DOMAIN.to_string(),
                    format!("user{i:05}"),
                    vec![format!("person{i}@dest.example")],
                )
            }),
            Source::Static,
        )
        .expect("aliases");
    std::fs::create_dir_all(config.spool_dir()).expect("spool dir");
    let spool = Spool::open(&config.spool_dir()).expect("spool");
    let admin = Local::new(config.clone(), store, QueueAccess::Offline(spool));
    let state = ApiState::new(
        config.clone(),
        Arc::new(admin),
        vec![KEY.into()],
        eas_relay::observe::metrics_handle(),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service =
            api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await });
        addr
    });
    let mut client = runtime.block_on(Client::connect(addr));
    let last_page = n.div_ceil(100);
    let kinds = [
        (
            "first page (limit 100)",
            format!("/v3/domains/{DOMAIN}/aliases?limit=100"),
        ),
        (
            "middle page (limit 100)",
            format!(
                "/v3/domains/{DOMAIN}/aliases?limit=100&page={}",
                last_page / 2 + 1
            ),
        ),
        (
            "last page (limit 100)",
            format!("/v3/domains/{DOMAIN}/aliases?limit=100&page={last_page}"),
        ),
        (
            "default page (limit 50)",
            format!("/v3/domains/{DOMAIN}/aliases"),
        ),
        (
            "alias prefix filter",
            format!("/v3/domains/{DOMAIN}/aliases?alias=user0004"),
        ),
        (
            "q search in forwards (decodes every alias)",
            format!("/v3/domains/{DOMAIN}/aliases?q=person99"),
        ),
    ];
    let size = runtime.block_on(client.get(&kinds[0].1));
    println!("{n} aliases on {DOMAIN}; a page of 100 is {size} bytes");

    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(if full { 5 } else { 1 }))
        .warm_up_time(Duration::from_secs(1));
    {
        let mut group = criterion.benchmark_group("admin_api_aliases");
        for (label, path) in &kinds {
            group.bench_function(format!("{label}/{n}_aliases"), |b| {
                b.iter(|| runtime.block_on(client.get(path)))
            });
        }
        group.finish();
    }
    let rounds = if full { 2_000 } else { 50 };
    for (label, path) in &kinds {
        let samples: Vec<Duration> = (0..rounds)
            .map(|_| {
                let started = Instant::now();
                runtime.block_on(client.get(path));
                started.elapsed()
            })
            .collect();
        percentiles(label, samples);
    }
}
