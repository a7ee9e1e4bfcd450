//! `serve --oci`: a cache published into an OCI registry, served from an
//! in-memory index.
//!
//! The index (narinfo by store hash, NAR URL to blob digest) is an immutable
//! snapshot swapped in by a background task every `index-ttl`, or at once on
//! `POST /_refresh`; a request only ever reads the current snapshot, in O(1),
//! and never waits for the registry. NAR blobs are fetched by the ordinary fill
//! (coalesced, hash-checked, stored under the same size bound as pull-through
//! objects); the registry is tried before the upstream caches.
//!
//! Every fragment fetched is also saved in the index directory; at start the
//! saved index is served at once, before the first refresh, so a restart
//! with the registry down still serves narinfos (as nixcache-oci's proxy does
//! with its `NIXCACHE_INDEX_DIR`, whose file narbor reads too).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use narbor_oci::{CacheIndex, IndexReader, RegistryClient};
use narbor_proto::PublicKey;
use tokio::sync::Notify;

use crate::metrics::{unix_seconds, MetricsSource, Sample, SampleKind};

/// The last refresh, for `/_status` and the metrics.
#[derive(Debug, Clone, Default)]
pub struct RefreshRecord {
    pub finished: Option<SystemTime>,
    pub duration: Duration,
    pub fetched_fragments: usize,
    pub changed: bool,
    /// Entries left out for want of a signature by a trusted key.
    pub untrusted: usize,
    /// The error of the last attempt, when it failed (the snapshot stays).
    pub error: Option<String>,
    /// Entries read from the saved index at start (before any refresh).
    pub loaded_from_disk: usize,
    pub attempts: u64,
    pub failures: u64,
}

/// A registry cache and its current index snapshot.
pub struct OciSource {
    client: Arc<RegistryClient>,
    index: RwLock<Arc<CacheIndex>>,
    record: Mutex<RefreshRecord>,
    wake: Notify,
    done: Notify,
    /// Refreshes started so far (the record counts those finished).
    started: std::sync::atomic::AtomicU64,
    ttl: Duration,
    /// With keys, entries no trusted key signed are not served (`--trusted-key`).
    trusted: Vec<PublicKey>,
    /// Where the index is saved between runs.
    index_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for OciSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciSource")
            .field("store", &self.client.store().to_string())
            .field("entries", &self.index().len())
            .finish()
    }
}

impl OciSource {
    pub fn new(
        client: Arc<RegistryClient>,
        ttl: Duration,
        trusted: Vec<PublicKey>,
        index_dir: Option<std::path::PathBuf>,
    ) -> Arc<OciSource> {
        Arc::new(OciSource {
            client,
            index: RwLock::new(Arc::new(CacheIndex::default())),
            record: Mutex::new(RefreshRecord::default()),
            wake: Notify::new(),
            done: Notify::new(),
            started: std::sync::atomic::AtomicU64::new(0),
            ttl,
            trusted,
            index_dir,
        })
    }

    pub fn client(&self) -> &Arc<RegistryClient> {
        &self.client
    }

