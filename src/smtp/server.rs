//! The accept loop: a connection permit is taken before `accept` (so at most
//! `max_connections` sessions exist), per-IP concurrency is capped, and on
//! shutdown the loop stops accepting and waits (bounded) for sessions.

use super::SmtpContext;
use super::session;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Counts sessions per client address.
#[derive(Default)]
struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// Releases one per-IP slot when dropped.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn acquire(table: &Arc<PerIp>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut counts = table.counts.lock().expect("per-ip lock");
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().expect("per-ip lock");
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Serves SMTP on `listener` until `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    ctx: Arc<SmtpContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = &ctx.config.smtp;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let mut sessions = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            _ = shutdown.changed() => break,
        };
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        metrics::counter!("eas_smtp_connections_total").increment(1);
        let Some(slot) = PerIp::acquire(&per_ip, peer.ip(), limits.max_connections_per_ip) else {
            metrics::counter!("eas_messages_rejected_total", "reason" => "too_many_connections")
                .increment(1);
            let hostname = ctx.config.hostname.clone();
            tokio::spawn(async move {
                let _ = stream
                    .write_all(
                        format!(
                            "421 4.7.0 {hostname} Error: too many connections from your address\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        sessions.spawn(async move {
            let _permit = permit;
            let _slot = slot;
            session::handle(ctx, stream, peer, shutdown).await;
        });
        while sessions.try_join_next().is_some() {}
    }
    drop(listener);
    let grace = ctx.config.smtp.shutdown_grace.0;
    let drained = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            sessions = sessions.len(),
            "shutdown grace over: closing sessions"
        );
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
}
