//! `narbor serve`'s settings: one definition that is both the command line and
//! the TOML config file, and how they combine.
//!
//! Every option has a flag (`--max-size`), a config key (`max-size`) and, for
//! the usual ones, an environment variable (`NARBOR_MAX_SIZE`). Precedence: a
//! flag beats the environment, which beats the file, which beats the built-in
//! default. Unknown keys in the file are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use narbor_proto::{PublicKey, SecretKey};
use narbor_server::{Credentials, Netrc, Tls, TlsFiles, UpstreamBase};
use serde::Deserialize;

use crate::units::{ByteSize, Span};

/// The default listen address: loopback only, on narbor's own port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:37515";
/// The upstream a pull-through cache exists for.
pub const DEFAULT_UPSTREAM: &str = "https://cache.nixos.org";
/// Bigger than most fleets' working set, small enough for a laptop disk.
pub const DEFAULT_MAX_SIZE: &str = "200G";
/// A month: what nobody asked for in that long is unlikely to be asked again.
pub const DEFAULT_INACTIVE: &str = "30d";
/// Below cache.nixos.org's 40, so Nix asks this cache first.
pub const DEFAULT_PRIORITY: u32 = 30;
/// A narinfo for a store hash practically never changes: a week.
pub const DEFAULT_NARINFO_TTL: &str = "7d";
/// nixcache-oci's default: a push is visible within five minutes, and an
/// unchanged index costs one small request per refresh.
pub const DEFAULT_INDEX_TTL: &str = "300s";
/// Short, so a path pushed upstream a minute ago is found.
pub const DEFAULT_NEGATIVE_TTL: &str = "1m";
/// Long enough for a congested link, short enough that a dead upstream does not
/// hold Nix clients for minutes.
pub const DEFAULT_UPSTREAM_TIMEOUT: &str = "30s";
/// LAN mode's listen addresses: every interface, IPv4 and IPv6, on HTTP's own
/// port, so a substituter URL needs no port number.
pub const DEFAULT_LAN_LISTEN: [&str; 2] = ["0.0.0.0:80", "[::]:80"];

