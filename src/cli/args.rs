//! The command line's grammar: every command, its arguments and options.

use crate::config::ENV_CONFIG_FILE;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "eas-relay",
    version,
    about = "Forwarding SMTP relay for the .country Email Alias Service"
)]
pub struct Cli {
    /// Config file (TOML); without one, the embedded defaults are used.
    #[arg(long, short, global = true, env = ENV_CONFIG_FILE)]
    pub(crate) config: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
    /// Several MX nodes sharing PostgreSQL ([cluster]).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// Copy this node's domains, aliases, reveals, suspensions and delivery
    /// log from its store into PostgreSQL (migrating it first). Run it with
    /// the node stopped; running it again changes nothing.
    Init,
    /// List the nodes: last seen, applied change, lag, queue depth, version.
    Status,
}

#[derive(Subcommand, Debug)]
pub(crate) enum DkimCommand {
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
pub(crate) enum KeyAlgo {
    Ed25519,
    Rsa,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ChainCommand {
    /// Head, cursor, lag, staleness and the last error.
    Status,
}

#[derive(Subcommand, Debug)]
pub(crate) enum DnsCommand {
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
    /// Write DOMAIN's MX, SPF and DMARC into the zone in Redis
    /// ([dns_provisioning]); prints the before/after JSON of each label.
    Provision {
        #[arg(value_parser = domain_arg, required_unless_present = "all", conflicts_with = "all")]
        domain: Option<String>,
        /// Every domain with active aliases.
        #[arg(long)]
        all: bool,
        /// Say what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also a name the relay does not serve (not in the store, inactive,
        /// or an expired chain name).
        #[arg(long)]
        force: bool,
    },
}

/// A domain argument, normalized like the admin commands do.
fn domain_arg(domain: &str) -> Result<String, String> {
    crate::address::normalize_domain(domain)
        .ok_or_else(|| format!("`{domain}` is not a valid domain name"))
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Check a config file and say precisely what is wrong.
    Check {
        /// The file (default: --config).
        file: Option<PathBuf>,
    },
    /// Print the effective configuration (defaults, file, environment).
    Show,
}

#[derive(Subcommand, Debug)]
pub(crate) enum DomainCommand {
    List,
    Add { domain: String },
    Remove { domain: String },
}

#[derive(Subcommand, Debug)]
pub(crate) enum AliasCommand {
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
pub(crate) enum QueueCommand {
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
