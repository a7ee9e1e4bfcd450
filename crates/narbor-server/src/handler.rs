//! Requests in, responses out: routing, the cache decisions per object kind,
//! and the mapping of every outcome to a status code.
//!
//! Paths are checked against the binary-cache URL grammar before anything else
//! happens: a malformed path is a 4xx at the edge, never a lookup, never a
//! proxied request.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use narbor_proto::{CacheInfo, CacheUrl};

use crate::access::{self, Endpoint};
use crate::app::{DocOutcome, Server};
use crate::dashboard::{self, Snapshot};
use crate::fill::{self, FillState};
use crate::metrics::{self, CountedBody, Route};
use crate::range::{self, RangeDecision};
use crate::status::CacheStatus;
use crate::upstream::Lookup;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// Answers one request, and counts it: by route, status and cache status,
/// and the body bytes as they are handed to the connection.
pub async fn handle(
    server: Arc<Server>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let (route, resp) = respond(&server, req, peer).await;
    let cache = resp
        .headers()
        .get(CacheStatus::HEADER)
        .and_then(|v| CacheStatus::from_header(v.as_bytes()))
        .unwrap_or(CacheStatus::Local);
    server
        .metrics
        .count_request(route, resp.status().as_u16(), cache);
    let (parts, body) = resp.into_parts();
    let body = CountedBody::new(body, Arc::clone(&server.metrics), route, cache);
    Response::from_parts(parts, BodyExt::boxed(body))
}

/// The route label of a request path.
fn route_of(parsed: &Result<CacheUrl, narbor_proto::url::UrlError>) -> Route {
    match parsed {
        Ok(CacheUrl::CacheInfo) => Route::CacheInfo,
        Ok(CacheUrl::NarInfo(_)) => Route::NarInfo,
        Ok(CacheUrl::Nar { .. } | CacheUrl::NarOfPath { .. } | CacheUrl::NarOfStoreHash { .. }) => {
            Route::Nar
        }
        Ok(CacheUrl::Listing(_)) => Route::Listing,
        Ok(CacheUrl::Log(_)) => Route::Log,
        Ok(CacheUrl::Realisation { .. }) => Route::Realisation,
        Ok(CacheUrl::BuildTrace { .. }) => Route::BuildTrace,
        Ok(CacheUrl::DebugInfo { .. }) => Route::DebugInfo,
        Err(_) => Route::Other,
    }
}

