//! `narbor serve`: the pull-through cache.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use narbor_server::{Protocol, Server, ServerConfig, Tls, UpstreamOptions};
use narbor_store::{DiskStore, StoreConfig};

use crate::config::{ServeOptions, ServeSettings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A TOML config file; flags and environment variables override its keys.
    #[arg(long, value_name = "FILE", env = "NARBOR_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    options: ServeOptions,
}

/// Reads the config file (if any) under the flags and checks everything.
pub fn settings(
    config: Option<&std::path::Path>,
    mut flags: ServeOptions,
) -> anyhow::Result<ServeSettings> {
    crate::config::apply_nixcache_env(&mut flags, &|k| std::env::var(k).ok())?;
    let file = match config {
        Some(path) => ServeOptions::from_file(path)?,
        None => ServeOptions::default(),
    };
    flags.over(file).resolve()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = settings(args.config.as_deref(), args.options)?;
    crate::init_logging(&settings.log);
    let cache_dir = settings.cache_dir.clone();
    let store = DiskStore::open(StoreConfig {
        dir: cache_dir.clone(),
        max_size: settings.max_size,
    })
    .with_context(|| format!("opening the cache in {}", cache_dir.display()))?;
    let store = Arc::new(store);
    let listen = settings.listen.clone();
    let (tls, redirect_listen) = (settings.tls.clone(), settings.http_redirect_listen.clone());
    let inactive = settings.inactive;
    let lan = settings.lan;
    let oci_source = match &settings.oci {
        Some(store) => Some(narbor_server::oci::OciSource::new(
            super::oci::client(store)?,
            settings.index_ttl,
            settings.trusted_keys.clone(),
            Some(settings.index_dir.clone()),
        )),
        None => None,
    };
    let refresher = oci_source.clone();
    let config = ServerConfig {
        upstreams: settings.upstreams,
        credentials: settings.credentials,
        priority: settings.priority,
        narinfo_ttl: settings.narinfo_ttl,
        negative_ttl: settings.negative_ttl,
        inactive,
        trusted_keys: settings.trusted_keys,
        sign_key: settings.sign_key.map(Arc::new),
        upstream_options: UpstreamOptions {
            connect_timeout: settings.upstream_timeout.min(Duration::from_secs(10)),
            stall_timeout: settings.upstream_timeout,
        },
        stats_public: settings.stats_public,
        oci: oci_source,
        refresh_token: settings
            .refresh_token
            .clone()
            .map(narbor_server::RefreshToken),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listeners = narbor_server::bind_all(&listen)
            .await
            .map_err(|(addr, e)| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let advertisement = if lan {
            Some(advertise(&listeners, tls.is_none())?)
        } else {
            None
        };
        let listeners = with_protocols(listeners, tls.as_ref(), &listen, &redirect_listen).await?;
        let server =
            Server::new(config, Arc::clone(&store)).context("setting up the upstream client")?;
        let stats = store.stats();
        // What was bound, not what was asked (`--listen 127.0.0.1:0`).
        let bound: Vec<String> = listeners
            .iter()
            .filter_map(|(l, protocol)| {
                let scheme = match protocol {
                    Protocol::Https(_) => "https",
                    Protocol::Http | Protocol::RedirectToHttps { .. } => "http",
                };
                Some(format!("{scheme}://{}", l.local_addr().ok()?))
            })
            .collect();
        tracing::info!(
            ?listen,
            ?bound,
            upstreams = ?server.upstream_names(),
            cache_dir = %cache_dir.display(),
            objects = stats.objects,
            bytes = stats.bytes,
            max_size = stats.max_size,
            "narbor serving"
        );
        let maintenance = tokio::spawn(maintain(Arc::clone(&server), Arc::clone(&store), inactive));
        let index_refresh = refresher.map(|oci| tokio::spawn(oci.run()));
        // Withdraw from mDNS as soon as shutdown starts, not after the drain.
        let shutdown = async move {
            shutdown_signal().await;
            if let Some(ad) = advertisement {
                let withdraw = move || ad.withdraw(Duration::from_secs(2));
                let _ = tokio::task::spawn_blocking(withdraw).await;
            }
        };
        // SIGHUP's handler is in place before the first connection is accepted.
        // Without TLS, SIGHUP is logged and ignored rather than killing narbor.
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let tls_upkeep = tokio::spawn(watch_tls(tls, hup));
        narbor_server::serve_each(server, listeners, shutdown).await;
        maintenance.abort();
        if let Some(task) = index_refresh {
            task.abort();
        }
        tls_upkeep.abort();
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

/// LAN mode: advertises the listeners over mDNS (`plain_http`: they speak
/// HTTP, not HTTPS).
fn advertise(
    listeners: &[tokio::net::TcpListener],
    plain_http: bool,
) -> anyhow::Result<narbor_server::mdns::Advertisement> {
    let bound = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()
        .context("reading the listen addresses")?;
    let ad = narbor_server::mdns::advertise(&bound, plain_http)
        .context("LAN mode cannot advertise the cache")?;
    let addrs: Vec<String> = ad.addrs.iter().map(ToString::to_string).collect();
    let kinds: Vec<&str> = ad.kinds().map(|k| k.name()).collect();
    tracing::info!(
        instance = %ad.instance,
        host = %ad.host,
        port = ad.port,
        addrs = %if addrs.is_empty() { "every interface's".to_owned() } else { addrs.join(" ") },
        types = %kinds.join(" "),
        "LAN mode: advertising over mDNS"
    );
    if !plain_http {
        tracing::info!(
            "LAN mode: not advertised as _nix_binary_cache._tcp: nix-cache-beacon's \
             clients speak plain HTTP and this cache serves HTTPS"
        );
    }
    Ok(ad)
}

/// How often the certificate files are checked for changes.
const TLS_POLL: Duration = Duration::from_secs(2);

/// The listeners with what each speaks: HTTPS on `listen` when TLS is set up,
/// plus the plain-HTTP redirect listeners (bound here) pointing at the first.
async fn with_protocols(
    listeners: Vec<tokio::net::TcpListener>,
    tls: Option<&Arc<Tls>>,
    listen: &[SocketAddr],
    redirect_listen: &[SocketAddr],
) -> anyhow::Result<Vec<(tokio::net::TcpListener, Protocol)>> {
    let Some(tls) = tls else {
        return Ok(listeners.into_iter().map(|l| (l, Protocol::Http)).collect());
    };
    // The port bound, not the one asked for (`:0` binds a free one).
    let https_port = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .or_else(|| listen.first().copied())
        .map_or(443, |a| a.port());
    let mut all: Vec<_> = listeners
        .into_iter()
        .map(|l| (l, Protocol::Https(Arc::clone(tls))))
        .collect();
    let redirects = narbor_server::bind_all(redirect_listen)
        .await
        .map_err(|(addr, e)| {
            anyhow::anyhow!("cannot listen on {addr} (http-redirect-listen): {e}")
        })?;
    all.extend(
        redirects
            .into_iter()
            .map(|l| (l, Protocol::RedirectToHttps { https_port })),
    );
    tracing::info!(
        cert = %tls.files().cert.display(),
        redirect_listen = ?redirect_listen,
        "serving HTTPS"
    );
    Ok(all)
}

/// Reloads the certificate when its files change or on SIGHUP.
async fn watch_tls(tls: Option<Arc<Tls>>, hup: std::io::Result<tokio::signal::unix::Signal>) {
    let on_hup = async {
        match hup {
            Ok(mut hup) => {
                while hup.recv().await.is_some() {
                    let Some(tls) = tls.clone() else {
                        tracing::info!("SIGHUP: nothing to reload (no TLS)");
                        continue;
                    };
                    let _ = tokio::task::spawn_blocking(move || tls.reload_and_log("SIGHUP")).await;
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP, reloading on file changes only: {e}")
            }
        }
    };
    let poll = async {
        if let Some(tls) = tls.clone() {
            tls.watch(TLS_POLL).await;
        }
    };
    tokio::join!(poll, on_hup);
}

/// How often upkeep runs: often enough that `--inactive` is honoured within a
/// tenth of itself, never more than once a second or less than once a minute.
fn upkeep_interval(inactive: Duration) -> Duration {
    (inactive / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Background upkeep: orphan files from a crash, then every interval the
/// server's upkeep (access times, inactivity).
async fn maintain(server: Arc<Server>, store: Arc<DiskStore>, inactive: Duration) {
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
        match server.upkeep().await {
            Ok(0) => {}
            Ok(evicted) => tracing::info!(evicted, "evicted inactive objects"),
            Err(e) => tracing::warn!("store upkeep failed: {e}"),
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
