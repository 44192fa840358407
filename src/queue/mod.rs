//! The durable queue: accepted messages go to the spool (fsynced) and their
//! metadata to the store in a group commit, and only then does the client
//! hear `250`. A scheduler hands due messages to outbound delivery and the
//! committer records per-recipient outcomes, retries with backoff, bounces
//! with a DSN and expires old messages.

mod accept;
mod commit;
mod deliver;
pub(crate) mod dsn;
pub(crate) mod health;
pub(crate) mod ops;
mod recovery;
pub(crate) mod redact;
mod scheduler;

pub(crate) use accept::{Accepted, AcceptedRecipient, Queued};
pub(crate) use deliver::Deliver;
pub(crate) use recovery::Recovered;
pub(crate) use scheduler::Scheduler;

use crate::outbound::DeliveryStatus;
use crate::reply::Reply;
use crate::spool::{Message, Spool};
use crate::store::{self, QueueEntry, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why the queue could not take or change a message.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot write the spool file: {0}")]
    Spool(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the queue is shutting down")]
    Closed,
}

/// Queue timing and naming settings (from the config).
#[derive(Debug, Clone)]
pub(crate) struct QueueSettings {
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) max_age: Duration,
    pub(crate) max_inflight: usize,
    /// Host name used in DSNs.
    pub(crate) hostname: String,
    /// Send a DSN only for senders that passed SPF or aligned DKIM.
    pub(crate) dsn_authenticated_only: bool,
    /// Print forwarding addresses in INFO logs (otherwise a stable token).
    pub(crate) log_addresses: bool,
    /// A worker busy with one piece of work for longer is reported stuck.
    pub(crate) stall_timeout: Duration,
}

impl QueueSettings {
    pub(crate) fn from_config(config: &crate::config::Config) -> QueueSettings {
        QueueSettings {
            retry_initial: config.queue.retry_initial.0,
            retry_max: config.queue.retry_max.0,
            max_age: config.queue.max_age.0,
            max_inflight: config.queue.max_inflight,
            hostname: config.hostname.clone(),
            dsn_authenticated_only: config.queue.dsn_authenticated_only,
            log_addresses: config.log.addresses,
            stall_timeout: config.queue.stall_timeout.0,
        }
    }

    /// Delay before attempt `attempts + 1`: doubling from `retry_initial`,
    /// capped at `retry_max`.
    pub(crate) fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.retry_initial
            .saturating_mul(factor)
            .min(self.retry_max)
    }
}

/// The outcome of one delivery attempt for one recipient of an entry.
#[derive(Debug, Clone)]
pub(crate) struct RcptResult {
    /// Index into `QueueEntry::recipients`.
    pub(crate) index: usize,
    pub(crate) status: DeliveryStatus,
    pub(crate) reply: Reply,
    /// The host that answered, if any.
    pub(crate) server: Option<String>,
}

/// What the scheduler hears about.
#[derive(Debug)]
pub(crate) enum Event {
    /// Entry `id` should be attempted at `due` (unix ms).
    Due { id: u64, due: u64 },
    /// Entry `id` is gone.
    Removed { id: u64 },
}

/// Work for the committer thread.
pub(crate) enum Commit {
    Insert {
        entry: Box<QueueEntry>,
        done: oneshot::Sender<Result<(), QueueError>>,
    },
    Results {
        id: u64,
        results: Vec<RcptResult>,
        /// The next due time of the entry, None when it left the queue.
        done: oneshot::Sender<Option<u64>>,
    },
    Retry {
        id: Option<u64>,
        done: oneshot::Sender<Result<usize, QueueError>>,
    },
    Drop {
        id: u64,
        done: oneshot::Sender<Result<bool, QueueError>>,
    },
    Quarantine {
        id: u64,
        reason: String,
    },
    /// Delivery-log rows of a message refused before acceptance.
    Log {
        entries: Vec<crate::store::LogEntry>,
        done: oneshot::Sender<bool>,
    },
}

/// Handle to the queue: cheap to clone, shared by sessions, scheduler, API.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    spool: Spool,
    settings: QueueSettings,
    commits: mpsc::UnboundedSender<Commit>,
    events: mpsc::UnboundedSender<Event>,
    health: Arc<health::Health>,
}

/// What [`Queue::start`] gives back: the handle, the scheduler's event
/// stream, and the committer thread to join at shutdown.
pub(crate) struct Started {
    pub(crate) queue: Queue,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    pub(crate) committer: std::thread::JoinHandle<()>,
    pub(crate) recovered: Recovered,
}

