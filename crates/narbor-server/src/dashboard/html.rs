//! `/status` as HTML: one self-contained page (inline CSS and SVG, no script,
//! no external assets), reloaded every ten seconds by a meta refresh.

use std::fmt::Write;

use super::{Snapshot, Upstream};
use crate::metrics::Minute;

/// Seconds between reloads.
pub const REFRESH_SECONDS: u32 = 10;

/// Text made safe inside HTML elements and double-quoted attributes (this
/// page's and the landing page's).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `1536` → `1.5 KiB`: a byte count for people, on this page and in
/// `narbor push`'s summary.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A ratio as the page prints it: `66.7%`, or a dash before there is one.
pub fn percent(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "–".to_owned(),
    }
}

fn ago(now: u64, t: Option<u64>) -> String {
    let Some(t) = t else {
        return "never".to_owned();
    };
    let s = now.saturating_sub(t);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

fn seconds(s: Option<f64>) -> String {
    match s {
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.2} s"),
        None => "–".to_owned(),
    }
}

const STYLE: &str = r#"
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--card:#f8f9fb;--served:#2e6fd8;--fetched:#e8833a;--ok:#1f8a4c;--bad:#c4372b}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);max-width:72rem;margin:1.5rem auto;padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem;margin:0}h2{font-size:1.1rem;margin:1.8rem 0 .6rem}
header{display:flex;justify-content:space-between;align-items:baseline;flex-wrap:wrap;gap:.5rem;border-bottom:1px solid var(--line);padding-bottom:.6rem}
.muted{color:var(--muted);font-size:.85rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:.8rem;margin-top:1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:.8rem 1rem}
.card .label{color:var(--muted);font-size:.8rem;text-transform:uppercase;letter-spacing:.04em}
.card .big{font-size:1.8rem;font-weight:600;margin:.2rem 0}
.card .sub{color:var(--muted);font-size:.85rem}
.bar{height:.6rem;background:var(--line);border-radius:.3rem;overflow:hidden;margin:.4rem 0}
.bar>div{height:100%;background:var(--served)}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:500}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.82rem;word-break:break-all}
td.url code{word-break:normal;white-space:nowrap}
.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.78rem;color:#fff}
.ok{background:var(--ok)}.bad{background:var(--bad)}.neutral{background:var(--muted)}
.legend span{display:inline-block;width:.8rem;height:.8rem;border-radius:.15rem;vertical-align:middle;margin:0 .3rem 0 .8rem}
svg text{font-family:inherit;font-size:11px;fill:var(--muted)}
"#;

pub fn page(s: &Snapshot) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let _ = write!(
        o,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>narbor status</title><style>{STYLE}</style></head>
<body>
<header><h1>narbor status</h1>
<div class="muted">version {version} · up {uptime} · refreshes every {REFRESH_SECONDS} s ·
<a href="/status.json">JSON</a> · <a href="/metrics">Prometheus</a> · <a href="/">about</a></div></header>
"#,
        version = escape(s.version),
        uptime = uptime(s.uptime_seconds),
    );
    cards(&mut o, s);
    chart(&mut o, &s.traffic);
    upstreams(&mut o, s);
    recent(&mut o, s);
    extra(&mut o, s);
    o.push_str("</body></html>\n");
    o
}

