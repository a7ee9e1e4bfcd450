//! The server's state: its configuration, the store, the chain of sources
//! behind it, the fills in flight, the metrics and the clock; and what every
//! fill reports when it ends. What it does with them is elsewhere: the cache
//! life of a request (`cache.rs`), document fills (`documents.rs`), NAR
//! fills (`nar_fill.rs`), the HTTP edge (`handler.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use narbor_store::DiskStore;

use crate::cache::NegativeCache;
use crate::clock::{Clock, SystemClock};
use crate::documents::DocOutcome;
use crate::fill::{FillState, InFlight};
use crate::metrics::{
    FailReason, FillKind, FillOutcome, FillRecord, Metrics, MetricsSource, UpstreamErrorKind,
};
use crate::nar_source::NarSources;
use crate::source::registry::Registry;
use crate::source::upstream::UpstreamSource;
use crate::source::{Chain, Source};
use crate::upstream::{UpstreamError, Upstreams};
use crate::ServerConfig;

/// The largest document (narinfo, listing, log) narbor fetches and stores.
pub const DOCUMENT_LIMIT: u64 = 8 * 1024 * 1024;

pub struct Server {
    pub(crate) config: ServerConfig,
    pub(crate) store: Arc<DiskStore>,
    /// The upstream caches (also the last source of `chain`), for the pages.
    pub(crate) upstreams: Upstreams,
    pub(crate) metrics: Arc<Metrics>,
    /// Where missing objects come from, in order.
    pub(crate) chain: Chain,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) nar_fills: Arc<InFlight<FillState>>,
    pub(crate) doc_fills: Arc<InFlight<Option<DocOutcome>>>,
    pub(crate) negative: NegativeCache,
    /// Until when the store is not asked to take NARs (it refused one: disk
    /// full, I/O error); meanwhile NARs pass through unstored.
    pub(crate) store_refusing_until: Mutex<Option<SystemTime>>,
}

impl Server {
    pub fn new(config: ServerConfig, store: Arc<DiskStore>) -> Result<Arc<Self>, UpstreamError> {
        Self::with_clock(config, store, Arc::new(SystemClock))
    }

    /// A server that reads the time from `clock` (the store should be
    /// opened with the same one).
    pub fn with_clock(
        config: ServerConfig,
        store: Arc<DiskStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, UpstreamError> {
        let names: Vec<String> = config.upstreams.iter().map(|u| u.url.clone()).collect();
        let metrics = Arc::new(Metrics::new(&names));
        if let Some(oci) = &config.oci {
            metrics.add_source(Arc::clone(oci) as Arc<dyn MetricsSource>);
        }
        let upstreams = Upstreams::new(
            &config.upstreams,
            config.credentials.clone(),
            &config.upstream_options,
            Arc::clone(&metrics),
        )?;
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        if let Some(oci) = &config.oci {
            sources.push(Box::new(Registry(Arc::clone(oci))));
        }
        sources.push(Box::new(UpstreamSource {
            upstreams: upstreams.clone(),
            sources: NarSources::default(),
            trusted_keys: config.trusted_keys.clone(),
        }));
        Ok(Arc::new(Server {
            negative: NegativeCache::new(config.negative_ttl),
            config,
            store,
            upstreams,
            metrics,
            chain: Chain::new(sources),
            clock,
            nar_fills: InFlight::new(),
            doc_fills: InFlight::new(),
            store_refusing_until: Mutex::new(None),
        }))
    }

    /// The upstreams' base URLs (without credentials).
    pub fn upstream_names(&self) -> &[String] {
        self.upstreams.bases()
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
            finished: self.clock.now(),
        });
    }
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

    /// The error a client of the failed fill gets: the store's or narbor's
    /// own failures are theirs, everything else the sources'.
    pub fn edge(&self) -> crate::error::Error {
        use crate::error::Error;
        match self.reason {
            FailReason::StoreError => Error::Store(self.message.clone()),
            FailReason::Internal => Error::Internal(self.message.clone()),
            _ => Error::Upstream(self.message.clone()),
        }
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
