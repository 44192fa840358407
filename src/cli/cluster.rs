//! `eas-relay cluster init` (copy this node's store into PostgreSQL, with
//! the node stopped: the store's lock says so) and `eas-relay cluster
//! status` (every node: last seen and how long ago, the change it applied
//! and its lag, its queue and version), both with `--json`.

use crate::cluster::{ClusterStatus, Counts, Db, InitReport};
use crate::config::Config;
use crate::store::{Store, StoreError};
use serde_json::json;
use std::process::ExitCode;

fn require_database(config: &Config) -> Result<(), String> {
    if config.cluster.database_url.is_empty() && config.cluster.database_url_file.is_none() {
        return Err(
            "cluster.database_url (or cluster.database_url_file) is not set: it names the PostgreSQL database of the cluster"
                .into(),
        );
    }
    Ok(())
}

pub(super) fn init(config: Config, json: bool) -> ExitCode {
    super::run(async move {
        require_database(&config)?;
        let store = match Store::open_with_cache(
            &config.store_path(),
            config.store.cache_size.0 as usize,
        ) {
            Ok(store) => store,
            Err(StoreError::Locked(path)) => {
                return Err(format!(
                    "the store {path} is in use: stop the node first (cluster init copies a stopped node's data)"
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let db = Db::connect(&config.cluster)
            .await
            .map_err(|e| e.to_string())?;
        let node_id = config.cluster.node_id_or(&config.hostname).to_string();
        let report = db
            .init_from(&store, &node_id)
            .await
            .map_err(|e| e.to_string())?;
        print_init(&report, db.target(), &node_id, json);
        Ok::<_, String>(())
    })
}

fn print_init(report: &InitReport, target: &str, node_id: &str, json: bool) {
    if json {
        let mut value = serde_json::to_value(report).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("unchanged".into(), json!(report.unchanged()));
            map.insert("node_id".into(), json!(node_id));
        }
        out!("{value:#}");
        return;
    }
    out!("PostgreSQL at {target}, as node {node_id}");
    if !report.migrated.is_empty() {
        out!("migrated: {}", report.migrated.join(", "));
    }
    let line = |what: &str, c: Counts| {
        out!(
            "{what:<12} {:>8} copied {:>8} already there",
            c.copied,
            c.present
        )
    };
    line("domains", report.domains);
    line("aliases", report.aliases);
    line("reveals", report.reveals);
    line("suspensions", report.suspensions);
    line("log rows", report.logs);
    for skipped in &report.skipped {
        out!("skipped: {skipped}");
    }
    if report.unchanged() {
        out!("nothing changed: PostgreSQL already holds all of this store's data");
    }
}

pub(super) fn status(config: Config, json: bool) -> ExitCode {
    super::run(async move {
        require_database(&config)?;
        let db = Db::connect(&config.cluster)
            .await
            .map_err(|e| e.to_string())?;
        let status = db.status().await.map_err(|e| e.to_string())?;
        print_status(&status, json);
        Ok::<_, String>(())
    })
}

fn print_status(status: &ClusterStatus, json: bool) {
    if json {
        let nodes: Vec<_> = status
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "id": n.id,
                    "last_seen": rfc3339(n.last_seen_ms),
                    "age_s": status.age_ms(n) / 1000,
                    "applied_change_id": n.applied_change_id,
                    "lag": status.lag(n),
                    "queue_depth": n.queue_depth,
                    "version": n.version,
                })
            })
            .collect();
        let value = json!({ "max_change_id": status.max_change_id, "nodes": nodes });
        out!("{value:#}");
        return;
    }
    out!("newest change: {}", status.max_change_id);
    if status.nodes.is_empty() {
        out!("no node has reported yet");
        return;
    }
    out!(
        "{:<24} {:<20} {:>8} {:>10} {:>8} {:>8}  VERSION",
        "NODE",
        "LAST SEEN (UTC)",
        "AGE",
        "APPLIED",
        "LAG",
        "QUEUE"
    );
    for n in &status.nodes {
        out!(
            "{:<24} {:<20} {:>8} {:>10} {:>8} {:>8}  {}",
            n.id,
            rfc3339(n.last_seen_ms),
            age(status.age_ms(n)),
            n.applied_change_id,
            status.lag(n),
            n.queue_depth,
            n.version
        );
    }
}

/// Unix ms as `2026-12-03T18:00:00Z` (seconds).
fn rfc3339(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// A duration in ms as `42s`, `5m3s`, `2h5m`, `3d4h`.
fn age(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        ..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_times_read_well() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59_999), "59s");
        assert_eq!(age(61_000), "1m1s");
        assert_eq!(age(3_720_000), "1h2m");
        assert_eq!(age(90_000_000), "1d1h");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }
}
