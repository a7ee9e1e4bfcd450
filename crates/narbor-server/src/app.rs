//! The server's state and the document fill: narinfo, listings, logs,
//! realisations, build traces, debug info (small, fetched whole, checked,
//! stored inline). NAR fills are `nar_fill.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use narbor_proto::nar::listing;
use narbor_proto::{CacheUrl, NarInfo};
use narbor_store::DiskStore;

use crate::fill::{FillState, InFlight, Role};
use crate::metrics::{
    FailReason, FillKind, FillOutcome, FillRecord, Metrics, MetricsSource, UpstreamErrorKind,
};
use crate::nar_source::{localize, NarSources};
use crate::upstream::{Lookup, UpstreamError, Upstreams};
use crate::ServerConfig;

/// The largest document (narinfo, listing, log) narbor fetches and stores.
pub const DOCUMENT_LIMIT: u64 = 8 * 1024 * 1024;

/// The result of fetching a document, shared by every client that asked.
#[derive(Debug, Clone)]
pub enum DocOutcome {
    Found(Bytes),
    NotFound,
    /// The upstream had it but it failed a check (signature, store path):
    /// neither stored nor served.
    Rejected(Arc<str>),
    Failed(Arc<str>),
}

pub struct Server {
    pub config: ServerConfig,
    pub store: Arc<DiskStore>,
    pub upstreams: Upstreams,
    pub metrics: Arc<Metrics>,
    pub(crate) nar_fills: Arc<InFlight<FillState>>,
    pub(crate) doc_fills: Arc<InFlight<Option<DocOutcome>>>,
    /// Where the NARs of narinfos narbor rewrote are (see `nar_source`).
    pub(crate) sources: NarSources,
    negative: Mutex<HashMap<String, Instant>>,
    /// Until when the store is not asked to take NARs (it refused one: disk
    /// full, I/O error); meanwhile NARs pass through unstored.
    pub(crate) store_refusing_until: Mutex<Option<Instant>>,
}

impl Server {
    pub fn new(
        config: ServerConfig,
        store: Arc<DiskStore>,
    ) -> Result<Arc<Self>, crate::UpstreamError> {
        let names: Vec<String> = config.upstreams.iter().map(|u| u.url.clone()).collect();
        let metrics = Arc::new(Metrics::new(&names));
        if let Some(oci) = &config.oci {
            metrics.add_source(Arc::clone(oci) as Arc<dyn crate::metrics::MetricsSource>);
        }
        let upstreams = Upstreams::new(
            &config.upstreams,
            config.credentials.clone(),
            &config.upstream_options,
            Arc::clone(&metrics),
        )?;
        Ok(Arc::new(Server {
            config,
            store,
            upstreams,
            metrics,
            nar_fills: InFlight::new(),
            doc_fills: InFlight::new(),
            sources: NarSources::default(),
            negative: Mutex::new(HashMap::new()),
            store_refusing_until: Mutex::new(None),
        }))
    }

    /// Fills in flight right now (NARs and documents).
    pub fn fills_in_flight(&self) -> usize {
        self.nar_fills.len() + self.doc_fills.len()
    }

    /// Adds gauges of another part of narbor (the `--oci` index: entries,
    /// refresh age) to `/metrics` and `/status`.
    pub fn add_metrics_source(&self, source: Arc<dyn MetricsSource>) {
        self.metrics.add_source(source);
    }

    pub(crate) fn record_fill(
        &self,
        kind: FillKind,
        key: &str,
        report: FillReport,
        started: Instant,
    ) {
        let (outcome, reason, message) = match report.result {
            Ok(outcome) => (outcome, None, None),
            Err(e) => (FillOutcome::Failed, Some(e.reason), Some(e.message)),
        };
        self.metrics.fill_finished(FillRecord {
            key: key.to_owned(),
            kind,
            upstream: report
                .upstream
                .and_then(|i| self.metrics.upstreams.get(i))
                .map(|u| u.name.clone()),
            bytes: report.bytes,
            duration: started.elapsed(),
            outcome,
            reason,
            message,
            finished: SystemTime::now(),
        });
    }

