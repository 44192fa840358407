//! Scheduler tests against a scripted [`Deliver`]: a real store, a real
//! spool in a tempdir and the real committer (through `Queue::start`).

use super::*;
use crate::queue::QueueSettings;
use crate::spool::Spool;
use crate::store::{LogEntry, LogOutcome, QueueEntry, QueuedRecipient, Store, sample_entry};
use std::sync::Mutex;

/// Answers by the recipient's local part: `ok` 250, `bad` 550, `panic`
/// panics, anything else 451. Remembers when each call came.
#[derive(Default)]
struct Script {
    calls: Mutex<Vec<(u64, Vec<String>)>>,
}

impl Script {
    fn calls(&self) -> Vec<(u64, Vec<String>)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Deliver for Script {
    fn deliver<'a>(
        &'a self,
        _domain: &'a str,
        _envelope: &'a Envelope,
        rcpts: &'a [String],
        _payload: &'a Payload,
    ) -> super::super::deliver::DeliverFuture<'a> {
        self.calls.lock().unwrap().push((now_ms(), rcpts.to_vec()));
        Box::pin(async move {
            rcpts
                .iter()
                .map(|rcpt| {
                    let (status, reply) = match rcpt.split('@').next().unwrap_or("") {
                        "ok" => (DeliveryStatus::Delivered, Reply::new(250, [2, 0, 0], "ok")),
                        "bad" => (DeliveryStatus::Failed, Reply::new(550, [5, 1, 1], "no")),
                        "panic" => panic!("scripted delivery panics"),
                        _ => (
                            DeliveryStatus::Deferred,
                            Reply::new(451, [4, 0, 0], "later"),
                        ),
                    };
                    Attempt {
                        status,
                        reply,
                        server: None,
                    }
                })
                .collect()
        })
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    queue: Queue,
    script: Arc<Script>,
    stop: watch::Sender<bool>,
    scheduler: tokio::task::JoinHandle<()>,
}

fn settings(retry_initial_ms: u64, retry_max_ms: u64, max_age: Duration) -> QueueSettings {
    QueueSettings {
        retry_initial: Duration::from_millis(retry_initial_ms),
        retry_max: Duration::from_millis(retry_max_ms),
        max_age,
        max_inflight: 4,
        hostname: "relay.test".into(),
        dsn_authenticated_only: true,
        log_addresses: false,
        stall_timeout: Duration::from_secs(60),
    }
}

fn start(settings: QueueSettings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let started = Queue::start(store.clone(), spool, settings).unwrap();
    let script = Arc::new(Script::default());
    let target: Arc<dyn Deliver> = script.clone();
    let (stop, stopped) = watch::channel(false);
    let scheduler = Scheduler::new(started.queue.clone(), started.events, target);
    let scheduler = tokio::spawn(scheduler.run(stopped, Duration::from_secs(5)));
    Harness {
        _dir: dir,
        store,
        queue: started.queue,
        script,
        stop,
        scheduler,
    }
}

impl Harness {
    async fn enqueue(&self, id: u64, locals: &[&str], created: u64) {
        let mut entry: QueueEntry = sample_entry(id, 0);
        entry.created = created;
        let template = entry.recipients[0].clone();
        entry.recipients = locals
            .iter()
            .map(|local| QueuedRecipient {
                address: format!("{local}@dest.test"),
                ..template.clone()
            })
            .collect();
        self.queue
            .enqueue(entry, b"Subject: x\r\n\r\nbody".to_vec())
            .await
            .unwrap();
    }

    /// Delivery log entries for forwarding address `local@dest.test`, oldest first.
    fn log(&self, local: &str) -> Vec<LogEntry> {
        let mut log: Vec<LogEntry> = self
            .store
            .log_list("x.test", None, 0, 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.forward == format!("{local}@dest.test"))
            .collect();
        log.reverse();
        log
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.scheduler.await.unwrap();
    }
}

/// Polls `done` until it holds, failing after a generous deadline.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One 250, one 550 and one 451 in one entry: delivered, failed, deferred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_recipient_gets_its_own_outcome() {
    let h = start(settings(60_000, 60_000, Duration::from_secs(3600)));
    let before = now_ms();
    h.enqueue(1, &["ok", "bad", "later"], before).await;
    until("three outcomes logged", || {
        ["ok", "bad", "later"].iter().all(|l| !h.log(l).is_empty())
    })
    .await;
    let calls = h.script.calls();
    assert_eq!(calls.len(), 1, "one domain, one call: {calls:?}");
    assert_eq!(calls[0].1.len(), 3);
    assert_eq!(h.log("ok")[0].outcome, LogOutcome::Delivered);
    assert_eq!(h.log("bad")[0].outcome, LogOutcome::Bounced);
    assert_eq!(h.log("later")[0].outcome, LogOutcome::Deferred);
    let entry = h.store.queue_get(1).unwrap().expect("one still pending");
    let statuses: Vec<RcptStatus> = entry.recipients.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            RcptStatus::Delivered,
            RcptStatus::Failed,
            RcptStatus::Pending
        ]
    );
    assert!(entry.recipients[2].next_attempt >= before + 60_000);
    h.stop().await;
}

/// A delivery that panics (a bug meeting a hostile reply) defers its
/// recipients with the usual backoff: the entry is not handed out again at
/// once, over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_delivery_is_deferred_not_retried_in_a_hot_loop() {
    let h = start(settings(60_000, 60_000, Duration::from_secs(3600)));
    let before = now_ms();
    h.enqueue(2, &["panic"], before).await;
    until("the panicked attempt logged as deferred", || {
        !h.log("panic").is_empty()
    })
    .await;
    assert_eq!(h.log("panic")[0].outcome, LogOutcome::Deferred);
    let entry = h.store.queue_get(2).unwrap().expect("still queued");
    assert_eq!(entry.recipients[0].status, RcptStatus::Pending);
    assert!(entry.recipients[0].next_attempt >= before + 60_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = h.script.calls();
    assert_eq!(
        calls.len(),
        1,
        "tried once, then backoff: {} calls",
        calls.len()
    );
    h.stop().await;
}