/// Options of `narbor serve`, as flags and as config-file keys. Every field is
/// optional here; [`ServeOptions::resolve`] applies the defaults.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeOptions {
    /// Address to listen on (repeatable) [default: 127.0.0.1:37515].
    #[arg(
        long = "listen",
        value_name = "ADDR:PORT",
        env = "NARBOR_LISTEN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Where to store cached objects [default: $XDG_CACHE_HOME/narbor or ~/.cache/narbor].
    #[arg(long, value_name = "DIR", env = "NARBOR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The most the store may hold; K, M, G, T are powers of 1024 [default: 200G].
    #[arg(long, value_name = "SIZE", env = "NARBOR_MAX_SIZE")]
    pub max_size: Option<String>,
    /// Evict what nobody asked for in this long [default: 30d].
    #[arg(long, value_name = "DURATION")]
    pub inactive: Option<String>,
    /// An upstream cache, tried in the order given (repeatable; replaces the default,
    /// https://cache.nixos.org).
    #[arg(
        long = "upstream",
        value_name = "URL",
        env = "NARBOR_UPSTREAMS",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// Serve only what is stored; ask no upstream.
    #[arg(long)]
    #[serde(default)]
    pub no_upstream: bool,
    /// A netrc file (Nix's `netrc-file` format, as curl reads it): credentials for
    /// upstream hosts whose URL carries none.
    #[arg(long, value_name = "FILE", env = "NARBOR_NETRC_FILE")]
    pub netrc_file: Option<PathBuf>,
    /// `HOST=FILE` (repeatable): send the token in FILE as `Authorization: Bearer` to
    /// upstream requests for HOST.
    #[arg(long = "upstream-token-file", value_name = "HOST=FILE")]
    #[serde(default)]
    pub upstream_token_files: Vec<String>,
    /// The Priority advertised in nix-cache-info [default: 30, below cache.nixos.org's 40,
    /// so Nix asks this cache first].
    #[arg(long, value_name = "N", env = "NARBOR_PRIORITY")]
    pub priority: Option<u32>,
    /// How long a stored narinfo is served before asking upstream again [default: 7d].
    #[arg(long, value_name = "DURATION")]
    pub narinfo_ttl: Option<String>,
    /// How long an upstream 404 is remembered [default: 1m].
    #[arg(long, value_name = "DURATION")]
    pub negative_ttl: Option<String>,
    /// How long an upstream may send nothing (connecting, or mid-body) before narbor gives
    /// up on it [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub upstream_timeout: Option<String>,
    /// A public key `name:base64` (repeatable): when given, a narinfo without a valid
    /// signature by one of these keys is neither cached nor served.
    #[arg(long = "trusted-key", value_name = "KEY")]
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// A secret key file: narbor adds its own signature to every narinfo it stores.
    #[arg(long, value_name = "FILE", env = "NARBOR_SIGN_KEY_FILE")]
    pub sign_key_file: Option<PathBuf>,
    /// The log filter, e.g. `info` or `narbor=debug` [default: info; RUST_LOG wins].
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Let every client see /status, /status.json and /metrics, not only loopback ones.
    #[arg(long)]
    #[serde(default)]
    pub stats_public: bool,
    /// LAN mode, for a trusted LAN: listen on every interface (port 80 unless --listen
    /// says otherwise), stats public, and advertise over mDNS (`narbor discover` finds it).
    #[arg(long)]
    #[serde(default)]
    pub lan: bool,
    /// A PEM certificate chain: serve HTTPS on every --listen address (needs --tls-key).
    /// Reloaded when the files change or on SIGHUP.
    #[arg(long, value_name = "FILE", env = "NARBOR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE", env = "NARBOR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// A plain-HTTP address that answers every request with a redirect to HTTPS
    /// (repeatable; needs --tls-cert).
    #[arg(long = "http-redirect-listen", value_name = "ADDR:PORT")]
    #[serde(default)]
    pub http_redirect_listen: Vec<SocketAddr>,
    /// An OCI registry cache to serve from its in-memory index, before the upstreams:
    /// `oci://HOST/NAME` (HTTPS) or `oci+http://HOST:PORT/NAME`.
    #[arg(long, value_name = "STORE", env = "NARBOR_OCI")]
    pub oci: Option<String>,
    /// How often the --oci index is refreshed (in the background) [default: 300s].
    #[arg(long, value_name = "DURATION")]
    pub index_ttl: Option<String>,
    /// Where the --oci index is saved, so a restart with the registry down still
    /// serves it [default: CACHE_DIR/oci-index].
    #[arg(long, value_name = "DIR")]
    pub index_dir: Option<PathBuf>,
    /// A file holding a bearer token that lets non-loopback clients POST /_refresh.
    #[arg(long, value_name = "FILE")]
    pub refresh_token_file: Option<PathBuf>,
}

/// `serve`'s settings with every default applied and every value checked.
#[derive(Debug)]
pub struct ServeSettings {
    pub listen: Vec<SocketAddr>,
    pub cache_dir: PathBuf,
    pub max_size: u64,
    pub inactive: Duration,
    /// Base URLs without credentials, and each URL's own.
    pub upstreams: Vec<UpstreamBase>,
    /// The netrc file's and the token files' credentials.
    pub credentials: Credentials,
    pub priority: u32,
    pub narinfo_ttl: Duration,
    pub negative_ttl: Duration,
    pub upstream_timeout: Duration,
    pub trusted_keys: Vec<PublicKey>,
    pub sign_key: Option<SecretKey>,
    pub log: String,
    pub stats_public: bool,
    pub lan: bool,
    /// HTTPS on every `listen` address, certificate loaded.
    pub tls: Option<Arc<Tls>>,
    pub http_redirect_listen: Vec<SocketAddr>,
    /// `--oci`: the store reference (checked).
    pub oci: Option<String>,
    pub index_ttl: Duration,
    pub index_dir: PathBuf,
    pub refresh_token: Option<String>,
}

