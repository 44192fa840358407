//! Idle outbound connections kept for reuse, per destination, and the
//! per-destination concurrency limits.

use super::client::SmtpClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub struct Pool {
    idle: Mutex<HashMap<String, Vec<SmtpClient>>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    idle_timeout: Duration,
    max_messages: usize,
    per_destination: usize,
}

impl Pool {
    pub fn new(idle_timeout: Duration, max_messages: usize, per_destination: usize) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
            idle_timeout,
            max_messages,
            per_destination,
        }
    }

    /// The concurrency limit of one destination.
    pub fn limit(&self, destination: &str) -> Arc<Semaphore> {
        let mut limits = self.limits.lock().expect("pool lock");
        limits
            .entry(destination.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_destination)))
            .clone()
    }

    /// The most recently used live connection to `destination`, if any.
    pub fn take(&self, destination: &str) -> Option<SmtpClient> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(destination)?;
        while let Some(client) = list.pop() {
            if client.idle_since.elapsed() < self.idle_timeout {
                return Some(client);
            }
        }
        None
    }

    /// Returns a connection for reuse unless it has done its share.
    pub fn put(&self, destination: &str, mut client: SmtpClient) -> Option<SmtpClient> {
        if client.sent >= self.max_messages {
            return Some(client);
        }
        client.idle_since = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(destination.to_string()).or_default();
        if list.len() >= self.per_destination {
            return Some(client);
        }
        list.push(client);
        None
    }

    /// Takes out every expired connection (for the caller to close) and
    /// forgets limits nobody holds.
    pub fn reap(&self) -> Vec<SmtpClient> {
        let mut expired = Vec::new();
        {
            let mut idle = self.idle.lock().expect("pool lock");
            for list in idle.values_mut() {
                let (keep, old): (Vec<_>, Vec<_>) = std::mem::take(list)
                    .into_iter()
                    .partition(|c| c.idle_since.elapsed() < self.idle_timeout);
                *list = keep;
                expired.extend(old);
            }
            idle.retain(|_, list| !list.is_empty());
        }
        self.limits
            .lock()
            .expect("pool lock")
            .retain(|_, s| Arc::strong_count(s) > 1);
        expired
    }

    /// Every idle connection (at shutdown).
    pub fn drain(&self) -> Vec<SmtpClient> {
        let mut idle = self.idle.lock().expect("pool lock");
        idle.drain().flat_map(|(_, list)| list).collect()
    }
}
