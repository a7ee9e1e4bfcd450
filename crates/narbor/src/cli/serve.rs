//! `narbor serve`: the pull-through cache.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use narbor_proto::{PublicKey, SecretKey};
use narbor_server::{Server, ServerConfig, UpstreamOptions};
use narbor_store::{DiskStore, StoreConfig};

use super::units::{parse_duration, parse_size};

/// The default listen address: loopback only, on narbor's own port.
const DEFAULT_LISTEN: &str = "127.0.0.1:37515";
/// The upstream a pull-through cache exists for.
const DEFAULT_UPSTREAM: &str = "https://cache.nixos.org";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (repeatable).
    #[arg(long = "listen", value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    listen: Vec<SocketAddr>,
    /// Where to store cached objects [default: $XDG_CACHE_HOME/narbor or ~/.cache/narbor].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// The most the store may hold (K, M, G, T are powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = "200G", value_parser = parse_size)]
    max_size: u64,
    /// Evict what nobody asked for in this long.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    inactive: Duration,
    /// An upstream cache, tried in the order given (repeatable; replaces the default,
    /// https://cache.nixos.org).
    #[arg(long = "upstream", value_name = "URL")]
    upstreams: Vec<String>,
    /// Serve only what is stored; ask no upstream.
    #[arg(long, conflicts_with = "upstreams")]
    no_upstream: bool,
    /// The Priority advertised in nix-cache-info. Below cache.nixos.org's 40, so Nix asks
    /// this cache first.
    #[arg(long, value_name = "N", default_value_t = 30)]
    priority: u32,
    /// How long a stored narinfo is served before asking upstream again.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    narinfo_ttl: Duration,
    /// How long an upstream 404 is remembered.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    negative_ttl: Duration,
    /// A public key `name:base64` (repeatable): when given, a narinfo without a valid
    /// signature by one of these keys is neither cached nor served.
    #[arg(long = "trusted-key", value_name = "KEY")]
    trusted_keys: Vec<String>,
    /// A secret key file: narbor adds its own signature to every narinfo it stores.
    #[arg(long, value_name = "FILE")]
    sign_key_file: Option<PathBuf>,
    /// Let every client see /status, /status.json and /metrics, not only loopback ones.
    #[arg(long)]
    stats_public: bool,
}

fn default_cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("narbor"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("narbor")),
        None => bail!("neither XDG_CACHE_HOME nor HOME is set: pass --cache-dir DIR"),
    }
}

fn check_upstream(url: &str) -> anyhow::Result<String> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains(['?', '#', ' ']);
    if !ok {
        bail!("--upstream {url:?} is not an http:// or https:// base URL (e.g. https://cache.nixos.org)");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let upstreams = if args.no_upstream {
        Vec::new()
    } else if args.upstreams.is_empty() {
        vec![DEFAULT_UPSTREAM.to_owned()]
    } else {
        args.upstreams
            .iter()
            .map(|u| check_upstream(u))
            .collect::<anyhow::Result<_>>()?
    };
    let trusted_keys = args
        .trusted_keys
        .iter()
        .map(|k| {
            PublicKey::parse(k)
                .with_context(|| format!("--trusted-key {k:?} is not a public key (name:base64)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sign_key = match &args.sign_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --sign-key-file {}", path.display()))?;
            let key = SecretKey::parse(&text).with_context(|| {
                format!(
                    "{} is not a secret key in Nix's format (make one with `narbor keygen`)",
                    path.display()
                )
            })?;
            Some(Arc::new(key))
        }
        None => None,
    };
    let cache_dir = match args.cache_dir {
        Some(d) => d,
        None => default_cache_dir()?,
    };
    let store = DiskStore::open(StoreConfig {
        dir: cache_dir.clone(),
        max_size: args.max_size,
    })
    .with_context(|| format!("opening the cache in {}", cache_dir.display()))?;
    let store = Arc::new(store);
    let config = ServerConfig {
        upstreams,
        priority: args.priority,
        narinfo_ttl: args.narinfo_ttl,
        negative_ttl: args.negative_ttl,
        inactive: args.inactive,
        trusted_keys,
        sign_key,
        upstream_options: UpstreamOptions::default(),
        stats_public: args.stats_public,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listeners = narbor_server::bind_all(&args.listen)
            .await
            .map_err(|(addr, e)| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let server =
            Server::new(config, Arc::clone(&store)).context("setting up the upstream client")?;
        let stats = store.stats();
        tracing::info!(
            listen = ?args.listen,
            upstreams = ?server.upstreams.bases(),
            cache_dir = %cache_dir.display(),
            objects = stats.objects,
            bytes = stats.bytes,
            max_size = stats.max_size,
            "narbor serving"
        );
        let maintenance = tokio::spawn(maintain(Arc::clone(&store), args.inactive));
        narbor_server::serve(server, listeners, shutdown_signal()).await;
        maintenance.abort();
        let store2 = Arc::clone(&store);
        tokio::task::spawn_blocking(move || store2.flush_access_times())
            .await
            .context("flushing access times")?
            .context("flushing access times")?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// How often upkeep runs: often enough that `--inactive` is honoured within a
/// tenth of itself, never more than once a second or less than once a minute.
fn upkeep_interval(inactive: Duration) -> Duration {
    (inactive / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Background upkeep: orphan files from a crash, access times, inactivity.
async fn maintain(store: Arc<DiskStore>, inactive: Duration) {
    let s = Arc::clone(&store);
    match tokio::task::spawn_blocking(move || s.sweep_orphans()).await {
        Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "swept files a crash left behind"),
        Ok(Err(e)) => tracing::warn!("sweeping orphans failed: {e}"),
        _ => {}
    }
    let mut tick = tokio::time::interval(upkeep_interval(inactive));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = Arc::clone(&store);
        let result = tokio::task::spawn_blocking(move || {
            s.flush_access_times()?;
            if let Some(cutoff) = SystemTime::now().checked_sub(inactive) {
                let evicted = s.evict_inactive(cutoff)?;
                if !evicted.is_empty() {
                    tracing::info!(evicted = evicted.len(), "evicted inactive objects");
                }
            }
            Ok::<_, narbor_store::StoreError>(())
        })
        .await;
        if let Ok(Err(e)) = result {
            tracing::warn!("store upkeep failed: {e}");
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing transfers in flight");
}