fn uptime(secs: u64) -> String {
    match secs {
        0..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn cards(o: &mut String, s: &Snapshot) {
    let r = &s.requests;
    let b = &s.bytes;
    let st = &s.store;
    let f = &s.fills;
    let by_status = r
        .by_cache_status
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(" · ");
    let use_pct = (st.use_ratio * 100.0).clamp(0.0, 100.0);
    let failures = if f.failures.is_empty() {
        String::new()
    } else {
        let list = f
            .failures
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(" ({})", escape(&list))
    };
    let _ = write!(
        o,
        r#"<section class="cards">
<div class="card"><div class="label">Hit ratio</div>
<div class="big" id="hit-ratio">{hit_ratio}</div>
<div class="sub"><span id="hits">{hits}</span> hits of <span id="lookups">{lookups}</span> lookups{by_status_sep}{by_status}</div></div>
<div class="card"><div class="label">Bytes saved</div>
<div class="big">{saved_h}</div>
<div class="sub"><span id="saved-bytes">{saved}</span> bytes served from the store, {saved_ratio} of <span id="served-bytes">{served}</span> served</div></div>
<div class="card"><div class="label">Egress (fetched upstream)</div>
<div class="big">{fetched_h}</div>
<div class="sub"><span id="fetched-bytes">{fetched}</span> bytes from upstreams</div></div>
<div class="card"><div class="label">Store</div>
<div class="big">{use_text}</div>
<div class="bar"><div style="width:{use_pct:.2}%"></div></div>
<div class="sub"><span id="store-bytes">{store_h}</span> of {limit_h} · {objects} objects · evicted {ev_size} for size, {ev_inactive} inactive</div></div>
<div class="card"><div class="label">Fills</div>
<div class="big">{in_flight} in flight</div>
<div class="sub">{stored} stored · {not_found} not found · {failed} failed{failures} · {coalesced} requests joined one in flight</div></div>
<div class="card"><div class="label">Requests</div>
<div class="big" id="requests-total">{total}</div>
<div class="sub">every request answered, pages included</div></div>
</section>
"#,
        use_text = if st.bytes > 0 && use_pct < 0.1 {
            "&lt;0.1%".to_owned()
        } else {
            format!("{use_pct:.1}%")
        },
        hit_ratio = percent(r.hit_ratio),
        hits = r.hits,
        lookups = r.lookups,
        by_status_sep = if by_status.is_empty() { "" } else { ": " },
        saved_h = human_bytes(b.saved),
        saved = b.saved,
        saved_ratio = percent(b.saved_ratio),
        served = b.served,
        fetched_h = human_bytes(b.fetched),
        fetched = b.fetched,
        store_h = human_bytes(st.bytes),
        limit_h = human_bytes(st.limit),
        objects = st.objects,
        ev_size = st.evicted_for_size,
        ev_inactive = st.evicted_inactive,
        in_flight = f.in_flight_nar + f.in_flight_document,
        stored = f.stored,
        not_found = f.not_found,
        failed = f.failed,
        coalesced = f.coalesced,
        total = r.total,
    );
}

/// Bars per minute: bytes served (blue) and fetched from upstream (orange).
fn chart(o: &mut String, minutes: &[Minute]) {
    const W: f64 = 960.0;
    const H: f64 = 170.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 22.0;
    let plot_h = H - TOP - BOTTOM;
    let max = minutes
        .iter()
        .map(|m| m.served_bytes.max(m.fetched_bytes))
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = (W - LEFT) / minutes.len().max(1) as f64;
    let bar = (slot * 0.42).max(1.0);
    let served: u64 = minutes.iter().map(|m| m.served_bytes).sum();
    let fetched: u64 = minutes.iter().map(|m| m.fetched_bytes).sum();
    let _ = write!(
        o,
        r##"<h2>Traffic, last hour</h2>
<div class="muted legend"><span style="background:var(--served)"></span>served {served_h}<span style="background:var(--fetched)"></span>fetched from upstream {fetched_h} (per minute)</div>
<svg id="traffic-chart" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="bytes served and fetched per minute over the last hour">
<line x1="{LEFT}" y1="{base}" x2="{W}" y2="{base}" stroke="#e4e7ec"/>
<line x1="{LEFT}" y1="{TOP}" x2="{W}" y2="{TOP}" stroke="#e4e7ec" stroke-dasharray="3 3"/>
<text x="{lx}" y="{ty}" text-anchor="end">{max_h}</text>
<text x="{lx}" y="{base}" text-anchor="end">0</text>
"##,
        served_h = human_bytes(served),
        fetched_h = human_bytes(fetched),
        base = TOP + plot_h,
        lx = LEFT - 6.0,
        ty = TOP + 8.0,
        max_h = human_bytes(max),
    );
    for (i, m) in minutes.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        for (j, (v, color)) in [
            (m.served_bytes, "var(--served)"),
            (m.fetched_bytes, "var(--fetched)"),
        ]
        .into_iter()
        .enumerate()
        {
            if v == 0 {
                continue;
            }
            let h = (v as f64 / max as f64 * plot_h).max(1.0);
            let _ = writeln!(
                o,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}" style="fill:{color}"><title>{}: {} bytes</title></rect>"#,
                x + j as f64 * bar,
                TOP + plot_h - h,
                if j == 0 { "served" } else { "fetched" },
                v,
            );
        }
    }
    let label_y = H - 6.0;
    for (i, label) in [(0, "60 min ago"), (30, "30 min ago"), (59, "now")] {
        let x = match i {
            0 => LEFT,
            59 => W,
            _ => LEFT + i as f64 * slot + slot / 2.0,
        };
        let anchor = match i {
            0 => "start",
            59 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            o,
            r#"<text x="{x:.1}" y="{label_y}" text-anchor="{anchor}">{label}</text>"#
        );
    }
    o.push_str("</svg>\n");
}

