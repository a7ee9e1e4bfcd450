//! The subcommands and their dispatch.

mod check_config;
mod config_keys;
mod discover;
mod gc;
mod keygen;
mod nar;
mod narinfo;
mod oci;
mod push;
mod serve;

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// A Nix binary cache: pull-through cache and OCI-registry-backed cache.
#[derive(Debug, Parser)]
#[command(name = "narbor", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an ed25519 signing key pair in Nix's format (like
    /// `nix-store --generate-binary-cache-key`).
    Keygen(keygen::Args),
    /// Check, canonicalise and sign `.narinfo` documents.
    #[command(subcommand)]
    Narinfo(narinfo::Command),
    /// Write, list and check NAR archives.
    #[command(subcommand)]
    Nar(nar::Command),
    /// Check a `narbor serve` config file without starting anything.
    CheckConfig(check_config::Args),
    /// List `serve`'s settings: key, flag, environment variable, default.
    #[command(hide = true)]
    ConfigKeys(config_keys::Args),
    /// Run the pull-through cache (by default of https://cache.nixos.org on
    /// 127.0.0.1:37515).
    Serve(Box<serve::Args>),
    /// Find Nix caches on the LAN (`narbor serve --lan`, any `_http._tcp`
    /// service with TXT `nix-cache=1`, any `_nix_binary_cache._tcp` service as
    /// nix-cache-beacon advertises) and print how to use them.
    Discover(discover::Args),
    /// Push store paths and their closure into an OCI registry cache.
    Push(push::Args),
    /// Remove unreachable, old entries from an OCI registry cache and
    /// delete the blobs nothing references any more.
    Gc(gc::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Serve(_)) {
        // The commands print what people need; libraries speak up only to warn.
        crate::init_logging("warn,narbor::cli=info");
    }
    match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Narinfo(cmd) => narinfo::run(cmd),
        Command::Nar(cmd) => nar::run(cmd),
        Command::Serve(args) => serve::run(*args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::ConfigKeys(args) => config_keys::run(args),
        Command::Discover(args) => discover::run(args),
        Command::Push(args) => push::run(args),
        Command::Gc(args) => gc::run(args),
    }
}

/// Reads a whole input named on the command line; `-` is standard input.
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
    } else {
        buf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(buf)
}

/// Opens an input for streaming; `-` is standard input.
fn open_input(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    if path == Path::new("-") {
        Ok(Box::new(std::io::stdin().lock()))
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Box::new(file))
    }
}
