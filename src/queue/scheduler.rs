//! The scheduler: keeps every queued message's due time in memory, hands
//! due messages to outbound delivery (at most `max_inflight` at once), and
//! reschedules them with whatever the committer decided.

use super::deliver::Deliver;
use super::{Event, Queue, RcptResult};
use crate::outbound::{Attempt, DeliveryStatus, Envelope, Payload};
use crate::reply::Reply;
use crate::store::{RcptStatus, format_queue_id, now_ms};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Recipients due within this many ms of now go out in the same attempt.
const DUE_SLACK_MS: u64 = 1000;
/// Delivery attempts of one entry that may panic before it is quarantined.
const MAX_PANICS: u32 = 3;

pub struct Scheduler {
    queue: Queue,
    outbound: Arc<dyn Deliver>,
    events: mpsc::UnboundedReceiver<Event>,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    /// id -> due of its live heap item (older heap items are stale).
    scheduled: HashMap<u64, u64>,
    inflight: HashSet<u64>,
    /// Due times that arrived while the entry was in flight.
    after_flight: HashMap<u64, u64>,
    tasks: JoinSet<(u64, Option<u64>)>,
    task_ids: HashMap<tokio::task::Id, u64>,
    /// Entries whose delivery task panicked, and how often.
    panics: HashMap<u64, u32>,
}

impl Scheduler {
    pub(crate) fn new(
        queue: Queue,
        events: mpsc::UnboundedReceiver<Event>,
        outbound: Arc<dyn Deliver>,
    ) -> Scheduler {
        Scheduler {
            queue,
            outbound,
            events,
            heap: BinaryHeap::new(),
            scheduled: HashMap::new(),
            inflight: HashSet::new(),
            after_flight: HashMap::new(),
            tasks: JoinSet::new(),
            task_ids: HashMap::new(),
            panics: HashMap::new(),
        }
    }

    /// Runs until `shutdown` turns true, then lets deliveries in flight
    /// finish for up to `grace` (their outcomes are recorded) and abandons
    /// the rest (they are retried after restart: at worst a duplicate).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let health = self.queue.health().clone();
        let _alive = health.scheduler.alive_guard(&health);
        loop {
            // Busy from here until it waits again: a turn that never ends
            // (a blocking call, an endless loop) shows as stalled.
            health.scheduler.busy();
            self.dispatch();
            metrics::gauge!("eas_queue_depth")
                .set((self.scheduled.len() + self.inflight.len()) as f64);
            let next = self.heap.peek().map(|Reverse((due, _))| *due);
            let has_room = self.tasks.len() < self.queue.settings().max_inflight;
            let sleep = async {
                match next {
                    Some(due) if has_room => {
                        let wait = due.saturating_sub(now_ms());
                        tokio::time::sleep(Duration::from_millis(wait.max(1))).await
                    }
                    _ => std::future::pending().await,
                }
            };
            health.scheduler.idle();
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => self.handle(event),
                    None => break,
                },
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(done);
                }
                _ = sleep => {}
                _ = shutdown.changed() => break,
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(done)) => self.finished(done),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        inflight = self.tasks.len(),
                        "shutdown: abandoning deliveries in flight (they will be retried)"
                    );
                    self.tasks.abort_all();
                    break;
                }
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Due { id, due } => self.schedule(id, due),
            Event::Removed { id } => {
                self.scheduled.remove(&id);
                self.after_flight.remove(&id);
            }
        }
    }

    fn schedule(&mut self, id: u64, due: u64) {
        if let Some(&current) = self.scheduled.get(&id)
            && current <= due
        {
            return;
        }
        self.scheduled.insert(id, due);
        self.heap.push(Reverse((due, id)));
    }

    fn dispatch(&mut self) {
        let now = now_ms();
        let limit = self.queue.settings().max_inflight;
        while self.tasks.len() < limit {
            let Some(&Reverse((due, id))) = self.heap.peek() else {
                break;
            };
            if due > now {
                break;
            }
            self.heap.pop();
            if self.scheduled.get(&id) != Some(&due) {
                continue; // stale: rescheduled or removed since
            }
            self.scheduled.remove(&id);
            if self.inflight.contains(&id) {
                let entry = self.after_flight.entry(id).or_insert(due);
                *entry = (*entry).min(due);
                continue;
            }
            self.inflight.insert(id);
            let queue = self.queue.clone();
            let outbound = self.outbound.clone();
            let handle = self
                .tasks
                .spawn(async move { (id, deliver_entry(queue, outbound, id).await) });
            self.task_ids.insert(handle.id(), id);
        }
    }

    fn finished(
        &mut self,
        done: Result<(tokio::task::Id, (u64, Option<u64>)), tokio::task::JoinError>,
    ) {
        let (id, next) = match done {
            Ok((task, (id, next))) => {
                self.task_ids.remove(&task);
                self.panics.remove(&id);
                (id, next)
            }
            Err(e) => {
                let Some(id) = self.task_ids.remove(&e.id()) else {
                    return;
                };
                tracing::error!(id = %format_queue_id(id), error = %e, "delivery task failed");
                let panics = self.panics.entry(id).or_default();
                *panics = panics.saturating_add(1);
                if *panics >= MAX_PANICS {
                    // This entry, not the queue: it goes to quarantine.
                    self.panics.remove(&id);
                    self.inflight.remove(&id);
                    self.after_flight.remove(&id);
                    self.queue
                        .quarantine(id, format!("delivery failed {MAX_PANICS} times: {e}"));
                    return;
                }
                let delay = self.queue.settings().retry_initial.as_millis();
                let retry = now_ms().saturating_add(u64::try_from(delay).unwrap_or(u64::MAX));
                (id, Some(retry))
            }
        };
        self.inflight.remove(&id);
        let again = self.after_flight.remove(&id);
        let due = match (next, again) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(due) = due {
            self.schedule(id, due);
        }
    }
}

