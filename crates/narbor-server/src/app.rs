//! The server's state and the two kinds of fill: NARs (streamed to disk and to
//! every waiting client) and documents (narinfo, listings, logs, realisations:
//! small, fetched whole, checked, stored inline).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use narbor_proto::{CacheUrl, NarInfo, Sha256};
use narbor_store::DiskStore;
use tokio::sync::watch;

use crate::fill::{FillState, InFlight, Role};
use crate::metrics::{
    FailReason, FillKind, FillOutcome, FillRecord, Metrics, MetricsSource, UpstreamErrorKind,
};
use crate::upstream::{transport, Lookup, UpstreamError, Upstreams};
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
    negative: Mutex<HashMap<String, Instant>>,
    /// Until when the store is not asked to take NARs (it refused one: disk
    /// full, I/O error); meanwhile NARs pass through unstored.
    store_refusing_until: Mutex<Option<Instant>>,
}

/// How long narbor passes NARs through after the store refused one, before it
/// tries storing again.
const STORE_REFUSAL_BACKOFF: Duration = Duration::from_secs(5);
/// Free space a NAR fill leaves for the index and other fills in flight.
const STORE_HEADROOM: u64 = 4 << 20;

/// How a NAR fill ended, when it did not fail.
pub(crate) enum NarFilled {
    Stored(Arc<std::fs::File>, u64),
    NotFound,
    /// The store refused it before any client saw a byte.
    Bypass,
}

