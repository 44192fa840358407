//! The management commands (`domain`, `alias`, `queue`, `log`): carried
//! out by a running node through its loopback admin API when one answers,
//! on the store directly otherwise (`log` of a cluster node: from
//! PostgreSQL, every node's). One code path for both: the commands
//! are written once against [`Manage`], so the output is the same.

use super::args::{AliasCommand, Command, DomainCommand, QueueCommand};
use super::print::{
    done, print_aliases, print_domains, print_logs, print_queue, print_queue_entry,
};
use super::remote::{Remote, store_in_use};
use crate::config::Config;
use crate::manage::{
    AliasView, Local, Manage, ManageError, QueueAccess, Removed, parse_alias, parse_domain,
};
use crate::spool::Spool;
use crate::store::{Store, StoreError};
use std::sync::Arc;

/// Where management commands are carried out.
enum Backend {
    Local(Local),
    Remote(Remote),
}

async fn backend(config: Config) -> Result<Backend, ManageError> {
    if let Some(remote) = Remote::find(&config).await {
        return Ok(Backend::Remote(remote));
    }
    let store = match Store::open(&config.store_path()) {
        Ok(store) => store,
        Err(StoreError::Locked(path)) => return Err(store_in_use(&path, &config)),
        Err(e) => return Err(e.into()),
    };
    let spool = Spool::open(&config.spool_dir()).map_err(crate::queue::QueueError::Spool)?;
    // Cluster mode: writes go to the shared database first, as a running
    // node's do (connected when a write needs it: reads of the store work
    // while it is down, a write then stops with why).
    let cluster = if config.cluster.enabled {
        let db = crate::cluster::Db::open(&config.cluster)?;
        let node_id = config.cluster.node_id_or(&config.hostname);
        Some(crate::cluster::Writes::new(db, node_id)?)
    } else {
        None
    };
    Ok(Backend::Local(
        Local::new(
            Arc::new(config),
            Arc::new(store),
            QueueAccess::Offline(spool),
        )
        .with_cluster(cluster),
    ))
}

/// Every domain, from a running node or the store.
pub(super) async fn domains(config: Config) -> Result<Vec<crate::manage::DomainView>, ManageError> {
    match backend(config).await? {
        Backend::Local(local) => local.domains(),
        Backend::Remote(remote) => remote.domains().await,
    }
}

/// Runs a management command where it can be carried out.
pub(super) async fn run(config: Config, command: Command, json: bool) -> Result<(), ManageError> {
    let cluster = config.cluster.enabled.then(|| config.cluster.clone());
    match backend(config).await? {
        Backend::Local(local) => match (&command, cluster) {
            (
                Command::Log {
                    domain,
                    alias,
                    limit,
                },
                Some(cluster),
            ) => cluster_log(&local, &cluster, domain, alias.as_deref(), *limit, json).await,
            _ => execute(&local, command, json).await,
        },
        // A running node's API reads the cluster's log itself.
        Backend::Remote(remote) => execute(&remote, command, json).await,
    }
}

