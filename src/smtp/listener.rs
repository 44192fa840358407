//! The accept loop: a connection permit is taken before `accept` (so at most
//! `max_connections` sessions exist), each client network holds a bounded
//! number of seats and the last ones are kept for networks holding none
//! ([`crate::net::Seats`]), and on shutdown the loop stops accepting and
//! waits (bounded) for sessions.

use super::SmtpContext;
use super::session;
use crate::net::{SeatRefused, Seats};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How long a refused client may take to read its `421`.
const REFUSAL_WRITE: Duration = Duration::from_secs(5);

/// Serves SMTP on `listener` until `shutdown` turns true.
pub(crate) async fn run(
    listener: TcpListener,
    ctx: Arc<SmtpContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = &ctx.config.smtp;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let seats = Seats::new(
        limits.max_connections,
        limits.max_connections_per_network,
        limits.reserved_percent,
    );
    let mut sessions = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
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
        let seat = match seats.take(peer.ip()) {
            Ok(seat) => seat,
            Err(refused) => {
                metrics::counter!("eas_messages_rejected_total", "reason" => "too_many_connections")
                    .increment(1);
                let text = match refused {
                    SeatRefused::NetworkFull => "too many connections from your network",
                    SeatRefused::Reserved | SeatRefused::Full => {
                        "too many connections, try again later"
                    }
                };
                let hostname = ctx.config.hostname.clone();
                // The permit stays with the refusal until it is written, so
                // refusals cannot pile up beyond max_connections either.
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
                        let line = format!("421 4.7.0 {hostname} Error: {text}\r\n");
                        let _ = stream.write_all(line.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        sessions.spawn(async move {
            let _permit = permit;
            let _seat = seat;
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
