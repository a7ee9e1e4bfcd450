//! What narbor counts about itself, for `/metrics` (Prometheus) and `/status`.
//!
//! A small in-house registry: fixed arrays of atomics indexed by small label
//! enums, so the request path costs a few relaxed `fetch_add`s and no lock. The
//! only locks are taken once per fill (the recent-fills ring), once per minute
//! (the traffic samples), on an upstream error (its last message) and when
//! reading. Every label value comes from a fixed set (routes, status codes,
//! cache statuses, reasons) or from the configuration (upstream URLs), so the
//! number of series is bounded.
//!
//! Other parts of narbor (the `--oci` index) add their own gauges through a
//! [`MetricsSource`], registered with [`crate::Server::add_metrics_source`].

mod body;
mod histogram;
mod labels;
mod prometheus;
pub mod recent;
mod traffic;
mod upstream;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

pub use body::CountedBody;
pub use histogram::Histogram;
pub use labels::{FailReason, FillKind, FillOutcome, Route, UpstreamErrorKind, STATUS_SLOTS};
pub use prometheus::{render, valid_name, Live, CONTENT_TYPE};
pub use recent::{FillRecord, RecentFills};
pub use traffic::{Minute, Traffic};
pub use upstream::{redact_url, UpstreamResult, UpstreamStats};

use crate::status::CacheStatus;

/// One value another part of narbor wants exported, e.g. the `--oci` index's
/// entry count. `name` must be a valid Prometheus metric name; samples that
/// share a name must share `help` and `kind`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub help: String,
    pub kind: SampleKind,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The Prometheus type of a [`Sample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    Gauge,
    Counter,
}

/// A provider of extra samples, asked on every scrape and `/status` view.
/// It must be quick: read atomics or a snapshot, never do I/O.
pub trait MetricsSource: Send + Sync {
    fn collect(&self) -> Vec<Sample>;
}

/// Every counter narbor keeps. Shared as `Arc<Metrics>`.
pub struct Metrics {
    pub started: SystemTime,
    /// `[route][status slot][cache status]`.
    requests: Box<[AtomicU64]>,
    /// Body bytes handed to the client, `[route][cache status]`.
    served: Box<[AtomicU64]>,
    /// `[kind][outcome]`.
    fills: Box<[AtomicU64]>,
    /// `[kind][reason]`.
    fill_failures: Box<[AtomicU64]>,
    /// Requests that joined a fill in flight, `[kind]`.
    coalesced: [AtomicU64; FillKind::ALL.len()],
    /// One per configured upstream, in the configured order.
    pub upstreams: Vec<UpstreamStats>,
    pub traffic: Traffic,
    pub recent: RecentFills,
    sources: RwLock<Vec<Arc<dyn MetricsSource>>>,
}

fn zeros(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

const CACHE_STATUSES: usize = CacheStatus::ALL.len();

impl Metrics {
    /// Counters for a server with these upstreams (base URLs, in order).
    pub fn new(upstreams: &[String]) -> Metrics {
        Metrics {
            started: SystemTime::now(),
            requests: zeros(Route::ALL.len() * STATUS_SLOTS * CACHE_STATUSES),
            served: zeros(Route::ALL.len() * CACHE_STATUSES),
            fills: zeros(FillKind::ALL.len() * FillOutcome::ALL.len()),
            fill_failures: zeros(FillKind::ALL.len() * FailReason::ALL.len()),
            coalesced: Default::default(),
            upstreams: upstreams.iter().map(|u| UpstreamStats::new(u)).collect(),
            traffic: Traffic::new(),
            recent: RecentFills::new(),
            sources: RwLock::new(Vec::new()),
        }
    }

    /// A response was produced (its body may still be streaming).
    pub fn count_request(&self, route: Route, status: u16, cache: CacheStatus) {
        let i = (route.index() * STATUS_SLOTS + labels::status_slot(status)) * CACHE_STATUSES
            + cache.index();
        self.requests[i].fetch_add(1, Relaxed);
    }

    /// Requests so far with this route, status code slot and cache status.
    pub fn requests(&self, route: Route, slot: usize, cache: CacheStatus) -> u64 {
        self.requests[(route.index() * STATUS_SLOTS + slot) * CACHE_STATUSES + cache.index()]
            .load(Relaxed)
    }

    /// Requests so far with this route and cache status, any status code.
    pub fn requests_by_cache(&self, route: Route, cache: CacheStatus) -> u64 {
        (0..STATUS_SLOTS)
            .map(|slot| self.requests(route, slot, cache))
            .sum()
    }

    /// `n` body bytes of a response were handed to the client.
    pub fn add_served(&self, route: Route, cache: CacheStatus, n: u64) {
        self.served[route.index() * CACHE_STATUSES + cache.index()].fetch_add(n, Relaxed);
        self.traffic.add_served(n);
    }

    pub fn served(&self, route: Route, cache: CacheStatus) -> u64 {
        self.served[route.index() * CACHE_STATUSES + cache.index()].load(Relaxed)
    }

    /// Body bytes served from the store without asking an upstream
    /// (`HIT` and `STALE`): what the cache saved.
    pub fn saved(&self) -> u64 {
        Route::ALL
            .iter()
            .map(|&r| self.served(r, CacheStatus::Hit) + self.served(r, CacheStatus::Stale))
            .sum()
    }

    /// Every body byte served.
    pub fn served_total(&self) -> u64 {
        self.traffic.served()
    }

    /// `n` body bytes arrived from upstream number `upstream`.
    pub fn add_fetched(&self, upstream: usize, n: u64) {
        if let Some(u) = self.upstreams.get(upstream) {
            u.fetched.fetch_add(n, Relaxed);
        }
        self.traffic.add_fetched(n);
    }

    /// A request joined a fill already in flight.
    pub fn count_coalesced(&self, kind: FillKind) {
        self.coalesced[kind.index()].fetch_add(1, Relaxed);
    }

    pub fn coalesced(&self, kind: FillKind) -> u64 {
        self.coalesced[kind.index()].load(Relaxed)
    }

    /// A fill ended: counts it and adds it to the recent-fills ring.
    pub fn fill_finished(&self, record: FillRecord) {
        let k = record.kind.index();
        self.fills[k * FillOutcome::ALL.len() + record.outcome.index()].fetch_add(1, Relaxed);
        if let Some(reason) = record.reason {
            self.fill_failures[k * FailReason::ALL.len() + reason.index()].fetch_add(1, Relaxed);
        }
        self.recent.push(record);
    }

    /// A NAR passed through unstored while the store refuses writes, with no
    /// fill task behind it.
    pub fn count_bypass(&self) {
        let k = FillKind::Nar.index();
        self.fills[k * FillOutcome::ALL.len() + FillOutcome::Bypassed.index()]
            .fetch_add(1, Relaxed);
    }

    pub fn fills(&self, kind: FillKind, outcome: FillOutcome) -> u64 {
        self.fills[kind.index() * FillOutcome::ALL.len() + outcome.index()].load(Relaxed)
    }

    pub fn fill_failures(&self, kind: FillKind, reason: FailReason) -> u64 {
        self.fill_failures[kind.index() * FailReason::ALL.len() + reason.index()].load(Relaxed)
    }

    /// Registers a provider of extra samples.
    pub fn add_source(&self, source: Arc<dyn MetricsSource>) {
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
    }

    /// The extra samples, from every registered source.
    pub fn extra_samples(&self) -> Vec<Sample> {
        let sources = self.sources.read().unwrap_or_else(|e| e.into_inner());
        sources.iter().flat_map(|s| s.collect()).collect()
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