impl Queue {
    /// Recovers the spool and store, then starts the committer thread. The
    /// recovered entries are already announced on the event stream.
    pub(crate) fn start(
        store: Arc<Store>,
        spool: Spool,
        settings: QueueSettings,
    ) -> Result<Started, QueueError> {
        let recovered = recovery::recover(&store, &spool)?;
        let (commit_tx, commit_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        for &(id, due) in &recovered.due {
            let _ = event_tx.send(Event::Due { id, due });
        }
        let health = health::Health::new(settings.stall_timeout);
        let committer = commit::Committer {
            store: store.clone(),
            spool: spool.clone(),
            settings: settings.clone(),
            events: event_tx.clone(),
            health: health.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("queue-commit".into())
            .spawn(move || committer.run(commit_rx))?;
        let queue = Queue {
            inner: Arc::new(Inner {
                store,
                spool,
                settings,
                commits: commit_tx,
                events: event_tx,
                health,
            }),
        };
        Ok(Started {
            queue,
            events: event_rx,
            committer: thread,
            recovered,
        })
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    pub(crate) fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    pub(crate) fn settings(&self) -> &QueueSettings {
        &self.inner.settings
    }

    /// The committer's and scheduler's health (for `/health`).
    pub(crate) fn health(&self) -> &Arc<health::Health> {
        &self.inner.health
    }

    /// Makes a message durable: spool file fsynced, then metadata committed
    /// (grouped with concurrent commits). Returns only once both are on disk.
    pub(crate) async fn enqueue(
        &self,
        entry: QueueEntry,
        message: impl Into<Message>,
    ) -> Result<u64, QueueError> {
        let id = entry.id;
        let spool = self.inner.spool.clone();
        let message = message.into();
        // The message (and its incoming file) is dropped on the blocking
        // thread: removing a large file takes a while.
        tokio::task::spawn_blocking(move || spool.write_message(id, &message))
            .await
            .map_err(|_| QueueError::Closed)??;
        let due = entry.next_due().unwrap_or(0);
        let (done, rx) = oneshot::channel();
        let sent = self.inner.commits.send(Commit::Insert {
            entry: Box::new(entry),
            done,
        });
        let result = match sent {
            Ok(()) => rx.await.unwrap_or(Err(QueueError::Closed)),
            Err(_) => Err(QueueError::Closed),
        };
        if let Err(e) = result {
            // Never acknowledged: the body must not linger as an orphan.
            let _ = self.inner.spool.remove(id);
            return Err(e);
        }
        let _ = self.inner.events.send(Event::Due { id, due });
        Ok(id)
    }

    /// Records delivery outcomes; returns the entry's next due time. When
    /// the committer never answers, the outcome was not recorded: the
    /// entry is tried again after the first retry delay.
    pub(crate) async fn record(&self, id: u64, results: Vec<RcptResult>) -> Option<u64> {
        let retry_later = || {
            let delay = u64::try_from(self.inner.settings.retry_initial.as_millis());
            Some(store::now_ms().saturating_add(delay.unwrap_or(u64::MAX)))
        };
        let (done, rx) = oneshot::channel();
        if self
            .inner
            .commits
            .send(Commit::Results { id, results, done })
            .is_err()
        {
            return retry_later();
        }
        rx.await.unwrap_or_else(|_| retry_later())
    }

    /// Makes pending recipients of `id` (or of every entry) due now.
    pub(crate) async fn retry(&self, id: Option<u64>) -> Result<usize, QueueError> {
        let (done, rx) = oneshot::channel();
        self.inner
            .commits
            .send(Commit::Retry { id, done })
            .map_err(|_| QueueError::Closed)?;
        rx.await.unwrap_or(Err(QueueError::Closed))
    }

    /// Removes a message without delivering it (no DSN).
    pub(crate) async fn drop_message(&self, id: u64) -> Result<bool, QueueError> {
        let (done, rx) = oneshot::channel();
        self.inner
            .commits
            .send(Commit::Drop { id, done })
            .map_err(|_| QueueError::Closed)?;
        rx.await.unwrap_or(Err(QueueError::Closed))
    }

    /// Writes the log rows of a message refused at the end of DATA (in the
    /// next group commit); false when they could not be written.
    pub(crate) async fn log_refused(&self, entries: Vec<crate::store::LogEntry>) -> bool {
        let (done, rx) = oneshot::channel();
        if self
            .inner
            .commits
            .send(Commit::Log { entries, done })
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    pub(crate) fn quarantine(&self, id: u64, reason: String) {
        let _ = self.inner.commits.send(Commit::Quarantine { id, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committer that cannot get the store's write transaction shows as
    /// stalled after `stall_timeout`, and healthy again once it commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_committer_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let settings = QueueSettings {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(1),
            max_age: Duration::from_secs(60),
            max_inflight: 1,
            hostname: "relay.test".into(),
            dsn_authenticated_only: true,
            log_addresses: false,
            stall_timeout: Duration::from_millis(300),
        };
        let started = Queue::start(store.clone(), spool, settings).unwrap();
        let queue = started.queue;
        let health = queue.health().clone();
        assert!(health.healthy());
        // Whatever holds the store's one write transaction holds the committer.
        let txn = store.db().begin_write().unwrap();
        let enqueue = tokio::spawn({
            let queue = queue.clone();
            async move {
                queue
                    .enqueue(crate::store::sample_entry(7, 0), b"x".to_vec())
                    .await
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while health.healthy() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reported stuck"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            health
                .states()
                .contains(&("committer", health::State::Stalled))
        );
        drop(txn);
        assert!(enqueue.await.unwrap().is_ok());
        // The committer answers a batch's waiters, then marks itself idle.
        while !health.healthy() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never healthy again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(queue);
        tokio::task::spawn_blocking(move || started.committer.join())
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let s = QueueSettings {
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
            max_inflight: 10,
            hostname: "relay.test".into(),
            dsn_authenticated_only: true,
            log_addresses: false,
            stall_timeout: Duration::from_secs(60),
        };
        assert_eq!(s.backoff(1), Duration::from_secs(60));
        assert_eq!(s.backoff(2), Duration::from_secs(120));
        assert_eq!(s.backoff(3), Duration::from_secs(240));
        assert_eq!(s.backoff(5), Duration::from_secs(600));
        assert_eq!(s.backoff(400), Duration::from_secs(600));
    }
}
