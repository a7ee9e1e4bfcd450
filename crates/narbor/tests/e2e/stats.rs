//! Seeing what narbor does: `/metrics` after real traffic (checked by the real
//! `promtool`, and against what the clients saw), `/status` rendered by
//! headless Chromium, `/status.json`, and who may see them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use narbor_proto::{SecretKey, Sha256};

use crate::serve::{pseudo_random, put_nar, put_narinfo};
use crate::support::*;
use crate::upstream::{try_request, Fault, Reply, Upstream};

/// One request of the scenario and how narbor answered it.
struct Seen {
    route: &'static str,
    status: u16,
    cache: String,
    body_len: u64,
    complete: bool,
}

/// narbor after some real traffic through a test upstream.
struct Scenario {
    dir: tempfile::TempDir,
    upstream: Upstream,
    narbor: NarborServer,
    seen: Vec<Seen>,
    /// Body bytes the upstream sent for objects narbor fetched.
    upstream_bytes: u64,
    /// Bytes of what narbor stored: the narinfo, and the two good NARs.
    stored_bytes: u64,
}

fn seen(route: &'static str, r: &Reply) -> Seen {
    Seen {
        route,
        status: r.status,
        cache: r.cache_status().to_owned(),
        body_len: r.body.len() as u64,
        complete: r.complete,
    }
}

/// A narinfo hit and miss, a NAR miss then hits, four clients on one slow NAR
/// (one fill, the others join it), a NAR that fails verification, a 404 then
/// its negative-cache answer, and a malformed path.
fn scenario() -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let key = SecretKey::from_seed("stats-test-1", Sha256::digest(b"stats").0).unwrap();
    let nar_a = pseudo_random(300_000, 71);
    let nar_b = pseudo_random(2_000_000, 72);
    let nar_bad = pseudo_random(50_000, 73);
    let key_a = put_nar(&root, &nar_a);
    let key_b = put_nar(&root, &nar_b);
    let key_bad = put_nar(&root, &nar_bad);
    let info = put_narinfo(&root, "stats-a", &key_a, &nar_a, &key);
    let info_len = std::fs::metadata(root.join(&info)).unwrap().len();
    let upstream = Upstream::start(root);
    upstream.set_fault(&key_bad, Some(Fault::WrongBytes));
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &upstream.url()]);

    let mut log = Vec::new();
    for _ in 0..2 {
        log.push(seen("narinfo", &narbor.get(&format!("/{info}"))));
    }
    for _ in 0..3 {
        log.push(seen("nar", &narbor.get(&format!("/{key_a}"))));
    }
    // Four seconds' worth of NAR at this rate: the clients overlap.
    upstream.set_rate(500_000);
    let narbor = Arc::new(narbor);
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (narbor, key_b) = (Arc::clone(&narbor), key_b.clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100 * i));
                seen("nar", &narbor.get(&format!("/{key_b}")))
            })
        })
        .collect();
    log.extend(clients.into_iter().map(|c| c.join().unwrap()));
    upstream.set_rate(0);
    let narbor = Arc::into_inner(narbor).unwrap();
    // The fill fails verification. Its client gets a 502, or a 200 head and a
    // cut body; when the cut comes at once, the head can be lost with it.
    log.push(
        match try_request(narbor.addr, "GET", &format!("/{key_bad}"), &[]) {
            Ok(r) => seen("nar", &r),
            Err(_) => Seen {
                route: "nar",
                status: 200,
                cache: "MISS".to_owned(),
                body_len: 0,
                complete: false,
            },
        },
    );
    let missing = format!("/{}.narinfo", "0".repeat(32));
    for _ in 0..2 {
        log.push(seen("narinfo", &narbor.get(&missing)));
    }
    log.push(seen("other", &narbor.get("/nar/not-a-hash.nar")));

    Scenario {
        dir,
        upstream,
        narbor,
        seen: log,
        upstream_bytes: info_len + (nar_a.len() + nar_b.len() + nar_bad.len()) as u64,
        stored_bytes: info_len + (nar_a.len() + nar_b.len()) as u64,
    }
}

/// `series value` lines of a Prometheus text, by series.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn get_metric(all: &HashMap<String, f64>, series: &str) -> f64 {
    *all.get(series)
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

