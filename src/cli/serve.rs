//! `serve`: run the node on a multi-threaded runtime until SIGINT or
//! SIGTERM.

use crate::config::Config;
use crate::node::{Listeners, run};
use std::process::ExitCode;

pub(super) fn serve(config: Config, warning: Option<String>) -> ExitCode {
    crate::observe::init_logging(&config.log.level);
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eas-relay: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        // Installed before the node listens, not when `run` first polls
        // its shutdown future: a SIGHUP that arrives once the node serves
        // must find its handler, or its default action ends the process.
        let signals = Signals::install();
        let listeners = Listeners::bind(&config).await?;
        run(config, listeners, signals.shutdown()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("eas-relay: {e}");
            ExitCode::from(1)
        }
    }
}

/// The signals `serve` handles, installed at once (see [`Signals::install`]).
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers now (inside the runtime). One that cannot be
    /// installed keeps its default action.
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
            hangup: signal(SignalKind::hangup()).ok(),
        }
    }

    /// Completes on SIGINT or SIGTERM. SIGHUP is logged and ignored: its
    /// default action would end the process, and a reload signal
    /// (logrotate, `systemctl reload`, a closed terminal) must never stop a
    /// mail server; the configuration is read at start only.
    async fn shutdown(mut self) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal.as_mut() {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        }
        loop {
            tokio::select! {
                _ = next(&mut self.interrupt) => return,
                _ = next(&mut self.terminate) => return,
                _ = next(&mut self.hangup) => {
                    tracing::warn!(
                        "SIGHUP ignored: the configuration is read at start only; restart to apply changes"
                    );
                }
            }
        }
    }
}
