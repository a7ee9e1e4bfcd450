//! Document fills: narinfo, listings, logs, realisations, build traces and
//! debug info. Small, so fetched whole: one coalesced task per key asks the
//! chain of sources, checks what it got (a narinfo must parse, describe the
//! hash asked for, carry a trusted signature when keys are configured, and
//! name a NAR narbor can check; the JSON documents must be the JSON they
//! are), stores it inline, and hands the one result to every client that
//! asked.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use narbor_proto::nar::listing;
use narbor_proto::{CacheUrl, NarInfo};

use crate::app::{FillError, FillReport, Server};
use crate::fill::Role;
use crate::metrics::{FailReason, FillKind, FillOutcome, UpstreamErrorKind};
use crate::source::{Fetched, Found, Source};

/// The result of fetching a document, shared by every client that asked.
#[derive(Debug, Clone)]
pub enum DocOutcome {
    Found(Bytes),
    NotFound,
    /// A source had it but it failed a check (signature, store path):
    /// neither stored nor served.
    Rejected(Arc<str>),
    Failed(Arc<str>),
}

impl Server {
    /// Fetches a document from the sources (joining a fetch in flight). The
    /// bool says whether this caller joined someone else's fetch.
    pub(crate) async fn fetch_document(self: &Arc<Self>, url: &CacheUrl) -> (DocOutcome, bool) {
        let key = url.to_path();
        let Some(role) = self.doc_fills.join_or_lead(&key, None, || true) else {
            return (DocOutcome::Failed("no fill could be led".into()), false);
        };
        let (mut rx, joined) = match role {
            Role::Follower(rx) => {
                self.metrics.count_coalesced(FillKind::Document);
                (rx, true)
            }
            Role::Leader(tx, guard) => {
                let rx = tx.subscribe();
                let server = Arc::clone(self);
                let url = url.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let mut report = FillReport::default();
                    let outcome = server.fill_document(&url, &mut report).await;
                    server.record_fill(FillKind::Document, &url.to_path(), report, started);
                    drop(guard);
                    tx.send_replace(Some(outcome));
                });
                (rx, false)
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v
                .clone()
                .unwrap_or(DocOutcome::Failed("fill vanished".into())),
            Err(_) => DocOutcome::Failed("the fill task ended without a result".into()),
        };
        (outcome, joined)
    }

    async fn fill_document(&self, url: &CacheUrl, report: &mut FillReport) -> DocOutcome {
        let key = url.to_path();
        let (fetched, source) = match self.chain.document(url).await {
            (Found::Yes { value, upstream }, Some(source)) => {
                report.upstream = upstream;
                (value, source)
            }
            (Found::Failed(e), _) => {
                report.result = Err(FillError::upstream(&e));
                return DocOutcome::Failed(e.to_string().into());
            }
            _ => {
                self.remember_not_found(&key);
                report.result = Ok(FillOutcome::NotFound);
                return DocOutcome::NotFound;
            }
        };
        report.bytes = fetched.body.len() as u64;
        let upstream = fetched.upstream;
        let body = match self.check_document(url, fetched, source) {
            Ok(body) => body,
            Err(reason) => {
                let from = upstream.map(|i| self.upstreams.bases()[i].as_str());
                tracing::warn!(upstream = from.unwrap_or("a source"), %key, "rejected: {reason}");
                if let Some(i) = upstream {
                    self.upstreams
                        .record_late_error(i, UpstreamErrorKind::Rejected, &reason);
                }
                report.result = Err(FillError::new(FailReason::Rejected, reason.clone()));
                return DocOutcome::Rejected(reason.into());
            }
        };
        let store = Arc::clone(&self.store);
        let stored = body.clone();
        let key2 = key.clone();
        report.result =
            match tokio::task::spawn_blocking(move || store.put_document(&key2, &stored)).await {
                Ok(Ok(())) => Ok(FillOutcome::Stored),
                Ok(Err(e)) => {
                    tracing::warn!(%key, "not stored: {e}");
                    Err(FillError::new(
                        FailReason::StoreError,
                        format!("not stored: {e}"),
                    ))
                }
                Err(e) => {
                    tracing::warn!(%key, "not stored: {e}");
                    Err(FillError::new(
                        FailReason::Internal,
                        format!("not stored: {e}"),
                    ))
                }
            };
        DocOutcome::Found(body)
    }

    /// What a document must satisfy before it is stored or served. Returns the
    /// body to store: a narinfo made servable (its NAR named so narbor can
    /// serve it, see `nar_source`; re-signed when narbor has a signing key).
    fn check_document(
        &self,
        url: &CacheUrl,
        fetched: Fetched,
        source: &dyn Source,
    ) -> Result<Bytes, String> {
        let Fetched { body, upstream } = fetched;
        match url {
            CacheUrl::NarInfo(hash) => {
                let text =
                    std::str::from_utf8(&body).map_err(|_| "narinfo is not UTF-8".to_owned())?;
                let info = NarInfo::parse(text).map_err(|e| format!("invalid narinfo: {e}"))?;
                if info.store_path.hash() != hash {
                    return Err(format!(
                        "narinfo describes {}, not the requested hash {hash}",
                        info.store_path
                    ));
                }
                if !self.config.trusted_keys.is_empty() && !info.verify(&self.config.trusted_keys) {
                    return Err("no valid signature by a trusted key".to_owned());
                }
                let served = source.serve_narinfo(upstream, &info, text)?;
                match &self.config.sign_key {
                    Some(key) => {
                        let mut info =
                            NarInfo::parse(&served).map_err(|e| format!("invalid narinfo: {e}"))?;
                        info.sign(key);
                        Ok(Bytes::from(info.to_string()))
                    }
                    None if served.as_bytes() == &body[..] => Ok(body),
                    None => Ok(Bytes::from(served)),
                }
            }
            CacheUrl::Listing(_) => {
                // Not serde_json: Nix writes names as raw bytes (a `.ls` need
                // not be UTF-8) and serde_json stops at 62 directories deep.
                listing::parse_json(&body).map_err(|e| format!("invalid listing: {e}"))?;
                Ok(body)
            }
            CacheUrl::Realisation { .. } => {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .map_err(|e| format!("not JSON: {e}"))?;
                Ok(body)
            }
            CacheUrl::BuildTrace { .. } => {
                check_build_trace(&body)?;
                Ok(body)
            }
            CacheUrl::DebugInfo { .. } => {
                check_debug_info(&body)?;
                Ok(body)
            }
            CacheUrl::Log(_) | CacheUrl::CacheInfo => Ok(body),
            CacheUrl::Nar { .. } | CacheUrl::NarOfPath { .. } | CacheUrl::NarOfStoreHash { .. } => {
                Err("a NAR is not a document".to_owned())
            }
        }
    }
}

