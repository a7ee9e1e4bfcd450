//! nixcache-oci's environment variables, read as aliases of narbor's settings
//! so that a setup of nixcache-oci's proxy moves over unchanged.

use std::path::PathBuf;

use anyhow::Context;

use super::ServeOptions;

/// The port nixcache-oci's proxy listens on unless `NIXCACHE_PORT` says
/// otherwise (proxy/main.py at 6a4b9e4, line 24).
const NIXCACHE_DEFAULT_PORT: &str = "37515";

/// The environment variables of nixcache-oci's proxy and publisher
/// (proxy/main.py and lib/cache-builder.sh at 6a4b9e4), as aliases, so
/// existing setups move over: each fills an option that neither a flag nor a
/// narbor variable set.
///
/// - `NIXCACHE_REPO=owner/repo` means `oci://REGISTRY/owner/repo/nix-cache`,
///   where REGISTRY is `NIXCACHE_REGISTRY` (default `ghcr.io`; the seed
///   always speaks HTTPS to it, and so does narbor unless it is given as
///   `http://host:port`).
/// - `NIXCACHE_LISTEN` (a bind address, default 127.0.0.1) and
///   `NIXCACHE_PORT` (default 37515) make the listen address; either alone
///   is enough, as with the seed's proxy.
/// - `NIXCACHE_UPSTREAM` is space-separated (empty: none).
/// - `NIXCACHE_INDEX_TTL` is in seconds.
/// - `NIXCACHE_INDEX_DIR` is where the index is saved (`index-dir`); a
///   `cache-index.json` the seed's proxy saved there is read at start.
///
/// (`GITHUB_TOKEN`/`GH_TOKEN` are read as registry credentials for ghcr.io
/// and for `NIXCACHE_REGISTRY`.)
pub fn apply_nixcache_env(
    opts: &mut ServeOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if opts.oci.is_none() {
        if let Some(repo) = set("NIXCACHE_REPO") {
            let repo = repo.trim().trim_matches('/').to_ascii_lowercase();
            opts.oci = Some(nixcache_store(&repo, set("NIXCACHE_REGISTRY").as_deref()));
        }
    }
    if opts.listen.is_empty() {
        let (host, port) = (set("NIXCACHE_LISTEN"), set("NIXCACHE_PORT"));
        if host.is_some() || port.is_some() {
            let host = host.unwrap_or_else(|| "127.0.0.1".to_owned());
            let port = port.unwrap_or_else(|| NIXCACHE_DEFAULT_PORT.to_owned());
            let host = host.trim();
            let addr = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{}", port.trim())
            } else {
                format!("{host}:{}", port.trim())
            };
            opts.listen = vec![addr.parse().with_context(|| {
                format!("NIXCACHE_LISTEN/NIXCACHE_PORT make {addr:?}, not an address")
            })?];
        }
    }
    if opts.upstreams.is_empty() && !opts.no_upstream {
        if let Some(list) = env("NIXCACHE_UPSTREAM") {
            let list: Vec<String> = list.split_whitespace().map(str::to_owned).collect();
            if list.is_empty() {
                opts.no_upstream = true;
            } else {
                opts.upstreams = list;
            }
        }
    }
    if opts.index_ttl.is_none() {
        if let Some(ttl) = set("NIXCACHE_INDEX_TTL") {
            let ttl = ttl
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("index-ttl: {e}"))?;
            opts.index_ttl = Some(ttl);
        }
    }
    if opts.index_dir.is_none() {
        if let Some(dir) = set("NIXCACHE_INDEX_DIR") {
            opts.index_dir = Some(PathBuf::from(dir.trim()));
        }
    }
    Ok(())
}

/// The store of a nixcache-oci repository: `<repo>/nix-cache` (the suffix
/// is hard-coded in the seed) on `registry`.
fn nixcache_store(repo: &str, registry: Option<&str>) -> String {
    let registry = registry.map(str::trim).unwrap_or("ghcr.io");
    let (scheme, host) = match registry.strip_prefix("http://") {
        Some(host) => ("oci+http", host),
        None => ("oci", registry.strip_prefix("https://").unwrap_or(registry)),
    };
    format!("{scheme}://{}/{repo}/nix-cache", host.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn nixcache_variables_fill_what_nothing_else_set() {
        let mut o = ServeOptions::default();
        apply_nixcache_env(
            &mut o,
            &env(&[
                ("NIXCACHE_REPO", "Owner/Repo"),
                ("NIXCACHE_PORT", "5000"),
                ("NIXCACHE_UPSTREAM", ""),
                ("NIXCACHE_INDEX_TTL", "60"),
            ]),
        )
        .unwrap();
        assert_eq!(o.oci.as_deref(), Some("oci://ghcr.io/owner/repo/nix-cache"));
        assert_eq!(o.listen, ["127.0.0.1:5000".parse::<SocketAddr>().unwrap()]);
        assert!(o.no_upstream, "an empty NIXCACHE_UPSTREAM means none");
        let s = o.resolve().unwrap();
        assert_eq!(s.index_ttl, Duration::from_secs(60));
        assert!(s.upstreams.is_empty());

        let mut o = ServeOptions {
            priority: Some(1),
            upstreams: vec!["http://mine".into()],
            ..Default::default()
        };
        apply_nixcache_env(
            &mut o,
            &env(&[
                ("NIXCACHE_UPSTREAM", "http://a http://b"),
                ("NIXCACHE_LISTEN", "::1"),
                ("NIXCACHE_PORT", "8080"),
            ]),
        )
        .unwrap();
        assert_eq!(o.upstreams, ["http://mine"], "a flag beats the alias");
        assert_eq!(o.listen, ["[::1]:8080".parse::<SocketAddr>().unwrap()]);
        let mut o = ServeOptions::default();
        assert!(apply_nixcache_env(&mut o, &env(&[("NIXCACHE_PORT", "eighty")])).is_err());
    }

    #[test]
    fn nixcache_listen_alone_means_the_seeds_port_and_registry_is_honoured() {
        // The seed's NixOS module and README set only NIXCACHE_LISTEN for a
        // LAN; its proxy then listens on port 37515.
        let mut o = ServeOptions::default();
        apply_nixcache_env(&mut o, &env(&[("NIXCACHE_LISTEN", "0.0.0.0")])).unwrap();
        assert_eq!(o.listen, ["0.0.0.0:37515".parse::<SocketAddr>().unwrap()]);
        let mut o = ServeOptions::default();
        apply_nixcache_env(
            &mut o,
            &env(&[
                ("NIXCACHE_REPO", "team/app"),
                ("NIXCACHE_REGISTRY", "registry.example.org:5000"),
                ("NIXCACHE_INDEX_DIR", "/var/cache/nixcache-proxy"),
            ]),
        )
        .unwrap();
        assert_eq!(
            o.oci.as_deref(),
            Some("oci://registry.example.org:5000/team/app/nix-cache")
        );
        assert_eq!(
            o.index_dir.as_deref(),
            Some(Path::new("/var/cache/nixcache-proxy"))
        );
        let s = o.resolve().unwrap();
        assert_eq!(s.index_dir, Path::new("/var/cache/nixcache-proxy"));
        let mut o = ServeOptions::default();
        apply_nixcache_env(
            &mut o,
            &env(&[
                ("NIXCACHE_REPO", "team/app"),
                ("NIXCACHE_REGISTRY", "http://127.0.0.1:5000/"),
            ]),
        )
        .unwrap();
        assert_eq!(
            o.oci.as_deref(),
            Some("oci+http://127.0.0.1:5000/team/app/nix-cache")
        );
    }
}