    /// The current snapshot (an `Arc` clone: cheap, never blocks on a refresh).
    pub fn index(&self) -> Arc<CacheIndex> {
        Arc::clone(&self.index.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn record(&self) -> RefreshRecord {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Refreshes every `ttl` and whenever [`request_refresh`](Self::request_refresh)
    /// asks; runs until the task is dropped. The first refresh happens at once.
    pub async fn run(self: Arc<Self>) {
        let mut reader =
            IndexReader::new(Arc::clone(&self.client)).with_trusted_keys(self.trusted.clone());
        if let Some(dir) = &self.index_dir {
            reader = reader.with_snapshot(dir.clone());
            match reader.load_snapshot().await {
                Ok(0) => {}
                Ok(n) => {
                    *self.index.write().unwrap_or_else(|e| e.into_inner()) = reader.index();
                    self.record
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .loaded_from_disk = n;
                    tracing::info!(entries = n, dir = %dir.display(), "serving the saved OCI index until the registry answers");
                }
                Err(e) => tracing::warn!("cannot read the saved OCI index: {e}"),
            }
        }
        loop {
            self.started
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let started = Instant::now();
            let result = reader.refresh().await;
            {
                let mut rec = self.record.lock().unwrap_or_else(|e| e.into_inner());
                rec.attempts += 1;
                rec.duration = started.elapsed();
                rec.finished = Some(SystemTime::now());
                match result {
                    Ok(stats) => {
                        if stats.changed {
                            let old = std::mem::replace(
                                &mut *self.index.write().unwrap_or_else(|e| e.into_inner()),
                                reader.index(),
                            );
                            retire(old);
                            tracing::info!(
                                entries = stats.entries,
                                fetched = stats.fetched,
                                ms = rec.duration.as_millis() as u64,
                                "OCI index refreshed"
                            );
                        }
                        rec.fetched_fragments = stats.fetched;
                        rec.changed = stats.changed;
                        rec.untrusted = stats.untrusted;
                        rec.error = None;
                    }
                    Err(e) => {
                        // Keep serving the previous snapshot.
                        tracing::warn!("OCI index refresh failed: {e}");
                        rec.failures += 1;
                        rec.error = Some(e.to_string());
                    }
                }
            }
            self.done.notify_waiters();
            tokio::select! {
                () = tokio::time::sleep(self.ttl) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Asks the background task to refresh now and waits (up to `timeout`)
    /// for a refresh that started after this call to finish: what was
    /// published before the call is in the snapshot afterwards.
    pub async fn request_refresh(&self, timeout: Duration) -> Result<RefreshRecord, RefreshRecord> {
        let target = self.started.load(std::sync::atomic::Ordering::SeqCst) + 1;
        let wait = async {
            loop {
                let done = self.done.notified();
                tokio::pin!(done);
                done.as_mut().enable();
                if self.record().attempts >= target {
                    return;
                }
                self.wake.notify_one();
                done.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        let rec = self.record();
        if rec.attempts >= target && rec.error.is_none() {
            Ok(rec)
        } else {
            Err(rec)
        }
    }

    /// `/_status`'s part about the index, as JSON.
    pub fn status_json(&self) -> serde_json::Value {
        let rec = self.record();
        let stats = self.client.stats();
        use std::sync::atomic::Ordering::Relaxed;
        serde_json::json!({
            "store": self.client.store().to_string(),
            "entries": self.index().len(),
            "untrusted_entries": rec.untrusted,
            "index_ttl_seconds": self.ttl.as_secs(),
            "last_refresh": rec.finished.map(unix_seconds),
            "last_refresh_ms": rec.duration.as_millis() as u64,
            "last_refresh_fragments_fetched": rec.fetched_fragments,
            "last_refresh_error": rec.error,
            "loaded_from_disk": rec.loaded_from_disk,
            "refreshes": rec.attempts,
            "refresh_failures": rec.failures,
            "registry_requests": stats.requests.load(Relaxed),
            "registry_retries": stats.retries.load(Relaxed),
        })
    }
}

impl MetricsSource for OciSource {
    fn collect(&self) -> Vec<Sample> {
        let rec = self.record();
        let age = rec
            .finished
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map_or(-1.0, |d| d.as_secs_f64());
        let gauge = |name: &str, help: &str, value: f64| Sample {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: SampleKind::Gauge,
            labels: Vec::new(),
            value,
        };
        vec![
            gauge(
                "narbor_oci_index_entries",
                "Store paths in the OCI index snapshot being served.",
                self.index().len() as f64,
            ),
            gauge(
                "narbor_oci_index_untrusted_entries",
                "OCI index entries left out, per fragment: no valid signature by a trusted key.",
                rec.untrusted as f64,
            ),
            gauge(
                "narbor_oci_index_refresh_age_seconds",
                "Seconds since the last OCI index refresh finished (-1: none yet).",
                age,
            ),
            Sample {
                name: "narbor_oci_index_refresh_failures_total".to_owned(),
                help: "OCI index refreshes that failed (the previous snapshot stayed).".to_owned(),
                kind: SampleKind::Counter,
                labels: Vec::new(),
                value: rec.failures as f64,
            },
        ]
    }
}

/// Drops a replaced snapshot on a blocking thread, outside the lock:
/// freeing a million entries' maps takes milliseconds that requests waiting
/// for the lock, or sharing a runtime thread, would otherwise wait out. (A
/// request still holding it, for the microseconds of a lookup, may end up
/// freeing it instead.)
fn retire(old: Arc<CacheIndex>) {
    tokio::task::spawn_blocking(move || drop(old));
}