/// A build trace entry as Nix 2.35 writes it (src/libstore/realisation.cc at
/// NixOS/nix 88b09c64: `{"outPath": <base name>, "signatures": [...]}`;
/// signatures are objects `{"keyName", "sig"}` or, as older Nix wrote them,
/// `"name:base64"` strings).
fn check_build_trace(body: &[u8]) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let out = v
        .get("outPath")
        .and_then(|p| p.as_str())
        .ok_or("a build trace entry without an outPath string")?;
    narbor_proto::StorePath::from_base_name(out)
        .map_err(|e| format!("outPath is not a store path base name: {e}"))?;
    match v.get("signatures") {
        None => Ok(()),
        Some(serde_json::Value::Array(sigs))
            if sigs.iter().all(|s| s.is_string() || s.is_object()) =>
        {
            Ok(())
        }
        Some(_) => Err("signatures is not a list of signatures".to_owned()),
    }
}

/// A debug info index entry as Nix's `index-debug-info` writes it
/// (src/libstore/binary-cache-store.cc at 88b09c64: `{"archive": "../nar/...",
/// "member": "lib/debug/.build-id/xx/....debug"}`).
fn check_debug_info(body: &[u8]) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    for field in ["archive", "member"] {
        if !v.get(field).is_some_and(serde_json::Value::is_string) {
            return Err(format!("a debug info entry without a {field} string"));
        }
    }
    Ok(())
}