/// One delivery attempt of one queue entry: every due recipient, grouped by
/// destination domain, domains in parallel. Returns the next due time.
async fn deliver_entry(queue: Queue, outbound: Arc<dyn Deliver>, id: u64) -> Option<u64> {
    let retry_later = || {
        let delay = u64::try_from(queue.settings().retry_initial.as_millis());
        Some(now_ms().saturating_add(delay.unwrap_or(u64::MAX)))
    };
    let entry = match queue.store().queue_get(id) {
        Ok(Some(entry)) => entry,
        Ok(None) => return None,
        Err(e @ crate::store::StoreError::Corrupt { .. }) => {
            // This record, not the queue: keep it in quarantine.
            queue.quarantine(id, format!("queue record does not decode: {e}"));
            return None;
        }
        Err(e) => {
            tracing::error!(id = %format_queue_id(id), error = %e, "cannot read queue entry");
            return retry_later();
        }
    };
    if entry.is_finished() {
        return None;
    }
    // One blocking hop: the open, and the bytes of a small message (a
    // large one is streamed by each destination itself).
    let path = queue.spool().path(id);
    let payload = match tokio::task::spawn_blocking(move || Payload::load(path)).await {
        Ok(Ok(payload)) => Arc::new(payload),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            queue.quarantine(id, "spool file missing at delivery".into());
            return None;
        }
        Ok(Err(e)) => {
            tracing::error!(id = %format_queue_id(id), error = %e, "cannot read spool file");
            return retry_later();
        }
        Err(_) => return retry_later(),
    };
    let now = now_ms();
    let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut results = Vec::new();
    for (i, rcpt) in entry.recipients.iter().enumerate() {
        if rcpt.status != RcptStatus::Pending || rcpt.next_attempt > now + DUE_SLACK_MS {
            continue;
        }
        match crate::address::Mailbox::parse(&rcpt.address) {
            Some(m) => by_domain.entry(m.domain).or_default().push(i),
            None => results.push(RcptResult {
                index: i,
                status: DeliveryStatus::Failed,
                reply: Reply::new(553, [5, 1, 3], "invalid destination address"),
                server: None,
            }),
        }
    }
    let envelope = Arc::new(Envelope {
        sender: entry
            .envelope_from
            .clone()
            .unwrap_or_else(|| entry.sender.clone()),
        smtputf8: entry.smtputf8,
        body_8bit: entry.body_8bit,
    });
    let mut attempts = JoinSet::new();
    // Which recipients each attempt carries, so a panicked one can be told.
    let mut carried: HashMap<tokio::task::Id, Vec<usize>> = HashMap::new();
    for (domain, indexes) in by_domain {
        let rcpts: Vec<String> = indexes
            .iter()
            .map(|&i| entry.recipients[i].address.clone())
            .collect();
        let outbound = outbound.clone();
        let envelope = envelope.clone();
        let payload = payload.clone();
        let handle = attempts
            .spawn(async move { outbound.deliver(&domain, &envelope, &rcpts, &payload).await });
        carried.insert(handle.id(), indexes);
    }
    while let Some(done) = attempts.join_next_with_id().await {
        let (task, outcomes) = match done {
            Ok(answered) => answered,
            Err(e) => {
                // A panicked attempt: its recipients are deferred with the
                // usual backoff, never left due at once (a hot loop).
                tracing::error!(id = %format_queue_id(id), error = %e, "delivery attempt failed");
                (e.id(), Vec::new())
            }
        };
        let indexes = carried.remove(&task).unwrap_or_default();
        let mut outcomes = outcomes.into_iter();
        for index in indexes {
            // An attempt that answered fewer recipients than it carried
            // defers the rest the same way.
            let attempt = outcomes.next().unwrap_or_else(|| Attempt {
                status: DeliveryStatus::Deferred,
                reply: Reply::new(451, [4, 3, 0], "local delivery failure, will retry"),
                server: None,
            });
            results.push(RcptResult {
                index,
                status: attempt.status,
                reply: attempt.reply,
                server: attempt.server,
            });
        }
    }
    if results.is_empty() {
        return entry.next_due();
    }
    queue.record(id, results).await
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
