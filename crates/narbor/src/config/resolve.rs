//! [`ServeSettings`]: `narbor serve`'s settings with every default applied
//! and every value checked, and [`ServeOptions::resolve`], which makes them,
//! naming the setting at fault when one is wrong. Files named by the settings
//! (keys, certificates, credentials) are read here, so that `check-config`
//! finds what `serve` would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use narbor_proto::{PublicKey, SecretKey};
use narbor_server::{Credentials, Netrc, Tls, TlsFiles, UpstreamBase};
use serde::de::DeserializeOwned;

use super::keys::{self, Key, DEFAULT_LAN_LISTEN};
use super::ServeOptions;
use crate::units::Span;

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
    /// Applies the defaults and checks every value, naming the option at fault.
    pub fn resolve(self) -> anyhow::Result<ServeSettings> {
        if self.no_upstream && !self.upstreams.is_empty() {
            bail!("no-upstream and upstreams contradict each other: give one of them");
        }
        let upstreams = if self.no_upstream {
            Vec::new()
        } else {
            given_or_default(self.upstreams, &keys::UPSTREAMS)
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
        let sign_key = self
            .sign_key_file
            .as_deref()
            .map(load_secret_key)
            .transpose()?;
        let cache_dir = match self.cache_dir {
            Some(d) => d,
            None => default_cache_dir()?,
        };
        let index_dir = self
            .index_dir
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
        let duration =
            |given: Option<Span>, key: &Key| given.unwrap_or_else(|| default(key)).duration();
        Ok(ServeSettings {
            listen: if self.listen.is_empty() && self.lan {
                DEFAULT_LAN_LISTEN
                    .iter()
                    .map(|a| a.parse().expect("the default addresses parse"))
                    .collect()
            } else {
                given_or_default(self.listen, &keys::LISTEN)
            },
            cache_dir,
            max_size: self
                .max_size
                .unwrap_or_else(|| default(&keys::MAX_SIZE))
                .bytes(),
            inactive: duration(self.inactive, &keys::INACTIVE),
            upstreams,
            credentials,
            priority: self.priority.unwrap_or_else(|| default(&keys::PRIORITY)),
            narinfo_ttl: duration(self.narinfo_ttl, &keys::NARINFO_TTL),
            negative_ttl: duration(self.negative_ttl, &keys::NEGATIVE_TTL),
            upstream_timeout: positive(
                duration(self.upstream_timeout, &keys::UPSTREAM_TIMEOUT),
                &keys::UPSTREAM_TIMEOUT,
            )?,
            trusted_keys,
            sign_key,
            log: self.log.unwrap_or_else(|| default(&keys::LOG)),
            // LAN mode is for a trusted LAN: its stats are public.
            stats_public: self.stats_public || self.lan,
            lan: self.lan,
            tls,
            http_redirect_listen: self.http_redirect_listen,
            oci: self.oci.map(check_oci).transpose()?,
            index_ttl: positive(duration(self.index_ttl, &keys::INDEX_TTL), &keys::INDEX_TTL)?,
            index_dir,
            refresh_token: self
                .refresh_token_file
                .as_deref()
                .map(read_refresh_token)
                .transpose()?,
        })
    }
}

/// `key`'s built-in default, as the type of its field. The defaults are
/// constants that a unit test parses, so this cannot fail on any input.
fn default<T: DeserializeOwned>(key: &Key) -> T {
    key.default_value()
        .and_then(|value| value.try_into().ok())
        .unwrap_or_else(|| panic!("{}: the built-in default does not parse", key.name))
}

/// A list as given, or the default when none is.
fn given_or_default<T: DeserializeOwned>(given: Vec<T>, key: &Key) -> Vec<T> {
    if given.is_empty() {
        default(key)
    } else {
        given
    }
}

/// A duration that must not be zero.
fn positive(d: Duration, key: &Key) -> anyhow::Result<Duration> {
    if d.is_zero() {
        bail!("{}: must be more than 0s", key.name);
    }
    Ok(d)
}

/// `--oci`'s store reference, checked.
fn check_oci(store: String) -> anyhow::Result<String> {
    match narbor_oci::StoreRef::parse(&store) {
        Ok(_) => Ok(store),
        Err(e) => bail!("oci: {e}"),
    }
}

/// The refresh token: the file's text, trimmed, not empty.
fn read_refresh_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("refresh-token-file: reading {}", path.display()))?
        .trim()
        .to_owned();
    if token.is_empty() {
        bail!("refresh-token-file: {} is empty", path.display());
    }
    Ok(token)
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
    use crate::config::keys::DEFAULT_LISTEN;

    fn parse(text: &str) -> anyhow::Result<ServeOptions> {
        ServeOptions::from_toml(text).map_err(|e| anyhow::anyhow!("{e}"))
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
        // A size or duration is checked as the file is read: toml's error
        // shows the line, and its message starts with the key.
        let message_starts = |err: &str, with: &str| err.lines().any(|l| l.starts_with(with));
        let err = parse("max-size = \"12X\"").unwrap_err().to_string();
        assert!(
            message_starts(&err, "max-size: \"12X\": unknown size unit"),
            "{err}"
        );
        let err = parse("narinfo-ttl = \"soon\"").unwrap_err().to_string();
        assert!(message_starts(&err, "narinfo-ttl: \"soon\""), "{err}");
        let err = parse("priority = \"high\"").unwrap_err().to_string();
        assert!(message_starts(&err, "priority: invalid type"), "{err}");
        let err = parse("index-ttl = \"0s\"").unwrap().resolve().unwrap_err();
        assert_eq!(err.to_string(), "index-ttl: must be more than 0s");
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
