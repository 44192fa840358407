//! Wiring of one relay node: open the store, recover the queue, start the
//! committer, scheduler, SMTP and HTTP servers and housekeeping, then shut
//! them down in order when asked. Tests call [`run`] with listeners bound
//! on port 0; `eas-relay serve` calls it with the configured addresses.

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::manage::{Local, QueueAccess};
use crate::outbound::Outbound;
use crate::queue::{Queue, QueueError, QueueSettings, Scheduler};
use crate::rewrite::pipeline::Forwarding;
use crate::rewrite::srs::Srs;
use crate::smtp::{self, SmtpContext};
use crate::spool::Spool;
use crate::store::{Store, StoreError, now_ms};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long deliveries in flight may finish at shutdown.
const DELIVERY_GRACE: Duration = Duration::from_secs(10);
/// How long a starting node waits for a management command to release the store.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(10);
/// How often old delivery log entries are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Keys(#[from] api::keys::ApiKeyError),
    #[error("SRS: {0}")]
    Srs(#[from] crate::rewrite::srs::SrsError),
    /// Connection screening cannot start (its resolver).
    #[error("{0}")]
    Screen(String),
    #[error(transparent)]
    Forwarding(#[from] crate::rewrite::pipeline::PipelineError),
    #[error("chain: {0}")]
    Chain(#[from] crate::chain::ChainError),
    #[error("dns_provisioning: {0}")]
    Provision(#[from] crate::provision::ProvisionError),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The cluster replica cannot start (see [`start_replica`]).
    #[error("cluster replica: {0}")]
    Replica(String),
    #[error("cannot read chain.activation_secret_file {path}: {source}")]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The activation endpoints' shared secret (config, or its file).
fn activation_secret(config: &Config) -> Result<Option<Vec<u8>>, RunError> {
    if let Some(path) = &config.chain.activation_secret_file {
        let text = crate::files::read_secret_string(path).map_err(|source| RunError::Secret {
            path: path.clone(),
            source,
        })?;
        return Ok(Some(text.trim().as_bytes().to_vec()));
    }
    Ok((!config.chain.activation_secret.is_empty())
        .then(|| config.chain.activation_secret.as_bytes().to_vec()))
}

/// Says in the log which static domains and aliases are under a
/// chain-governed TLD: they do not forward (the chain alone decides there),
/// and the operator may remove them.
fn warn_static_under_chain(admin: &Local) {
    /// Records named one by one; the rest are counted.
    const NAMED: usize = 20;
    match admin.static_under_chain() {
        Ok(found) if found.is_empty() => {}
        Ok(found) => {
            let named = found.iter().take(NAMED).cloned().collect::<Vec<_>>();
            tracing::warn!(
                count = found.len(),
                records = %named.join(", "),
                "static domains or aliases under a chain-governed TLD do not forward; \
                 remove them with `eas-relay domain remove` / `alias remove`"
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot list static records under chain TLDs"),
    }
}

/// The node's listening sockets.
pub struct Listeners {
    pub smtp: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the configured SMTP and HTTP addresses.
    pub async fn bind(config: &Config) -> Result<Listeners, RunError> {
        let bind = |what, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { what, addr, source })
        };
        Ok(Listeners {
            smtp: bind("SMTP", config.smtp.listen).await?,
            http: bind("HTTP", config.http.listen).await?,
        })
    }
}

/// Runs a node until `shutdown` completes, then stops it cleanly: SMTP stops
/// accepting and idle sessions get `421`, deliveries in flight finish (within
/// a grace period), every queue write is committed, the store is closed.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let config = Arc::new(config);
    crate::net::check_fd_limit(fd_needed(&config));
    crate::files::data_dir(&config.data_dir).map_err(|source| RunError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // The key first: a CLI started meanwhile finds it and talks to the API.
    let keys = api::keys::load_keys(&config, true)?;
    let srs = if config.srs.enabled {
        Some(Srs::from_config(&config)?)
    } else {
        None
    };
    let forwarding = Arc::new(Forwarding::new(&config)?);
    let store = Arc::new(open_store(&config).await?);
    if config.store.prewarm {
        // In the background: mail is served meanwhile, just from colder pages.
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match store.prewarm() {
                Ok((entries, bytes)) => tracing::info!(
                    entries,
                    mb = bytes / 1_000_000,
                    ms = started.elapsed().as_millis() as u64,
                    "store cache warmed"
                ),
                Err(e) => tracing::warn!(error = %e, "store cache warm-up failed"),
            }
        });
    }
    store.set_provision_on_activation(config.dns_provisioning.enabled);
    store.set_remove_on_deactivate_all(
        config.dns_provisioning.enabled && config.dns_provisioning.remove_on_deactivate_all,
    );
    let provisioner = if config.dns_provisioning.enabled {
        let zone = crate::provision::RedisZone::from_config(&config.dns_provisioning)?;
        let settings = crate::provision::Settings::from_config(&config);
        Some(Arc::new(crate::provision::Provisioner::new(zone, settings)))
    } else {
        None
    };
    let activation_secret = activation_secret(&config)?;
    let tls = if config.smtp.starttls {
        let server = crate::tls::server_config(
            config.tls.cert.as_deref(),
            config.tls.key.as_deref(),
            &config.data_dir,
            &config.hostname,
        )?;
        Some(tokio_rustls::TlsAcceptor::from(server))
    } else {
        None
    };
    // --- cluster: the delivery log (i13-logs) ---
    // The outbox is on before the committer starts, so that every log row
    // of this run is kept for PostgreSQL in its own transaction.
    let cluster_logs = cluster_log_db(&config, &store).await?;
    // --- end cluster: the delivery log ---
    // --- cluster: writes go to PostgreSQL first (i13-writes) ---
    let cluster = cluster_writes(&config, cluster_logs.as_ref())?;
    // --- end cluster: writes ---
    let chain = if config.chain.enabled {
        Some(crate::chain::Chain::new(
            &config,
            store.clone(),
            cluster.clone(),
        )?)
    } else {
        None
    };
    // The replica (i13-replica), on the same pool: caught up before the
    // node serves (see start_replica).
    let replica = match &cluster_logs {
        Some(db) => {
            let activation = chain.as_ref().map(|c| c.activation.clone());
            Some(start_replica(&config, db.clone(), store.clone(), activation).await?)
        }
        None => None,
    };
    let metrics = crate::observe::metrics_handle();
    let spool = Spool::open(&config.spool_dir()).map_err(QueueError::Spool)?;
    let started = Queue::start(store.clone(), spool, QueueSettings::from_config(&config))?;
    let queue = started.queue;
    let outbound = Arc::new(Outbound::new(&config)?);
    let (stop, stopped) = watch::channel(false);

    let smtp_addr = listeners.smtp.local_addr().ok();
    let http_addr = listeners.http.local_addr().ok();
    let mut tasks = JoinSet::new();
    let target: Arc<dyn crate::queue::Deliver> = outbound.clone();
    let scheduler = Scheduler::new(queue.clone(), started.events, target);
    tasks.spawn(scheduler.run(stopped.clone(), DELIVERY_GRACE));
    tasks.spawn(queue.health().clone().supervise(stopped.clone()));
    let scanner = crate::scan::Scanner::from_config(&config).map(Arc::new);
    let smtp_ctx = Arc::new(SmtpContext {
        guards: smtp::guard::Guards::from_config(&config),
        config: config.clone(),
        store: store.clone(),
        queue: queue.clone(),
        tls,
        srs,
        forwarding,
        screen: crate::screen::Screen::from_config(&config)
            .map_err(|e| RunError::Screen(e.to_string()))?
            .map(Arc::new),
        scanner: scanner.clone(),
    });
    tasks.spawn(smtp::listener::run(
        listeners.smtp,
        smtp_ctx,
        stopped.clone(),
    ));
    let admin = Arc::new(
        Local::new(
            config.clone(),
            store.clone(),
            QueueAccess::Live(queue.clone()),
        )
        .with_cluster(cluster),
    );
    if config.chain.enabled {
        // In the background: it reads every alias of governed domains.
        tokio::task::spawn_blocking({
            let admin = admin.clone();
            move || warn_static_under_chain(&admin)
        });
    }
    let state = ApiState {
        activation: chain.as_ref().map(|c| c.activation.clone()),
        activation_secret,
        watcher: chain.as_ref().map(|c| c.watcher.clone()),
        zone: provisioner.clone(),
        scanner,
        cluster: replica.as_ref().map(|r| r.status()),
        cluster_logs: cluster_logs.clone(),
        ..ApiState::new(config.clone(), admin, keys, metrics)
    };
    // --- cluster: the delivery log (i13-logs) ---
    if let Some(db) = cluster_logs {
        let flusher = crate::cluster::outbox::Flusher {
            db,
            store: store.clone(),
            node_id: config.cluster.node_id_or(&config.hostname).to_string(),
            retention: config.delivery_log.retention.0,
        };
        tasks.spawn(flusher.run(stopped.clone()));
    }
    // --- end cluster: the delivery log ---
    if let Some(replica) = &replica {
        tasks.spawn(replica.clone().run(stopped.clone()));
        tasks.spawn(replica.clone().heartbeat(stopped.clone()));
    }
    if let Some(chain) = &chain {
        tasks.spawn(chain.watcher.clone().run(stopped.clone()));
    }
    if let Some(provisioner) = provisioner {
        tasks.spawn(crate::provision::worker::run(
            provisioner,
            store.clone(),
            config.dns_provisioning.clone(),
            stopped.clone(),
        ));
    }
    let router = api::router(state);
    let http_config = config.http.clone();
    let http_stop = stopped.clone();
    tasks.spawn(async move {
        api::serve::serve(listeners.http, router, &http_config, http_stop).await;
    });
    tasks.spawn(upkeep(
        store.clone(),
        outbound.clone(),
        config.delivery_log.retention.0,
        stopped.clone(),
    ));
    tracing::info!(
        smtp = ?smtp_addr,
        http = ?http_addr,
        data = %config.data_dir.display(),
        queued = started.recovered.due.len(),
        "eas-relay started"
    );

    shutdown.await;
    tracing::info!("shutting down");
    queue.health().stopping();
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a server task failed");
        }
    }
    outbound.close_idle().await;
    // Every queue handle is gone with its task; the committer drains what
    // is left and exits, releasing the store.
    drop(queue);
    let committer = started.committer;
    let _ = tokio::task::spawn_blocking(move || committer.join()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Cluster mode's start: the node's replica of the shared database,
/// migrated and synced. A replica synced before starts even while the
/// database is unreachable (it serves what it knows and catches up once
/// the database is back); one never synced cannot serve anything true, so
/// the node refuses to start. An error an operator must fix (the login,
/// a schema newer than this binary) is said at start either way.
async fn start_replica(
    config: &Config,
    db: crate::cluster::Db,
    store: Arc<Store>,
    activation: Option<Arc<crate::chain::activation::Activation>>,
) -> Result<Arc<crate::replica::Replica>, RunError> {
    use crate::replica::{Replica, ReplicaError, Timing};
    let node_id = config.cluster.node_id_or(&config.hostname).to_string();
    if !crate::config::valid_node_id(&node_id) {
        return Err(RunError::Replica(format!(
            "the hostname {node_id:?} is not a valid node id: set cluster.node_id"
        )));
    }
    let replica = Replica::new(
        db,
        node_id.clone(),
        store,
        activation,
        Timing::from_config(&config.cluster),
    );
    let synced = replica.synced()?;
    match replica.start().await {
        Ok(()) => tracing::info!(node = %node_id, "cluster replica synced"),
        Err(e) if synced && e.is_temporary() => tracing::warn!(
            node = %node_id, error = %e,
            "the cluster database is unreachable: serving the local replica until it is back"
        ),
        Err(e @ ReplicaError::LocalData { .. }) => return Err(RunError::Replica(e.to_string())),
        Err(e) if !synced => {
            return Err(RunError::Replica(format!(
                "this node's replica was never synced and cannot be now ({e}); \
                 it starts once the cluster database answers"
            )));
        }
        Err(e) => return Err(RunError::Replica(e.to_string())),
    }
    Ok(replica)
}

/// On a cluster node: the shared database (connected and migrated) and the
/// store's delivery-log outbox turned on; None on a single node.
async fn cluster_log_db(
    config: &Config,
    store: &Store,
) -> Result<Option<crate::cluster::Db>, RunError> {
    if !config.cluster.enabled {
        return Ok(None);
    }
    store.set_log_outbox(config.cluster.log_outbox_max);
    let connected = match crate::cluster::Db::connect(&config.cluster).await {
        Ok(db) => db.migrate().await.map(|_| db),
        Err(e) => Err(e),
    };
    match connected {
        Ok(db) => Ok(Some(db)),
        // PostgreSQL down (or gone while migrating): the node serves mail
        // anyway, its log waits in the outbox; a wrong URL, login or
        // schema stops it here.
        Err(e) if e.is_temporary() => {
            tracing::warn!(
                error = %e,
                "PostgreSQL is unreachable at start: the delivery log waits in the outbox"
            );
            Ok(Some(crate::cluster::Db::open(&config.cluster)?))
        }
        Err(e) => Err(e.into()),
    }
}

/// On a cluster node: where its writes go first (the shared database,
/// with this node's id as their origin); None on a single node.
fn cluster_writes(
    config: &Config,
    db: Option<&crate::cluster::Db>,
) -> Result<Option<crate::cluster::Writes>, RunError> {
    let node_id = config.cluster.node_id_or(&config.hostname);
    Ok(db
        .map(|db| crate::cluster::Writes::new(db.clone(), node_id))
        .transpose()?)
}

/// Descriptors the configured connection caps can take at once, plus a
/// margin for the store, spool, logs, DNS and the chain client.
fn fd_needed(config: &Config) -> u64 {
    const MARGIN: usize = 128;
    (config.smtp.max_connections)
        .saturating_add(config.http.max_connections)
        .saturating_add(config.outbound.max_connections)
        .saturating_add(MARGIN) as u64
}

/// Opens the store, waiting up to [`STORE_LOCK_WAIT`] while another process
/// (a management command run offline) holds it.
async fn open_store(config: &Config) -> Result<Store, RunError> {
    let deadline = tokio::time::Instant::now() + STORE_LOCK_WAIT;
    loop {
        match Store::open_with_cache(&config.store_path(), config.store.cache_size.0 as usize) {
            Err(StoreError::Locked(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Periodic housekeeping: idle outbound connections, delivery log retention.
async fn upkeep(
    store: Arc<Store>,
    outbound: Arc<Outbound>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut reap = tokio::time::interval(outbound.reap_interval());
    let mut purge = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tokio::select! {
            _ = reap.tick() => outbound.reap_idle().await,
            _ = purge.tick() => {
                let store = store.clone();
                let before = now_ms().saturating_sub(retention.as_millis() as u64);
                match tokio::task::spawn_blocking(move || store.log_purge(before)).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "delivery log purged"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "delivery log purge failed"),
                    _ => {}
                }
            }
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => break,
        }
    }
}
