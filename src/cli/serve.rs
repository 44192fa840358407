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
        let listeners = Listeners::bind(&config).await?;
        run(config, listeners, shutdown_signal()).await
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

/// Completes on SIGINT or SIGTERM. SIGHUP is logged and ignored: its
/// default action would end the process, and a reload signal (logrotate,
/// `systemctl reload`, a closed terminal) must never stop a mail server;
/// the configuration is read at start only.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let mut hangup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::warn!(
                    "SIGHUP ignored: the configuration is read at start only; restart to apply changes"
                );
            }
        }
    }
}