impl ServeOptions {
    /// Reads a config file.
    pub fn from_file(path: &Path) -> anyhow::Result<ServeOptions> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))
    }

    /// These options (flags and environment) over `file`'s.
    pub fn over(self, file: ServeOptions) -> ServeOptions {
        fn list<T>(mine: Vec<T>, theirs: Vec<T>) -> Vec<T> {
            if mine.is_empty() {
                theirs
            } else {
                mine
            }
        }
        ServeOptions {
            listen: list(self.listen, file.listen),
            cache_dir: self.cache_dir.or(file.cache_dir),
            max_size: self.max_size.or(file.max_size),
            inactive: self.inactive.or(file.inactive),
            upstreams: list(self.upstreams, file.upstreams),
            no_upstream: self.no_upstream || file.no_upstream,
            netrc_file: self.netrc_file.or(file.netrc_file),
            upstream_token_files: list(self.upstream_token_files, file.upstream_token_files),
            priority: self.priority.or(file.priority),
            narinfo_ttl: self.narinfo_ttl.or(file.narinfo_ttl),
            negative_ttl: self.negative_ttl.or(file.negative_ttl),
            upstream_timeout: self.upstream_timeout.or(file.upstream_timeout),
            trusted_keys: list(self.trusted_keys, file.trusted_keys),
            sign_key_file: self.sign_key_file.or(file.sign_key_file),
            log: self.log.or(file.log),
            stats_public: self.stats_public || file.stats_public,
            lan: self.lan || file.lan,
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            http_redirect_listen: list(self.http_redirect_listen, file.http_redirect_listen),
            oci: self.oci.or(file.oci),
            index_ttl: self.index_ttl.or(file.index_ttl),
            index_dir: self.index_dir.or(file.index_dir),
            refresh_token_file: self.refresh_token_file.or(file.refresh_token_file),
        }
    }

    /// Applies the defaults and checks every value, naming the option at fault.
    pub fn resolve(self) -> anyhow::Result<ServeSettings> {
        let size = |key: &str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.to_owned());
            v.parse()
                .map(ByteSize::bytes)
                .map_err(|e| anyhow::anyhow!("{key}: {e}"))
        };
        let duration = |key: &str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.to_owned());
            v.parse()
                .map(Span::duration)
                .map_err(|e| anyhow::anyhow!("{key}: {e}"))
        };
        if self.no_upstream && !self.upstreams.is_empty() {
            bail!("no-upstream and upstreams contradict each other: give one of them");
        }
        let upstreams = if self.no_upstream {
            Vec::new()
        } else if self.upstreams.is_empty() {
            vec![check_upstream(DEFAULT_UPSTREAM)?]
        } else {
            self.upstreams
                .iter()
                .map(|u| check_upstream(u))
                .collect::<anyhow::Result<_>>()?
        };
        let credentials = upstream_credentials(&self.netrc_file, &self.upstream_token_files)?;
        let trusted_keys = self
            .trusted_keys
            .iter()
            .map(|k| {
                PublicKey::parse(k)
                    .with_context(|| format!("trusted-key {k:?} is not a public key (name:base64)"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let sign_key = match &self.sign_key_file {
            Some(path) => Some(load_secret_key(path)?),
            None => None,
        };
        let cache_dir = match self.cache_dir {
            Some(d) => d,
            None => default_cache_dir()?,
        };
        let index_dir = self
            .index_dir
            .clone()
            .unwrap_or_else(|| cache_dir.join("oci-index"));
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                Tls::load(TlsFiles { cert, key }).context("tls-cert/tls-key")?,
            )),
            (None, None) => None,
            _ => bail!("tls-cert and tls-key go together: give both or neither"),
        };
        if tls.is_none() && !self.http_redirect_listen.is_empty() {
            bail!("http-redirect-listen redirects to HTTPS: it needs tls-cert and tls-key");
        }
        Ok(ServeSettings {
            listen: if self.listen.is_empty() && self.lan {
                DEFAULT_LAN_LISTEN
                    .iter()
                    .map(|a| a.parse().expect("the default addresses parse"))
                    .collect()
            } else if self.listen.is_empty() {
                vec![DEFAULT_LISTEN.parse().expect("the default address parses")]
            } else {
                self.listen
            },
            cache_dir,
            max_size: size("max-size", self.max_size, DEFAULT_MAX_SIZE)?,
            inactive: duration("inactive", self.inactive, DEFAULT_INACTIVE)?,
            upstreams,
            credentials,
            priority: self.priority.unwrap_or(DEFAULT_PRIORITY),
            narinfo_ttl: duration("narinfo-ttl", self.narinfo_ttl, DEFAULT_NARINFO_TTL)?,
            negative_ttl: duration("negative-ttl", self.negative_ttl, DEFAULT_NEGATIVE_TTL)?,
            upstream_timeout: match duration(
                "upstream-timeout",
                self.upstream_timeout,
                DEFAULT_UPSTREAM_TIMEOUT,
            )? {
                d if d.is_zero() => bail!("upstream-timeout: must be more than 0s"),
                d => d,
            },
            trusted_keys,
            sign_key,
            log: self.log.unwrap_or_else(|| "info".to_owned()),
            // LAN mode is for a trusted LAN: its stats are public.
            stats_public: self.stats_public || self.lan,
            lan: self.lan,
            tls,
            http_redirect_listen: self.http_redirect_listen,
            oci: match self.oci {
                Some(store) => Some(
                    narbor_oci::StoreRef::parse(&store)
                        .map(|_| store)
                        .map_err(|e| anyhow::anyhow!("oci: {e}"))?,
                ),
                None => None,
            },
            index_ttl: match duration("index-ttl", self.index_ttl, DEFAULT_INDEX_TTL)? {
                d if d.is_zero() => bail!("index-ttl: must be more than 0s"),
                d => d,
            },
            index_dir,
            refresh_token: match &self.refresh_token_file {
                Some(path) => {
                    let token = std::fs::read_to_string(path)
                        .with_context(|| format!("refresh-token-file: reading {}", path.display()))?
                        .trim()
                        .to_owned();
                    if token.is_empty() {
                        bail!("refresh-token-file: {} is empty", path.display());
                    }
                    Some(token)
                }
                None => None,
            },
        })
    }
}

