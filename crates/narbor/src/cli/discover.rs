//! `narbor discover`: find Nix caches on the LAN over mDNS (narbor's
//! `_http._tcp` with TXT `nix-cache=1`, and nix-cache-beacon's
//! `_nix_binary_cache._tcp`) and say how to use them (a `nix.conf` line and a
//! NixOS snippet; `--write` a nix.conf fragment).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use narbor_server::mdns::{self, FoundCache, ServiceKind};

use crate::units::Span;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to listen for answers.
    #[arg(long, value_name = "DURATION", default_value = "3s")]
    timeout: String,
    /// Also write a nix.conf fragment (one `extra-substituters` line with every cache
    /// found) to FILE, e.g. for `!include FILE` in nix.conf.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let timeout = (args.timeout.parse::<Span>())
        .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?
        .duration();
    let caches = mdns::discover(timeout).context("cannot browse the LAN over mDNS")?;
    if caches.is_empty() {
        bail!(
            "no Nix cache found on the LAN within {} (looked for {} services with TXT {}=1 \
             and {} services)",
            args.timeout,
            ServiceKind::Http,
            mdns::NIX_CACHE_KEY,
            ServiceKind::NixBinaryCache,
        );
    }
    for cache in &caches {
        println!("{}", describe(cache));
        println!("  nix.conf:  extra-substituters = {}", cache.url);
        println!(
            "  NixOS:     nix.settings.extra-substituters = [ \"{}\" ];",
            cache.url
        );
    }
    if let Some(path) = &args.write {
        std::fs::write(path, fragment(&caches))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A nix.conf fragment naming every cache found.
fn fragment(caches: &[FoundCache]) -> String {
    let mut out = String::from("# Nix caches found on the LAN by `narbor discover`:\n");
    for cache in caches {
        out.push_str(&format!("#   {}\n", describe(cache)));
    }
    let urls: Vec<&str> = caches.iter().map(|c| c.url.as_str()).collect();
    out.push_str(&format!("extra-substituters = {}\n", urls.join(" ")));
    out
}

/// `narbor on box (box.local.; _http._tcp, _nix_binary_cache._tcp)`.
fn describe(cache: &FoundCache) -> String {
    let kinds: Vec<&str> = cache.kinds.iter().map(|k| k.name()).collect();
    format!("{} ({}; {})", cache.instance, cache.host, kinds.join(", "))
}
