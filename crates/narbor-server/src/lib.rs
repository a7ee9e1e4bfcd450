//! narbor's HTTP face: routes, the pull-through fill, the sources behind it.
//!
//! [`Server`] holds the configuration, the store, the chain of sources and
//! the fills in flight, and reads the time from an injected [`Clock`];
//! [`serve`] accepts connections (HTTP/1.1 with keep-alive, and HTTP/2 when the
//! client speaks it) until the shutdown future resolves; [`serve_each`] also
//! speaks HTTPS (rustls, HTTP/2 by ALPN, see [`Tls`]) and answers plain-HTTP
//! redirect listeners. The store is synchronous; everything here that writes
//! to it does so off the async workers.

pub mod access;
mod app;
mod cache;
pub mod clock;
pub mod credentials;
mod dashboard;
mod decode;
mod documents;
pub mod error;
mod fill;
mod handler;
mod landing;
pub mod mdns;
pub mod metrics;
mod nar_fill;
mod nar_source;
pub mod oci;
mod pages;
mod range;
mod redirect;
mod respond;
mod source;
mod status;
#[cfg(test)]
mod tests;
mod tls;
mod upstream;
mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use narbor_proto::{PublicKey, SecretKey};
use tokio::net::TcpListener;

pub use app::Server;
pub use clock::{Clock, ManualClock, SystemClock};
pub use credentials::{Credential, Credentials, Netrc};
pub use dashboard::{human_bytes, Snapshot};
pub use metrics::{MetricsSource, Sample, SampleKind};
pub use status::CacheStatus;
pub use tls::{Tls, TlsError, TlsFiles};
pub use upstream::{UpstreamBase, UpstreamError, UpstreamOptions};

/// Everything `narbor serve` can be told, already parsed.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Upstream caches, tried in order; empty serves only what is stored.
    pub upstreams: Vec<UpstreamBase>,
    /// Credentials for upstream hosts (netrc, bearer-token files).
    pub credentials: Credentials,
    /// The `Priority:` advertised in `nix-cache-info`.
    pub priority: u32,
    /// How long a stored narinfo (or listing, log) is served without asking upstream again.
    pub narinfo_ttl: Duration,
    /// How long an upstream 404 is remembered.
    pub negative_ttl: Duration,
    /// Objects nobody asked for in this long are evicted.
    pub inactive: Duration,
    /// When non-empty, a narinfo needs a valid signature by one of these keys.
    pub trusted_keys: Vec<PublicKey>,
    /// When set, every narinfo narbor stores also carries this key's signature.
    pub sign_key: Option<Arc<SecretKey>>,
    pub upstream_options: UpstreamOptions,
    /// Whether `/status`, `/status.json` and `/metrics` answer every client,
    /// not only loopback ones.
    pub stats_public: bool,
    /// `--oci`: a registry cache served from its in-memory index, before the upstreams.
    pub oci: Option<Arc<oci::OciSource>>,
    /// A bearer token that also allows `POST /_refresh` from other hosts.
    pub refresh_token: Option<RefreshToken>,
}

/// A secret bearer token; its `Debug` never shows it.
#[derive(Clone)]
pub struct RefreshToken(pub String);

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

impl RefreshToken {
    /// Compares in time independent of where the strings differ.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// What a listener speaks.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// Plain HTTP/1.1, and HTTP/2 when the client starts with its preface.
    Http,
    /// TLS, then HTTP/2 or HTTP/1.1 as ALPN decided.
    Https(Arc<Tls>),
    /// Plain HTTP that answers everything with a 308 to HTTPS on this port.
    RedirectToHttps { https_port: u16 },
}

/// A TLS handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts plain-HTTP connections on every listener until `shutdown` resolves.
pub async fn serve(
    server: Arc<Server>,
    listeners: Vec<TcpListener>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let listeners = listeners.into_iter().map(|l| (l, Protocol::Http)).collect();
    serve_each(server, listeners, shutdown).await;
}

/// Accepts connections on every listener, each speaking its [`Protocol`],
/// until `shutdown` resolves; then lets transfers in flight finish.
/// The most connections served at once; beyond it, new ones wait in the
/// kernel's accept backlog. Bounded so memory is (each streaming connection
/// holds one read buffer), high enough for a large fleet.
pub const MAX_CONNECTIONS: usize = 8192;
/// How long a client may take to send a whole request head (slowloris).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (HTTP/1 buffer, HTTP/2 header list) narbor reads.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

pub async fn serve_each(
    server: Arc<Server>,
    listeners: Vec<(TcpListener, Protocol)>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(64);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut accept_tasks = Vec::new();
    for (listener, protocol) in listeners {
        let conn_tx = conn_tx.clone();
        let permits = Arc::clone(&permits);
        accept_tasks.push(tokio::spawn(async move {
            loop {
                // At the limit, stop accepting: new connections wait in the
                // kernel's backlog instead of growing narbor's memory.
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        if conn_tx
                            .send((stream, peer, protocol.clone(), permit))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    drop(conn_tx);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Slowloris: a request head must arrive whole within HEADER_TIMEOUT, and
    // heads are bounded in size.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = conn_rx.recv() => {
                let Some((stream, peer, protocol, permit)) = conn else { break };
                let server = Arc::clone(&server);
                let service = hyper::service::service_fn(move |req| {
                    let server = Arc::clone(&server);
                    async move { Ok::<_, std::convert::Infallible>(handler::handle(server, req, peer).await) }
                });
                let (builder, watcher) = (builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let result = match protocol {
                        Protocol::Http => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Protocol::Https(tls) => {
                            let handshake = tls.acceptor().accept(stream);
                            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Protocol::RedirectToHttps { https_port } => {
                            let service = hyper::service::service_fn(move |req| async move {
                                Ok::<_, std::convert::Infallible>(redirect::respond(&req, https_port))
                            });
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    for task in accept_tasks {
        task.abort();
    }
    // Let transfers in flight finish, up to a deadline.
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("shutdown deadline reached with transfers still running");
        }
    }
}

/// Binds every address, failing with the address that could not be bound.
///
/// `[::]:P` is bound IPv6-only when `0.0.0.0:P` is also in the list (so the
/// two do not collide); otherwise the system's default (usually dual-stack).
pub async fn bind_all(
    addrs: &[SocketAddr],
) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let v6_only = addr.is_ipv6()
            && addrs
                .iter()
                .any(|a| a.is_ipv4() && a.ip().is_unspecified() && a.port() == addr.port());
        listeners.push(bind_one(*addr, v6_only).map_err(|e| (*addr, e))?);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr, v6_only: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if v6_only {
        socket.set_only_v6(true)?;
    }
    // As tokio's `TcpListener::bind`: restart without waiting out TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}
