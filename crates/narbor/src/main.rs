//! The `narbor` binary: command-line parsing, wiring and error reporting.
//!
//! Each subcommand lives in its own module under `cli/`. This is the only crate
//! that uses `anyhow`; the libraries return typed errors.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("narbor: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to standard error; `RUST_LOG` (e.g. `narbor=debug`) sets the level,
/// `info` by default: startup, each stored NAR, failures; requests at `debug`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
