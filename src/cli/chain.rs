//! `eas-relay resync` and `eas-relay chain status`: through the running
//! node's admin API when one answers (the store is then its), else on the
//! store directly with a watcher of their own. Either way the output is the
//! same.

use super::remote::{Remote, store_in_use};
use crate::config::Config;
use crate::manage::ManageError;
use crate::store::{Store, StoreError};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn remote_error(e: impl std::fmt::Display) -> ManageError {
    ManageError::Remote(e.to_string())
}

fn require_chain(config: &Config) -> Result<(), ManageError> {
    if config.chain.enabled {
        Ok(())
    } else {
        Err(ManageError::Invalid {
            field: "chain.enabled".into(),
            message: "the chain is not enabled in this config".into(),
        })
    }
}

fn open_store(config: &Config) -> Result<Arc<Store>, ManageError> {
    match Store::open_with_cache(&config.store_path(), config.store.cache_size.0 as usize) {
        Ok(store) => Ok(Arc::new(store)),
        Err(StoreError::Locked(path)) => Err(store_in_use(&path, config)),
        Err(e) => Err(e.into()),
    }
}

fn bar(from: u64, to: u64) -> ProgressBar {
    let bar = ProgressBar::new(to.saturating_sub(from));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:40}] {pos}/{len} blocks, {per_sec}, ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// `eas-relay resync [--from-block N]`.
pub(crate) async fn resync(
    config: Config,
    from: Option<u64>,
    json: bool,
) -> Result<(), ManageError> {
    require_chain(&config)?;
    let from = from.unwrap_or(config.chain.start_block);
    let started = Instant::now();
    let (to, aliases) = match Remote::find(&config).await {
        Some(api) => {
            api.chain_resync(Some(from)).await?;
            // Follow the node's progress until it has caught up.
            let bar = bar(from, from);
            loop {
                let status = api.chain_status().await?;
                let cursor = status["cursor"].as_u64().unwrap_or(0);
                let target = status["head"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(config.chain.confirmations);
                bar.set_length(target.saturating_sub(from));
                bar.set_position(cursor.saturating_sub(from));
                if cursor >= target && target > 0 {
                    bar.finish_and_clear();
                    break (cursor, None);
                }
                if started.elapsed() > Duration::from_secs(24 * 3600) {
                    return Err(remote_error("resync did not finish within a day"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        None => {
            let store = open_store(&config)?;
            let chain = crate::chain::Chain::new(&config, store, None).map_err(remote_error)?;
            chain.watcher.rewind_to(from).await.map_err(remote_error)?;
            let bar = bar(from, from);
            let mut last = from;
            let aliases = chain
                .watcher
                .catch_up(|cursor, target| {
                    bar.set_length(target.saturating_sub(from));
                    bar.set_position(cursor.saturating_sub(from));
                    last = cursor;
                })
                .await
                .map_err(remote_error)?;
            bar.finish_and_clear();
            (last, Some(aliases))
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let blocks = (to + 1).saturating_sub(from);
    if json {
        println!(
            "{}",
            json!({ "from_block": from, "to_block": to, "blocks": blocks, "seconds": seconds, "aliases_verified": aliases })
        );
    } else {
        let rate = blocks as f64 / seconds.max(0.001);
        match aliases {
            Some(n) => println!(
                "resynced blocks {from}..{to} ({blocks} blocks in {seconds:.1} s, {rate:.0} blocks/s); {n} aliases verified"
            ),
            None => println!(
                "resynced blocks {from}..{to} ({blocks} blocks in {seconds:.1} s, {rate:.0} blocks/s); the node verifies every alias next"
            ),
        }
    }
    Ok(())
}

/// `eas-relay chain status`.
pub(crate) async fn status(config: Config, json_out: bool) -> Result<(), ManageError> {
    require_chain(&config)?;
    let view: Value = match Remote::find(&config).await {
        Some(api) => api.chain_status().await?,
        None => {
            let store = open_store(&config)?;
            let cursor = store.chain_cursor()?.map(|c| c.number).unwrap_or(0);
            let recorded = store.chain_status()?;
            let rpc =
                crate::chain::ChainRpc::new(&config.chain.rpc_url, config.chain.request_timeout.0)
                    .map_err(remote_error)?;
            let (head, error) = match rpc.head().await {
                Ok(head) => (head, recorded.last_error),
                Err(e) => (recorded.head, Some(e.to_string())),
            };
            crate::chain::watcher::status_view(
                &config.chain,
                head,
                cursor,
                recorded.last_ok_ms,
                error,
            )
        }
    };
    if json_out {
        println!("{view}");
    } else {
        println!("head:       {}", view["head"]);
        println!("cursor:     {}", view["cursor"]);
        println!(
            "lag:        {} blocks (following head - {})",
            view["lag"], view["confirmations"]
        );
        match view["seconds_since_ok"].as_u64() {
            Some(s) => println!(
                "last read:  {s} s ago{}",
                if view["stale"].as_bool() == Some(true) {
                    " (STALE)"
                } else {
                    ""
                }
            ),
            None => println!("last read:  never"),
        }
        println!(
            "last error: {}",
            view["last_error"].as_str().unwrap_or("none")
        );
    }
    Ok(())
}
