//! The upstream caches: one keep-alive connection pool, tried in the order given.
//!
//! Certificates are verified (rustls, with the system's and the Mozilla roots);
//! nothing about the client is forwarded (no `X-Forwarded-For`, no client
//! headers at all); connects and stalls time out. A 404 from one upstream means
//! "ask the next"; a 404 from all of them means 404.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use thiserror::Error;

use crate::metrics::{Metrics, UpstreamErrorKind, UpstreamResult};

/// Why an upstream did not give us an object.
#[derive(Debug, Clone, Error)]
pub enum UpstreamError {
    #[error("upstream {upstream} answered {status}")]
    Status { upstream: String, status: u16 },
    #[error("upstream {upstream}: {reason}")]
    Transport { upstream: String, reason: String },
    /// The body broke off, or was shorter than its `Content-Length`.
    #[error("upstream {upstream}: {reason}")]
    Truncated { upstream: String, reason: String },
    #[error("upstream {upstream}: response larger than {limit} bytes")]
    TooLarge { upstream: String, limit: u64 },
    #[error("upstream {upstream} sent an invalid {what}: {reason}")]
    Invalid {
        upstream: String,
        what: &'static str,
        reason: String,
    },
}

impl UpstreamError {
    /// The metrics label for this error.
    pub fn kind(&self) -> UpstreamErrorKind {
        match self {
            UpstreamError::Status { .. } => UpstreamErrorKind::Status,
            UpstreamError::Transport { .. } => UpstreamErrorKind::Transport,
            UpstreamError::Truncated { .. } => UpstreamErrorKind::Truncated,
            UpstreamError::TooLarge { .. } => UpstreamErrorKind::TooLarge,
            UpstreamError::Invalid { .. } => UpstreamErrorKind::Rejected,
        }
    }
}

/// The outcome of asking every upstream in turn.
#[derive(Debug)]
pub enum Lookup<T> {
    Found {
        upstream: usize,
        value: T,
    },
    /// Every upstream answered 404 (or there are none).
    NotFound,
    /// At least one upstream failed, and none had the object.
    Failed(UpstreamError),
}

/// Timeouts and identity for upstream requests.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    pub connect_timeout: Duration,
    /// How long a response may send nothing before the transfer fails.
    pub stall_timeout: Duration,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// The configured upstream caches and a shared connection pool.
#[derive(Clone)]
pub struct Upstreams {
    bases: Vec<String>,
    client: reqwest::Client,
    /// Where answers, errors, latency and bytes are counted (`upstreams[i]`
    /// is `bases[i]`'s).
    metrics: Arc<Metrics>,
}

impl Upstreams {
    pub fn new(
        bases: &[String],
        options: &UpstreamOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("narbor/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.stall_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| UpstreamError::Transport {
                upstream: "(client)".into(),
                reason: e.to_string(),
            })?;
        Ok(Upstreams {
            bases: bases
                .iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            client,
            metrics,
        })
    }

    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    fn url(&self, index: usize, path: &str) -> String {
        format!("{}/{}", self.bases[index], path)
    }

    /// GETs a small document, reading at most `limit` bytes.
    pub async fn get_document(&self, path: &str, limit: u64) -> Lookup<Bytes> {
        self.first_found(
            path,
            reqwest::Method::GET,
            |index, upstream, resp| async move {
                read_limited(upstream, resp, limit, |n| {
                    self.metrics.add_fetched(index, n)
                })
                .await
            },
        )
        .await
    }

    /// Counts `n` body bytes received from upstream `index`.
    pub fn add_fetched(&self, index: usize, n: u64) {
        self.metrics.add_fetched(index, n);
    }

    /// Counts a failure of upstream `index` found after its answer was taken
    /// (a NAR body that broke off or failed verification, a rejected document).
    pub fn record_late_error(&self, index: usize, kind: UpstreamErrorKind, message: &str) {
        if let Some(u) = self.metrics.upstreams.get(index) {
            u.record_late_error(kind, message);
        }
    }

    /// GETs an object to stream: the response of the first upstream that has it.
    pub async fn get_stream(&self, path: &str) -> Lookup<reqwest::Response> {
        self.first_found(
            path,
            reqwest::Method::GET,
            |_, _, resp| async move { Ok(resp) },
        )
        .await
    }

    /// HEADs an object: its length, if the upstream says.
    pub async fn head(&self, path: &str) -> Lookup<Option<u64>> {
        self.first_found(path, reqwest::Method::HEAD, |_, _, resp| async move {
            // Not `content_length()`: for HEAD that is the (empty) body's size.
            Ok(resp
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()))
        })
        .await
    }

    async fn first_found<T, F, Fut>(
        &self,
        path: &str,
        method: reqwest::Method,
        take: F,
    ) -> Lookup<T>
    where
        F: Fn(usize, String, reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        let mut failure = None;
        for index in 0..self.bases.len() {
            let upstream = self.bases[index].clone();
            let stats = &self.metrics.upstreams[index];
            let sent = Instant::now();
            let result = self
                .client
                .request(method.clone(), self.url(index, path))
                .send()
                .await;
            if result.is_ok() {
                stats.observe_latency(sent.elapsed());
            }
            match result {
                Ok(resp)
                    if resp.status() == reqwest::StatusCode::NOT_FOUND
                        || resp.status() == reqwest::StatusCode::FORBIDDEN =>
                {
                    // S3-backed caches answer 403 for objects that do not exist.
                    stats.record(UpstreamResult::NotFound, None);
                    continue;
                }
                Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
                    match take(index, upstream, resp).await {
                        Ok(value) => {
                            stats.record(UpstreamResult::Found, None);
                            return Lookup::Found {
                                upstream: index,
                                value,
                            };
                        }
                        Err(e) => failure = Some(e),
                    }
                }
                Ok(resp) => {
                    failure = Some(UpstreamError::Status {
                        upstream,
                        status: resp.status().as_u16(),
                    })
                }
                Err(e) => failure = Some(transport(upstream, &e)),
            }
            if let Some(e) = &failure {
                stats.record(UpstreamResult::Error(e.kind()), Some(&e.to_string()));
                tracing::warn!("{e}; trying the next upstream");
            }
        }
        match failure {
            Some(e) => Lookup::Failed(e),
            None => Lookup::NotFound,
        }
    }
}

/// A transport error without the URL's query or credentials.
pub fn transport(upstream: String, e: &reqwest::Error) -> UpstreamError {
    let reason = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        return UpstreamError::Truncated {
            upstream,
            reason: "the response body broke off".to_owned(),
        };
    } else {
        // Not the error's own Display: it carries the URL, which may hold credentials.
        std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "the request failed".to_owned())
    };
    UpstreamError::Transport { upstream, reason }
}

async fn read_limited(
    upstream: String,
    resp: reqwest::Response,
    limit: u64,
    count: impl Fn(u64),
) -> Result<Bytes, UpstreamError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(UpstreamError::TooLarge { upstream, limit });
    }
    let expected = resp.content_length();
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport(upstream.clone(), &e))?;
        count(chunk.len() as u64);
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(UpstreamError::TooLarge { upstream, limit });
        }
        body.extend_from_slice(&chunk);
    }
    if let Some(n) = expected {
        if n != body.len() as u64 {
            return Err(UpstreamError::Truncated {
                upstream,
                reason: format!("promised {n} bytes, sent {}", body.len()),
            });
        }
    }
    Ok(Bytes::from(body))
}
