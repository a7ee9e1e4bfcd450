//! The answers narbor makes itself, not from the cache: `/nix-cache-info`,
//! `/public-key`, the landing page, the stats (`/status`, `/status.json`,
//! `/metrics`) and the `--oci` admin endpoints (`/_status`,
//! `POST /_refresh`), with their access rules.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use narbor_proto::CacheInfo;

use crate::access::{self, Endpoint};
use crate::app::Server;
use crate::dashboard::{self, Snapshot};
use crate::error::Error;
use crate::metrics;
use crate::respond::{full, json, set, text, Body};
use crate::status::CacheStatus;

type Answer = Result<Response<Body>, Error>;

pub fn cache_info(server: &Server) -> Response<Body> {
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

/// `GET /public-key`: the keys that sign what this cache serves: narbor's own
/// signing key, else the trusted keys; one per line.
pub fn public_key(server: &Server) -> Answer {
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
        return Err(Error::NotServed(
            "no key configured (sign-key-file or trusted-keys)",
        ));
    }
    Ok(text(
        StatusCode::OK,
        &format!("{}\n", keys.join("\n")),
        CacheStatus::Local,
    ))
}

/// `/status`, `/status.json`, `/metrics`: loopback clients only, unless
/// `--stats-public`.
pub fn stats(server: &Server, path: &str, peer: SocketAddr) -> Answer {
    access::check(peer.ip(), Endpoint::ReadOnly, server.config.stats_public)
        .map_err(Error::Forbidden)?;
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
    Ok(resp)
}

/// `GET /_status`: the `--oci` index, the store and the upstreams as JSON (no
/// secrets); read-only, so open like the other stats with `--stats-public`.
pub fn oci_status(server: &Server, peer: SocketAddr) -> Answer {
    access::check(peer.ip(), Endpoint::ReadOnly, server.config.stats_public)
        .map_err(Error::Forbidden)?;
    let store = server.store.stats();
    let body = serde_json::json!({
        "oci": server.config.oci.as_ref().map(|o| o.status_json()),
        "store": { "objects": store.objects, "bytes": store.bytes, "max_size": store.max_size },
        "upstreams": server.upstreams.bases(),
        "fills_in_flight": server.fills_in_flight(),
    });
    Ok(json(StatusCode::OK, body.to_string()))
}

/// `POST /_refresh`: refresh the `--oci` index now. Loopback clients, or any
/// client with the configured bearer token.
pub async fn admin_refresh(server: &Server, req: &Request<Incoming>, peer: SocketAddr) -> Answer {
    if req.method() != Method::POST {
        return Err(Error::MethodNotAllowed { allow: "POST" });
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token_ok =
        matches!((&server.config.refresh_token, bearer), (Some(t), Some(b)) if t.matches(b));
    if !token_ok {
        access::check(peer.ip(), Endpoint::Admin, server.config.stats_public)
            .map_err(Error::Forbidden)?;
    }
    let Some(oci) = &server.config.oci else {
        return Err(Error::NotServed("no --oci store to refresh"));
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
    Ok(json(code, body.to_string()))
}