    pub(crate) fn is_negative(&self, key: &str) -> bool {
        let mut map = self.negative.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some(expiry) if *expiry > Instant::now() => true,
            Some(_) => {
                map.remove(key);
                false
            }
            None => false,
        }
    }

    pub(crate) fn remember_not_found(&self, key: &str) {
        if self.config.negative_ttl.is_zero() {
            return;
        }
        let mut map = self.negative.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= 100_000 {
            map.retain(|_, expiry| *expiry > now);
        }
        map.insert(key.to_owned(), now + self.config.negative_ttl);
    }

    /// Is a stored document young enough to serve without asking upstream?
    pub(crate) fn is_fresh(&self, stored_at: SystemTime) -> bool {
        if self.upstreams.is_empty() {
            return true;
        }
        SystemTime::now()
            .duration_since(stored_at)
            .map(|age| age < self.config.narinfo_ttl)
            .unwrap_or(true)
    }

    /// Fetches a document from upstream (joining a fetch in flight). The bool
    /// says whether this caller joined someone else's fetch.
    pub(crate) async fn fetch_document(self: &Arc<Self>, url: &CacheUrl) -> (DocOutcome, bool) {
        let key = url.to_path();
        let role = self
            .doc_fills
            .join_or_lead(&key, None, || true)
            .expect("may_lead is always true");
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
                    let outcome = server.fetch_document_from_upstream(&url, &mut report).await;
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

    async fn fetch_document_from_upstream(
        &self,
        url: &CacheUrl,
        report: &mut FillReport,
    ) -> DocOutcome {
        let key = url.to_path();
        let (upstream, body) = match self.upstreams.get_document(&key, DOCUMENT_LIMIT).await {
            Lookup::Found { upstream, value } => (upstream, value),
            Lookup::NotFound => {
                self.remember_not_found(&key);
                report.result = Ok(FillOutcome::NotFound);
                return DocOutcome::NotFound;
            }
            Lookup::Failed(e) => {
                report.result = Err(FillError::upstream(&e));
                return DocOutcome::Failed(e.to_string().into());
            }
        };
        report.upstream = Some(upstream);
        report.bytes = body.len() as u64;
        let body = match self.check_document(url, body, upstream) {
            Ok(body) => body,
            Err(reason) => {
                tracing::warn!(
                    upstream = %self.upstreams.bases()[upstream],
                    %key,
                    "rejected: {reason}"
                );
                self.upstreams
                    .record_late_error(upstream, UpstreamErrorKind::Rejected, &reason);
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
        body: Bytes,
        upstream: usize,
    ) -> Result<Bytes, String> {
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
                let local = localize(&info, text, upstream, &self.upstreams.bases()[upstream])?;
                if let Some(source) = local.source {
                    self.sources.remember(&local.key, source);
                }
                match &self.config.sign_key {
                    Some(key) => {
                        let mut info = NarInfo::parse(&local.text)
                            .map_err(|e| format!("invalid narinfo: {e}"))?;
                        info.sign(key);
                        Ok(Bytes::from(info.to_string()))
                    }
                    None if local.text.len() == body.len() => Ok(body),
                    None => Ok(Bytes::from(local.text)),
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

/// What a fill task learned, for the metrics and the recent-fills list.
pub(crate) struct FillReport {
    /// The upstream that answered, once one did.
    pub upstream: Option<usize>,
    /// Body bytes received.
    pub bytes: u64,
    pub result: Result<FillOutcome, FillError>,
}

impl Default for FillReport {
    fn default() -> Self {
        FillReport {
            upstream: None,
            bytes: 0,
            // A fill task that ends without saying how is a bug.
            result: Err(FillError::new(
                FailReason::Internal,
                "the fill ended without a result".to_owned(),
            )),
        }
    }
}

/// Why a fill failed: a stable reason for the metrics, a message for people.
#[derive(Debug)]
pub(crate) struct FillError {
    pub reason: FailReason,
    pub message: String,
}

impl FillError {
    pub fn new(reason: FailReason, message: String) -> FillError {
        FillError { reason, message }
    }

    /// Every upstream failed before a usable answer.
    pub fn upstream(e: &UpstreamError) -> FillError {
        let reason = match e.kind() {
            UpstreamErrorKind::Truncated => FailReason::Truncated,
            UpstreamErrorKind::TooLarge => FailReason::TooLarge,
            UpstreamErrorKind::Rejected => FailReason::Rejected,
            UpstreamErrorKind::Integrity => FailReason::Integrity,
            UpstreamErrorKind::Status | UpstreamErrorKind::Transport => FailReason::UpstreamError,
        };
        FillError::new(reason, e.to_string())
    }

    /// The upstream's share of a failure found after it answered (the fill's
    /// own store errors are not the upstream's).
    pub fn upstream_kind(&self) -> Option<UpstreamErrorKind> {
        match self.reason {
            FailReason::Truncated => Some(UpstreamErrorKind::Truncated),
            FailReason::TooLarge => Some(UpstreamErrorKind::TooLarge),
            FailReason::Integrity => Some(UpstreamErrorKind::Integrity),
            FailReason::Rejected => Some(UpstreamErrorKind::Rejected),
            _ => None,
        }
    }
}