async fn respond(
    server: &Arc<Server>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> (Route, Response<Body>) {
    let head = req.method() == Method::HEAD;
    if req.uri().path() == "/_refresh" {
        return (Route::Page, admin_refresh(server, &req, peer).await);
    }
    if req.method() != Method::GET && !head {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD\n",
            CacheStatus::Local,
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return (Route::Other, resp);
    }
    let path = req.uri().path();
    tracing::debug!(%peer, method = %req.method(), path, "request");
    let range_header = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (route, resp) = match path {
        "/" => (Route::Page, html(crate::landing::page(server))),
        "/health" => (
            Route::Page,
            text(StatusCode::OK, "ok\n", CacheStatus::Local),
        ),
        "/status" | "/status.json" | "/metrics" => (Route::Page, stats(server, path, peer)),
        "/_status" => (Route::Page, oci_status(server, peer)),
        "/public-key" => (Route::Page, public_key(server)),
        "/nix-cache-info" => (Route::CacheInfo, cache_info(server)),
        _ => {
            let parsed = CacheUrl::parse(path);
            let route = route_of(&parsed);
            let resp = match parsed {
                Ok(url) if url.is_nar() => {
                    serve_nar(server, url, head, range_header.as_deref()).await
                }
                Ok(CacheUrl::CacheInfo) => cache_info(server),
                Ok(url) => serve_document(server, &url, range_header.as_deref()).await,
                Err(e) => malformed(path, &e.to_string()),
            };
            (route, resp)
        }
    };
    if head {
        let (parts, _) = resp.into_parts();
        return (route, Response::from_parts(parts, empty()));
    }
    (route, resp)
}

/// `GET /_status`: the `--oci` index, the store and the upstreams as JSON (no
/// secrets); read-only, so open like the other stats with `--stats-public`.
fn oci_status(server: &Server, peer: SocketAddr) -> Response<Body> {
    if let Err(reason) = access::check(peer.ip(), Endpoint::ReadOnly, server.config.stats_public) {
        return text(StatusCode::FORBIDDEN, reason, CacheStatus::Local);
    }
    let store = server.store.stats();
    let body = serde_json::json!({
        "oci": server.config.oci.as_ref().map(|o| o.status_json()),
        "store": { "objects": store.objects, "bytes": store.bytes, "max_size": store.max_size },
        "upstreams": server.upstreams.bases(),
        "fills_in_flight": server.fills_in_flight(),
    });
    let mut resp = full(
        StatusCode::OK,
        Bytes::from(body.to_string()),
        CacheStatus::Local,
    );
    set(&mut resp, header::CONTENT_TYPE, "application/json");
    resp
}

/// `POST /_refresh`: refresh the `--oci` index now. Loopback clients, or any
/// client with the configured bearer token.
async fn admin_refresh(
    server: &Server,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    if req.method() != Method::POST {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST only\n",
            CacheStatus::Local,
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token_ok =
        matches!((&server.config.refresh_token, bearer), (Some(t), Some(b)) if t.matches(b));
    if !token_ok {
        if let Err(reason) = access::check(peer.ip(), Endpoint::Admin, server.config.stats_public) {
            return text(StatusCode::FORBIDDEN, reason, CacheStatus::Local);
        }
    }
    let Some(oci) = &server.config.oci else {
        return text(
            StatusCode::NOT_FOUND,
            "no --oci store to refresh\n",
            CacheStatus::Local,
        );
    };
    let (code, rec) = match oci
        .request_refresh(std::time::Duration::from_secs(60))
        .await
    {
        Ok(rec) => (StatusCode::OK, rec),
        Err(rec) => (StatusCode::BAD_GATEWAY, rec),
    };
    let body = serde_json::json!({
        "ok": code == StatusCode::OK,
        "entries": oci.index().len(),
        "untrusted_entries": rec.untrusted,
        "fragments_fetched": rec.fetched_fragments,
        "changed": rec.changed,
        "error": rec.error,
    });
    let mut resp = full(code, Bytes::from(body.to_string()), CacheStatus::Local);
    set(&mut resp, header::CONTENT_TYPE, "application/json");
    resp
}

/// `GET /public-key`: the keys that sign what this cache serves: narbor's own
/// signing key, else the trusted keys; one per line.
fn public_key(server: &Server) -> Response<Body> {
    let keys: Vec<String> = match &server.config.sign_key {
        Some(k) => vec![k.public_key().to_string()],
        None => server
            .config
            .trusted_keys
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    if keys.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            "no key configured (sign-key-file or trusted-keys)\n",
            CacheStatus::Local,
        );
    }
    text(
        StatusCode::OK,
        &format!("{}\n", keys.join("\n")),
        CacheStatus::Local,
    )
}

/// `/status`, `/status.json`, `/metrics`: loopback clients only, unless
/// `--stats-public`.
fn stats(server: &Server, path: &str, peer: SocketAddr) -> Response<Body> {
    if let Err(reason) = access::check(peer.ip(), Endpoint::ReadOnly, server.config.stats_public) {
        return text(StatusCode::FORBIDDEN, reason, CacheStatus::Local);
    }
    let (body, content_type) = match path {
        "/metrics" => {
            let live = metrics::Live {
                store: server.store.stats(),
                nar_fills: server.nar_fills.len(),
                document_fills: server.doc_fills.len(),
            };
            (
                metrics::render(&server.metrics, &live),
                metrics::CONTENT_TYPE,
            )
        }
        "/status.json" => (Snapshot::take(server).to_json(), "application/json"),
        _ => (
            dashboard::page(&Snapshot::take(server)),
            "text/html; charset=utf-8",
        ),
    };
    let mut resp = full(StatusCode::OK, Bytes::from(body), CacheStatus::Local);
    set(&mut resp, header::CONTENT_TYPE, content_type);
    set(&mut resp, header::CACHE_CONTROL, "no-store");
    resp
}

fn malformed(path: &str, reason: &str) -> Response<Body> {
    // Debuggers ask for build ids narbor cannot parse (upper case, other
    // lengths); no cache has them, and they read only a 404 as a miss.
    if path.starts_with("/debuginfo/") {
        return not_found(CacheStatus::Local);
    }
    let looks_like_cache_path = path.ends_with(".narinfo")
        || path.ends_with(".ls")
        || ["/nar/", "/log/", "/realisations/", "/build-trace-v2/"]
            .iter()
            .any(|p| path.starts_with(p));
    if looks_like_cache_path {
        text(
            StatusCode::BAD_REQUEST,
            &format!("bad request: {reason}\n"),
            CacheStatus::Local,
        )
    } else {
        text(
            StatusCode::NOT_FOUND,
            "not found: not a binary cache path\n",
            CacheStatus::Local,
        )
    }
}

fn cache_info(server: &Server) -> Response<Body> {
    let info = CacheInfo {
        store_dir: narbor_proto::STORE_DIR.to_owned(),
        want_mass_query: true,
        priority: Some(server.config.priority),
        unknown: Vec::new(),
    };
    let mut resp = full(
        StatusCode::OK,
        Bytes::from(info.to_string()),
        CacheStatus::Local,
    );
    set(&mut resp, header::CONTENT_TYPE, "text/x-nix-cache-info");
    resp
}

async fn serve_document(
    server: &Arc<Server>,
    url: &CacheUrl,
    range_header: Option<&str>,
) -> Response<Body> {
    if let CacheUrl::NarInfo(hash) = url {
        // The --oci index is the source of truth for what was published.
        if let Some(text) = server.narinfo_from_index(hash) {
            return object(url, text, CacheStatus::Hit, range_header);
        }
    }
    let key = url.to_path();
    let stored = match server.store.get_document(&key) {
        Ok(doc) => doc,
        Err(e) => {
            tracing::error!(%key, "store read failed: {e}");
            None
        }
    };
    // A fresh copy is served as it is (shared, not copied); a stale one is kept
    // to fall back on if every upstream fails.
    let stored = match stored {
        Some(doc) if server.is_fresh(doc.stored_at) => {
            return object(url, doc.body, CacheStatus::Hit, range_header);
        }
        other => other,
    };
    if server.is_negative(&key) {
        return not_found(CacheStatus::Negative);
    }
    if server.upstreams.is_empty() {
        return not_found(CacheStatus::Miss);
    }
    let (outcome, joined) = server.fetch_document(url).await;
    let fetched_status = match (&stored, joined) {
        (Some(_), _) => CacheStatus::Expired,
        (None, true) => CacheStatus::Coalesced,
        (None, false) => CacheStatus::Miss,
    };
    match outcome {
        DocOutcome::Found(body) => object(url, body, fetched_status, range_header),
        DocOutcome::NotFound => {
            if stored.is_some() {
                let _ = server.store.remove(&key);
            }
            not_found(CacheStatus::Miss)
        }
        DocOutcome::Rejected(reason) => text(
            StatusCode::NOT_FOUND,
            &format!("not found: the upstream's copy was rejected: {reason}\n"),
            CacheStatus::Miss,
        ),
        DocOutcome::Failed(reason) => match stored {
            Some(doc) => object(url, doc.body, CacheStatus::Stale, range_header),
            None => upstream_failed(&reason),
        },
    }
}

async fn serve_nar(
    server: &Arc<Server>,
    mut url: CacheUrl,
    head: bool,
    range_header: Option<&str>,
) -> Response<Body> {
    let mut key = url.to_path();
    if let CacheUrl::NarOfStoreHash { compression, .. } = url {
        // Such a name means something only to an index that published it
        // (nixcache-oci's): served as its blob, under the blob's own name.
        let Some(blob) = server.index_blob(&key) else {
            return not_found(CacheStatus::Miss);
        };
        url = CacheUrl::Nar {
            file_hash: blob.digest.0,
            compression,
        };
        key = url.to_path();
    }
    for _ in 0..2 {
        if let Some(resp) = stored_nar(server, &url, &key, range_header) {
            return resp;
        }
        if server.is_negative(&key) {
            return not_found(CacheStatus::Negative);
        }
        if server.upstreams.is_empty() && server.nar_in_index(&key).is_none() {
            return not_found(CacheStatus::Miss);
        }
        if head {
            let size = match server.nar_in_index(&key) {
                Some(size) => size,
                None => match server.head_nar(&url, &key).await {
                    Lookup::Found { value, .. } => value,
                    Lookup::NotFound => return not_found(CacheStatus::Miss),
                    Lookup::Failed(e) => return upstream_failed(&e.to_string()),
                },
            };
            let mut resp = Response::new(empty());
            set(&mut resp, header::CONTENT_TYPE, url.content_type());
            if let Some(len) = size {
                set(&mut resp, header::CONTENT_LENGTH, &len.to_string());
            }
            set(&mut resp, CacheStatus::HEADER, CacheStatus::Miss.as_str());
            return resp;
        }
        // None: a fill just stored it; loop once to serve it from the store.
        if let Some((rx, joined)) = server.join_nar_fill(&url, &key) {
            return follow_fill(server, &url, &key, rx, joined).await;
        }
    }
    upstream_failed("the object vanished while it was being stored")
}

/// Serves a NAR straight from upstream without storing it (the store refuses
/// writes), still checking its bytes: the last chunk is held back until they
/// checked out, so a corrupt transfer is cut, never completed.
async fn pass_through(server: &Arc<Server>, url: &CacheUrl, key: &str) -> Response<Body> {
    let opened = match server.open_nar(url, key).await {
        Ok(Some(opened)) => opened,
        Ok(None) => return not_found(CacheStatus::Miss),
        Err(e) => return upstream_failed(&e.message),
    };
    let total = match opened.content_encoding() {
        None => opened.resp.content_length(),
        Some(_) => opened.check.file_size(),
    };
    let upstream = opened.upstream;
    let body = match fill::verified_body(opened, {
        let server = Arc::clone(server);
        move |n| {
            if let Some(i) = upstream {
                server.upstreams.add_fetched(i, n)
            }
        }
    }) {
        Ok(body) => body,
        Err(e) => return upstream_failed(&e.message),
    };
    // A task of its own pumps the checked bytes to the client; it ends (and
    // drops the upstream response) when the client goes away.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::spawn(async move {
        futures_util::pin_mut!(body);
        while let Some(item) = body.next().await {
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Response::new(stream_body(body));
    if let Some(len) = total {
        set(&mut r, header::CONTENT_LENGTH, &len.to_string());
    }
    object_headers(&mut r, url, CacheStatus::Bypass);
    r
}

fn stored_nar(
    server: &Server,
    url: &CacheUrl,
    key: &str,
    range_header: Option<&str>,
) -> Option<Response<Body>> {
    let (file, len) = match server.store.open_blob(key) {
        Ok(found) => found?,
        Err(e) => {
            tracing::error!(%key, "store read failed: {e}");
            return None;
        }
    };
    let file = Arc::new(file);
    let (status, start, end) = match range::decide(range_header, len) {
        RangeDecision::Full => (StatusCode::OK, 0, len),
        RangeDecision::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeDecision::Unsatisfiable => return Some(unsatisfiable(len)),
    };
    let mut resp = Response::new(stream_body(fill::file_body(file, start, end)));
    *resp.status_mut() = status;
    set(
        &mut resp,
        header::CONTENT_LENGTH,
        &(end - start).to_string(),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut resp,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{len}", end - 1),
        );
    }
    object_headers(&mut resp, url, CacheStatus::Hit);
    Some(resp)
}

async fn follow_fill(
    server: &Arc<Server>,
    url: &CacheUrl,
    key: &str,
    mut rx: tokio::sync::watch::Receiver<FillState>,
    joined: bool,
) -> Response<Body> {
    let state = match rx.wait_for(FillState::is_settled_for_headers).await {
        Ok(s) => s.clone(),
        Err(_) => return upstream_failed("the fill ended without a result"),
    };
    let status = if joined {
        CacheStatus::Coalesced
    } else {
        CacheStatus::Miss
    };
    let total = match state {
        FillState::NotFound => return not_found(status),
        FillState::Failed(reason) => return upstream_failed(&reason),
        FillState::Connecting => unreachable!("waited until settled"),
        FillState::Bypass => return pass_through(server, url, key).await,
        FillState::Streaming { total, .. } => total,
        FillState::Done { size, .. } => Some(size),
    };
    let mut resp = Response::new(stream_body(fill::follow_body(rx)));
    if let Some(len) = total {
        set(&mut resp, header::CONTENT_LENGTH, &len.to_string());
    }
    object_headers(&mut resp, url, status);
    resp
}

fn stream_body(
    stream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
) -> Body {
    BodyExt::boxed(StreamBody::new(stream.map(|r| r.map(Frame::data))))
}

/// A whole in-memory object (a document), honouring Range.
fn object(
    url: &CacheUrl,
    body: Bytes,
    status: CacheStatus,
    range_header: Option<&str>,
) -> Response<Body> {
    let len = body.len() as u64;
    let mut resp = match range::decide(range_header, len) {
        RangeDecision::Full => full(StatusCode::OK, body, status),
        RangeDecision::Partial { start, end } => {
            let mut r = full(
                StatusCode::PARTIAL_CONTENT,
                body.slice(start as usize..end as usize),
                status,
            );
            set(
                &mut r,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{}/{len}", end - 1),
            );
            r
        }
        RangeDecision::Unsatisfiable => return unsatisfiable(len),
    };
    object_headers(&mut resp, url, status);
    resp
}

fn object_headers(resp: &mut Response<Body>, url: &CacheUrl, status: CacheStatus) {
    set_static(resp, header::CONTENT_TYPE, url.content_type());
    set_static(resp, header::ACCEPT_RANGES, "bytes");
    set_static(resp, CacheStatus::HEADER, status.as_str());
    let cache_control = match url {
        // A NAR's URL names its content: it never changes.
        CacheUrl::Nar { .. } | CacheUrl::NarOfPath { .. } => "public, max-age=31536000, immutable",
        _ => "public, max-age=3600",
    };
    set_static(resp, header::CACHE_CONTROL, cache_control);
}

fn unsatisfiable(len: u64) -> Response<Body> {
    let mut resp = text(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range not satisfiable\n",
        CacheStatus::Hit,
    );
    set(&mut resp, header::CONTENT_RANGE, &format!("bytes */{len}"));
    resp
}

fn not_found(status: CacheStatus) -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found\n", status)
}

