//! The registry and its text format, without a server.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use narbor_store::StoreStats;

use super::*;

fn live() -> Live {
    Live {
        store: StoreStats {
            objects: 3,
            bytes: 1500,
            max_size: 10_000,
            evicted_for_size: 2,
            evicted_inactive: 1,
        },
        nar_fills: 1,
        document_fills: 0,
    }
}

/// The value of the one sample line that starts with `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.strip_prefix(series).is_some_and(|r| r.starts_with(' ')))
        .collect();
    assert_eq!(lines.len(), 1, "{series} in:\n{text}");
    lines[0].rsplit(' ').next().unwrap().parse().unwrap()
}

struct OciIndex;

impl MetricsSource for OciIndex {
    fn collect(&self) -> Vec<Sample> {
        vec![
            Sample {
                name: "narbor_oci_index_entries".into(),
                help: "Entries in the OCI index.".into(),
                kind: SampleKind::Gauge,
                labels: vec![("repository".into(), "ghcr.io/a \"b\"".into())],
                value: 42.0,
            },
            Sample {
                name: "bad name".into(),
                help: "never shown".into(),
                kind: SampleKind::Gauge,
                labels: vec![],
                value: 1.0,
            },
        ]
    }
}

#[test]
fn counts_render_with_help_type_and_labels() {
    let m = Metrics::new(&["https://user:pw@cache.example".to_owned()]);
    m.count_request(Route::Nar, 200, CacheStatus::Hit);
    m.count_request(Route::Nar, 200, CacheStatus::Hit);
    m.count_request(Route::NarInfo, 404, CacheStatus::Negative);
    m.count_request(Route::Other, 418, CacheStatus::Local);
    m.add_served(Route::Nar, CacheStatus::Hit, 1000);
    m.add_served(Route::Nar, CacheStatus::Miss, 300);
    m.add_served(Route::NarInfo, CacheStatus::Stale, 20);
    m.add_fetched(0, 300);
    m.count_coalesced(FillKind::Nar);
    m.upstreams[0].observe_latency(Duration::from_millis(20));
    m.upstreams[0].record(UpstreamResult::Found, None);
    m.upstreams[0].record(
        UpstreamResult::Error(UpstreamErrorKind::Status),
        Some("answered 500"),
    );
    m.fill_finished(FillRecord {
        key: "nar/x.nar".into(),
        kind: FillKind::Nar,
        upstream: Some("https://cache.example".into()),
        bytes: 300,
        duration: Duration::from_millis(5),
        outcome: FillOutcome::Failed,
        reason: Some(FailReason::Integrity),
        message: Some("bad hash".into()),
        finished: SystemTime::now(),
    });
    m.add_source(Arc::new(OciIndex));

    let text = render(&m, &live());
    let nar_hit = r#"narbor_requests_total{route="nar",status="200",cache_status="HIT"}"#;
    assert_eq!(value(&text, nar_hit), 2.0);
    let teapot = r#"narbor_requests_total{route="other",status="4xx",cache_status="LOCAL"}"#;
    assert_eq!(value(&text, teapot), 1.0);
    assert_eq!(value(&text, "narbor_saved_bytes_total"), 1020.0);
    let up = r#"{upstream="https://cache.example"}"#;
    assert_eq!(
        value(&text, &format!("narbor_upstream_fetched_bytes_total{up}")),
        300.0
    );
    assert!(!text.contains("pw@"), "credentials leaked:\n{text}");
    assert_eq!(
        value(
            &text,
            r#"narbor_upstream_requests_total{upstream="https://cache.example",result="error"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"narbor_upstream_request_duration_seconds_bucket{upstream="https://cache.example",le="0.025"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"narbor_upstream_request_duration_seconds_bucket{upstream="https://cache.example",le="+Inf"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"narbor_fill_failures_total{kind="nar",reason="integrity"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"narbor_fills_total{kind="nar",outcome="failed"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"narbor_fill_coalesced_total{kind="nar"}"#),
        1.0
    );
    assert_eq!(value(&text, r#"narbor_fills_in_flight{kind="nar"}"#), 1.0);
    assert_eq!(value(&text, "narbor_store_limit_bytes"), 10_000.0);
    assert_eq!(
        value(&text, r#"narbor_store_evictions_total{reason="size"}"#),
        2.0
    );
    // The extra source's gauge, its label escaped; the invalid one left out.
    assert_eq!(
        value(
            &text,
            r#"narbor_oci_index_entries{repository="ghcr.io/a \"b\""}"#
        ),
        42.0
    );
    assert!(!text.contains("bad name"));

    // Every sample belongs to a family announced by HELP and TYPE just before.
    let mut announced = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(announced.insert(name.to_owned()), "{name} announced twice");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| announced.contains(*f)))
                .unwrap_or(name);
            assert!(announced.contains(family), "{name} without TYPE");
            assert!(valid_name(name));
        }
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split(' ').skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{name}");
        }
    }
}

#[test]
fn recent_fills_keep_the_newest() {
    let m = Metrics::new(&[]);
    for i in 0..recent::CAPACITY + 5 {
        m.fill_finished(FillRecord {
            key: format!("{i}.narinfo"),
            kind: FillKind::Document,
            upstream: None,
            bytes: i as u64,
            duration: Duration::ZERO,
            outcome: FillOutcome::Stored,
            reason: None,
            message: None,
            finished: SystemTime::now(),
        });
    }
    let list = m.recent.list();
    assert_eq!(list.len(), recent::CAPACITY);
    assert_eq!(list[0].key, format!("{}.narinfo", recent::CAPACITY + 4));
    assert_eq!(
        m.fills(FillKind::Document, FillOutcome::Stored),
        recent::CAPACITY as u64 + 5
    );
}
