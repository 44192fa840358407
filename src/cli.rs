//! The command line: `serve`, `config check|show`, the management
//! commands (`domain`, `alias`, `queue`, `log`), and the DNS helpers
//! (`dkim keygen`, `dns records|check`, in `crate::dnscheck`). Management
//! goes through a running node's loopback admin API when one answers, and
//! opens the store directly otherwise; either way the output is the same.

mod chain;
mod check;

use crate::admin::{Admin, AdminError, AliasView, DomainView, QueueAccess, QueueView};
use crate::api::client::ApiClient;
use crate::config::{Config, ConfigError, ENV_CONFIG_FILE};
use crate::dnscheck;
use crate::queue::Spool;
use crate::server::{Listeners, run};
use crate::store::{Store, StoreError};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `println!` that keeps going when stdout has no reader any more
/// (`eas-relay log d.country | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "eas-relay",
    version,
    about = "Forwarding SMTP relay for the .country Email Alias Service"
)]
pub struct Cli {
    /// Config file (TOML); without one, the embedded defaults are used.
    #[arg(long, short, global = true, env = ENV_CONFIG_FILE)]
    pub config: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the relay (SMTP, HTTP, queue, delivery).
    Serve,
    /// Validate or show the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage static (operator-managed) domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Manage aliases of static domains.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Inspect and act on the delivery queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Show the delivery log of a domain, newest first.
    Log {
        domain: String,
        /// Only this alias (local part).
        alias: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Re-read the chain from a block and verify every chain-governed alias.
    Resync {
        /// First block to read (default: chain.start_block).
        #[arg(long)]
        from_block: Option<u64>,
    },
    /// The chain watcher.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// DKIM signing keys.
    #[command(subcommand)]
    Dkim(DkimCommand),
    /// The DNS records to publish, and a live check of them.
    #[command(subcommand)]
    Dns(DnsCommand),
}

#[derive(Subcommand, Debug)]
pub enum DkimCommand {
    /// Generate a DKIM key; print its [[dkim.keys]] block and its DNS record.
    Keygen {
        #[arg(long, value_enum, default_value_t = KeyAlgo::Ed25519)]
        algo: KeyAlgo,
        /// Selector (default: eas-<algo>-<YYYYMMDD>).
        #[arg(long)]
        selector: Option<String>,
        /// Key file to write (default: data_dir/dkim/<selector>.pem); never overwritten.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Algorithm of a new DKIM key.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgo {
    Ed25519,
    Rsa,
}

#[derive(Subcommand, Debug)]
pub enum ChainCommand {
    /// Head, cursor, lag, staleness and the last error.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum DnsCommand {
    /// Print every record to publish for DOMAIN and for the relay (zone-file form).
    Records {
        #[arg(value_parser = domain_arg)]
        domain: String,
    },
    /// Look the records up; exit 1 unless every required one is right.
    Check {
        #[arg(value_parser = domain_arg)]
        domain: String,
    },
}

/// A domain argument, normalized like the admin commands do.
fn domain_arg(domain: &str) -> Result<String, String> {
    crate::address::normalize_domain(domain)
        .ok_or_else(|| format!("`{domain}` is not a valid domain name"))
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a config file and say precisely what is wrong.
    Check {
        /// The file (default: --config).
        file: Option<PathBuf>,
    },
    /// Print the effective configuration (defaults, file, environment).
    Show,
}

#[derive(Subcommand, Debug)]
pub enum DomainCommand {
    List,
    Add { domain: String },
    Remove { domain: String },
}

#[derive(Subcommand, Debug)]
pub enum AliasCommand {
    /// List aliases (of one domain, or of all).
    List {
        domain: Option<String>,
    },
    /// Add ALIAS@DOMAIN forwarding to FORWARD (comma-separated for several).
    Add {
        address: String,
        forward: String,
    },
    Remove {
        address: String,
    },
    /// Import `alias@domain<TAB>forward` lines (domains are added as needed).
    Import {
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    List,
    Show {
        id: String,
    },
    /// Make a message (or, with --all, every message) due now.
    Retry {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Remove a message without delivering it (no bounce).
    Drop {
        id: String,
    },
}

/// Runs the CLI; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    if let Command::Config(ConfigCommand::Check { file }) = &cli.command {
        return config_check(file.as_ref().or(cli.config.as_ref()));
    }
    let config = match load_config(cli.config.as_ref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("eas-relay: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve => {
            let warning = cli
                .config
                .as_ref()
                .and_then(|path| check::inline_secrets_exposed(path, &config));
            serve(config, warning)
        }
        Command::Config(ConfigCommand::Show) => {
            out!("{}", config.to_toml().trim_end());
            ExitCode::SUCCESS
        }
        Command::Dkim(DkimCommand::Keygen {
            algo,
            selector,
            out,
        }) => dkim_keygen(&config, algo, selector, out, cli.json),
        Command::Dns(DnsCommand::Records { domain }) => dns_records(&config, &domain, cli.json),
        Command::Dns(DnsCommand::Check { domain }) => dns_check(&config, &domain, cli.json),
        Command::Resync { from_block } => chain::run(chain::resync(config, from_block, cli.json)),
        Command::Chain(ChainCommand::Status) => chain::run(chain::status(config, cli.json)),
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            match runtime.block_on(manage(config, command, cli.json)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("eas-relay: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => Config::load(path),
        None => Config::from_env(),
    }
}

fn config_check(path: Option<&PathBuf>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("eas-relay: config check needs a file (argument or --config)");
        return ExitCode::from(2);
    };
    match Config::load(path).and_then(|config| check_files(&config).map(|()| config)) {
        Ok(config) => {
            if let Some(warning) = check::inline_secrets_exposed(path, &config) {
                eprintln!("warning: {warning}");
            }
            out!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

/// What parsing cannot tell: whether the files the config names can be
/// used as `serve` will use them (certificate and key, admin key file).
fn check_files(config: &Config) -> Result<(), ConfigError> {
    let shown = |p: &std::path::Path| format!("\"{}\"", p.display());
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key)
        && config.smtp.starttls
    {
        use crate::tls::TlsError;
        match crate::tls::server_config(Some(cert), Some(key), &config.data_dir, &config.hostname) {
            Ok(_) => {}
            Err(TlsError::Load { what, reason, .. }) => {
                let (name, path) = match what {
                    "key" => ("tls.key", key),
                    _ => ("tls.cert", cert),
                };
                return Err(ConfigError::Invalid {
                    key: name.into(),
                    value: shown(path),
                    reason: format!("cannot read the TLS {what}: {reason}"),
                });
            }
            Err(e) => {
                return Err(ConfigError::Invalid {
                    key: "tls.key".into(),
                    value: shown(key),
                    reason: e.to_string(),
                });
            }
        }
    }
    check::secret_files(config)?;
    check::outbound_roots(config)?;
    if let Some(file) = &config.http.admin_keys_file
        && let Err(e) = crate::api::keys::load_keys(config, false)
    {
        return Err(ConfigError::Invalid {
            key: "http.admin_keys_file".into(),
            value: shown(file),
            reason: e.to_string(),
        });
    }
    if let (Some(file), crate::config::TlsPolicy::Verified) =
        (&config.outbound.tls_ca_file, config.outbound.tls)
        && let Err(e) = crate::tls::verifying_client_config(Some(file))
    {
        return Err(ConfigError::Invalid {
            key: "outbound.tls_ca_file".into(),
            value: shown(file),
            reason: e.to_string(),
        });
    }
    // Configured DKIM keys must load (generated ones are made at start).
    if !config.dkim.keys.is_empty() {
        use crate::rewrite::keys::{DkimKeyError, load};
        match load(config) {
            Ok(_) => {}
            Err(DkimKeyError::Read { key, path, source }) => {
                return Err(ConfigError::Invalid {
                    key,
                    value: shown(&path),
                    reason: format!("cannot read the DKIM key: {source}"),
                });
            }
            Err(DkimKeyError::Invalid { key, path, reason }) => {
                return Err(ConfigError::Invalid {
                    key,
                    value: shown(&path),
                    reason: format!("not a usable DKIM key: {reason}"),
                });
            }
            Err(e) => {
                return Err(ConfigError::Invalid {
                    key: "dkim.keys".into(),
                    value: "(keys)".into(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn serve(config: Config, warning: Option<String>) -> ExitCode {
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

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Where management commands are carried out.
enum Backend {
    Local(Admin),
    Remote(ApiClient),
}

async fn backend(config: Config) -> Result<Backend, AdminError> {
    let keys = crate::api::keys::load_keys(&config, false).unwrap_or_default();
    if let Some(key) = keys.first()
        && let Some(client) = ApiClient::probe(config.http.listen, key.clone()).await
    {
        return Ok(Backend::Remote(client));
    }
    let store = match Store::open(&config.store_path()) {
        Ok(store) => store,
        Err(StoreError::Locked(path)) => {
            return Err(AdminError::Remote(format!(
                "the store {path} is in use by a running node, but its admin API at {} did not answer",
                config.http.listen
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let spool = Spool::open(&config.spool_dir()).map_err(crate::queue::QueueError::Spool)?;
    Ok(Backend::Local(Admin::new(
        Arc::new(config),
        Arc::new(store),
        QueueAccess::Offline(spool),
    )))
}

fn split_address(address: &str) -> Result<(&str, &str), AdminError> {
    address.rsplit_once('@').ok_or_else(|| AdminError::Invalid {
        field: "address".into(),
        message: format!("`{address}` must be alias@domain"),
    })
}

async fn manage(config: Config, command: Command, json: bool) -> Result<(), AdminError> {
    let backend = backend(config).await?;
    match command {
        Command::Domain(DomainCommand::List) => {
            let domains = match &backend {
                Backend::Local(a) => a.domains()?,
                Backend::Remote(c) => c.domains().await?,
            };
            print_domains(&domains, json);
        }
        Command::Domain(DomainCommand::Add { domain }) => {
            let d = match &backend {
                Backend::Local(a) => a.add_domain(&domain)?,
                Backend::Remote(c) => c.add_domain(&domain).await?,
            };
            done(json, &d, &format!("added domain {}", d.domain));
        }
        Command::Domain(DomainCommand::Remove { domain }) => {
            match &backend {
                Backend::Local(a) => a.remove_domain(&domain)?,
                Backend::Remote(c) => c.remove_domain(&domain).await?,
            }
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
                Some(d) => vec![(crate::admin::parse_domain(&d)?, None)],
                None => match &backend {
                    Backend::Local(a) => a.domains()?,
                    Backend::Remote(c) => c.domains().await?,
                }
                .into_iter()
                .map(|d| {
                    let complete = d.aliases.len() == d.aliases_total;
                    (d.domain, complete.then_some(d.aliases))
                })
                .collect(),
            };
            let mut all = Vec::new();
            for (d, shown) in domains {
                let aliases = match (shown, &backend) {
                    (Some(aliases), _) => aliases,
                    (None, Backend::Local(a)) => a.aliases(&d)?,
                    (None, Backend::Remote(c)) => c.aliases(&d).await?,
                };
                all.extend(aliases.into_iter().map(|a| (d.clone(), a)));
            }
            print_aliases(&all, json);
        }
        Command::Alias(AliasCommand::Add { address, forward }) => {
            let (alias, domain) = split_address(&address)?;
            let a = match &backend {
                Backend::Local(a) => a.put_alias(domain, alias, &forward, false)?,
                Backend::Remote(c) => c.add_alias(domain, alias, &forward).await?,
            };
            let domain = crate::admin::parse_domain(domain)?;
            done(
                json,
                &a,
                &format!("added {}@{domain} -> {}", a.alias, a.forward),
            );
        }
        Command::Alias(AliasCommand::Remove { address }) => {
            let (alias, domain) = split_address(&address)?;
            let removed = match &backend {
                Backend::Local(a) => a.remove_alias(domain, alias)?,
                Backend::Remote(c) => c.remove_alias(domain, alias).await?,
            };
            let (alias, domain) = (
                crate::admin::parse_alias(alias)?,
                crate::admin::parse_domain(domain)?,
            );
            let what = match removed {
                crate::admin::Removed::Deleted => "removed",
                crate::admin::Removed::Suspended => {
                    "suspended (the domain is governed by the chain)"
                }
            };
            done(json, &(), &format!("{what} {alias}@{domain}"));
        }
        Command::Alias(AliasCommand::Import { file }) => {
            let text = std::fs::read_to_string(&file).map_err(|e| AdminError::Invalid {
                field: "file".into(),
                message: format!("cannot read {}: {e}", file.display()),
            })?;
            let n = match &backend {
                Backend::Local(a) => a.import_aliases(&text)?,
                Backend::Remote(c) => c.import_aliases(&text).await?,
            };
            done(
                json,
                &serde_json::json!({ "imported": n }),
                &format!("imported {n} aliases"),
            );
        }
        Command::Queue(QueueCommand::List) => {
            let queue = match &backend {
                Backend::Local(a) => a.queue()?,
                Backend::Remote(c) => c.queue().await?,
            };
            print_queue(&queue, json);
        }
        Command::Queue(QueueCommand::Show { id }) => {
            let entry = match &backend {
                Backend::Local(a) => a.queue_entry(&id)?,
                Backend::Remote(c) => c.queue_entry(&id).await?,
            };
            print_queue_entry(&entry, json);
        }
        Command::Queue(QueueCommand::Retry { id, all }) => {
            if id.is_none() && !all {
                return Err(AdminError::Invalid {
                    field: "id".into(),
                    message: "give a queue id, or --all".into(),
                });
            }
            let n = match &backend {
                Backend::Local(a) => a.retry(id.as_deref()).await?,
                Backend::Remote(c) => c.retry(id.as_deref()).await?,
            };
            done(
                json,
                &serde_json::json!({ "retried": n }),
                &format!("{n} message(s) due now"),
            );
        }
        Command::Queue(QueueCommand::Drop { id }) => {
            match &backend {
                Backend::Local(a) => a.drop_message(&id).await?,
                Backend::Remote(c) => c.drop_message(&id).await?,
            }
            done(json, &(), &format!("dropped {id}"));
        }
        Command::Log {
            domain,
            alias,
            limit,
        } => {
            let logs =
                match &backend {
                    Backend::Local(a) => serde_json::Value::Array(crate::api::logs::items(
                        &a.logs(&domain, alias.as_deref(), 1, limit)?,
                    )),
                    Backend::Remote(c) => c.logs(&domain, alias.as_deref(), limit).await?,
                };
            print_logs(&logs, json);
        }
        Command::Resync { .. } | Command::Chain(_) => unreachable!("handled before"),
        Command::Serve | Command::Config(_) | Command::Dkim(_) | Command::Dns(_) => {
            unreachable!("handled before")
        }
    }
    Ok(())
}

fn dkim_keygen(
    config: &Config,
    algo: KeyAlgo,
    selector: Option<String>,
    out: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let algorithm = match algo {
        KeyAlgo::Ed25519 => crate::config::KeyAlgorithm::Ed25519,
        KeyAlgo::Rsa => crate::config::KeyAlgorithm::Rsa,
    };
    let today = time::OffsetDateTime::now_utc().date();
    match dnscheck::keygen(config, algorithm, selector, out, today) {
        Ok(key) => {
            if json {
                out!("{}", serde_json::to_string(&key).unwrap_or_default());
            } else {
                out!("{}", key.text().trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eas-relay: {e}");
            match e {
                dnscheck::KeygenError::BadSelector(_) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// The plan for DOMAIN, with the relay's keys (generated as the node would
/// when there are none yet, which is said on stderr).
fn dns_plan(config: &Config, domain: &str) -> Result<dnscheck::Plan, ExitCode> {
    use crate::rewrite::keys::DkimKeyError;
    match dnscheck::Plan::load(config, domain) {
        Ok(plan) => {
            for path in &plan.generated {
                eprintln!(
                    "eas-relay: generated the DKIM key {} (the relay signs with it)",
                    path.display()
                );
            }
            Ok(plan)
        }
        Err(e) => {
            eprintln!("eas-relay: {e}");
            // A configured key file that cannot be used is a config error.
            Err(match e {
                DkimKeyError::Read { .. } | DkimKeyError::Invalid { .. } => ExitCode::from(2),
                _ => ExitCode::from(1),
            })
        }
    }
}

fn dns_records(config: &Config, domain: &str, json: bool) -> ExitCode {
    let plan = match dns_plan(config, domain) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let records = dnscheck::records(&plan);
    if json {
        out!("{}", serde_json::to_string(&records).unwrap_or_default());
    } else {
        out!("{}", dnscheck::zone(&plan, &records).trim_end());
    }
    ExitCode::SUCCESS
}

fn dns_check(config: &Config, domain: &str, json: bool) -> ExitCode {
    let plan = match dns_plan(config, domain) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let checks = runtime.block_on(async {
        let resolver = crate::dns::resolver(&config.outbound.nameservers)?;
        Ok::<_, String>(dnscheck::check(&plan, &resolver).await)
    });
    let checks = match checks {
        Ok(checks) => checks,
        Err(e) => {
            eprintln!("eas-relay: {e}");
            return ExitCode::from(1);
        }
    };
    let passed = dnscheck::passed(&checks);
    if json {
        let value = serde_json::json!({ "ok": passed, "checks": checks });
        out!("{value}");
    } else {
        out!("{}", dnscheck::report(&checks).trim_end());
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn done<T: Serialize>(json: bool, value: &T, text: &str) {
    if json {
        out!("{}", serde_json::to_string(value).unwrap_or_default());
    } else {
        out!("{text}");
    }
}

fn print_domains(domains: &[DomainView], json: bool) {
    if json {
        out!("{}", serde_json::to_string(domains).unwrap_or_default());
        return;
    }
    out!(
        "{:<40} {:<7} {:<7} {:>8}",
        "DOMAIN",
        "ACTIVE",
        "SOURCE",
        "ALIASES"
    );
    for d in domains {
        let source = serde_json::to_value(d.source).unwrap_or_default();
        out!(
            "{:<40} {:<7} {:<7} {:>8}",
            d.domain,
            if d.active { "yes" } else { "no" },
            source.as_str().unwrap_or(""),
            d.aliases_total
        );
    }
}

fn print_aliases(aliases: &[(String, AliasView)], json: bool) {
    if json {
        let list: Vec<_> = aliases
            .iter()
            .map(|(d, a)| serde_json::json!({ "domain": d, "alias": a }))
            .collect();
        out!("{}", serde_json::to_string(&list).unwrap_or_default());
        return;
    }
    for (domain, a) in aliases {
        let state = if a.active { "" } else { " (suspended)" };
        out!("{}@{domain} -> {}{state}", a.alias, a.forward);
    }
}

fn print_queue(queue: &[QueueView], json: bool) {
    if json {
        out!("{}", serde_json::to_string(queue).unwrap_or_default());
        return;
    }
    out!(
        "{:<16} {:>9} {:<20} {:<32} PENDING",
        "ID",
        "SIZE",
        "ARRIVED",
        "SENDER"
    );
    for q in queue {
        let pending = q
            .recipients
            .iter()
            .filter(|r| r.status == "pending")
            .count();
        let sender = if q.sender.is_empty() { "<>" } else { &q.sender };
        out!(
            "{:<16} {:>9} {:<20} {:<32} {}/{}",
            q.id,
            q.size,
            format_ms(q.created),
            sender,
            pending,
            q.recipients.len()
        );
    }
    out!("{} message(s)", queue.len());
}

fn print_queue_entry(q: &QueueView, json: bool) {
    if json {
        out!("{}", serde_json::to_string(q).unwrap_or_default());
        return;
    }
    out!("id:         {}", q.id);
    out!(
        "sender:     {}",
        if q.sender.is_empty() { "<>" } else { &q.sender }
    );
    out!("arrived:    {}", format_ms(q.created));
    if let Some(envelope) = &q.envelope_from {
        out!("envelope:   {envelope}");
    }
    out!("size:       {}", q.size);
    out!("subject:    {}", q.subject.as_deref().unwrap_or(""));
    out!("message-id: {}", q.message_id.as_deref().unwrap_or(""));
    out!("client:     {}", q.client_ip.as_deref().unwrap_or(""));
    for r in &q.recipients {
        out!(
            "recipient:  {} (alias {}) {} after {} attempt(s){}{}",
            r.address,
            r.alias,
            r.status,
            r.attempts,
            r.next_attempt
                .map(|t| format!(", next {}", format_ms(t)))
                .unwrap_or_default(),
            r.last_reply
                .as_deref()
                .map(|l| format!(", last reply: {l}"))
                .unwrap_or_default()
        );
    }
}

fn print_logs(logs: &serde_json::Value, json: bool) {
    if json {
        out!("{logs}");
        return;
    }
    for item in logs.as_array().into_iter().flatten() {
        let event = &item["events"][0];
        // The message is usually the whole reply, code included.
        let code = event["code"].to_string();
        let message = event["message"].as_str().unwrap_or("");
        let reply = if message.starts_with(&code) {
            message.to_string()
        } else {
            format!("{code} {message}")
        };
        out!(
            "{} {} -> {} {}: {reply}",
            format_ms(item["created"].as_u64().unwrap_or(0)),
            item["recipient"]["email"].as_str().unwrap_or(""),
            item["forward"]["email"].as_str().unwrap_or(""),
            event["status"].as_str().unwrap_or(""),
        );
    }
}

fn format_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_default()
}