impl Server {
    pub fn new(
        config: ServerConfig,
        store: Arc<DiskStore>,
    ) -> Result<Arc<Self>, crate::UpstreamError> {
        let metrics = Arc::new(Metrics::new(&config.upstreams));
        if let Some(oci) = &config.oci {
            metrics.add_source(Arc::clone(oci) as Arc<dyn crate::metrics::MetricsSource>);
        }
        let upstreams = Upstreams::new(
            &config.upstreams,
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

    fn record_fill(&self, kind: FillKind, key: &str, report: FillReport, started: Instant) {
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

    fn remember_not_found(&self, key: &str) {
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
        let body = match self.check_document(url, body) {
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
    /// body to store (re-signed when narbor has a signing key).
    fn check_document(&self, url: &CacheUrl, body: Bytes) -> Result<Bytes, String> {
        match url {
            CacheUrl::NarInfo(hash) => {
                let text =
                    std::str::from_utf8(&body).map_err(|_| "narinfo is not UTF-8".to_owned())?;
                let mut info = NarInfo::parse(text).map_err(|e| format!("invalid narinfo: {e}"))?;
                if info.store_path.hash() != hash {
                    return Err(format!(
                        "narinfo describes {}, not the requested hash {hash}",
                        info.store_path
                    ));
                }
                if CacheUrl::parse(&info.url).is_err() {
                    return Err(format!(
                        "narinfo URL {:?} is not a NAR path narbor can serve",
                        info.url
                    ));
                }
                if !self.config.trusted_keys.is_empty() && !info.verify(&self.config.trusted_keys) {
                    return Err("no valid signature by a trusted key".to_owned());
                }
                match &self.config.sign_key {
                    Some(key) => {
                        info.sign(key);
                        Ok(Bytes::from(info.to_string()))
                    }
                    None => Ok(body),
                }
            }
            CacheUrl::Listing(_) | CacheUrl::Realisation { .. } => {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .map_err(|e| format!("not JSON: {e}"))?;
                Ok(body)
            }
            _ => Ok(body),
        }
    }

    /// Joins the fill of a NAR, or starts one. `None` means the object has just
    /// been stored by a fill that finished: read it from the store.
    pub(crate) fn join_nar_fill(
        self: &Arc<Self>,
        key: &str,
        file_hash: Sha256,
    ) -> Option<(watch::Receiver<FillState>, bool)> {
        if !self.store_accepting() {
            self.metrics.count_bypass();
            return Some((watch::channel(FillState::Bypass).1, false));
        }
        let store = Arc::clone(&self.store);
        let role = self
            .nar_fills
            .join_or_lead(key, FillState::Connecting, || !store.contains(key))?;
        Some(match role {
            Role::Follower(rx) => {
                self.metrics.count_coalesced(FillKind::Nar);
                (rx, true)
            }
            Role::Leader(tx, guard) => {
                let rx = tx.subscribe();
                let server = Arc::clone(self);
                let key = key.to_owned();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let mut report = FillReport::default();
                    let last = match server.fill_nar(&key, file_hash, &tx, &mut report).await {
                        Ok(NarFilled::Bypass) => {
                            report.result = Ok(FillOutcome::Bypassed);
                            FillState::Bypass
                        }
                        Ok(NarFilled::Stored(reader, size)) => {
                            report.result = Ok(FillOutcome::Stored);
                            tracing::info!(
                                %key, bytes = size, ms = started.elapsed().as_millis() as u64, "stored"
                            );
                            FillState::Done { reader, size }
                        }
                        Ok(NarFilled::NotFound) => {
                            report.result = Ok(FillOutcome::NotFound);
                            FillState::NotFound
                        }
                        Err(e) => {
                            tracing::warn!(%key, "fill failed: {}", e.message);
                            if let (Some(i), Some(kind)) = (report.upstream, e.upstream_kind()) {
                                server.upstreams.record_late_error(i, kind, &e.message);
                            }
                            let failed = FillState::Failed(e.message.as_str().into());
                            report.result = Err(e);
                            failed
                        }
                    };
                    // Counted, and out of the in-flight map, before any client
                    // sees the end: a scrape after a response reflects its fill.
                    server.record_fill(FillKind::Nar, &key, report, started);
                    drop(guard);
                    tx.send_replace(last);
                });
                (rx, false)
            }
        })
    }

    /// Streams a NAR from upstream into the store. `Ok(None)`: not found;
    /// `Ok(Some)`: stored, with a reader of it and its size. The caller
    /// publishes that last state.
    async fn fill_nar(
        &self,
        key: &str,
        file_hash: Sha256,
        tx: &watch::Sender<FillState>,
        report: &mut FillReport,
    ) -> Result<NarFilled, FillError> {
        use FailReason::{Integrity, Internal, StoreError, TooLarge, Truncated};
        let (upstream, name, resp) = match self.nar_from_registry(key).await {
            Some(resp) => (None, "the OCI registry".to_owned(), resp),
            None => match self.upstreams.get_stream(key).await {
                Lookup::Found { upstream, value } => (
                    Some(upstream),
                    self.upstreams.bases()[upstream].clone(),
                    value,
                ),
                Lookup::NotFound => {
                    self.remember_not_found(key);
                    return Ok(NarFilled::NotFound);
                }
                Lookup::Failed(e) => return Err(FillError::upstream(&e)),
            },
        };
        report.upstream = upstream;
        let total = resp.content_length();
        if let Err(why) = self.has_room(total) {
            self.store_refused(&why);
            return Ok(NarFilled::Bypass);
        }
        let store = Arc::clone(&self.store);
        let key_owned = key.to_owned();
        let begun = tokio::task::spawn_blocking(move || store.begin_blob(&key_owned))
            .await
            .map_err(|e| FillError::new(Internal, e.to_string()))?;
        let mut writer = match begun {
            Ok(w) => w,
            Err(e) => {
                // No client has seen a byte yet: they can all go direct.
                self.store_refused(&e.to_string());
                return Ok(NarFilled::Bypass);
            }
        };
        let reader =
            Arc::new(std::fs::File::open(writer.temp_path()).map_err(|e| {
                FillError::new(StoreError, format!("cannot reopen temp file: {e}"))
            })?);
        tx.send_replace(FillState::Streaming {
            reader: Arc::clone(&reader),
            written: 0,
            total,
        });
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| FillError::new(Truncated, transport(name.clone(), &e).to_string()))?;
            report.bytes += chunk.len() as u64;
            if let Some(upstream) = upstream {
                self.upstreams.add_fetched(upstream, chunk.len() as u64);
            }
            if total.is_some_and(|t| writer.written() + chunk.len() as u64 > t) {
                return Err(FillError::new(
                    TooLarge,
                    format!(
                        "{name} sent more than the {} bytes it promised",
                        total.unwrap_or(0)
                    ),
                ));
            }
            if let Err(e) = tokio::task::block_in_place(|| writer.write_all(&chunk)) {
                self.store_refused(&e.to_string());
                return Err(FillError::new(StoreError, format!("cannot store: {e}")));
            }
            let written = writer.written();
            tx.send_modify(|s| {
                if let FillState::Streaming { written: w, .. } = s {
                    *w = written;
                }
            });
        }
        let size = writer.written();
        if let Some(t) = total {
            if size != t {
                return Err(FillError::new(
                    Truncated,
                    format!("{name} promised {t} bytes and sent {size}"),
                ));
            }
        }
        let committed = tokio::task::spawn_blocking(move || writer.commit(Some((file_hash, size))))
            .await
            .map_err(|e| FillError::new(Internal, e.to_string()))?;
        match committed {
            Ok(()) => {}
            Err(narbor_store::StoreError::Integrity { .. }) => {
                return Err(FillError::new(
                    Integrity,
                    format!("{name} sent bytes that do not match the NAR's file hash"),
                ))
            }
            Err(e) => {
                self.store_refused(&e.to_string());
                return Err(FillError::new(StoreError, format!("cannot store: {e}")));
            }
        }
        Ok(NarFilled::Stored(reader, size))
    }

    /// The NAR's blob from the `--oci` registry, when the index names one and
    /// the registry serves it (otherwise the upstreams are asked).
    async fn nar_from_registry(&self, key: &str) -> Option<reqwest::Response> {
        let oci = self.config.oci.as_ref()?;
        let blob = oci.index().nar_blob(key)?;
        match oci.client().get_blob(&blob.digest, None).await {
            Ok(resp) => Some(resp),
            Err(e) => {
                tracing::warn!(%key, "the OCI registry did not serve the blob, asking upstreams: {e}");
                None
            }
        }
    }

    /// The narinfo for `hash` from the `--oci` index, if it has one.
    pub(crate) fn narinfo_from_index(&self, hash: &narbor_proto::StorePathHash) -> Option<Bytes> {
        let oci = self.config.oci.as_ref()?;
        let index = oci.index();
        let entry = index.get(hash)?;
        Some(Bytes::copy_from_slice(entry.narinfo().as_bytes()))
    }

    /// A NAR's size from the `--oci` index, if it names the NAR (for HEAD).
    pub(crate) fn nar_in_index(&self, key: &str) -> Option<Option<u64>> {
        let oci = self.config.oci.as_ref()?;
        oci.index().nar_blob(key).map(|b| b.size)
    }

    /// Whether the store takes NARs now (it has not refused one lately).
    pub(crate) fn store_accepting(&self) -> bool {
        let mut until = self
            .store_refusing_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *until {
            Some(t) if t > Instant::now() => false,
            Some(_) => {
                *until = None;
                tracing::info!("trying to store NARs again");
                true
            }
            None => true,
        }
    }

    /// The store refused a NAR: pass NARs through unstored for a while.
    fn store_refused(&self, why: &str) {
        let mut until = self
            .store_refusing_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if until.is_none() {
            tracing::warn!(
                "the store refused a NAR ({why}): passing NARs through without storing for {}s",
                STORE_REFUSAL_BACKOFF.as_secs()
            );
        }
        *until = Some(Instant::now() + STORE_REFUSAL_BACKOFF);
    }

    /// Whether the disk under the store has room for an object of `len` bytes
    /// (unknown: the headroom alone), checked before a fill writes anything.
    fn has_room(&self, len: Option<u64>) -> Result<(), String> {
        let stat =
            rustix::fs::statvfs(self.store.tmp_dir()).map_err(|e| format!("statvfs: {e}"))?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let needed = len.unwrap_or(0).saturating_add(STORE_HEADROOM);
        if free < needed {
            return Err(format!(
                "{free} bytes free on the cache's disk, {needed} needed"
            ));
        }
        Ok(())
    }

    /// Whether the upstreams have a NAR, and its length, without fetching it.
    pub(crate) async fn head_upstream(&self, key: &str) -> Lookup<Option<u64>> {
        self.upstreams.head(key).await
    }
}

/// What a fill task learned, for the metrics and the recent-fills list.
struct FillReport {
    /// The upstream that answered, once one did.
    upstream: Option<usize>,
    /// Body bytes received.
    bytes: u64,
    result: Result<FillOutcome, FillError>,
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
struct FillError {
    reason: FailReason,
    message: String,
}

impl FillError {
    fn new(reason: FailReason, message: String) -> FillError {
        FillError { reason, message }
    }

    /// Every upstream failed before a usable answer.
    fn upstream(e: &UpstreamError) -> FillError {
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
    fn upstream_kind(&self) -> Option<UpstreamErrorKind> {
        match self.reason {
            FailReason::Truncated => Some(UpstreamErrorKind::Truncated),
            FailReason::TooLarge => Some(UpstreamErrorKind::TooLarge),
            FailReason::Integrity => Some(UpstreamErrorKind::Integrity),
            FailReason::Rejected => Some(UpstreamErrorKind::Rejected),
            _ => None,
        }
    }
}
