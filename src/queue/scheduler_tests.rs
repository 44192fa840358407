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

/// A started queue (store, spool, committer) in a tempdir, no scheduler.
fn queue_parts(settings: QueueSettings) -> (tempfile::TempDir, Arc<Store>, super::super::Started) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let started = Queue::start(store.clone(), spool, settings).unwrap();
    (dir, store, started)
}

fn start(settings: QueueSettings) -> Harness {
    let (dir, store, started) = queue_parts(settings);
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

/// Queues entry `id` (sender `s@example.org`, authenticated) for
/// `local@dest.test` of each of `locals`, accepted at `created`.
async fn enqueue(queue: &Queue, id: u64, locals: &[&str], created: u64) {
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
    queue
        .enqueue(entry, b"Subject: x\r\n\r\nbody".to_vec())
        .await
        .unwrap();
}

impl Harness {
    async fn enqueue(&self, id: u64, locals: &[&str], created: u64) {
        enqueue(&self.queue, id, locals, created).await;
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

/// A 451 reschedules the recipient `retry_initial` after the attempt, then
/// twice as long each time, capped at `retry_max`: the stored next attempt
/// is exactly the attempt's time (its log row) plus that delay, and the
/// scheduler does not try before it. Each next attempt is brought forward
/// with `retry` (due now, the count kept) rather than waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferrals_back_off_doubling_up_to_retry_max() {
    let h = start(settings(60_000, 240_000, Duration::from_secs(3600)));
    h.enqueue(4, &["later"], now_ms()).await;
    let delays = [60_000u64, 120_000, 240_000, 240_000, 240_000];
    for (n, delay) in (1..).zip(delays) {
        until("the attempt logged", || h.log("later").len() == n).await;
        let log = h.log("later");
        let attempt = &log[n - 1];
        assert_eq!(attempt.outcome, LogOutcome::Deferred);
        let entry = h.store.queue_get(4).unwrap().expect("still queued");
        let rcpt = &entry.recipients[0];
        assert_eq!(rcpt.status, RcptStatus::Pending);
        assert_eq!(rcpt.attempts as usize, n);
        assert_eq!(
            rcpt.next_attempt,
            attempt.time + delay,
            "attempt {n}: next one {delay} ms later"
        );
        assert_eq!(h.script.calls().len(), n, "no attempt before it is due");
        assert_eq!(h.queue.retry(Some(4)).await.unwrap(), 1);
    }
    h.stop().await;
}

/// An entry older than `max_age` whose attempt is deferred (451) is
/// bounced instead: the recipient fails, the log says the delivery time
/// expired, the entry and its body leave the queue, the sender gets a DSN,
/// and the recipient is never tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferral_after_max_age_bounces_with_a_dsn_and_is_not_retried() {
    let h = start(settings(60_000, 60_000, Duration::from_secs(3600)));
    let created = now_ms() - 2 * 3600 * 1000;
    h.enqueue(3, &["later"], created).await;
    until("the expired attempt logged", || !h.log("later").is_empty()).await;
    let log = h.log("later");
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].outcome, LogOutcome::Bounced);
    assert!(
        log[0].message.starts_with("delivery time expired after")
            && log[0].message.contains("later"),
        "{}",
        log[0].message
    );
    assert_eq!(h.store.queue_get(3).unwrap(), None, "gone from the queue");
    // The body is deleted once the commit is durable, just after it.
    let body = h.queue.spool().path(3);
    until("its body deleted", || !body.exists()).await;
    // The DSN is queued for the sender and attempted.
    let dsn = h
        .store
        .queue_due_list()
        .unwrap()
        .into_iter()
        .filter_map(|(_, id)| h.store.queue_get(id).unwrap())
        .find(|e| e.is_dsn)
        .expect("a DSN queued");
    assert_eq!(dsn.recipients[0].address, "s@example.org");
    until("the DSN attempted", || {
        h.script
            .calls()
            .iter()
            .any(|(_, rcpts)| rcpts == &["s@example.org".to_string()])
    })
    .await;
    until("the DSN's deferral recorded", || {
        h.store
            .queue_get(dsn.id)
            .unwrap()
            .is_some_and(|e| e.recipients[0].attempts == 1)
    })
    .await;
    // Nothing brings the bounced recipient back.
    assert_eq!(h.queue.retry(Some(3)).await.unwrap(), 0);
    assert_eq!(h.queue.retry(None).await.unwrap(), 1, "the DSN only");
    until("the DSN attempted again", || {
        h.script
            .calls()
            .iter()
            .filter(|(_, rcpts)| rcpts == &["s@example.org".to_string()])
            .count()
            == 2
    })
    .await;
    let tried = h
        .script
        .calls()
        .iter()
        .filter(|(_, rcpts)| rcpts.contains(&"later@dest.test".to_string()))
        .count();
    assert_eq!(tried, 1, "the expired recipient was tried once");
    assert_eq!(h.log("later").len(), 1);
    h.stop().await;
}

