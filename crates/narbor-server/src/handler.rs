//! Requests in, responses out: routing, and per kind of object its cache life
//! and fill. Every handler returns `Result<Response, Error>`; the edge turns
//! an [`Error`] into its one answer (`respond::error`) and counts the request.
//!
//! Paths are checked against the binary-cache URL grammar before anything else
//! happens: a malformed path is a 4xx at the edge, never a lookup, never a
//! proxied request.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use http::header;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use narbor_proto::CacheUrl;

use crate::app::Server;
use crate::cache::DocLife;
use crate::documents::DocOutcome;
use crate::error::Error;
use crate::fill::{self, FillState};
use crate::metrics::{CountedBody, Route};
use crate::pages;
use crate::range::{self, RangeDecision};
use crate::respond::{self, empty, object, object_headers, set, stream_body, Body};
use crate::source::Found;
use crate::status::CacheStatus;

type Answer = Result<Response<Body>, Error>;

/// Answers one request, and counts it: by route, status and cache status,
/// and the body bytes as they are handed to the connection.
pub async fn handle(
    server: Arc<Server>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let (route, answer) = route(&server, req, peer).await;
    let resp = answer.unwrap_or_else(|e| respond::error(&e));
    let resp = if head {
        let (parts, _) = resp.into_parts();
        Response::from_parts(parts, empty())
    } else {
        resp
    };
    let cache = respond::cache_status(&resp);
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

async fn route(server: &Arc<Server>, req: Request<Incoming>, peer: SocketAddr) -> (Route, Answer) {
    let head = req.method() == Method::HEAD;
    if req.uri().path() == "/_refresh" {
        return (Route::Page, pages::admin_refresh(server, &req, peer).await);
    }
    if req.method() != Method::GET && !head {
        return (
            Route::Other,
            Err(Error::MethodNotAllowed { allow: "GET, HEAD" }),
        );
    }
    let path = req.uri().path();
    tracing::debug!(%peer, method = %req.method(), path, "request");
    let range_header = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let range_header = range_header.as_deref();
    match path {
        "/" => (Route::Page, Ok(respond::html(crate::landing::page(server)))),
        "/health" => (
            Route::Page,
            Ok(respond::text(StatusCode::OK, "ok\n", CacheStatus::Local)),
        ),
        "/status" | "/status.json" | "/metrics" => (Route::Page, pages::stats(server, path, peer)),
        "/_status" => (Route::Page, pages::oci_status(server, peer)),
        "/public-key" => (Route::Page, pages::public_key(server)),
        "/nix-cache-info" => (Route::CacheInfo, Ok(pages::cache_info(server))),
        _ => {
            let parsed = CacheUrl::parse(path);
            let route = route_of(&parsed);
            let answer = match parsed {
                Ok(url) if url.is_nar() => nar(server, url, head, range_header).await,
                Ok(CacheUrl::CacheInfo) => Ok(pages::cache_info(server)),
                Ok(url) => document(server, &url, range_header).await,
                Err(e) => Err(malformed(path, &e.to_string())),
            };
            (route, answer)
        }
    }
}

/// A path outside the grammar: 400 when it looks like a cache path, 404
/// otherwise.
fn malformed(path: &str, reason: &str) -> Error {
    // Debuggers ask for build ids narbor cannot parse (upper case, other
    // lengths); no cache has them, and they read only a 404 as a miss.
    if path.starts_with("/debuginfo/") {
        return Error::NotFound(CacheStatus::Local);
    }
    let looks_like_cache_path = path.ends_with(".narinfo")
        || path.ends_with(".ls")
        || ["/nar/", "/log/", "/realisations/", "/build-trace-v2/"]
            .iter()
            .any(|p| path.starts_with(p));
    if looks_like_cache_path {
        Error::BadRequest(reason.to_owned())
    } else {
        Error::NotServed("not a binary cache path")
    }
}

/// A document: its cache life, then (unless it settled it) a fill.
async fn document(server: &Arc<Server>, url: &CacheUrl, range: Option<&str>) -> Answer {
    let key = url.to_path();
    let life = server.document_life(url, &key);
    let stored = match life {
        DocLife::Published(body) => return object(url, body, CacheStatus::Hit, range),
        DocLife::Fresh(doc) => return object(url, doc.body, CacheStatus::Hit, range),
        DocLife::Negative => return Err(Error::NotFound(CacheStatus::Negative)),
        DocLife::Expired(doc) => Some(doc),
        DocLife::Miss => None,
    };
    if !server.chain.may_have(url, &key) {
        return Err(Error::NotFound(CacheStatus::Miss));
    }
    let (outcome, joined) = server.fetch_document(url).await;
    let fetched_status = match (&stored, joined) {
        (Some(_), _) => CacheStatus::Expired,
        (None, true) => CacheStatus::Coalesced,
        (None, false) => CacheStatus::Miss,
    };
    match outcome {
        DocOutcome::Found(body) => object(url, body, fetched_status, range),
        DocOutcome::NotFound => {
            if stored.is_some() {
                let _ = server.store.remove(&key);
            }
            Err(Error::NotFound(CacheStatus::Miss))
        }
        DocOutcome::Rejected(reason) => Err(Error::Rejected(reason.to_string())),
        DocOutcome::Failed(reason) => match stored {
            Some(doc) => object(url, doc.body, CacheStatus::Stale, range),
            None => Err(Error::Upstream(reason.to_string())),
        },
    }
}

/// A NAR: from the store, else the fill of it (joined or led).
async fn nar(server: &Arc<Server>, mut url: CacheUrl, head: bool, range: Option<&str>) -> Answer {
    if let CacheUrl::NarOfStoreHash { .. } = url {
        // Such a name means something only to a source that published it
        // (nixcache-oci's index): served as the NAR it names, under its own
        // name.
        url = server
            .chain
            .rename(&url)
            .ok_or(Error::NotFound(CacheStatus::Miss))?;
    }
    let key = url.to_path();
    for _ in 0..2 {
        if let Some(resp) = stored_nar(server, &url, &key, range)? {
            return Ok(resp);
        }
        if server.is_negative(&key) {
            return Err(Error::NotFound(CacheStatus::Negative));
        }
        if !server.chain.may_have(&url, &key) {
            return Err(Error::NotFound(CacheStatus::Miss));
        }
        if head {
            let size = match server.chain.head_nar(&url, &key).await {
                Found::Yes { value, .. } => value,
                Found::No => return Err(Error::NotFound(CacheStatus::Miss)),
                Found::Failed(e) => return Err(Error::Upstream(e.to_string())),
            };
            let mut resp = Response::new(empty());
            set(&mut resp, header::CONTENT_TYPE, url.content_type());
            if let Some(len) = size {
                set(&mut resp, header::CONTENT_LENGTH, &len.to_string());
            }
            return Ok(respond::with_status(resp, CacheStatus::Miss));
        }
        // None: a fill just stored it; loop once to serve it from the store.
        if let Some((rx, joined)) = server.join_nar_fill(&url, &key) {
            return follow_fill(server, &url, &key, rx, joined).await;
        }
    }
    Err(Error::Internal(format!(
        "{key}: stored by a fill, then not in the store"
    )))
}

/// A stored NAR, or `None` when the store does not have it. A store that has
/// it and cannot open it is the store's failure (500), not the upstream's.
fn stored_nar(server: &Server, url: &CacheUrl, key: &str, range: Option<&str>) -> StoredNar {
    let (file, len) = match server.store.open_blob(key) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(e) => return Err(Error::Store(format!("{key}: {e}"))),
    };
    let file = Arc::new(file);
    let (status, start, end) = match range::decide(range, len) {
        RangeDecision::Full => (StatusCode::OK, 0, len),
        RangeDecision::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeDecision::Unsatisfiable => return Err(Error::RangeNotSatisfiable { len }),
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
    Ok(Some(resp))
}

/// A stored NAR's response, `None` when it is not stored.
type StoredNar = Result<Option<Response<Body>>, Error>;

async fn follow_fill(
    server: &Arc<Server>,
    url: &CacheUrl,
    key: &str,
    mut rx: tokio::sync::watch::Receiver<FillState>,
    joined: bool,
) -> Answer {
    let state = match rx.wait_for(FillState::is_settled_for_headers).await {
        Ok(s) => s.clone(),
        Err(_) => return Err(Error::Internal("the fill ended without a result".into())),
    };
    let status = if joined {
        CacheStatus::Coalesced
    } else {
        CacheStatus::Miss
    };
    let total = match state {
        FillState::NotFound => return Err(Error::NotFound(status)),
        FillState::Failed(e) => return Err(e.as_ref().clone()),
        FillState::Connecting => {
            return Err(Error::Internal("a fill settled while connecting".into()))
        }
        FillState::Bypass => return pass_through(server, url, key).await,
        FillState::Streaming { total, .. } => total,
        FillState::Done { size, .. } => Some(size),
    };
    let mut resp = Response::new(stream_body(fill::follow_body(rx)));
    if let Some(len) = total {
        set(&mut resp, header::CONTENT_LENGTH, &len.to_string());
    }
    object_headers(&mut resp, url, status);
    Ok(resp)
}

/// Serves a NAR straight from its source without storing it (the store
/// refuses writes), still checking its bytes: the last chunk is held back
/// until they checked out, so a corrupt transfer is cut, never completed.
async fn pass_through(server: &Arc<Server>, url: &CacheUrl, key: &str) -> Answer {
    let opened = match server.open_nar(url, key).await {
        Ok(Some(opened)) => opened,
        Ok(None) => return Err(Error::NotFound(CacheStatus::Miss)),
        Err(e) => return Err(e.edge()),
    };
    let total = match opened.content_encoding() {
        None => opened.resp.content_length(),
        Some(_) => opened.check.file_size(),
    };
    let upstream = opened.upstream;
    let body = fill::verified_body(opened, {
        let server = Arc::clone(server);
        move |n| {
            if let Some(i) = upstream {
                server.upstreams.add_fetched(i, n)
            }
        }
    })
    .map_err(|e| e.edge())?;
    // A task of its own pumps the checked bytes to the client; it ends (and
    // drops the upstream response) when the client goes away.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
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
    Ok(r)
}
