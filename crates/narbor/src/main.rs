//! The `narbor` binary: command-line parsing, wiring and error reporting.
//!
//! Each subcommand lives in its own module under `cli/`. This is the only crate
//! that uses `anyhow`; the libraries return typed errors.

mod cli;
mod config;
mod units;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("narbor: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to standard error. `RUST_LOG` (e.g. `narbor=debug`) beats `default`
/// (serve's `log` setting). `info` logs startup, each stored NAR, failures;
/// requests log at `debug`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
