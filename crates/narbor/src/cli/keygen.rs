//! `narbor keygen`: a signing key pair in Nix's text format.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use narbor_proto::SecretKey;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key name, conventionally `HOST-N` (e.g. `cache.example.org-1`).
    name: String,
    /// Where to write the secret key (created with mode 0600; never overwritten).
    secret_file: PathBuf,
    /// Where to write the public key (never overwritten).
    public_file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| anyhow::anyhow!("reading the system's random source: {e}"))?;
    let secret = SecretKey::from_seed(&args.name, seed)
        .with_context(|| format!("invalid key name {:?}", args.name))?;
    let public = secret.public_key();
    write_new(&args.secret_file, &secret.to_string(), 0o600)?;
    write_new(&args.public_file, &public.to_string(), 0o644)?;
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!(
                "{} already exists; remove it or choose another file name",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
