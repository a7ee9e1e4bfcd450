//! Building responses: objects (whole or in a range), the headers every
//! object carries, text pages, and the answer to an [`Error`].
//!
//! Every response records how it was produced: its [`CacheStatus`] goes in
//! the `X-Cache-Status` header for clients and in the response's extensions
//! for the metrics, which read it there (never parsed back from the header).

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use narbor_proto::CacheUrl;

use crate::error::Error;
use crate::range::{self, RangeDecision};
use crate::status::CacheStatus;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// The cache status a response was produced with.
pub fn cache_status(resp: &Response<Body>) -> CacheStatus {
    resp.extensions()
        .get::<CacheStatus>()
        .copied()
        .unwrap_or(CacheStatus::Local)
}

/// Marks `resp` as produced with `status`.
pub fn with_status(mut resp: Response<Body>, status: CacheStatus) -> Response<Body> {
    set_static(&mut resp, CacheStatus::HEADER, status.as_str());
    resp.extensions_mut().insert(status);
    resp
}

/// The answer to `e` (logged when it is narbor's or an upstream's failure).
pub fn error(e: &Error) -> Response<Body> {
    e.log();
    let mut resp = text(e.status(), &e.body(), e.cache_status());
    match e {
        Error::MethodNotAllowed { allow } => set_static(&mut resp, header::ALLOW, allow),
        Error::RangeNotSatisfiable { len } => {
            set(&mut resp, header::CONTENT_RANGE, &format!("bytes */{len}"))
        }
        _ => {}
    }
    resp
}

/// A whole in-memory object (a document), honouring Range.
pub fn object(
    url: &CacheUrl,
    body: Bytes,
    status: CacheStatus,
    range_header: Option<&str>,
) -> Result<Response<Body>, Error> {
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
        RangeDecision::Unsatisfiable => return Err(Error::RangeNotSatisfiable { len }),
    };
    object_headers(&mut resp, url, status);
    Ok(resp)
}

/// The headers of every object: type, ranges, cache status, how long it may
/// be kept.
pub fn object_headers(resp: &mut Response<Body>, url: &CacheUrl, status: CacheStatus) {
    set_static(resp, header::CONTENT_TYPE, url.content_type());
    set_static(resp, header::ACCEPT_RANGES, "bytes");
    let cache_control = match url {
        // A NAR's URL names its content: it never changes.
        CacheUrl::Nar { .. } | CacheUrl::NarOfPath { .. } => "public, max-age=31536000, immutable",
        _ => "public, max-age=3600",
    };
    set_static(resp, header::CACHE_CONTROL, cache_control);
    resp.extensions_mut().insert(status);
    set_static(resp, CacheStatus::HEADER, status.as_str());
}

/// A streamed body.
pub fn stream_body(
    stream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
) -> Body {
    BodyExt::boxed(StreamBody::new(stream.map(|r| r.map(Frame::data))))
}

pub fn html(page: String) -> Response<Body> {
    let mut resp = full(StatusCode::OK, Bytes::from(page), CacheStatus::Local);
    set(&mut resp, header::CONTENT_TYPE, "text/html; charset=utf-8");
    resp
}

pub fn text(code: StatusCode, body: &str, status: CacheStatus) -> Response<Body> {
    let mut resp = full(code, Bytes::from(body.to_owned()), status);
    set(&mut resp, header::CONTENT_TYPE, "text/plain; charset=utf-8");
    resp
}

pub fn json(code: StatusCode, body: String) -> Response<Body> {
    let mut resp = full(code, Bytes::from(body), CacheStatus::Local);
    set(&mut resp, header::CONTENT_TYPE, "application/json");
    resp
}

pub fn full(code: StatusCode, body: Bytes, status: CacheStatus) -> Response<Body> {
    let len = body.len();
    let mut resp = Response::new(BodyExt::boxed(
        Full::new(body).map_err(|never| match never {}),
    ));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    with_status(resp, status)
}

pub fn empty() -> Body {
    BodyExt::boxed(http_body_util::Empty::new().map_err(|never| match never {}))
}

pub fn set<K: header::IntoHeaderName>(resp: &mut Response<Body>, name: K, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// [`set`] for a value known at compile time: no validation, no copy.
pub fn set_static(resp: &mut Response<Body>, name: header::HeaderName, value: &'static str) {
    resp.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}