#[test]
fn metrics_after_traffic_pass_promtool_and_count_what_clients_saw() {
    let sc = scenario();
    let reply = sc.narbor.get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(reply.body).unwrap();

    // The real promtool's checks, lint included.
    let file = sc.dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("run promtool (Debian package prometheus; scripts/test.sh installs it)");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let m = samples(&text);
    // Every request of the scenario, counted under what the client was told.
    let mut expected: HashMap<String, f64> = HashMap::new();
    for s in &sc.seen {
        let series = format!(
            r#"narbor_requests_total{{route="{}",status="{}",cache_status="{}"}}"#,
            s.route, s.status, s.cache
        );
        *expected.entry(series).or_default() += 1.0;
    }
    for (series, n) in &expected {
        assert_eq!(get_metric(&m, series), *n, "{series}");
    }
    let counted_objects: f64 = m
        .iter()
        .filter(|(k, _)| {
            k.starts_with("narbor_requests_total{")
                && !k.contains(r#"route="page""#)
                && !k.contains(r#"route="cache-info""#)
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(counted_objects, sc.seen.len() as f64);
    let hits = sc.seen.iter().filter(|s| s.cache == "HIT").count();
    assert!(hits >= 3, "the scenario makes at least three hits");

    // Bytes served from the store: exactly what the HIT clients received.
    let hit_bytes = |route: &str| -> u64 {
        sc.seen
            .iter()
            .filter(|s| s.route == route && s.cache == "HIT")
            .inspect(|s| assert!(s.complete))
            .map(|s| s.body_len)
            .sum()
    };
    let nar_hit = get_metric(
        &m,
        r#"narbor_served_bytes_total{route="nar",cache_status="HIT"}"#,
    );
    assert_eq!(nar_hit, hit_bytes("nar") as f64);
    let saved = get_metric(&m, "narbor_saved_bytes_total");
    assert_eq!(saved, (hit_bytes("nar") + hit_bytes("narinfo")) as f64);
    // MISS bytes: at least every complete MISS body; the failed fill's client
    // got at most the bytes before the cut.
    let complete_miss: u64 = sc
        .seen
        .iter()
        .filter(|s| s.route == "nar" && s.cache == "MISS" && s.complete)
        .map(|s| s.body_len)
        .sum();
    let nar_miss = get_metric(
        &m,
        r#"narbor_served_bytes_total{route="nar",cache_status="MISS"}"#,
    ) as u64;
    assert!(
        (complete_miss..complete_miss + 50_000).contains(&nar_miss),
        "{nar_miss} MISS bytes served, {complete_miss} in complete bodies"
    );

    let up = format!(r#"upstream="{}""#, sc.upstream.url());
    assert_eq!(
        get_metric(&m, &format!("narbor_upstream_fetched_bytes_total{{{up}}}")),
        sc.upstream_bytes as f64
    );
    assert_eq!(
        get_metric(
            &m,
            &format!(r#"narbor_upstream_requests_total{{{up},result="found"}}"#)
        ),
        4.0
    );
    assert_eq!(
        get_metric(
            &m,
            &format!(r#"narbor_upstream_requests_total{{{up},result="not_found"}}"#)
        ),
        1.0
    );
    assert_eq!(
        get_metric(
            &m,
            &format!(r#"narbor_upstream_errors_total{{{up},kind="integrity"}}"#)
        ),
        1.0
    );
    assert_eq!(
        get_metric(
            &m,
            &format!(r#"narbor_upstream_request_duration_seconds_count{{{up}}}"#)
        ),
        5.0
    );
    assert_eq!(
        get_metric(&m, r#"narbor_fills_total{kind="nar",outcome="stored"}"#),
        2.0
    );
    assert_eq!(
        get_metric(&m, r#"narbor_fills_total{kind="nar",outcome="failed"}"#),
        1.0
    );
    assert_eq!(
        get_metric(
            &m,
            r#"narbor_fill_failures_total{kind="nar",reason="integrity"}"#
        ),
        1.0
    );
    assert_eq!(
        get_metric(
            &m,
            r#"narbor_fills_total{kind="document",outcome="not_found"}"#
        ),
        1.0
    );
    let coalesced = sc.seen.iter().filter(|s| s.cache == "COALESCED").count();
    assert!(coalesced >= 1, "the slow NAR's clients overlapped");
    assert_eq!(
        get_metric(&m, r#"narbor_fill_coalesced_total{kind="nar"}"#),
        coalesced as f64
    );
    assert_eq!(get_metric(&m, "narbor_store_objects"), 3.0);
    assert_eq!(get_metric(&m, "narbor_store_bytes"), sc.stored_bytes as f64);
    assert_eq!(
        get_metric(&m, "narbor_store_limit_bytes"),
        200.0 * 1024.0 * 1024.0 * 1024.0
    );
    assert_eq!(get_metric(&m, r#"narbor_fills_in_flight{kind="nar"}"#), 0.0);
    assert_eq!(sc.upstream.total_requests(), 5);
}

/// Where test artifacts are kept: `target/test-artifacts/`, next to the
/// build (found from this test binary's path: `target/debug/deps/e2e-…`).
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary lives in target/<profile>/deps");
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium with a fresh profile and nothing that phones home.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    run_ok(
        Command::new("timeout")
            .args(["120", "chromium"])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args),
    )
}

#[test]
fn status_page_renders_real_numbers_in_chromium() {
    let sc = scenario();
    let json: serde_json::Value =
        serde_json::from_slice(&sc.narbor.get("/status.json").body).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/status", sc.narbor.url());
    let dom = stdout_str(&chromium(profile.path(), &["--dump-dom", &url]));

    // The figures the page shows are the JSON's, and the JSON's are the traffic's.
    let hits = sc.seen.iter().filter(|s| s.cache == "HIT").count() as u64;
    let lookups = sc.seen.iter().filter(|s| s.route != "other").count() as u64;
    assert_eq!(json["requests"]["hits"], hits);
    assert_eq!(json["requests"]["lookups"], lookups);
    let ratio = format!("{:.1}%", hits as f64 / lookups as f64 * 100.0);
    let expect_in_dom = [
        format!(r#"id="hit-ratio">{ratio}<"#),
        format!(r#"id="hits">{hits}<"#),
        format!(r#"id="lookups">{lookups}<"#),
        format!(r#"id="saved-bytes">{}<"#, json["bytes"]["saved"]),
        format!(r#"id="fetched-bytes">{}<"#, json["bytes"]["fetched"]),
        format!("<code>{}</code>", sc.upstream.url()),
        "integrity".to_owned(),
        "<svg".to_owned(),
    ];
    for needle in &expect_in_dom {
        assert!(
            dom.contains(needle),
            "{needle} not in the rendered page:\n{dom}"
        );
    }
    assert_eq!(json["bytes"]["fetched"], sc.upstream_bytes);
    assert!(json["bytes"]["saved"].as_u64().unwrap() > 300_000);
    // The chart drew this minute's traffic.
    let bars = dom.matches("<rect").count();
    assert!(bars >= 2, "{bars} bars in the chart");
    let minutes = json["traffic"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let charted: u64 = minutes
        .iter()
        .map(|m| m["fetched_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(charted, sc.upstream_bytes);
    assert_eq!(json["store"]["objects"], 3);
    assert_eq!(json["fills"]["failures"]["integrity"], 1);
    assert_eq!(json["recent_fills"].as_array().unwrap().len(), 5);

    let shot = artifacts_dir().join("status.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1600",
            &url,
        ],
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        png.len() > 20_000,
        "a {} byte screenshot is blank",
        png.len()
    );
}

#[test]
fn stats_answer_loopback_clients() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["--no-upstream"][..], &["--no-upstream", "--stats-public"]] {
        let narbor = NarborServer::start(&dir.path().join("cache"), args);
        for (path, content_type, needle) in [
            ("/status", "text/html", "narbor status"),
            ("/status.json", "application/json", "\"hit_ratio\": null"),
            ("/metrics", "text/plain", "narbor_build_info{version="),
        ] {
            let r = narbor.get(path);
            assert_eq!(r.status, 200, "{path} {args:?}");
            assert!(r.header("content-type").unwrap().starts_with(content_type));
            assert_eq!(r.cache_status(), "LOCAL");
            assert_eq!(r.header("cache-control"), Some("no-store"));
            let body = String::from_utf8(r.body).unwrap();
            assert!(body.contains(needle), "{path}: {body}");
        }
        let head = narbor.head("/metrics");
        assert_eq!((head.status, head.body.len()), (200, 0));
        drop(narbor);
    }
}
