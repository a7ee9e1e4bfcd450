//! In-process tests of the server's logic: the real server on
//! `127.0.0.1:0`, an in-process upstream, an injected clock. No root, no
//! Nix, no sleeping to let time pass (the clock moves when a test says so;
//! where a test waits for another task, it waits for an event with a
//! deadline). The end-to-end suite (crates/narbor/tests/e2e) keeps what only
//! the real Nix client can show.

mod cache_life;
mod fills;
mod statuses;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use narbor_proto::{NarInfo, SecretKey, Sha256, StorePath, StorePathHash};
use narbor_store::{DiskStore, StoreConfig};
use tokio::sync::{watch, Notify};

use crate::clock::{as_store_clock, Clock, ManualClock};
use crate::credentials::Credentials;
use crate::upstream::{UpstreamBase, UpstreamOptions};
use crate::{Server, ServerConfig};

/// What the test upstream answers for a path.
#[derive(Clone)]
pub(crate) enum Answer {
    Ok(Bytes),
    Status(u16),
    /// The first half of the body, then the connection closes.
    Cut(Bytes),
}

/// An HTTP upstream in the test's own runtime: paths to answers, a count of
/// requests per path, and a gate that holds every response back until the
/// test opens it.
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    arrived: Arc<Notify>,
    gate: watch::Sender<bool>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let (gate, gate_rx) = watch::channel(true);
        let (a, c, n) = (
            Arc::clone(&answers),
            Arc::clone(&counts),
            Arc::clone(&arrived),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (a, c, n, g) = (
                    Arc::clone(&a),
                    Arc::clone(&c),
                    Arc::clone(&n),
                    gate_rx.clone(),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<Incoming>| {
                            let (a, c, n, mut g) =
                                (Arc::clone(&a), Arc::clone(&c), Arc::clone(&n), g.clone());
                            async move {
                                let path = req.uri().path().trim_start_matches('/').to_owned();
                                *c.lock().unwrap().entry(path.clone()).or_default() += 1;
                                n.notify_waiters();
                                let _ = g.wait_for(|open| *open).await;
                                let answer = a.lock().unwrap().get(&path).cloned();
                                let resp = match answer {
                                    Some(Answer::Ok(body)) => hyper::Response::new(whole(body)),
                                    Some(Answer::Status(code)) => {
                                        let mut r = hyper::Response::new(whole(Bytes::new()));
                                        *r.status_mut() =
                                            hyper::StatusCode::from_u16(code).unwrap();
                                        r
                                    }
                                    Some(Answer::Cut(body)) => {
                                        // The whole length promised, half sent,
                                        // then the body fails: hyper closes the
                                        // connection.
                                        let half = body.slice(..body.len() / 2);
                                        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
                                            Ok(Frame::data(half)),
                                            Err(std::io::Error::other("cut")),
                                        ];
                                        let mut r = hyper::Response::new(BodyExt::boxed(
                                            StreamBody::new(futures_util::stream::iter(frames)),
                                        ));
                                        r.headers_mut().insert(
                                            hyper::header::CONTENT_LENGTH,
                                            body.len().into(),
                                        );
                                        r
                                    }
                                    None => {
                                        let mut r = hyper::Response::new(whole(Bytes::new()));
                                        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                        r
                                    }
                                };
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            answers,
            counts,
            arrived,
            gate,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, path: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(path.to_owned(), answer);
    }

    pub fn requests(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Holds every response back until [`open`](Self::open).
    pub fn close_gate(&self) {
        self.gate.send_replace(false);
    }

    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Waits (with a deadline) until `path` has been asked `n` times.
    pub async fn wait_for_requests(&self, path: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.arrived.notified();
            if self.requests(path) >= n {
                return;
            }
            assert!(
                tokio::time::timeout_at(deadline, arrived).await.is_ok(),
                "{path} was asked {} times, not {n}",
                self.requests(path)
            );
        }
    }
}

fn whole(body: Bytes) -> BoxBody<Bytes, std::io::Error> {
    BodyExt::boxed(Full::new(body).map_err(|never| match never {}))
}

/// A narbor server in process, its store in a temporary directory, its time
/// from a manual clock.
pub(crate) struct Harness {
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub server: Arc<Server>,
    pub dir: tempfile::TempDir,
    client: reqwest::Client,
}

/// The settings the tests start from (as `narbor serve`'s defaults).
pub(crate) fn config(upstream: &str) -> ServerConfig {
    ServerConfig {
        upstreams: vec![UpstreamBase::parse(upstream).unwrap()],
        credentials: Credentials::default(),
        priority: 30,
        narinfo_ttl: Duration::from_secs(7 * 86400),
        negative_ttl: Duration::from_secs(60),
        inactive: Duration::from_secs(30 * 86400),
        trusted_keys: Vec::new(),
        sign_key: None,
        upstream_options: UpstreamOptions {
            connect_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(10),
        },
        stats_public: false,
        oci: None,
        refresh_token: None,
    }
}

impl Harness {
    pub async fn start(config: ServerConfig, max_size: u64) -> Harness {
        let clock =
            ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open_with_clock(
            StoreConfig {
                dir: dir.path().join("cache"),
                max_size,
            },
            as_store_clock(Arc::clone(&clock) as Arc<dyn Clock>),
        )
        .unwrap();
        let server = Server::with_clock(
            config,
            Arc::new(store),
            Arc::clone(&clock) as Arc<dyn Clock>,
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::serve(
            Arc::clone(&server),
            vec![listener],
            std::future::pending(),
        ));
        Harness {
            addr,
            clock,
            server,
            dir,
            client: reqwest::Client::builder().build().unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(reqwest::Method::GET, path, &[]).await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .client
            .request(method, format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await;
        Reply {
            status,
            cache: headers
                .get("x-cache-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            headers,
            body: body.ok(),
        }
    }
}

/// A response as the test client saw it; `body` is `None` when the transfer
/// broke off.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub cache: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Option<Bytes>,
}

/// A NAR's bytes and its URL path (`nar/<nix32 sha256>.nar`).
pub(crate) fn nar(seed: u8, len: usize) -> (String, Bytes) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let path = format!("nar/{}.nar", Sha256::digest(&bytes).to_nix32());
    (path, Bytes::from(bytes))
}

/// A signed narinfo for store path `name` whose NAR is `nar` at `nar_path`:
/// its path (`<hash>.narinfo`) and text.
pub(crate) fn narinfo(name: &str, nar_path: &str, nar: &[u8]) -> (String, String) {
    let hash = StorePathHash(Sha256::digest(name.as_bytes()).0[..20].try_into().unwrap());
    let path = StorePath::new(hash, name).unwrap();
    let digest = Sha256::digest(nar);
    let mut info = NarInfo::new(path, nar_path.to_owned(), digest, nar.len() as u64);
    info.file_hash = Some(digest);
    info.file_size = Some(nar.len() as u64);
    info.sign(&SecretKey::from_seed("test-1", [1; 32]).unwrap());
    (format!("{hash}.narinfo"), info.to_string())
}
