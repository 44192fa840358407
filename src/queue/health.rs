//! Supervision of the queue's two workers, the committer thread and the
//! scheduler task: each reports that it is alive and making progress, and
//! `/health` (503 `"failing"`) and the `eas_component_healthy` metric say
//! when one died or has been stuck for `queue.stall_timeout`.

use crate::store::now_ms;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    /// It ended (panicked, or its thread or task is gone).
    Dead,
    /// It has work and has not finished it for longer than the stall timeout.
    Stalled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Dead => "dead",
            State::Stalled => "stalled",
        }
    }
}

/// One worker's signs of life.
#[derive(Debug)]
pub struct Component {
    name: &'static str,
    alive: AtomicBool,
    /// Unix ms since which it has been busy with one piece of work (0: idle).
    busy_since: AtomicU64,
}

impl Component {
    fn new(name: &'static str) -> Component {
        Component {
            name,
            alive: AtomicBool::new(true),
            busy_since: AtomicU64::new(0),
        }
    }

    /// Work started (a group commit, a scheduler turn).
    pub fn busy(&self) {
        self.busy_since.store(now_ms().max(1), Ordering::Relaxed);
    }

    /// The work in hand is done.
    pub fn idle(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
    }

    /// A guard that marks the worker dead when it is dropped: on return
    /// and on unwinding alike.
    pub fn alive_guard(self: &Arc<Self>, health: &Arc<Health>) -> AliveGuard {
        self.alive.store(true, Ordering::Relaxed);
        AliveGuard {
            health: health.clone(),
            which: self.name,
        }
    }

    fn state(&self, now: u64, stall_ms: u64) -> State {
        if !self.alive.load(Ordering::Relaxed) {
            return State::Dead;
        }
        let since = self.busy_since.load(Ordering::Relaxed);
        if since != 0 && now.saturating_sub(since) > stall_ms {
            return State::Stalled;
        }
        State::Ok
    }
}

/// Marks its worker dead when dropped (unless the node is stopping).
pub struct AliveGuard {
    health: Arc<Health>,
    which: &'static str,
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        if let Some(c) = self.health.component(self.which) {
            c.alive.store(false, Ordering::Relaxed);
            c.idle();
        }
    }
}

/// The queue workers' health, shared by the workers, the API and the
/// supervisor.
#[derive(Debug)]
pub struct Health {
    pub committer: Arc<Component>,
    pub scheduler: Arc<Component>,
    stall_ms: u64,
    /// Set when the node is shutting down: workers ending then are not
    /// failures.
    stopping: AtomicBool,
}

impl Health {
    pub fn new(stall_timeout: Duration) -> Arc<Health> {
        Arc::new(Health {
            committer: Arc::new(Component::new("committer")),
            scheduler: Arc::new(Component::new("scheduler")),
            stall_ms: u64::try_from(stall_timeout.as_millis()).unwrap_or(u64::MAX),
            stopping: AtomicBool::new(false),
        })
    }

    fn component(&self, name: &str) -> Option<&Arc<Component>> {
        [&self.committer, &self.scheduler]
            .into_iter()
            .find(|c| c.name == name)
    }

    /// The node is stopping: workers may end.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Every worker with its state.
    pub fn states(&self) -> Vec<(&'static str, State)> {
        let now = now_ms();
        let stopping = self.stopping.load(Ordering::Relaxed);
        [&self.committer, &self.scheduler]
            .into_iter()
            .map(|c| match c.state(now, self.stall_ms) {
                State::Dead if stopping => (c.name, State::Ok),
                s => (c.name, s),
            })
            .collect()
    }

    /// True when every worker is fine.
    #[cfg(test)]
    pub fn healthy(&self) -> bool {
        self.states().iter().all(|(_, s)| *s == State::Ok)
    }

    /// Publishes `eas_component_healthy` (1/0 per worker) and logs every
    /// change, once a second, until `stop` turns true.
    pub async fn supervise(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last: Vec<(&'static str, State)> = Vec::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let states = self.states();
            for &(name, state) in &states {
                metrics::gauge!("eas_component_healthy", "component" => name)
                    .set(if state == State::Ok { 1.0 } else { 0.0 });
                let before = last.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
                if before.unwrap_or(State::Ok) != state {
                    if state == State::Ok {
                        tracing::info!(component = name, "queue worker recovered");
                    } else {
                        tracing::error!(
                            component = name,
                            state = state.as_str(),
                            "queue worker failing: /health reports it"
                        );
                    }
                }
            }
            last = states;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_and_stalled_workers_are_reported() {
        let health = Health::new(Duration::from_millis(50));
        assert!(health.healthy());
        health.committer.busy();
        assert!(health.healthy(), "busy, not yet stalled");
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(health.states()[0], ("committer", State::Stalled));
        health.committer.idle();
        assert!(health.healthy());
        let guard = health.scheduler.alive_guard(&health);
        let worker = std::thread::spawn(move || {
            let _guard = guard;
            panic!("worker dies");
        });
        assert!(worker.join().is_err());
        assert_eq!(health.states()[1], ("scheduler", State::Dead));
        assert!(!health.healthy());
        health.stopping();
        assert!(health.healthy(), "ending at shutdown is no failure");
    }
}