fn health(u: &Upstream) -> &'static str {
    match (u.healthy, u.last_success, u.last_failure) {
        (_, None, None) => r#"<span class="badge neutral">unused</span>"#,
        (true, ..) => r#"<span class="badge ok">ok</span>"#,
        (false, ..) => r#"<span class="badge bad">failing</span>"#,
    }
}

fn upstreams(o: &mut String, s: &Snapshot) {
    o.push_str("<h2>Upstreams</h2>\n");
    if s.upstreams.is_empty() {
        o.push_str("<p class=\"muted\">None: this cache serves only what it has stored.</p>\n");
        return;
    }
    o.push_str(
        r#"<table id="upstreams"><tr><th>upstream</th><th>health</th><th>last success</th><th>last failure</th>
<th class="n">found</th><th class="n">404</th><th class="n">errors</th><th class="n">fetched</th><th class="n">latency mean</th><th class="n">p95 ≤</th></tr>
"#,
    );
    for u in &s.upstreams {
        let failure = match &u.last_error {
            Some(e) => format!(
                "{}<br><span class=\"muted\">{}</span>",
                ago(s.now, u.last_failure),
                escape(e)
            ),
            None => ago(s.now, u.last_failure),
        };
        let _ = writeln!(
            o,
            r#"<tr><td class="url"><code>{url}</code></td><td>{health}</td><td>{ok}</td><td>{failure}</td><td class="n">{found}</td><td class="n">{nf}</td><td class="n">{errors}</td><td class="n" title="{fetched} bytes">{fetched_h}</td><td class="n">{mean}</td><td class="n">{p95}</td></tr>"#,
            url = escape(&u.url),
            health = health(u),
            ok = ago(s.now, u.last_success),
            found = u.found,
            nf = u.not_found,
            errors = u.errors,
            fetched = u.fetched_bytes,
            fetched_h = human_bytes(u.fetched_bytes),
            mean = seconds(u.latency_mean_seconds),
            p95 = seconds(u.latency_p95_seconds),
        );
    }
    o.push_str("</table>\n");
}

fn recent(o: &mut String, s: &Snapshot) {
    o.push_str("<h2>Recent fills</h2>\n");
    if s.recent_fills.is_empty() {
        o.push_str("<p class=\"muted\">Nothing fetched from upstream yet.</p>\n");
        return;
    }
    o.push_str(
        r#"<table id="recent-fills"><tr><th>when</th><th>object</th><th>kind</th><th>upstream</th><th class="n">bytes</th><th class="n">took</th><th>outcome</th></tr>
"#,
    );
    for f in &s.recent_fills {
        let class = match f.outcome {
            "stored" => "ok",
            "failed" => "bad",
            _ => "neutral",
        };
        let why = match (&f.reason, &f.message) {
            (Some(r), Some(m)) => {
                format!(" <span class=\"muted\">{}: {}</span>", escape(r), escape(m))
            }
            (Some(r), None) => format!(" <span class=\"muted\">{}</span>", escape(r)),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            r#"<tr><td>{when}</td><td><code>{key}</code></td><td>{kind}</td><td><code>{up}</code></td><td class="n" title="{bytes} bytes">{bytes_h}</td><td class="n">{took}</td><td><span class="badge {class}">{outcome}</span>{why}</td></tr>"#,
            when = ago(s.now, Some(f.finished)),
            key = escape(&f.key),
            kind = f.kind,
            up = escape(f.upstream.as_deref().unwrap_or("–")),
            bytes = f.bytes,
            bytes_h = human_bytes(f.bytes),
            took = seconds(Some(f.duration_seconds)),
            outcome = f.outcome,
        );
    }
    o.push_str("</table>\n");
}

fn extra(o: &mut String, s: &Snapshot) {
    if s.extra.is_empty() {
        return;
    }
    o.push_str(
        "<h2>More</h2>\n<table id=\"extra\"><tr><th>metric</th><th class=\"n\">value</th></tr>\n",
    );
    for e in &s.extra {
        let labels = e
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        let name = if labels.is_empty() {
            e.name.clone()
        } else {
            format!("{}{{{labels}}}", e.name)
        };
        let _ = writeln!(
            o,
            r#"<tr><td><code>{}</code></td><td class="n">{}</td></tr>"#,
            escape(&name),
            e.value
        );
    }
    o.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(3 << 50), "3.0 PiB");
        assert_eq!(percent(Some(2.0 / 3.0)), "66.7%");
        assert_eq!(percent(None), "–");
        assert_eq!(ago(100, Some(40)), "1 min ago");
        assert_eq!(ago(100, Some(90)), "10 s ago");
        assert_eq!(ago(100, None), "never");
        assert_eq!(seconds(Some(0.0123)), "12 ms");
    }
}
