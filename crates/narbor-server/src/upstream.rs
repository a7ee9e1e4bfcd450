//! The upstream caches: one keep-alive connection pool, tried in the order given.
//!
//! Certificates are verified (rustls, with the system's and the Mozilla roots);
//! nothing about the client is forwarded (no `X-Forwarded-For`, no client
//! headers at all); connects and stalls time out. A 404 from one upstream means
//! "ask the next"; a 404 from all of them means 404.
//!
//! Credentials ([`crate::credentials`]) are added per request: a base URL's
//! own `user:password@` only to requests to that base's origin, else the
//! bearer token or netrc entry of the request's host. Redirects to another
//! host drop them (reqwest removes `Authorization` across hosts), and no
//! `Referer` is sent. The base URLs kept here have no credentials in them, so
//! whatever prints one (pages, metrics, logs, errors) prints none.
//!
//! Documents are decoded when the upstream sent them with a
//! `Content-Encoding` (niks3's narinfos come zstd-encoded from S3 whatever
//! the client asks for); NARs are asked for with `Accept-Encoding: identity`,
//! so that the bytes are the file its FileHash names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use narbor_proto::http_status::Presence;
use thiserror::Error;

use crate::credentials::{Credential, Credentials};
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

/// An upstream as configured: its base URL without credentials, and the
/// credentials its URL carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBase {
    /// `scheme://host[:port][/path]`, no trailing slash, no credentials.
    pub url: String,
    /// From the URL's `user:password@`, for requests to this URL's origin.
    pub credential: Option<Credential>,
}

impl UpstreamBase {
    /// Splits `user:password@` (percent-decoded) out of an http(s) URL.
    pub fn parse(url: &str) -> Result<UpstreamBase, String> {
        let mut parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err("not an http:// or https:// URL".to_owned());
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err("a base URL takes no query or fragment".to_owned());
        }
        let user = percent_decode(parsed.username());
        let password = parsed.password().map(percent_decode);
        let credential = match (user.is_empty(), password) {
            (true, None) => None,
            (_, password) => Some(Credential::Basic {
                user,
                password: password.unwrap_or_default(),
            }),
        };
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        Ok(UpstreamBase {
            url: parsed.as_str().trim_end_matches('/').to_owned(),
            credential,
        })
    }
}

/// `%XX` decoding of a URL's user or password (invalid escapes kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The scheme, host and port of an absolute URL, lower-cased.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    Some((
        u.scheme().to_owned(),
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default()?,
    ))
}

/// A URL for logs and errors: no credentials, no query string (it may hold a
/// presigned signature).
pub fn shown_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    crate::metrics::redact_url(no_query)
}

/// What a request fetches, for the headers it sends.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// A small document: any `Content-Encoding` is decoded.
    Document,
    /// A NAR: asked for as stored.
    Nar,
}

/// The configured upstream caches and a shared connection pool.
#[derive(Clone)]
pub struct Upstreams {
    bases: Vec<String>,
    /// `own[i]`: the credential of `bases[i]`'s URL.
    own: Vec<Option<Credential>>,
    origins: Vec<Option<(String, String, u16)>>,
    credentials: Credentials,
    client: reqwest::Client,
    /// Where answers, errors, latency and bytes are counted (`upstreams[i]`
    /// is `bases[i]`'s).
    metrics: Arc<Metrics>,
}

