//! `eas-relay`: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    eas_relay::cli::main(eas_relay::cli::Cli::parse())
}