fn load_secret_key(path: &Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("sign-key-file: reading {}", path.display()))?;
    SecretKey::parse(&text).with_context(|| {
        format!(
            "sign-key-file: {} is not a secret key in Nix's format (make one with `narbor keygen`)",
            path.display()
        )
    })
}

fn default_cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("narbor"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("narbor")),
        None => bail!("neither XDG_CACHE_HOME nor HOME is set: give cache-dir"),
    }
}

/// An upstream base URL, its `user:password@` split off. Errors never show
/// the URL's password.
fn check_upstream(url: &str) -> anyhow::Result<UpstreamBase> {
    let ok = (url.starts_with("https://") || url.starts_with("http://")) && !url.contains(' ');
    let parsed = if ok {
        UpstreamBase::parse(url).ok()
    } else {
        None
    };
    match parsed {
        Some(base) => Ok(base),
        None => {
            let shown = narbor_server::metrics::redact_url(url);
            bail!("upstream {shown:?} is not an http:// or https:// base URL without query (e.g. https://cache.nixos.org)")
        }
    }
}

/// The netrc file and the bearer-token files, read.
fn upstream_credentials(
    netrc_file: &Option<PathBuf>,
    token_files: &[String],
) -> anyhow::Result<Credentials> {
    let netrc = match netrc_file {
        Some(path) => narbor_server::credentials::read_netrc(path)
            .map_err(|e| anyhow::anyhow!("netrc-file: {e}"))?,
        None => Netrc::default(),
    };
    let mut tokens = std::collections::HashMap::new();
    for spec in token_files {
        let Some((host, file)) = spec.split_once('=') else {
            bail!("upstream-token-file {spec:?}: expected HOST=FILE (e.g. cache.example.org=/run/secrets/token)");
        };
        let host = host.trim();
        if host.is_empty() || host.contains(['/', ':', '@']) {
            bail!("upstream-token-file {spec:?}: {host:?} is not a host name (no scheme, port or path)");
        }
        let token = narbor_server::credentials::read_token_file(Path::new(file.trim()))
            .map_err(|e| anyhow::anyhow!("upstream-token-file for {host}: {e}"))?;
        tokens.insert(host.to_owned(), token);
    }
    Ok(Credentials::new(netrc, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<ServeOptions> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn urls(s: &ServeSettings) -> Vec<&str> {
        s.upstreams.iter().map(|u| u.url.as_str()).collect()
    }

    #[test]
    fn every_key_parses_and_resolves() {
        let opts = parse(
            r#"
            listen = ["127.0.0.1:8080", "[::1]:8080"]
            cache-dir = "/var/cache/narbor"
            max-size = "500M"
            inactive = "7d"
            upstreams = ["https://cache.nixos.org/", "http://10.0.0.1:5000"]
            priority = 20
            narinfo-ttl = "1h"
            negative-ttl = "30s"
            trusted-keys = ["cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="]
            log = "narbor=debug"
            "#,
        )
        .unwrap();
        let s = opts.resolve().unwrap();
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.cache_dir, PathBuf::from("/var/cache/narbor"));
        assert_eq!(s.max_size, 500 << 20);
        assert_eq!(s.inactive, Duration::from_secs(7 * 86400));
        assert_eq!(
            urls(&s),
            ["https://cache.nixos.org", "http://10.0.0.1:5000"]
        );
        assert_eq!(s.priority, 20);
        assert_eq!(s.narinfo_ttl, Duration::from_secs(3600));
        assert_eq!(s.negative_ttl, Duration::from_secs(30));
        assert_eq!(s.trusted_keys.len(), 1);
        assert_eq!(s.log, "narbor=debug");
    }

    #[test]
    fn lan_listens_everywhere_on_port_80_unless_told() {
        let s = parse("lan = true").unwrap().resolve().unwrap();
        let want: Vec<SocketAddr> = ["0.0.0.0:80", "[::]:80"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(s.listen, want);
        let s = parse("lan = true\nlisten = [\"10.0.0.1:8080\"]")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(s.listen, ["10.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
        let flags = ServeOptions {
            lan: true,
            ..Default::default()
        };
        let s = flags.over(ServeOptions::default()).resolve().unwrap();
        assert!(s.lan && s.stats_public, "the flag turns LAN mode on");
        let s = parse("").unwrap().resolve().unwrap();
        assert!(!s.lan && !s.stats_public);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("max-size = \"1G\"\ncache-size = \"2G\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cache-size"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = parse("max-size = \"12X\"")
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("max-size:"), "{err}");
        let err = parse("narinfo-ttl = \"soon\"")
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("narinfo-ttl:"), "{err}");
        let err = parse("upstreams = [\"ftp://x\"]")
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("ftp://x"), "{err}");
        let err = parse("trusted-keys = [\"nonsense\"]")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(format!("{err:#}").contains("trusted-key"), "{err:#}");
        assert!(parse("priority = \"high\"").is_err());
        assert!(parse("listen = [\"not an address\"]").is_err());
    }

    #[test]
    fn flags_beat_the_file_and_defaults_fill_the_rest() {
        let file = parse("max-size = \"1G\"\npriority = 10\nupstreams = [\"http://a\"]\n").unwrap();
        let flags = ServeOptions {
            priority: Some(50),
            cache_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let s = flags.over(file).resolve().unwrap();
        assert_eq!(s.priority, 50, "the flag wins");
        assert_eq!(s.max_size, 1 << 30, "the file fills what flags leave");
        assert_eq!(urls(&s), ["http://a"]);
        assert_eq!(
            s.negative_ttl,
            Duration::from_secs(60),
            "defaults fill the rest"
        );
        assert_eq!(s.listen, [DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()]);
        let flags = ServeOptions {
            upstreams: vec!["http://b".into()],
            ..Default::default()
        };
        let s = flags
            .over(parse("upstreams = [\"http://a\"]").unwrap())
            .resolve()
            .unwrap();
        assert_eq!(
            urls(&s),
            ["http://b"],
            "a list flag replaces the file's list"
        );
    }

    #[test]
    fn no_upstream_and_upstreams_contradict() {
        let err = parse("no-upstream = true\nupstreams = [\"http://a\"]")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("contradict"));
        let s = parse("no-upstream = true").unwrap().resolve().unwrap();
        assert!(s.upstreams.is_empty());
    }

    #[test]
    fn tls_cert_and_key_go_together_and_redirects_need_them() {
        for text in ["tls-cert = \"/c.pem\"", "tls-key = \"/k.pem\""] {
            let err = parse(text).unwrap().resolve().unwrap_err().to_string();
            assert!(err.contains("give both or neither"), "{err}");
        }
        let err = parse("http-redirect-listen = [\"127.0.0.1:80\"]")
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs tls-cert"), "{err}");
        let err = parse("tls-cert = \"/nonexistent/c.pem\"\ntls-key = \"/nonexistent/k.pem\"")
            .unwrap()
            .resolve()
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("/nonexistent/c.pem"), "{err}");
    }
}

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
            opts.index_ttl = Some(ttl.trim().to_owned());
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
mod nixcache_env_tests {
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
