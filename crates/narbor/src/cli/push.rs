//! `narbor push`: store paths and their closure into an OCI store.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};
use narbor_proto::SecretKey;
use narbor_publish::{Compression, Event, PushOptions, Reporter};
use narbor_server::human_bytes;

use super::oci::{client, runtime};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store: `oci://HOST/NAME` (HTTPS) or `oci+http://HOST:PORT/NAME`.
    #[arg(long, value_name = "STORE")]
    to: String,
    /// Sign each narinfo with this secret key (Nix's format, as `narbor keygen` writes).
    #[arg(long, value_name = "SK")]
    key_file: Option<PathBuf>,
    /// zstd, xz or none.
    #[arg(long, default_value = "zstd")]
    compression: String,
    /// The compression level (zstd 1-22, default 3; xz 0-9, default 6).
    #[arg(long)]
    compression_level: Option<i32>,
    /// Do not push paths this cache has (repeatable; default https://cache.nixos.org).
    #[arg(long, value_name = "URL")]
    skip_upstream: Vec<String>,
    /// Push every path of the closure, whatever upstream caches have.
    #[arg(long, conflicts_with = "skip_upstream")]
    no_skip: bool,
    /// NARs prepared and uploaded at once (default: the number of cores).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Store paths (or symlinks to them, e.g. ./result); `-` reads them from
    /// standard input, one per line.
    #[arg(required = true)]
    paths: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut paths = Vec::new();
    for p in &args.paths {
        if p == "-" {
            for line in std::io::stdin().lock().lines() {
                let line = line.context("reading paths from standard input")?;
                let line = line.trim();
                if !line.is_empty() {
                    paths.push(line.to_owned());
                }
            }
        } else {
            paths.push(p.clone());
        }
    }
    if paths.is_empty() {
        bail!("no store paths to push");
    }
    let key = match &args.key_file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            Some(
                SecretKey::parse(text.trim())
                    .with_context(|| format!("{} is not a Nix secret key", f.display()))?,
            )
        }
        None => None,
    };
    let compression = Compression::from_name(&args.compression, args.compression_level)?;
    let skip_upstreams = if args.no_skip {
        Vec::new()
    } else if args.skip_upstream.is_empty() {
        vec!["https://cache.nixos.org".to_owned()]
    } else {
        args.skip_upstream.clone()
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let client = client(&args.to)?;
    let infos = narbor_publish::closure_infos(&paths)?;
    let tmp = tempfile::Builder::new()
        .prefix("narbor-push-")
        .tempdir()
        .context("creating a temporary directory")?;
    let roots = narbor_publish::root_paths(&paths)
        .iter()
        .map(|p| *p.hash())
        .collect();
    let opts = PushOptions {
        key,
        compression,
        skip_upstreams,
        jobs,
        tmp_dir: tmp.path().to_owned(),
        roots,
    };
    let reporter = Progress::new();
    let started = Instant::now();
    let summary = runtime()?.block_on(narbor_publish::push(
        client.clone(),
        infos,
        &opts,
        &reporter,
    ))?;
    reporter.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "pushed {} of {} paths to {}: uploaded {} NAR(s) ({}), {} already in the registry, {} skipped as upstream, {} skipped as present; {} NAR bytes in {:.1} s",
        summary.pushed,
        summary.closure,
        client.store(),
        summary.blobs_uploaded,
        human_bytes(summary.bytes_uploaded),
        summary.blobs_present,
        summary.skipped_upstream,
        summary.skipped_present,
        human_bytes(summary.nar_bytes),
        secs
    );
    for tag in &summary.fragments {
        println!("fragment {tag}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A status line on a terminal; plain log lines otherwise.
struct Progress {
    tty: bool,
    state: Mutex<State>,
}

struct State {
    total: usize,
    done: usize,
    nar_total: u64,
    nar_done: u64,
    uploaded: u64,
    started: Instant,
}

impl Progress {
    fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                total: 0,
                done: 0,
                nar_total: 0,
                nar_done: 0,
                uploaded: 0,
                started: Instant::now(),
            }),
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

impl Reporter for Progress {
    fn event(&self, event: Event<'_>) {
        let Ok(mut s) = self.state.lock() else { return };
        match event {
            Event::Planned {
                closure,
                skipped_upstream,
                skipped_present,
                to_push,
                nar_bytes,
            } => {
                s.total = to_push;
                s.nar_total = nar_bytes;
                s.started = Instant::now();
                eprintln!(
                    "closure: {closure} paths; {skipped_upstream} upstream has, {skipped_present} the store has; pushing {to_push} ({})",
                    human_bytes(nar_bytes)
                );
            }
            Event::PathDone {
                path,
                nar_size,
                file_size,
                uploaded,
            } => {
                s.done += 1;
                s.nar_done += nar_size;
                if uploaded {
                    s.uploaded += file_size;
                }
                let rate = s.nar_done as f64 / s.started.elapsed().as_secs_f64().max(0.001);
                if self.tty {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r\x1b[2K{} {}/{} paths, {} of {} NAR, {} uploaded, {}/s",
                        bar(s.nar_done, s.nar_total, 24),
                        s.done,
                        s.total,
                        human_bytes(s.nar_done),
                        human_bytes(s.nar_total),
                        human_bytes(s.uploaded),
                        human_bytes(rate as u64)
                    );
                    if s.done == s.total {
                        let _ = writeln!(err);
                    }
                    let _ = err.flush();
                } else {
                    eprintln!(
                        "[{}/{}] {path}: {} NAR, {} {}",
                        s.done,
                        s.total,
                        human_bytes(nar_size),
                        human_bytes(file_size),
                        if uploaded {
                            "uploaded"
                        } else {
                            "already in the registry"
                        }
                    );
                }
            }
            Event::Fragment { tag, entries } => {
                if self.tty {
                    eprintln!();
                }
                eprintln!("wrote index fragment {tag} ({entries} entries)");
            }
        }
    }
}

/// `[#########.........]`: `done` of `total`, `width` cells wide.
fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        ((done.min(total) as u128 * width as u128) / total as u128) as usize
    };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bar_fills_in_proportion() {
        assert_eq!(super::bar(0, 100, 10), "[..........]");
        assert_eq!(super::bar(50, 100, 10), "[#####.....]");
        assert_eq!(super::bar(100, 100, 10), "[##########]");
        assert_eq!(super::bar(7, 0, 4), "[####]");
        assert_eq!(super::bar(200, 100, 4), "[####]");
    }
}
