//! Screening at connect, before the greeting (`crate::screen` decides):
//! a blocklisted client is refused before anything is read from it; any
//! other client that is not allowlisted, or did not wait for a greeting
//! before, gets a `220-` first line and must stay silent for
//! `screen.greet_delay` (an early talker is refused); until EHLO/HELO is
//! answered, such a client may not pipeline commands.

use super::session::{Flow, Io, Session};
use crate::reply::Reply;
use crate::screen::{Decision, Screen, decided};
use std::time::Duration;
use tokio::io::AsyncReadExt;

impl<T: Io> Session<T> {
    /// Screens the client, then greets or refuses it.
    pub(crate) async fn screen_and_greet(&mut self, screen: &Screen) -> Flow {
        let ip = self.peer.ip();
        let verdict = screen.check(ip).await;
        match verdict.decision {
            Decision::Block => {
                metrics::counter!("eas_messages_rejected_total", "reason" => "screen_blocked")
                    .increment(1);
                let text = format!(
                    "Service unavailable; client [{ip}] blocked using {}",
                    verdict.blocked_by
                );
                self.reply(&Reply::owned(554, [5, 7, 1], text));
                let _ = self.flush().await;
                return Flow::Close;
            }
            Decision::Allow => {}
            Decision::Pass => {
                self.strict_before_helo = true;
                let delay = screen.greet_delay();
                if !verdict.greeted && !delay.is_zero() {
                    if self.greet_wait(delay).await == Flow::Close {
                        return Flow::Close;
                    }
                    screen.greeted(ip, &verdict);
                }
            }
        }
        self.greet();
        if self.flush().await.is_err() {
            return Flow::Close;
        }
        Flow::Continue
    }

    /// Sends the first greeting line and waits `delay` for silence.
    async fn greet_wait(&mut self, delay: Duration) -> Flow {
        let first = format!("220-{} ESMTP eas-relay\r\n", self.ctx.config.hostname);
        self.out.extend_from_slice(first.as_bytes());
        if self.flush().await.is_err() {
            return Flow::Close;
        }
        // What arrives is read whole (and dropped): closing with unread
        // input would reset the connection and lose the refusal.
        let mut early = [0u8; 1024];
        match tokio::time::timeout(delay, self.stream.read(&mut early)).await {
            Err(_) => Flow::Continue,
            Ok(Ok(0)) | Ok(Err(_)) => Flow::Close,
            Ok(Ok(_)) => {
                decided("early_talker");
                metrics::counter!("eas_messages_rejected_total", "reason" => "early_talker")
                    .increment(1);
                tracing::info!(client = %self.peer.ip(), "screen: client talked before the greeting");
                self.reply(&Reply::new(
                    554,
                    [5, 5, 1],
                    "Error: protocol error: talked before the greeting",
                ));
                let _ = self.flush().await;
                Flow::Close
            }
        }
    }

    /// A client sent more after a command before its EHLO/HELO was
    /// answered: it cannot know yet whether PIPELINING is offered
    /// (RFC 2920), so it is not waiting for replies (a bulk sender).
    pub(crate) fn pipelined_before_helo(&mut self) -> Flow {
        decided("pipelining");
        metrics::counter!("eas_messages_rejected_total", "reason" => "pipelining_before_helo")
            .increment(1);
        tracing::info!(client = %self.peer.ip(), "screen: command pipelining before EHLO/HELO");
        self.reply(&Reply::new(
            554,
            [5, 5, 1],
            "Error: command pipelining before EHLO/HELO",
        ));
        Flow::Close
    }
}
