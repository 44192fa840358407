//! The command line: `serve`, `config check|show`, the management
//! commands (`domain`, `alias`, `queue`, `log`), the chain commands,
//! `cluster init|status`, and
//! the DNS helpers (`dkim keygen`, `dns records|check`, in
//! `crate::zone`; `dns provision`, in `crate::provision`). This file parses and hands each command to the file
//! of its group.

/// `println!` that keeps going when stdout has no reader any more
/// (`eas-relay log d.country | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod args;
mod chain;
mod check;
mod cluster;
mod dns;
mod manage;
mod print;
mod provision;
mod remote;
mod serve;

pub use args::Cli;

use crate::config::{Config, ConfigError};
use args::{ChainCommand, ClusterCommand, Command, ConfigCommand, DkimCommand, DnsCommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs the CLI; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    if let Command::Config(ConfigCommand::Check { file }) = &cli.command {
        return check::config_check(file.as_ref().or(cli.config.as_ref()));
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
            serve::serve(config, warning)
        }
        Command::Config(ConfigCommand::Show) => {
            out!("{}", config.to_toml_shown().trim_end());
            ExitCode::SUCCESS
        }
        Command::Dkim(DkimCommand::Keygen {
            algo,
            selector,
            out,
        }) => dns::dkim_keygen(&config, algo, selector, out, cli.json),
        Command::Dns(DnsCommand::Records { domain }) => dns::records(&config, &domain, cli.json),
        Command::Dns(DnsCommand::Check { domain }) => dns::check(&config, &domain, cli.json),
        Command::Dns(DnsCommand::Provision {
            domain,
            all: _,
            dry_run,
            force,
        }) => provision::run(config, domain, dry_run, force, cli.json),
        Command::Resync { from_block } => run(chain::resync(config, from_block, cli.json)),
        Command::Chain(ChainCommand::Status) => run(chain::status(config, cli.json)),
        Command::Cluster(ClusterCommand::Init) => cluster::init(config, cli.json),
        Command::Cluster(ClusterCommand::Status) => cluster::status(config, cli.json),
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            match runtime.block_on(manage::run(config, command, cli.json)) {
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

/// Runs a command that needs the network (`resync`, `chain status`,
/// `cluster …`) on a fresh runtime; prints its error (exit 1).
fn run<E: std::fmt::Display>(
    command: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eas-relay: {e}");
            ExitCode::from(1)
        }
    }
}