impl Upstreams {
    pub fn new(
        bases: &[UpstreamBase],
        credentials: Credentials,
        options: &UpstreamOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("narbor/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.stall_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            // Nix follows up to 10 (filetransfer.cc, CURLOPT_MAXREDIRS).
            .redirect(reqwest::redirect::Policy::limited(10))
            .referer(false)
            .build()
            .map_err(|e| UpstreamError::Transport {
                upstream: "(client)".into(),
                reason: e.to_string(),
            })?;
        let bases_clean: Vec<String> = bases
            .iter()
            .map(|b| b.url.trim_end_matches('/').to_owned())
            .collect();
        Ok(Upstreams {
            origins: bases_clean.iter().map(|b| origin(b)).collect(),
            own: bases.iter().map(|b| b.credential.clone()).collect(),
            bases: bases_clean,
            credentials,
            client,
            metrics,
        })
    }

    /// A request to `url` on behalf of upstream `index`, with the credential
    /// that URL gets (see the module doc).
    fn request(&self, index: usize, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, url);
        let target = origin(url);
        let credential = match (&self.own[index], &target) {
            (Some(own), Some(t)) if self.origins[index].as_ref() == Some(t) => Some(own.clone()),
            (_, Some((_, host, _))) => self.credentials.for_host(host),
            (_, None) => None,
        };
        if let Some(value) = credential.and_then(|c| c.header_value()) {
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        req
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

    /// GETs a small document, reading at most `limit` bytes (before and
    /// after undoing a `Content-Encoding`).
    pub async fn get_document(&self, path: &str, limit: u64) -> Lookup<Bytes> {
        self.first_found(
            path,
            reqwest::Method::GET,
            Body::Document,
            |index, upstream, resp| async move {
                self.read_document(index, upstream, resp, limit).await
            },
        )
        .await
    }

    /// GETs a small document from upstream `index` only.
    pub async fn get_document_from(&self, index: usize, path: &str, limit: u64) -> Lookup<Bytes> {
        self.ask_one(
            index,
            path,
            reqwest::Method::GET,
            Body::Document,
            |index, upstream, resp| async move {
                self.read_document(index, upstream, resp, limit).await
            },
        )
        .await
    }

    async fn read_document(
        &self,
        index: usize,
        upstream: String,
        resp: reqwest::Response,
        limit: u64,
    ) -> Result<Bytes, UpstreamError> {
        let encoding = resp
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(upstream.clone(), resp, limit, |n| {
            self.metrics.add_fetched(index, n)
        })
        .await?;
        match encoding {
            Some(e) if !matches!(e.trim(), "" | "identity") => {
                crate::decode::decode_body(&e, &body, limit as usize)
                    .map(Bytes::from)
                    .map_err(|reason| UpstreamError::Invalid {
                        upstream,
                        what: "response body",
                        reason,
                    })
            }
            _ => Ok(body),
        }
    }

    /// GETs a NAR from upstream `index` at the absolute `url` (its narinfo's
    /// `URL` resolved), asking for the bytes as stored.
    pub async fn get_nar(&self, index: usize, url: &str) -> Lookup<reqwest::Response> {
        self.fetch_url(
            index,
            url,
            reqwest::Method::GET,
            Body::Nar,
            |_, _, resp| async move { Ok(resp) },
        )
        .await
    }

    /// HEADs the absolute `url` on behalf of upstream `index`.
    pub async fn head_url(&self, index: usize, url: &str) -> Lookup<Option<u64>> {
        self.fetch_url(
            index,
            url,
            reqwest::Method::HEAD,
            Body::Nar,
            |_, _, resp| async move { Ok(head_length(&resp)) },
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
            Body::Nar,
            |_, _, resp| async move { Ok(resp) },
        )
        .await
    }

    /// HEADs an object: its length, if the upstream says.
    pub async fn head(&self, path: &str) -> Lookup<Option<u64>> {
        self.first_found(
            path,
            reqwest::Method::HEAD,
            Body::Nar,
            |_, _, resp| async move { Ok(head_length(&resp)) },
        )
        .await
    }

    /// Asks upstream `index` alone for `path` (relative to its base).
    async fn ask_one<T, F, Fut>(
        &self,
        index: usize,
        path: &str,
        method: reqwest::Method,
        kind: Body,
        take: F,
    ) -> Lookup<T>
    where
        F: Fn(usize, String, reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        let url = self.url(index, path);
        self.fetch_url(index, &url, method, kind, take).await
    }

    async fn first_found<T, F, Fut>(
        &self,
        path: &str,
        method: reqwest::Method,
        kind: Body,
        take: F,
    ) -> Lookup<T>
    where
        F: Fn(usize, String, reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        let mut failure = None;
        for index in 0..self.bases.len() {
            let url = self.url(index, path);
            match self
                .fetch_url(index, &url, method.clone(), kind, &take)
                .await
            {
                Lookup::Found { upstream, value } => {
                    return Lookup::Found { upstream, value };
                }
                Lookup::NotFound => {}
                Lookup::Failed(e) => {
                    tracing::warn!("{e}; trying the next upstream");
                    failure = Some(e);
                }
            }
        }
        match failure {
            Some(e) => Lookup::Failed(e),
            None => Lookup::NotFound,
        }
    }

    /// One request to `url` on behalf of upstream `index`, counted in its
    /// metrics: 200 is taken by `take`, what Nix reads as absent (404, 410,
    /// and 403, which S3 answers for objects that do not exist; see
    /// [`Presence::of_status`]) is not found, anything else failed.
    async fn fetch_url<T, F, Fut>(
        &self,
        index: usize,
        url: &str,
        method: reqwest::Method,
        take_kind: Body,
        take: F,
    ) -> Lookup<T>
    where
        F: Fn(usize, String, reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        let upstream = self.bases[index].clone();
        let stats = &self.metrics.upstreams[index];
        let sent = Instant::now();
        let mut req = self.request(index, method.clone(), url);
        if method == reqwest::Method::GET && !matches!(take_kind, Body::Document) {
            // The bytes as stored: what a FileHash names.
            req = req.header(reqwest::header::ACCEPT_ENCODING, "identity");
        }
        let result = req.send().await;
        if result.is_ok() {
            stats.observe_latency(sent.elapsed());
        }
        let failure = match result {
            Ok(resp) => match Presence::of_status(resp.status().as_u16()) {
                Presence::Absent => {
                    stats.record(UpstreamResult::NotFound, None);
                    return Lookup::NotFound;
                }
                Presence::Present => match take(index, upstream, resp).await {
                    Ok(value) => {
                        stats.record(UpstreamResult::Found, None);
                        return Lookup::Found {
                            upstream: index,
                            value,
                        };
                    }
                    Err(e) => e,
                },
                Presence::Failed => UpstreamError::Status {
                    upstream,
                    status: resp.status().as_u16(),
                },
            },
            Err(e) => transport(upstream, &e),
        };
        stats.record(
            UpstreamResult::Error(failure.kind()),
            Some(&failure.to_string()),
        );
        Lookup::Failed(failure)
    }
}

/// The `Content-Length` a HEAD answer announces (not `content_length()`:
/// for HEAD that is the empty body's).
fn head_length(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
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
