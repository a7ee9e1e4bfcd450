//! `/`: a page for people: what this cache is, where it fetches from, and how
//! to point Nix at it. No external assets.

use crate::app::Server;
use crate::dashboard::escape;

pub fn page(server: &Server) -> String {
    let stats = server.store.stats();
    let upstreams = if server.upstreams.is_empty() {
        "<li>none: this cache serves only what it has stored</li>".to_owned()
    } else {
        server
            .upstreams
            .bases()
            .iter()
            .map(|u| format!("<li><code>{}</code></li>", escape(u)))
            .collect::<String>()
    };
    let keys = if server.config.trusted_keys.is_empty() {
        String::new()
    } else {
        let list = server
            .config
            .trusted_keys
            .iter()
            .map(|k| escape(&k.to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        format!("<p>Only narinfos signed by one of these keys are cached and served: <code>{list}</code></p>")
    };
    let own_key = server
        .config
        .sign_key
        .as_ref()
        .map(|k| escape(&k.public_key().to_string()));
    let trusted_line = match &own_key {
        Some(k) => format!("extra-trusted-public-keys = {k}\n"),
        None => String::new(),
    };
    let nixos_keys = match &own_key {
        Some(k) => format!("  nix.settings.extra-trusted-public-keys = [ \"{k}\" ];\n"),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>narbor: Nix binary cache</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
pre{{background:#f4f4f4;padding:.8rem;overflow-x:auto}}code{{background:#f4f4f4}}</style></head>
<body>
<h1>narbor</h1>
<p>A pull-through Nix binary cache. Point Nix at this address and every package
is fetched from upstream once, checked against its hash, and then served from here.
Priority {priority}: Nix asks this cache before cache.nixos.org (priority 40).</p>
<h2>Upstreams</h2><ul>{upstreams}</ul>
{keys}
<h2>Use it</h2>
<p>Replace <code>URL</code> with the address you reach this page at.</p>
<p>NixOS (<code>configuration.nix</code>):</p>
<pre>{{
  nix.settings.extra-substituters = [ "URL" ];
{nixos_keys}}}</pre>
<p>Any other system (<code>/etc/nix/nix.conf</code>, then restart <code>nix-daemon</code>):</p>
<pre>extra-substituters = URL
{trusted_line}</pre>
<p>Signatures are passed through from upstream, so the keys you already trust
(such as <code>cache.nixos.org-1</code>) keep working.</p>
<h2>State</h2>
<p>{objects} objects, {bytes} bytes stored of at most {max} bytes; {fills} fetches in flight.</p>
<p>Health check: <a href="/health"><code>/health</code></a> answers <code>ok</code>.
Cache metadata: <a href="/nix-cache-info"><code>/nix-cache-info</code></a>.
Statistics (from this host only, unless narbor runs with <code>--stats-public</code>):
<a href="/status"><code>/status</code></a>, <a href="/status.json"><code>/status.json</code></a>,
<a href="/metrics"><code>/metrics</code></a>.</p>
</body></html>
"#,
        priority = server.config.priority,
        objects = stats.objects,
        bytes = stats.bytes,
        max = stats.max_size,
        fills = server.fills_in_flight(),
    )
}
