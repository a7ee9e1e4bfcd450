//! `narbor narinfo`: check and sign `.narinfo` documents.
//!
//! A file may hold several documents separated by blank lines; `-` reads
//! standard input.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use narbor_proto::narinfo::{split_documents, NarInfo};
use narbor_proto::{PublicKey, SecretKey};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Parse each document; with --trusted-key, require a valid signature by one
    /// of the keys. Exits non-zero if any document fails.
    Check {
        /// A public key `name:base64` (repeatable).
        #[arg(long = "trusted-key", value_name = "KEY")]
        trusted_keys: Vec<String>,
        /// Print each document in canonical form.
        #[arg(long)]
        canonical: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Add a signature by the key in KEY_FILE to each document and print them
    /// (replacing an older signature by the same key name).
    Sign {
        #[arg(long = "key-file", value_name = "KEY_FILE")]
        key_file: PathBuf,
        /// Rewrite each file in place instead of printing.
        #[arg(long)]
        in_place: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check {
            trusted_keys,
            canonical,
            files,
        } => check(&trusted_keys, canonical, &files),
        Command::Sign {
            key_file,
            in_place,
            files,
        } => sign(&key_file, in_place, &files),
    }
}

fn check(trusted: &[String], canonical: bool, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let keys = trusted
        .iter()
        .map(|k| {
            PublicKey::parse(k).with_context(|| format!("--trusted-key {k:?} is not a public key"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut first = true;
    for file in files {
        let bytes = super::read_input(file)?;
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: not UTF-8 text: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        for (line, doc) in split_documents(text) {
            match NarInfo::parse(doc) {
                Err(e) => {
                    eprintln!("{}:{line}: {e}", file.display());
                    failed += 1;
                }
                Ok(info) if !keys.is_empty() && !info.verify(&keys) => {
                    eprintln!(
                        "{}:{line}: {}: no valid signature by a trusted key",
                        file.display(),
                        info.store_path
                    );
                    failed += 1;
                }
                Ok(info) => {
                    if canonical {
                        if !first {
                            println!();
                        }
                        print!("{info}");
                        first = false;
                    }
                    passed += 1;
                }
            }
        }
    }
    eprintln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn sign(key_file: &PathBuf, in_place: bool, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(key_file)
        .with_context(|| format!("reading key file {}", key_file.display()))?;
    let key = SecretKey::parse(&text).with_context(|| {
        format!(
            "{} is not a secret key in Nix's format (name:base64)",
            key_file.display()
        )
    })?;
    for file in files {
        let bytes = super::read_input(file)?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text", file.display()))?;
        let mut out = String::new();
        for (line, doc) in split_documents(&text) {
            let mut info = NarInfo::parse(doc)
                .with_context(|| format!("{}:{line}: not a valid narinfo", file.display()))?;
            info.sign(&key);
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&info.to_string());
        }
        if in_place {
            write_atomically(file, out.as_bytes())?;
        } else {
            print!("{out}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_atomically(path: &std::path::Path, contents: &[u8]) -> anyhow::Result<()> {
    anyhow::ensure!(
        path != std::path::Path::new("-"),
        "--in-place needs files, not standard input"
    );
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.narbor-tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}