/// Hands the scheduler the outcome of one delivery task for `id`, as its
/// run loop does: a clean one (due again in a minute) or a panic.
async fn task_outcome(s: &mut Scheduler, id: u64, panics: bool) {
    s.inflight.insert(id);
    let handle = s.tasks.spawn(async move {
        assert!(!panics, "injected: the delivery task of {id} panics");
        (id, Some(now_ms() + 60_000))
    });
    s.task_ids.insert(handle.id(), id);
    let done = s.tasks.join_next_with_id().await.expect("one task");
    s.finished(done);
}

/// A delivery task that panics (`deliver_entry` itself; a panicking
/// attempt to one domain is caught inside it and deferred) is tried again
/// after `retry_initial`; the third panic in a row quarantines the entry,
/// record and body kept. A clean run in between starts the count again.
/// Driven through the scheduler's inputs (task outcomes), not its clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_task_panicking_three_times_in_a_row_quarantines_its_entry() {
    let (_dir, store, started) = queue_parts(settings(60_000, 60_000, Duration::from_secs(3600)));
    let queue = started.queue.clone();
    enqueue(&queue, 5, &["later"], now_ms()).await;
    let target: Arc<dyn Deliver> = Arc::new(Script::default());
    let mut s = Scheduler::new(started.queue, started.events, target);
    // Quarantine goes through the committer; a `retry` sent after it
    // answers after it, so `retry` finding the entry (1) or not (0) tells
    // whether it was quarantined.
    let before = now_ms();
    task_outcome(&mut s, 5, true).await;
    let due = *s.scheduled.get(&5).expect("rescheduled");
    assert!(
        due >= before + 60_000,
        "after retry_initial: {due} < {before}"
    );
    assert!(!s.inflight.contains(&5));
    task_outcome(&mut s, 5, true).await;
    assert_eq!(queue.retry(Some(5)).await.unwrap(), 1, "two panics: kept");
    task_outcome(&mut s, 5, false).await;
    task_outcome(&mut s, 5, true).await;
    task_outcome(&mut s, 5, true).await;
    assert_eq!(
        queue.retry(Some(5)).await.unwrap(),
        1,
        "two in a row after a clean run: kept"
    );
    task_outcome(&mut s, 5, true).await;
    assert_eq!(queue.retry(Some(5)).await.unwrap(), 0, "quarantined");
    assert_eq!(store.queue_get(5).unwrap(), None);
    let quarantine = queue.spool().quarantine_dir();
    let meta = std::fs::read_to_string(quarantine.join(format!("{}.meta", format_queue_id(5))))
        .expect("record kept in quarantine");
    assert!(meta.contains("delivery failed 3 times"), "{meta}");
    assert!(
        quarantine
            .join(format!("{}.eml", format_queue_id(5)))
            .exists(),
        "body kept"
    );
    // The scheduler forgets it once it hears of the removal.
    while let Ok(event) = s.events.try_recv() {
        s.handle(event);
    }
    assert!(!s.scheduled.contains_key(&5) && !s.inflight.contains(&5));
    assert!(s.panics.is_empty());
}
