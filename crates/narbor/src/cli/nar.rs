//! `narbor nar`: dump a path as a NAR, list a NAR, check a NAR.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use narbor_proto::nar;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write the NAR of PATH to standard output (the same bytes as `nix-store --dump`).
    Dump { path: PathBuf },
    /// Print the NAR listing (the `.ls` JSON Nix writes with `write-nar-listing=true`)
    /// of an uncompressed NAR file (`-` for standard input).
    Ls { file: PathBuf },
    /// Validate an uncompressed NAR file (`-` for standard input) and print its
    /// NarHash and NarSize.
    Check { file: PathBuf },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Dump { path } => {
            let stdout = std::io::stdout().lock();
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout);
            nar::dump(&path, &mut out).with_context(|| format!("dumping {}", path.display()))?;
            out.flush().context("writing standard output")?;
        }
        Command::Ls { file } => {
            let input = super::open_input(&file)?;
            let summary = nar::validate(input, true)
                .with_context(|| format!("reading NAR {}", file.display()))?;
            let root = summary
                .listing
                .context("the NAR validator returned no listing")?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&nar::listing::to_json(&root))?;
            stdout.flush()?;
        }
        Command::Check { file } => {
            let input = super::open_input(&file)?;
            let summary = nar::validate(input, false)
                .with_context(|| format!("invalid NAR {}", file.display()))?;
            println!("NarHash: {}", summary.nar_hash);
            println!("NarSize: {}", summary.nar_size);
        }
    }
    Ok(ExitCode::SUCCESS)
}
