//! Observability: the process-wide Prometheus recorder behind `/metrics`
//! (every metric described up front, so it shows from the first scrape)
//! and the tracing subscriber for logs.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The recorder's handle; installs the recorder on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("eas_delivery_latency_seconds".into()),
                    &[
                        0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("eas_queue_commit_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 512.0],
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("eas_smtp_connections_total", "SMTP connections accepted");
    describe_gauge!("eas_smtp_sessions_active", "SMTP sessions open now");
    describe_counter!(
        "eas_messages_accepted_total",
        "messages queued (answered 250)"
    );
    describe_counter!(
        "eas_messages_rejected_total",
        "commands refused, by reason (unknown_user, relay_denied, too_big, too_many_recipients, loop, too_many_connections, queue_error, protocol, bad_bounce_address, dmarc, auth_tempfail)"
    );
    describe_gauge!(
        "eas_queue_depth",
        "messages in the queue with recipients pending"
    );
    describe_counter!("eas_queue_commits_total", "group commits of the queue");
    describe_histogram!("eas_queue_commit_batch_size", "operations per group commit");
    describe_counter!(
        "eas_queue_quarantined_total",
        "queue entries moved to quarantine"
    );
    describe_counter!(
        "eas_dsn_withheld_total",
        "DSNs not sent because the sender passed neither SPF nor aligned DKIM"
    );
    describe_counter!(
        "eas_queue_commit_panics_total",
        "group commits that panicked outside the per-operation isolation"
    );
    describe_gauge!(
        "eas_component_healthy",
        "1 while a queue worker (committer, scheduler) is alive and not stuck, else 0"
    );
    describe_counter!(
        "eas_deliveries_total",
        "delivery attempts per recipient, by outcome (delivered, deferred, bounced)"
    );
    describe_histogram!(
        "eas_delivery_latency_seconds",
        "time from acceptance to delivery"
    );
    describe_counter!(
        "eas_outbound_connections_total",
        "outbound connections, by result (ok, failed)"
    );
    describe_gauge!(
        "eas_cluster_log_outbox_depth",
        "delivery-log rows of this cluster node waiting for PostgreSQL"
    );
    describe_counter!(
        "eas_cluster_log_flushed_total",
        "delivery-log rows sent from the outbox to PostgreSQL"
    );
    describe_counter!(
        "eas_cluster_log_outbox_dropped_total",
        "delivery-log rows dropped from the full outbox (kept in the node's own log only)"
    );
    metrics::counter!("eas_smtp_connections_total").increment(0);
    metrics::counter!("eas_messages_accepted_total").increment(0);
    for outcome in ["delivered", "deferred", "bounced"] {
        metrics::counter!("eas_deliveries_total", "outcome" => outcome).increment(0);
    }
    metrics::gauge!("eas_queue_depth").set(0.0);
    metrics::counter!("eas_dsn_withheld_total").increment(0);
}

/// How a forwarding address appears in INFO logs: itself when `show`
/// (`log.addresses`), otherwise a stable token, `forward#` and the first
/// 8 hex digits of the SHA-256 of its lower case, so that one address's
/// lines can be followed without the log naming it.
pub fn loggable_address(address: &str, show: bool) -> String {
    if show {
        return address.to_string();
    }
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        address.to_lowercase().as_bytes(),
    );
    let hex: String = digest
        .as_ref()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("forward#{hex}")
}

/// Logs to stderr with `filter` (RUST_LOG wins when set). Safe to call twice.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_addresses_are_tokens_unless_shown() {
        let token = loggable_address("Mr.Robot@Dest.Test", false);
        assert!(
            token.starts_with("forward#") && token.len() == 16,
            "{token}"
        );
        assert!(!token.to_lowercase().contains("robot"));
        assert_eq!(
            token,
            loggable_address("mr.robot@dest.test", false),
            "stable"
        );
        assert_ne!(token, loggable_address("other@dest.test", false));
        assert_eq!(
            loggable_address("mr.robot@dest.test", true),
            "mr.robot@dest.test"
        );
    }
}
