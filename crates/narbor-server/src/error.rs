//! The one error every request handler returns, and how it is answered.
//!
//! [`Error::status`] is an exhaustive match: a new kind of failure must
//! decide its status. Where the failure came from ([`Origin`]) is part of
//! the type, because it decides what narbor does with it: a client's mistake
//! is a 4xx with a short reason; an upstream's failure may be answered from a
//! stale copy and is worth trying elsewhere; a failure of narbor's own disk or
//! of narbor itself is a 5xx whose detail goes to the log, never to the
//! client (the body says only what kind of failure it was).

use std::fmt;

use http::StatusCode;

use crate::status::CacheStatus;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The request: a path outside the protocol, a method, a range.
    Client,
    /// An upstream cache or the `--oci` registry: what it sent or did not.
    Upstream,
    /// narbor's disk store.
    Store,
    /// narbor itself (a task that died, a bug).
    Internal,
}

/// Why a request was not answered with what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A path that looks like the cache protocol's but is not well formed.
    BadRequest(String),
    /// Nothing of the kind is served here (a path outside the protocol,
    /// `/public-key` with no key, `/_refresh` without `--oci`).
    NotServed(&'static str),
    /// The object is not in this cache or any source, as `status` found.
    NotFound(CacheStatus),
    /// A source had it, but it failed a check (signature, store path): it
    /// is neither stored nor served.
    Rejected(String),
    /// Only the methods in `allow` are answered here.
    MethodNotAllowed { allow: &'static str },
    /// The client may not see this (stats and admin pages).
    Forbidden(&'static str),
    /// A `Range` outside the object's `len` bytes.
    RangeNotSatisfiable { len: u64 },
    /// Every source failed and nothing usable is stored.
    Upstream(String),
    /// The disk store failed under a request (a read error, a file gone).
    Store(String),
    /// narbor failed itself.
    Internal(String),
}

impl Error {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotServed(_) | Error::NotFound(_) | Error::Rejected(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::Store(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Where it came from.
    pub fn origin(&self) -> Origin {
        match self {
            Error::BadRequest(_)
            | Error::NotServed(_)
            | Error::MethodNotAllowed { .. }
            | Error::Forbidden(_)
            | Error::RangeNotSatisfiable { .. } => Origin::Client,
            Error::NotFound(_) | Error::Rejected(_) | Error::Upstream(_) => Origin::Upstream,
            Error::Store(_) => Origin::Store,
            Error::Internal(_) => Origin::Internal,
        }
    }

    /// The `X-Cache-Status` of the answer.
    pub fn cache_status(&self) -> CacheStatus {
        match self {
            Error::NotFound(status) => *status,
            Error::Rejected(_) => CacheStatus::Miss,
            Error::RangeNotSatisfiable { .. } => CacheStatus::Hit,
            Error::Upstream(_) | Error::Store(_) | Error::Internal(_) => CacheStatus::Error,
            Error::BadRequest(_)
            | Error::NotServed(_)
            | Error::MethodNotAllowed { .. }
            | Error::Forbidden(_) => CacheStatus::Local,
        }
    }

    /// The body the client gets: a short reason for its own mistakes and for
    /// a rejected copy; for 5xx only the kind of failure (the detail is logged).
    pub fn body(&self) -> String {
        match self {
            Error::BadRequest(reason) => format!("bad request: {reason}\n"),
            Error::NotServed(what) => format!("not found: {what}\n"),
            Error::NotFound(_) => "not found\n".to_owned(),
            Error::Rejected(reason) => {
                format!("not found: the upstream's copy was rejected: {reason}\n")
            }
            Error::MethodNotAllowed { allow } => format!("only {allow}\n"),
            Error::Forbidden(reason) => (*reason).to_owned(),
            Error::RangeNotSatisfiable { .. } => "range not satisfiable\n".to_owned(),
            Error::Upstream(_) => "upstream failed\n".to_owned(),
            Error::Store(_) => "the cache's store failed\n".to_owned(),
            Error::Internal(_) => "internal error\n".to_owned(),
        }
    }

    /// Logs what the client is not told.
    pub fn log(&self) {
        match self {
            Error::Upstream(detail) => tracing::warn!("answering 502: {detail}"),
            Error::Store(detail) => tracing::error!("answering 500, the store failed: {detail}"),
            Error::Internal(detail) => tracing::error!("answering 500: {detail}"),
            _ => {}
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Upstream(d) | Error::Store(d) | Error::Internal(d) => {
                write!(f, "{} ({d})", self.status())
            }
            _ => write!(f, "{}: {}", self.status(), self.body().trim_end()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_status_an_origin_and_an_opaque_5xx_body() {
        let all = [
            Error::BadRequest("x".into()),
            Error::NotServed("x"),
            Error::NotFound(CacheStatus::Negative),
            Error::Rejected("bad sig".into()),
            Error::MethodNotAllowed { allow: "GET, HEAD" },
            Error::Forbidden("loopback only\n"),
            Error::RangeNotSatisfiable { len: 3 },
            Error::Upstream("upstream http://u answered 500".into()),
            Error::Store("open /var/cache/narbor/blobs/ab/x: Too many open files".into()),
            Error::Internal("task panicked".into()),
        ];
        for e in &all {
            let status = e.status().as_u16();
            if status >= 500 {
                // The detail (paths, URLs) never reaches the client.
                assert!(!e.body().contains('/'), "{e:?}: {}", e.body());
                assert_ne!(e.origin(), Origin::Client);
            } else if e.origin() == Origin::Client {
                assert!((400..500).contains(&status), "{e:?}");
            }
        }
        assert_eq!(all[0].status(), StatusCode::BAD_REQUEST);
        assert_eq!(all[2].cache_status(), CacheStatus::Negative);
        assert_eq!(all[8].status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(all[8].origin(), Origin::Store);
        assert_eq!(all[7].origin(), Origin::Upstream);
    }
}
