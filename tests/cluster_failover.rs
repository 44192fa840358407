//! Two (and three) real `eas-relay serve` processes on one real PostgreSQL
//! (issue 13, "How it is tested"): node A is killed with SIGKILL under load
//! while node B keeps accepting, and after A restarts every message either
//! node answered 250 reaches the destination (at-least-once: duplicates
//! only for deliveries in flight, as tests/crash.rs allows; none lost); a
//! node started with an empty data directory serves every alias from its
//! first snapshot, and the delivery logs of mail through either node are
//! read from either node's API.

mod common;

use common::node::{ADMIN_KEY, Node, NodeFiles, NodeOptions};
use common::postgres::TestPostgres;
use common::sink::{SinkOptions, TestSink};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DOMAIN: &str = "shop.test";
/// How soon a write through one node must forward at another.
const PROPAGATION: Duration = Duration::from_secs(2);
/// Longest wait for any one SMTP reply.
const IO_LIMIT: Duration = Duration::from_secs(5);
/// Bound of the waits for deliveries and logs.
const WAIT: Duration = Duration::from_secs(30);

/// A node's files: `[cluster]` on `pg` as `id`, and `dest.test` routed to
/// `dest` (one sink for every node) instead of the node's own address.
fn cluster_files(pg: &TestPostgres, id: &str, dest: Option<SocketAddr>) -> NodeFiles {
    let files = NodeFiles::new(NodeOptions::default());
    if let Some(dest) = dest {
        let text = std::fs::read_to_string(&files.config).expect("read config");
        let own = format!("\"dest.test\" = \"{}\"", files.dest);
        assert!(text.contains(&own), "{text}");
        let text = text.replace(&own, &format!("\"dest.test\" = \"{dest}\""));
        std::fs::write(&files.config, text).expect("write config");
    }
    files.append_config(&format!(
        "[cluster]\nenabled = true\ndatabase_url = \"{}\"\nnode_id = \"{id}\"\n\
         connect_timeout = \"1s\"\npoll_interval = \"1s\"\nheartbeat_interval = \"500ms\"\n",
        pg.url()
    ));
    files
}

/// Starts `serve` (blocking: off the runtime's async threads).
fn start(files: &NodeFiles) -> Node {
    tokio::task::block_in_place(|| files.start())
}

/// A sink for `dest.test` on `addr`.
async fn sink_at(addr: SocketAddr) -> TestSink {
    TestSink::with(SinkOptions {
        pipelining: true,
        bind: Some(addr),
        ..SinkOptions::default()
    })
    .await
}

async fn api(files: &NodeFiles, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::http::request(files.http, method, path, Some(ADMIN_KEY), body).await
}

