//! The Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE`,
//! then samples. Counters end in `_total`, units are in the names.
//!
//! Families with a small fixed label set print every combination, zeros
//! included, so a series never appears out of nowhere; the request and byte
//! families (route × status × cache status) print only what happened.

use std::collections::BTreeMap;
use std::fmt::Write;

use narbor_store::StoreStats;

use super::histogram::HistogramSnapshot;
use super::labels::{self, FailReason, FillKind, FillOutcome, Route, UpstreamErrorKind};
use super::{unix_seconds, Metrics, Sample, SampleKind};
use crate::status::CacheStatus;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What is read from elsewhere at scrape time.
pub struct Live {
    pub store: StoreStats,
    pub nar_fills: usize,
    pub document_fills: usize,
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value.into()));
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        for (bound, count) in &h.buckets {
            let le = number(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, *count as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.is_nan() {
        "NaN".to_owned()
    } else {
        // Integers print without a fraction; Rust's shortest round-trip otherwise.
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Everything, as Prometheus scrapes it.
pub fn render(m: &Metrics, live: &Live) -> String {
    let mut o = Out(String::with_capacity(16 * 1024));

    o.family(
        "narbor_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    o.sample(
        "narbor_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    o.family(
        "narbor_start_time_seconds",
        "gauge",
        "When this narbor process started, in Unix seconds.",
    );
    o.sample("narbor_start_time_seconds", &[], unix_seconds(m.started));

    o.family(
        "narbor_requests_total",
        "counter",
        "HTTP requests answered, by route, status code and X-Cache-Status.",
    );
    for &route in Route::ALL {
        for slot in 0..labels::STATUS_SLOTS {
            for cache in CacheStatus::ALL {
                let n = m.requests(route, slot, cache);
                if n > 0 {
                    let status = labels::status_label(slot);
                    o.sample(
                        "narbor_requests_total",
                        &[
                            ("route", route.as_str()),
                            ("status", &status),
                            ("cache_status", cache.as_str()),
                        ],
                        n as f64,
                    );
                }
            }
        }
    }

    o.family(
        "narbor_served_bytes_total",
        "counter",
        "Response body bytes sent to clients, by route and X-Cache-Status.",
    );
    for &route in Route::ALL {
        for cache in CacheStatus::ALL {
            let n = m.served(route, cache);
            if n > 0 {
                o.sample(
                    "narbor_served_bytes_total",
                    &[("route", route.as_str()), ("cache_status", cache.as_str())],
                    n as f64,
                );
            }
        }
    }
    o.family(
        "narbor_saved_bytes_total",
        "counter",
        "Body bytes served from the store without asking an upstream (HIT and STALE).",
    );
    o.sample("narbor_saved_bytes_total", &[], m.saved() as f64);

    upstream_families(&mut o, m);
    fill_families(&mut o, m, live);
    store_families(&mut o, &live.store);
    extra_families(&mut o, &m.extra_samples());
    o.0
}

fn upstream_families(o: &mut Out, m: &Metrics) {
    o.family(
        "narbor_upstream_fetched_bytes_total",
        "counter",
        "Body bytes received from each upstream (egress).",
    );
    for u in &m.upstreams {
        let l = [("upstream", u.name.as_str())];
        o.sample(
            "narbor_upstream_fetched_bytes_total",
            &l,
            u.fetched() as f64,
        );
    }
    o.family(
        "narbor_upstream_requests_total",
        "counter",
        "Requests to each upstream, by result: found (200), not_found (404 or 403), error (no usable answer).",
    );
    for u in &m.upstreams {
        let results = [
            ("found", u.found()),
            ("not_found", u.not_found()),
            ("error", u.failed()),
        ];
        for (result, n) in results {
            let l = [("upstream", u.name.as_str()), ("result", result)];
            o.sample("narbor_upstream_requests_total", &l, n as f64);
        }
    }
    o.family(
        "narbor_upstream_errors_total",
        "counter",
        "Failures of each upstream, by kind: failed requests, and transfers that broke off or failed verification.",
    );
    for u in &m.upstreams {
        for &kind in UpstreamErrorKind::ALL {
            let l = [("upstream", u.name.as_str()), ("kind", kind.as_str())];
            o.sample("narbor_upstream_errors_total", &l, u.errors(kind) as f64);
        }
    }
    o.family(
        "narbor_upstream_request_duration_seconds",
        "histogram",
        "Time from sending a request to an upstream to its response head.",
    );
    for u in &m.upstreams {
        let l = [("upstream", u.name.as_str())];
        o.histogram(
            "narbor_upstream_request_duration_seconds",
            &l,
            &u.latency.snapshot(),
        );
    }
    o.family(
        "narbor_upstream_last_success_timestamp_seconds",
        "gauge",
        "When each upstream last answered without an error (0: never), in Unix seconds.",
    );
    for u in &m.upstreams {
        let t = u.last_success().map(unix_seconds).unwrap_or(0.0);
        let l = [("upstream", u.name.as_str())];
        o.sample("narbor_upstream_last_success_timestamp_seconds", &l, t);
    }
}

fn fill_families(o: &mut Out, m: &Metrics, live: &Live) {
    o.family(
        "narbor_fills_in_flight",
        "gauge",
        "Upstream fetches running now (each serves every client that asked).",
    );
    o.sample(
        "narbor_fills_in_flight",
        &[("kind", FillKind::Nar.as_str())],
        live.nar_fills as f64,
    );
    o.sample(
        "narbor_fills_in_flight",
        &[("kind", FillKind::Document.as_str())],
        live.document_fills as f64,
    );
    o.family(
        "narbor_fills_total",
        "counter",
        "Finished upstream fetches, by kind and outcome.",
    );
    for &kind in FillKind::ALL {
        for &outcome in FillOutcome::ALL {
            let l = [("kind", kind.as_str()), ("outcome", outcome.as_str())];
            o.sample("narbor_fills_total", &l, m.fills(kind, outcome) as f64);
        }
    }
    o.family(
        "narbor_fill_failures_total",
        "counter",
        "Failed upstream fetches, by kind and reason.",
    );
    for &kind in FillKind::ALL {
        for &reason in FailReason::ALL {
            let l = [("kind", kind.as_str()), ("reason", reason.as_str())];
            let n = m.fill_failures(kind, reason) as f64;
            o.sample("narbor_fill_failures_total", &l, n);
        }
    }
    o.family(
        "narbor_fill_coalesced_total",
        "counter",
        "Requests that joined a fetch already in flight instead of starting one.",
    );
    for &kind in FillKind::ALL {
        let l = [("kind", kind.as_str())];
        o.sample("narbor_fill_coalesced_total", &l, m.coalesced(kind) as f64);
    }
}

fn store_families(o: &mut Out, s: &StoreStats) {
    o.family("narbor_store_bytes", "gauge", "Bytes of objects stored.");
    o.sample("narbor_store_bytes", &[], s.bytes as f64);
    o.family(
        "narbor_store_limit_bytes",
        "gauge",
        "The most the store may hold (--max-size).",
    );
    o.sample("narbor_store_limit_bytes", &[], s.max_size as f64);
    o.family("narbor_store_objects", "gauge", "Objects stored.");
    o.sample("narbor_store_objects", &[], s.objects as f64);
    o.family(
        "narbor_store_evictions_total",
        "counter",
        "Objects evicted since start: to stay within the size limit, or inactive.",
    );
    o.sample(
        "narbor_store_evictions_total",
        &[("reason", "size")],
        s.evicted_for_size as f64,
    );
    o.sample(
        "narbor_store_evictions_total",
        &[("reason", "inactive")],
        s.evicted_inactive as f64,
    );
}

fn extra_families(o: &mut Out, samples: &[Sample]) {
    let mut by_name: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        if valid_name(&s.name) && s.labels.iter().all(|(k, _)| valid_name(k)) {
            by_name.entry(&s.name).or_default().push(s);
        } else {
            tracing::warn!(name = %s.name, "metric with an invalid name or label left out");
        }
    }
    for (name, family) in by_name {
        let first = family[0];
        let kind = match first.kind {
            SampleKind::Gauge => "gauge",
            SampleKind::Counter => "counter",
        };
        o.family(name, kind, &first.help);
        for s in family {
            let labels: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            o.sample(name, &labels, s.value);
        }
    }
}