/// `log` on a stopped cluster node: every node's log from PostgreSQL, or
/// this node's own with a warning when PostgreSQL does not answer.
async fn cluster_log(
    local: &Local,
    cluster: &crate::config::ClusterConfig,
    domain: &str,
    alias: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<(), ManageError> {
    let query = local.log_query(domain, alias, 1, limit)?;
    let read = async {
        let db = crate::cluster::Db::connect(cluster).await?;
        db.list_logs(&query.domain, query.alias.as_deref(), 0, limit)
            .await
    };
    let logs = match read.await {
        Ok(logs) => logs,
        Err(e) => {
            eprintln!("eas-relay: warning: {e}: only this node's delivery log is shown");
            local.logs(domain, alias, 1, limit)?
        }
    };
    print_logs(
        &serde_json::Value::Array(crate::manage::log_items(&logs)),
        json,
    );
    Ok(())
}

fn split_address(address: &str) -> Result<(&str, &str), ManageError> {
    address
        .rsplit_once('@')
        .ok_or_else(|| ManageError::Invalid {
            field: "address".into(),
            message: format!("`{address}` must be alias@domain"),
        })
}

async fn execute(m: &impl Manage, command: Command, json: bool) -> Result<(), ManageError> {
    match command {
        Command::Domain(DomainCommand::List) => {
            let domains = m.domains().await?;
            print_domains(&domains, json);
        }
        Command::Domain(DomainCommand::Add { domain }) => {
            let d = m.add_domain(&domain).await?;
            done(json, &d, &format!("added domain {}", d.domain));
        }
        Command::Domain(DomainCommand::Remove { domain }) => {
            m.remove_domain(&domain).await?;
            done(
                json,
                &(),
                &format!("removed domain {domain} and its aliases"),
            );
        }
        Command::Alias(AliasCommand::List { domain }) => {
            // Each domain with the aliases it shows inline (all of them
            // when it has few: one request per domain would be slow, and
            // rate limited, with thousands of domains).
            let domains: Vec<(String, Option<Vec<AliasView>>)> = match domain {
                Some(d) => vec![(parse_domain(&d)?, None)],
                None => m
                    .domains()
                    .await?
                    .into_iter()
                    .map(|d| {
                        let complete = d.aliases.len() == d.aliases_total;
                        (d.domain, complete.then_some(d.aliases))
                    })
                    .collect(),
            };
            let mut all = Vec::new();
            for (d, shown) in domains {
                let aliases = match shown {
                    Some(aliases) => aliases,
                    None => m.aliases(&d).await?,
                };
                all.extend(aliases.into_iter().map(|a| (d.clone(), a)));
            }
            print_aliases(&all, json);
        }
        Command::Alias(AliasCommand::Add { address, forward }) => {
            let (alias, domain) = split_address(&address)?;
            let a = m.add_alias(domain, alias, &forward).await?;
            let domain = parse_domain(domain)?;
            done(
                json,
                &a,
                &format!("added {}@{domain} -> {}", a.alias, a.forward),
            );
        }
        Command::Alias(AliasCommand::Remove { address }) => {
            let (alias, domain) = split_address(&address)?;
            let removed = m.remove_alias(domain, alias).await?;
            let (alias, domain) = (parse_alias(alias)?, parse_domain(domain)?);
            let what = match removed {
                Removed::Deleted => "removed",
                Removed::Suspended => "suspended (the domain is governed by the chain)",
            };
            done(json, &(), &format!("{what} {alias}@{domain}"));
        }
        Command::Alias(AliasCommand::Import { file }) => {
            let text = std::fs::read_to_string(&file).map_err(|e| ManageError::Invalid {
                field: "file".into(),
                message: format!("cannot read {}: {e}", file.display()),
            })?;
            let n = m.import_aliases(&text).await?;
            done(
                json,
                &serde_json::json!({ "imported": n }),
                &format!("imported {n} aliases"),
            );
        }
        Command::Queue(QueueCommand::List) => {
            let queue = m.queue().await?;
            print_queue(&queue, json);
        }
        Command::Queue(QueueCommand::Show { id }) => {
            let entry = m.queue_entry(&id).await?;
            print_queue_entry(&entry, json);
        }
        Command::Queue(QueueCommand::Retry { id, all }) => {
            if id.is_none() && !all {
                return Err(ManageError::Invalid {
                    field: "id".into(),
                    message: "give a queue id, or --all".into(),
                });
            }
            let n = m.retry(id.as_deref()).await?;
            done(
                json,
                &serde_json::json!({ "retried": n }),
                &format!("{n} message(s) due now"),
            );
        }
        Command::Queue(QueueCommand::Drop { id }) => {
            m.drop_message(&id).await?;
            done(json, &(), &format!("dropped {id}"));
        }
        Command::Log {
            domain,
            alias,
            limit,
        } => {
            let logs = m.logs(&domain, alias.as_deref(), limit).await?;
            print_logs(&logs, json);
        }
        Command::Resync { .. } | Command::Chain(_) | Command::Cluster(_) => {
            unreachable!("handled before")
        }
        Command::Serve | Command::Config(_) | Command::Dkim(_) | Command::Dns(_) => {
            unreachable!("handled before")
        }
    }
    Ok(())
}