/// The domain and `locals` (each forwarding to `u@dest.test`) through
/// `files`' admin API (PostgreSQL first).
async fn add_aliases(files: &NodeFiles, locals: &[&str]) {
    let (status, body) = api(
        files,
        "POST",
        "/v3/domains",
        Some(json!({ "domain": DOMAIN })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for local in locals {
        let (status, body) = api(
            files,
            "POST",
            &format!("/v3/domains/{DOMAIN}/aliases"),
            Some(json!({ "alias": local, "forward": "u@dest.test" })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Waits until `RCPT TO:<rcpt>` at `smtp` is answered 250; returns how
/// long that took. Panics after `limit`, with the last reply.
async fn wait_rcpt(smtp: SocketAddr, rcpt: &str, limit: Duration) -> Duration {
    let began = Instant::now();
    loop {
        let reply = common::eas::rcpt_reply(smtp, rcpt).await;
        if reply.starts_with("250") {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < limit,
            "RCPT TO:<{rcpt}> at {smtp} not 250 within {limit:?}: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `done` every 20 ms; panics after `limit`.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The test ids that arrived at the sink, with how many times each did.
fn arrived(sink: &TestSink) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in sink.messages() {
        let text = m.text();
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: <"))
            .and_then(|l| l.strip_suffix("@failover.test>"))
            .unwrap_or_else(|| panic!("no test Message-ID in {text}"))
            .to_string();
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

/// One load against one node: up to `limit` messages over several clients.
struct Load {
    prefix: &'static str,
    limit: usize,
    /// Ids whose final reply was 250.
    acked: Mutex<Vec<String>>,
    /// Final replies other than 250 (and broken sessions), with their id.
    refused: Mutex<Vec<(String, String)>>,
    /// Messages whose DATA was sent (acknowledged or not).
    sent: AtomicUsize,
    stop: AtomicBool,
}

impl Load {
    fn new(prefix: &'static str, limit: usize) -> Arc<Load> {
        Arc::new(Load {
            prefix,
            limit,
            acked: Mutex::default(),
            refused: Mutex::default(),
            sent: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        })
    }

    fn acked(&self) -> BTreeSet<String> {
        self.acked.lock().unwrap().iter().cloned().collect()
    }

    /// `clients` concurrent senders to `addr`; each returns once the load
    /// is done, stopped, or the node is gone.
    fn run(self: &Arc<Load>, addr: SocketAddr, clients: usize) -> Vec<tokio::task::JoinHandle<()>> {
        (0..clients)
            .map(|c| tokio::spawn(client(addr, c, self.clone())))
            .collect()
    }
}

/// Waits (bounded) for a load's clients to end.
async fn join(clients: Vec<tokio::task::JoinHandle<()>>) {
    for c in clients {
        tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("clients end")
            .expect("client task");
    }
}

async fn client(addr: SocketAddr, c: usize, load: Arc<Load>) {
    // A bounded number of sessions: a node refusing connections ends it.
    for _ in 0..50 {
        if load.stop.load(Ordering::SeqCst) || load.sent.load(Ordering::SeqCst) >= load.limit {
            return;
        }
        let Ok(Ok(stream)) = tokio::time::timeout(IO_LIMIT, TcpStream::connect(addr)).await else {
            return;
        };
        let mut s = Smtp {
            stream,
            buf: Vec::new(),
        };
        if let Err(e) = session(&mut s, c, &load).await {
            if load.stop.load(Ordering::SeqCst) {
                return;
            }
            load.refused
                .lock()
                .unwrap()
                .push((format!("client {c}"), e));
        }
    }
}

async fn session(s: &mut Smtp, c: usize, load: &Load) -> Result<(), String> {
    s.expect("", "220").await?;
    s.expect("EHLO failover.test\r\n", "250").await?;
    loop {
        if load.stop.load(Ordering::SeqCst) {
            break;
        }
        // Claim a slot of the bounded load before sending.
        let n = load.sent.fetch_add(1, Ordering::SeqCst);
        if n >= load.limit {
            break;
        }
        let id = format!("{}-c{c}-n{n}", load.prefix);
        s.expect("MAIL FROM:<sender@example.org>\r\n", "250")
            .await?;
        s.expect(&format!("RCPT TO:<hello@{DOMAIN}>\r\n"), "250")
            .await?;
        s.expect("DATA\r\n", "354").await?;
        // Every fifth message is large, so a kill may land mid-write.
        let filler = if n.is_multiple_of(5) {
            ("x".repeat(76) + "\r\n").repeat(800)
        } else {
            String::new()
        };
        let message = format!(
            "From: <sender@example.org>\r\nTo: <hello@{DOMAIN}>\r\nSubject: failover {id}\r\n\
             Message-ID: <{id}@failover.test>\r\n\r\nbody of {id}\r\n{filler}.\r\n"
        );
        let reply = s.expect(&message, "").await?;
        if reply.starts_with("250") {
            load.acked.lock().unwrap().push(id);
        } else {
            load.refused.lock().unwrap().push((id, reply.clone()));
            return Err(reply);
        }
    }
    let _ = s.expect("QUIT\r\n", "221").await;
    Ok(())
}

/// A minimal SMTP client that returns errors instead of panicking (the
/// node disappears under it).
struct Smtp {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Smtp {
    /// Sends `send` (if any) and reads one reply, which must start with
    /// `code`.
    async fn expect(&mut self, send: &str, code: &str) -> Result<String, String> {
        if !send.is_empty() {
            self.stream
                .write_all(send.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
        }
        let reply = self.reply().await?;
        if reply.starts_with(code) {
            Ok(reply)
        } else {
            Err(reply)
        }
    }

    async fn reply(&mut self) -> Result<String, String> {
        let mut lines = Vec::new();
        loop {
            let line = loop {
                if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=pos).collect();
                    break String::from_utf8_lossy(&line).trim_end().to_string();
                }
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(IO_LIMIT, self.stream.read(&mut chunk))
                    .await
                    .map_err(|_| "reply timeout".to_string())?
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed".into());
                }
                self.buf.extend_from_slice(&chunk[..n]);
            };
            let last = line.len() < 4 || line.as_bytes()[3] == b' ';
            lines.push(line);
            if last {
                return Ok(lines.join("\n"));
            }
        }
    }
}

/// `eas-relay queue list --json` against the running node.
fn queue_json(files: &NodeFiles) -> Value {
    let out = tokio::task::block_in_place(|| files.cli(&["--json", "queue", "list"]));
    let text = out.ok();
    serde_json::from_str(text).unwrap_or_else(|e| panic!("queue list --json: {e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_mx_under_load_loses_no_acknowledged_message() {
    const CLIENTS: usize = 4;
    const LOAD_A: usize = 200;
    const KILL_AFTER: usize = 80;
    const LOAD_B: usize = 60;
    let started = Instant::now();
    let pg = TestPostgres::start().await;
    let a = cluster_files(&pg, "node-a", None);
    let b = cluster_files(&pg, "node-b", Some(a.dest));
    let mut node_a = start(&a);
    let _node_b = start(&b);

    // Written through A (PostgreSQL first), served by B's replica.
    add_aliases(&a, &["hello"]).await;
    let took = wait_rcpt(b.smtp, &format!("hello@{DOMAIN}"), PROPAGATION).await;
    eprintln!("alias added at A: RCPT 250 at B after {took:?}");

    // Load on A with the destination down (so that what A acknowledged is
    // still in its queue), SIGKILL in the middle of it.
    let load_a = Load::new("a", LOAD_A);
    let clients = load_a.run(a.smtp, CLIENTS);
    wait_until(WAIT, "acknowledgements at A before the kill", || {
        load_a.acked.lock().unwrap().len() >= KILL_AFTER
    })
    .await;
    node_a.kill();
    let killed_at = Instant::now();
    load_a.stop.store(true, Ordering::SeqCst);
    join(clients).await;
    let acked_a = load_a.acked();
    let sent_a = load_a.sent.load(Ordering::SeqCst).min(LOAD_A);
    assert_eq!(
        acked_a.len(),
        load_a.acked.lock().unwrap().len(),
        "one 250 per message"
    );
    assert!(acked_a.len() >= KILL_AFTER);
    assert!(
        acked_a.len() < LOAD_A,
        "the kill landed after the whole load: nothing was tested"
    );

    // A is down, the destination up: B keeps accepting (every message
    // 250) and forwarding.
    let sink = sink_at(a.dest).await;
    let load_b = Load::new("b", LOAD_B);
    join(load_b.run(b.smtp, 2)).await;
    let acked_b = load_b.acked();
    assert_eq!(
        *load_b.refused.lock().unwrap(),
        Vec::<(String, String)>::new(),
        "B refused mail while A was down"
    );
    assert_eq!(acked_b.len(), LOAD_B, "B acknowledged every message");
    wait_until(WAIT, "B's deliveries while A is down", || {
        let got = arrived(&sink);
        acked_b.iter().all(|id| got.contains_key(id))
    })
    .await;
    let b_took = killed_at.elapsed();
    assert!(
        arrived(&sink).keys().all(|id| id.starts_with("b-")),
        "only B delivers while A is down"
    );

    // A restarts on its data directory and delivers what it acknowledged.
    let mut node_a = start(&a);
    let restarted = Instant::now();
    let all: BTreeSet<String> = acked_a.union(&acked_b).cloned().collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let got = arrived(&sink);
        let missing: Vec<_> = all.iter().filter(|id| !got.contains_key(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged messages never arrived: {missing:?}\nA's queue: {}",
            missing.len(),
            all.len(),
            queue_json(&a)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered_in = restarted.elapsed();
    // Both queues drain to empty: every delivery was recorded.
    for files in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let queue = queue_json(files);
            if queue.as_array().is_some_and(Vec::is_empty) {
                break;
            }
            assert!(Instant::now() < deadline, "queue not empty: {queue}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let got = arrived(&sink);
    for m in sink.messages() {
        assert_eq!(m.rcpt_to, vec!["u@dest.test".to_string()]);
        assert!(m.text().contains("\r\n\r\nbody of "), "{}", m.text());
    }
    // At-least-once (README: duplicates only for deliveries in flight): the
    // destination was down while A ran, so nothing of A's was in flight
    // and nothing may arrive twice; a message never acknowledged may
    // arrive only if its DATA was being answered at the kill (one per
    // client).
    let duplicates: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
    let unacked: Vec<_> = got.keys().filter(|id| !all.contains(*id)).collect();
    assert!(
        unacked.len() <= CLIENTS && unacked.iter().all(|id| id.starts_with("a-")),
        "at most one message per client at A can be in flight at the kill: {unacked:?}"
    );
    let status = tokio::task::block_in_place(|| node_a.terminate(Duration::from_secs(20)));
    assert!(
        status.success(),
        "A shuts down cleanly after recovery: {status}"
    );
    let quarantined: Vec<_> = std::fs::read_dir(a.quarantine_dir())
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(quarantined.is_empty(), "quarantined: {quarantined:?}");
    eprintln!(
        "failover: A acknowledged {} of {sent_a} sent before SIGKILL, B {} while A was down \
         (accepted and delivered {b_took:?} after the kill); after A's restart all {} delivered \
         in {delivered_in:?}, 0 duplicates, {} unacknowledged arrival(s); total {:?}",
        acked_a.len(),
        acked_b.len(),
        all.len(),
        unacked.len(),
        started.elapsed()
    );
}

/// The subjects of a domain's log as `files`' API answers it, and whose
/// log that is (the `x-eas-logs-source` header).
async fn log_subjects(files: &NodeFiles) -> (BTreeSet<String>, String) {
    let bearer = format!("Bearer {ADMIN_KEY}");
    let (status, text) = common::http::raw_with_headers(
        files.http,
        "GET",
        &format!("/v3/domains/{DOMAIN}/logs"),
        &[("Authorization", bearer.as_str())],
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let subjects = body["logs"]
        .as_array()
        .map(|logs| {
            logs.iter()
                .filter_map(|l| l["subject"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let warning = body["warning"].as_str().unwrap_or_default().to_string();
    (subjects, warning)
}

async fn send(smtp: SocketAddr, rcpt: &str, subject: &str) {
    let mut c = common::smtp::Client::connect(smtp).await;
    c.ehlo("client.test").await;
    let msg = common::smtp::message("s@example.org", rcpt, subject, "hi");
    let reply = c.send_mail("s@example.org", &[rcpt], &msg).await;
    assert!(reply.starts_with("250"), "{reply}");
    c.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_with_an_empty_data_dir_serves_every_alias_and_both_nodes_log_to_either_api()
{
    let pg = TestPostgres::start().await;
    let a = cluster_files(&pg, "node-a", None);
    let sink = sink_at(a.dest).await;
    let _node_a = start(&a);
    let locals = ["hello", "sales", "support", "billing", "x.y-z"];
    add_aliases(&a, &locals).await;

    // C starts with nothing: its first snapshot before it serves.
    let c = cluster_files(&pg, "node-c", Some(a.dest));
    assert!(!c.data_dir.exists(), "C's data dir starts empty");
    let began = Instant::now();
    let _node_c = start(&c);
    let ready = began.elapsed();
    for local in locals {
        // Synced before it answered /health: no waiting beyond one try.
        let reply = common::eas::rcpt_reply(c.smtp, &format!("{local}@{DOMAIN}")).await;
        assert!(reply.starts_with("250"), "{local}@{DOMAIN} at C: {reply}");
    }
    let reply = common::eas::rcpt_reply(c.smtp, &format!("nobody@{DOMAIN}")).await;
    assert!(reply.starts_with('5'), "an unknown alias at C: {reply}");

    send(a.smtp, &format!("hello@{DOMAIN}"), "through A").await;
    send(c.smtp, &format!("sales@{DOMAIN}"), "through C").await;
    let got = sink.wait_for(2, WAIT).await;
    assert!(
        got.iter()
            .all(|m| m.rcpt_to == vec!["u@dest.test".to_string()])
    );

    let want: BTreeSet<String> = ["through A", "through C"].map(String::from).into();
    for files in [&a, &c] {
        let deadline = Instant::now() + WAIT;
        loop {
            let (subjects, warning) = log_subjects(files).await;
            if subjects == want {
                assert_eq!(warning, "", "the cluster's log, not the node's own");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "log at {} never showed both: {subjects:?} {warning}",
                files.http
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!("empty node C: ready (snapshot taken) in {ready:?}");
}

/// Waits until `files`' log API shows `want` from the cluster's log.
async fn wait_cluster_log(files: &NodeFiles, want: &BTreeSet<String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (subjects, warning) = log_subjects(files).await;
        if &subjects == want && warning.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "log at {} never showed {want:?}: {subjects:?} {warning}",
            files.http
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_both_nodes_keep_forwarding_and_writes_answer_503() {
    let mut pg = TestPostgres::start().await;
    let a = cluster_files(&pg, "node-a", None);
    let b = cluster_files(&pg, "node-b", Some(a.dest));
    let sink = sink_at(a.dest).await;
    let _node_a = start(&a);
    let _node_b = start(&b);
    add_aliases(&a, &["hello"]).await;
    wait_rcpt(b.smtp, &format!("hello@{DOMAIN}"), PROPAGATION).await;

    pg.stop();
    send(a.smtp, &format!("hello@{DOMAIN}"), "down via A").await;
    send(b.smtp, &format!("hello@{DOMAIN}"), "down via B").await;
    sink.wait_for(2, WAIT).await;
    for files in [&a, &b] {
        let (status, body) = api(
            files,
            "POST",
            &format!("/v3/domains/{DOMAIN}/aliases"),
            Some(json!({ "alias": "support", "forward": "u@dest.test" })),
        )
        .await;
        assert_eq!(status, 503, "{body}");
        // The log API answers from the node's own log (its one message,
        // whose row may be committed a moment after the sink has it), and
        // says so.
        let deadline = Instant::now() + WAIT;
        loop {
            let (subjects, warning) = log_subjects(files).await;
            assert!(warning.contains("PostgreSQL is unreachable"), "{warning}");
            if subjects.len() == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{subjects:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Nothing was written anywhere: not served by either node.
    for files in [&a, &b] {
        let reply = common::eas::rcpt_reply(files.smtp, &format!("support@{DOMAIN}")).await;
        assert!(reply.starts_with('5'), "{reply}");
    }

    pg.restart().await;
    let back = Instant::now();
    // A write through B works once its pool reconnects, and reaches A.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = api(
            &b,
            "POST",
            &format!("/v3/domains/{DOMAIN}/aliases"),
            Some(json!({ "alias": "support", "forward": "u@dest.test" })),
        )
        .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "writes still 503: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let write_ok = back.elapsed();
    // The replica's feed reconnects with a backoff of up to 10 s.
    let took = wait_rcpt(a.smtp, &format!("support@{DOMAIN}"), WAIT).await;
    send(a.smtp, &format!("support@{DOMAIN}"), "after via A").await;
    sink.wait_for(3, WAIT).await;
    // The buffered rows of the outage are in the cluster's log, once.
    let want: BTreeSet<String> = ["down via A", "down via B", "after via A"]
        .map(String::from)
        .into();
    wait_cluster_log(&a, &want).await;
    wait_cluster_log(&b, &want).await;
    eprintln!("PostgreSQL back: a write through B after {write_ok:?}, served at A {took:?} later");
}