fn upstream_failed(reason: &str) -> Response<Body> {
    tracing::warn!("answering 502: {reason}");
    text(
        StatusCode::BAD_GATEWAY,
        "upstream failed\n",
        CacheStatus::Error,
    )
}

fn html(page: String) -> Response<Body> {
    let mut resp = full(StatusCode::OK, Bytes::from(page), CacheStatus::Local);
    set(&mut resp, header::CONTENT_TYPE, "text/html; charset=utf-8");
    resp
}

fn text(code: StatusCode, body: &str, status: CacheStatus) -> Response<Body> {
    let mut resp = full(code, Bytes::from(body.to_owned()), status);
    set(&mut resp, header::CONTENT_TYPE, "text/plain; charset=utf-8");
    resp
}

fn full(code: StatusCode, body: Bytes, status: CacheStatus) -> Response<Body> {
    let len = body.len();
    let mut resp = Response::new(BodyExt::boxed(
        Full::new(body).map_err(|never| match never {}),
    ));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    set_static(&mut resp, CacheStatus::HEADER, status.as_str());
    resp
}

fn empty() -> Body {
    BodyExt::boxed(http_body_util::Empty::new().map_err(|never| match never {}))
}

fn set<K: header::IntoHeaderName>(resp: &mut Response<Body>, name: K, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// [`set`] for a value known at compile time: no validation, no copy.
fn set_static(resp: &mut Response<Body>, name: header::HeaderName, value: &'static str) {
    resp.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}
