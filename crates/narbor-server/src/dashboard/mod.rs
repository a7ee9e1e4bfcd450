//! `/status` and `/status.json`: the same [`Snapshot`] of the counters, as a
//! page for people and as JSON.

mod html;

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::app::Server;
use crate::metrics::{FailReason, FillKind, FillOutcome, Minute, Route};
use crate::status::CacheStatus;

pub use html::{escape, human_bytes, page};

/// Everything `/status` shows, read at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub version: &'static str,
    /// Unix seconds.
    pub now: u64,
    pub started: u64,
    pub uptime_seconds: u64,
    pub requests: Requests,
    pub bytes: Bytes,
    pub store: Store,
    pub fills: Fills,
    pub upstreams: Vec<Upstream>,
    /// Newest first.
    pub recent_fills: Vec<RecentFill>,
    /// The last hour, a minute a bucket, oldest first.
    pub traffic: Vec<Minute>,
    /// Gauges registered by other parts of narbor (the `--oci` index).
    pub extra: Vec<Extra>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Requests {
    /// Every request answered, pages included.
    pub total: u64,
    /// Requests for cache objects (narinfo, NAR, listing, log, realisation)
    /// answered from the cache or upstream: all but `LOCAL` ones.
    pub lookups: u64,
    /// Of those, answered from the store (`HIT`).
    pub hits: u64,
    /// `hits / lookups`; `null` before the first lookup.
    pub hit_ratio: Option<f64>,
    /// Lookups by `X-Cache-Status`.
    pub by_cache_status: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bytes {
    /// Body bytes sent to clients.
    pub served: u64,
    /// Of those, sent from the store without asking an upstream (`HIT`, `STALE`).
    pub saved: u64,
    /// Body bytes received from upstreams (egress).
    pub fetched: u64,
    /// `saved / served`; `null` before the first byte.
    pub saved_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Store {
    pub objects: u64,
    pub bytes: u64,
    pub limit: u64,
    pub use_ratio: f64,
    pub evicted_for_size: u64,
    pub evicted_inactive: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fills {
    pub in_flight_nar: usize,
    pub in_flight_document: usize,
    pub stored: u64,
    pub not_found: u64,
    pub failed: u64,
    /// Requests that joined a fill in flight.
    pub coalesced: u64,
    /// Failures by reason (only reasons seen).
    pub failures: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    pub url: String,
    pub found: u64,
    pub not_found: u64,
    pub failed: u64,
    /// Failures of every kind, transfers included.
    pub errors: u64,
    pub fetched_bytes: u64,
    /// Unix seconds; `null`: never.
    pub last_success: Option<u64>,
    pub last_failure: Option<u64>,
    pub last_error: Option<String>,
    /// Time to the response head.
    pub latency_mean_seconds: Option<f64>,
    /// The upper bound of the histogram bucket holding the 95th percentile.
    pub latency_p95_seconds: Option<f64>,
    /// Its last answer was not a failure (or it has not failed yet).
    pub healthy: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecentFill {
    pub key: String,
    pub kind: &'static str,
    pub upstream: Option<String>,
    pub bytes: u64,
    pub duration_seconds: f64,
    pub outcome: &'static str,
    pub reason: Option<&'static str>,
    pub message: Option<String>,
    pub finished: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Extra {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Snapshot {
    pub fn take(server: &Server) -> Snapshot {
        let m = &server.metrics;
        let now = SystemTime::now();

        let mut by_cache_status = BTreeMap::new();
        let mut total = 0;
        for &route in Route::ALL {
            for cache in CacheStatus::ALL {
                let n = m.requests_by_cache(route, cache);
                total += n;
                if route.is_object() && cache != CacheStatus::Local && n > 0 {
                    *by_cache_status.entry(cache.as_str()).or_insert(0) += n;
                }
            }
        }
        let lookups = by_cache_status.values().sum();
        let hits = by_cache_status.get("HIT").copied().unwrap_or(0);

        let served = m.served_total();
        let saved = m.saved();
        let fetched = m.traffic.fetched();

        let stats = server.store.stats();
        let sum = |outcome| {
            FillKind::ALL
                .iter()
                .map(|&k| m.fills(k, outcome))
                .sum::<u64>()
        };
        let mut failures = BTreeMap::new();
        for &reason in FailReason::ALL {
            let n: u64 = FillKind::ALL
                .iter()
                .map(|&k| m.fill_failures(k, reason))
                .sum();
            if n > 0 {
                failures.insert(reason.as_str(), n);
            }
        }

        let upstreams = m
            .upstreams
            .iter()
            .map(|u| {
                let latency = u.latency.snapshot();
                let (ok, bad) = (u.last_success(), u.last_failure());
                Upstream {
                    url: u.name.clone(),
                    found: u.found(),
                    not_found: u.not_found(),
                    failed: u.failed(),
                    errors: u.errors_total(),
                    fetched_bytes: u.fetched(),
                    last_success: ok.map(unix),
                    last_failure: bad.map(unix),
                    last_error: u.last_error(),
                    latency_mean_seconds: latency.mean_seconds(),
                    latency_p95_seconds: latency.quantile_bound(0.95),
                    healthy: match (ok, bad) {
                        (_, None) => true,
                        (Some(ok), Some(bad)) => ok >= bad,
                        (None, Some(_)) => false,
                    },
                }
            })
            .collect();

        let recent_fills = m
            .recent
            .list()
            .into_iter()
            .map(|r| RecentFill {
                key: r.key,
                kind: r.kind.as_str(),
                upstream: r.upstream,
                bytes: r.bytes,
                duration_seconds: r.duration.as_secs_f64(),
                outcome: r.outcome.as_str(),
                reason: r.reason.map(FailReason::as_str),
                message: r.message,
                finished: unix(r.finished),
            })
            .collect();

        let extra = m
            .extra_samples()
            .into_iter()
            .map(|s| Extra {
                name: s.name,
                labels: s.labels.into_iter().collect(),
                value: s.value,
            })
            .collect();

        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            now: unix(now),
            started: unix(m.started),
            uptime_seconds: now
                .duration_since(m.started)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            requests: Requests {
                total,
                lookups,
                hits,
                hit_ratio: ratio(hits, lookups),
                by_cache_status,
            },
            bytes: Bytes {
                served,
                saved,
                fetched,
                saved_ratio: ratio(saved, served),
            },
            store: Store {
                objects: stats.objects,
                bytes: stats.bytes,
                limit: stats.max_size,
                use_ratio: ratio(stats.bytes, stats.max_size).unwrap_or(0.0),
                evicted_for_size: stats.evicted_for_size,
                evicted_inactive: stats.evicted_inactive,
            },
            fills: Fills {
                in_flight_nar: server.nar_fills.len(),
                in_flight_document: server.doc_fills.len(),
                stored: sum(FillOutcome::Stored),
                not_found: sum(FillOutcome::NotFound),
                failed: sum(FillOutcome::Failed),
                coalesced: FillKind::ALL.iter().map(|&k| m.coalesced(k)).sum(),
                failures,
            },
            upstreams,
            recent_fills,
            traffic: m.traffic.minutes(now),
            extra,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
