//! Durability: the real binary is killed with SIGKILL while clients are
//! sending and the destination is down. After a restart with the
//! destination up, every message that got `250` must arrive (duplicates
//! are allowed, losses are not), and the queue must drain to empty.
//!
//! Three rounds on one data directory, each killing at a different moment:
//! right after the first acknowledgement, in the middle of the load, and
//! (in the last round) a second time while the recovered queue is being
//! delivered.

mod common;

use common::node::{Node, NodeFiles, NodeOptions};
use common::sink::{SinkOptions, TestSink};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Concurrent SMTP clients per round.
const CLIENTS: usize = 4;
/// Longest wait for any one SMTP reply.
const IO_LIMIT: Duration = Duration::from_secs(5);

/// One round: SIGKILL once `kill_after` messages were acknowledged; when
/// `kill_in_delivery` is set, kill the restarted node again once part of
/// the recovered queue has reached the destination.
struct Round {
    kill_after: usize,
    kill_in_delivery: bool,
}

const ROUNDS: [Round; 3] = [
    Round {
        kill_after: 1,
        kill_in_delivery: false,
    },
    Round {
        kill_after: 150,
        kill_in_delivery: false,
    },
    Round {
        kill_after: 400,
        kill_in_delivery: true,
    },
];

#[derive(Default)]
struct Load {
    /// Ids whose final reply was 250.
    acked: Mutex<Vec<String>>,
    /// Messages whose DATA was sent (acknowledged or not).
    sent: AtomicUsize,
    stop: AtomicBool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_acceptance_loses_no_acknowledged_message() {
    let started = Instant::now();
    let files = NodeFiles::new(NodeOptions::default());
    cli(&files, &["domain", "add", "d.country"]).await;
    cli(&files, &["alias", "add", "hello@d.country", "u@dest.test"]).await;

    let mut total_acked = 0;
    let mut total_duplicates = 0;
    let mut total_unacked_arrivals = 0;
    for (round, plan) in ROUNDS.iter().enumerate() {
        let t0 = Instant::now();
        // The destination is down: nothing listens on files.dest.
        let mut node = start(&files);
        let load = Arc::new(Load::default());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(client(files.smtp, round, c, load.clone())))
            .collect();
        wait_until(
            Duration::from_secs(30),
            "acknowledgements before the kill",
            || load.acked.lock().unwrap().len() >= plan.kill_after,
        )
        .await;
        node.kill();
        load.stop.store(true, Ordering::SeqCst);
        for c in clients {
            tokio::time::timeout(Duration::from_secs(15), c)
                .await
                .expect("clients end once the node is gone")
                .expect("client task");
        }
        let acked: BTreeSet<String> = load.acked.lock().unwrap().iter().cloned().collect();
        let sent = load.sent.load(Ordering::SeqCst);
        assert_eq!(
            acked.len(),
            load.acked.lock().unwrap().len(),
            "one 250 per message"
        );
        assert!(acked.len() >= plan.kill_after);

        // Destination up, node restarted on the same data directory.
        let sink = TestSink::with(SinkOptions {
            pipelining: true,
            bind: Some(files.dest),
            ..SinkOptions::default()
        })
        .await;
        let mut node = start(&files);
        if plan.kill_in_delivery {
            let some = (acked.len() / 3).max(1);
            wait_until(Duration::from_secs(30), "first deliveries", || {
                ids(&sink).len() >= some
            })
            .await;
            node.kill();
            node = start(&files);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let arrived = ids(&sink);
            let missing: Vec<_> = acked
                .iter()
                .filter(|id| !arrived.contains_key(*id))
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {} of {} acknowledged messages never arrived: {missing:?}\nqueue: {}",
                missing.len(),
                acked.len(),
                queue_json(&files).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every delivery is recorded: the queue drains to empty.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let queue = queue_json(&files).await;
            if queue.as_array().is_some_and(Vec::is_empty) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: queue not empty after delivery: {queue}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let arrived = ids(&sink);
        for m in sink.messages() {
            assert_eq!(m.rcpt_to, vec!["u@dest.test".to_string()]);
            assert!(m.text().contains("\r\n\r\nbody of "), "{}", m.text());
        }
        let duplicates: usize = arrived.values().map(|n| n - 1).sum();
        let unacked: Vec<_> = arrived.keys().filter(|id| !acked.contains(*id)).collect();
        assert!(
            unacked.len() <= CLIENTS,
            "at most one message per client can be in flight at the kill: {unacked:?}"
        );
        assert!(
            arrived
                .keys()
                .all(|id| id.starts_with(&format!("r{round}-"))),
            "only this round's messages arrive: {:?}",
            arrived.keys()
        );
        let status = tokio::task::block_in_place(|| node.terminate(Duration::from_secs(20)));
        assert!(status.success(), "clean shutdown after recovery: {status}");
        drop(sink);
        eprintln!(
            "round {round}: killed after {} acks ({sent} sent); {} arrived, {duplicates} duplicate(s), \
             {} unacknowledged arrival(s){}; {:?}",
            acked.len(),
            arrived.len(),
            unacked.len(),
            if plan.kill_in_delivery {
                ", killed again during delivery"
            } else {
                ""
            },
            t0.elapsed()
        );
        total_acked += acked.len();
        total_duplicates += duplicates;
        total_unacked_arrivals += unacked.len();
    }
    // Nothing was damaged: no queue entry lost its body.
    let quarantined: Vec<_> = std::fs::read_dir(files.quarantine_dir())
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(quarantined.is_empty(), "quarantined: {quarantined:?}");
    eprintln!(
        "crash test: {total_acked} acknowledged, 0 lost, {total_duplicates} duplicate(s), \
         {total_unacked_arrivals} unacknowledged arrival(s), {:?}",
        started.elapsed()
    );
}

/// Runs the CLI (letting the sink's tasks move to the other worker);
/// panics unless it succeeds.
async fn cli(files: &NodeFiles, args: &[&str]) -> String {
    tokio::task::block_in_place(|| files.cli(args).ok().to_string())
}

/// Starts the node without blocking the sink's tasks.
fn start(files: &NodeFiles) -> Node {
    tokio::task::block_in_place(|| files.start())
}

/// `eas-relay queue list --json` against the running node.
async fn queue_json(files: &NodeFiles) -> serde_json::Value {
    let out = cli(files, &["--json", "queue", "list"]).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("queue list --json: {e}: {out}"))
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
fn ids(sink: &TestSink) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in sink.messages() {
        let text = m.text();
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: <"))
            .and_then(|l| l.strip_suffix("@crash.test>"))
            .unwrap_or_else(|| panic!("no test Message-ID in {text}"))
            .to_string();
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

/// One sending client: sessions of many messages each, until told to stop
/// or the node is gone (connection refused or broken).
async fn client(addr: SocketAddr, round: usize, c: usize, load: Arc<Load>) {
    let mut n = 0usize;
    while !load.stop.load(Ordering::SeqCst) {
        let Ok(Ok(stream)) = tokio::time::timeout(IO_LIMIT, TcpStream::connect(addr)).await else {
            return;
        };
        let mut s = Smtp {
            stream,
            buf: Vec::new(),
        };
        if session(&mut s, round, c, &mut n, &load).await.is_err()
            && load.stop.load(Ordering::SeqCst)
        {
            return;
        }
    }
}

async fn session(
    s: &mut Smtp,
    round: usize,
    c: usize,
    n: &mut usize,
    load: &Load,
) -> Result<(), String> {
    s.expect("", "220").await?;
    s.expect("EHLO crash.test\r\n", "250").await?;
    while !load.stop.load(Ordering::SeqCst) {
        *n += 1;
        let id = format!("r{round}-c{c}-n{n}");
        s.expect("MAIL FROM:<sender@example.org>\r\n", "250")
            .await?;
        s.expect("RCPT TO:<hello@d.country>\r\n", "250").await?;
        s.expect("DATA\r\n", "354").await?;
        // Every fifth message is large, so some kills land mid-write.
        let filler = if (*n).is_multiple_of(5) {
            "x".repeat(76) + "\r\n"
        } else {
            String::new()
        }
        .repeat(800);
        let message = format!(
            "From: <sender@example.org>\r\nTo: <hello@d.country>\r\nSubject: crash {id}\r\n\
             Message-ID: <{id}@crash.test>\r\n\r\nbody of {id}\r\n{filler}.\r\n"
        );
        load.sent.fetch_add(1, Ordering::SeqCst);
        let reply = s.expect(&message, "").await?;
        if reply.starts_with("250") {
            load.acked.lock().unwrap().push(id);
        } else {
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
