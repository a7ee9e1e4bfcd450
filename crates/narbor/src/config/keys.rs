//! The one list of `narbor serve`'s settings: for each, its config key, flag,
//! environment variable, kind of value, default and help text.
//!
//! [`ServeOptions`](super::ServeOptions) takes its flags, environment
//! variables and help from here, and [`KEYS`](super::KEYS) lists the entries
//! in its field order. `narbor config-keys --json` prints the list; the
//! end-to-end tests check `serve --help`, `packaging/narbor.toml`,
//! `docs/configuration.md`'s table and the NixOS module against it. What
//! the values mean, and how they combine, is `options` and `resolve`.

/// The default listen address: loopback only, on narbor's own port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:37515";
/// The upstream a pull-through cache exists for.
pub const DEFAULT_UPSTREAM: &str = "https://cache.nixos.org";
/// Bigger than most fleets' working set, small enough for a laptop disk.
pub const DEFAULT_MAX_SIZE: &str = "200G";
/// A month: what nobody asked for in that long is unlikely to be asked again.
pub const DEFAULT_INACTIVE: &str = "30d";
/// Below cache.nixos.org's 40, so Nix asks this cache first.
pub const DEFAULT_PRIORITY: &str = "30";
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
/// Startup, each stored NAR and each failure; requests log at `debug`.
pub const DEFAULT_LOG: &str = "info";
/// LAN mode's listen addresses: every interface, IPv4 and IPv6, on HTTP's own
/// port, so a substituter URL needs no port number.
pub const DEFAULT_LAN_LISTEN: [&str; 2] = ["0.0.0.0:80", "[::]:80"];

/// One setting of `narbor serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The config file's key (`max-size`).
    pub name: &'static str,
    /// The flag, without `--`; a list's flag names one item (`upstream`).
    pub flag: &'static str,
    /// What `--help` calls the flag's value; a switch has none.
    pub value_name: Option<&'static str>,
    /// The environment variable, for the usual settings.
    pub env: Option<&'static str>,
    /// What a config file gives.
    pub kind: Kind,
    /// What applies when nothing gives the setting.
    pub default: Fallback,
    /// The flag's one-line help (clap's: no trailing period).
    pub help: &'static str,
}

/// A key's value, as TOML sees it. Sizes, durations, paths and URLs are
/// strings; what they must look like is the setting's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
    Bool,
    /// A list of strings.
    List,
}

/// What applies when neither a flag, nor the environment, nor the file gives
/// a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Nothing: what the setting turns on stays off.
    Off,
    /// Worked out at start, as the text says.
    Derived(&'static str),
    /// This value, written as a flag takes it; a list's items.
    Value(&'static [&'static str]),
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::List => "list",
        }
    }
}

impl Key {
    /// The default as a TOML value, when it is one.
    pub fn default_value(self) -> Option<toml::Value> {
        let Fallback::Value(items) = self.default else {
            return None;
        };
        let one = || items.first().copied().unwrap_or_default();
        Some(match self.kind {
            Kind::List => toml::Value::Array(
                items
                    .iter()
                    .map(|s| toml::Value::String((*s).to_owned()))
                    .collect(),
            ),
            Kind::Text => toml::Value::String(one().to_owned()),
            Kind::Number => toml::Value::Integer(one().parse().expect("a number's default")),
            Kind::Bool => toml::Value::Boolean(one().parse().expect("a switch's default")),
        })
    }

    /// The entry as `narbor config-keys --json` prints it.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "key": self.name,
            "flag": format!("--{}", self.flag),
            "value_name": self.value_name,
            "env": self.env,
            "kind": self.kind.name(),
            "default": self.default_value(),
            "derived_default": match self.default {
                Fallback::Derived(text) => Some(text),
                _ => None,
            },
            "help": self.help,
        })
    }
}

pub const LISTEN: Key = Key {
    name: "listen",
    flag: "listen",
    value_name: Some("ADDR:PORT"),
    env: Some("NARBOR_LISTEN"),
    kind: Kind::List,
    default: Fallback::Value(&[DEFAULT_LISTEN]),
    help: "Address to listen on (repeatable) [default: 127.0.0.1:37515]",
};

pub const CACHE_DIR: Key = Key {
    name: "cache-dir",
    flag: "cache-dir",
    value_name: Some("DIR"),
    env: Some("NARBOR_CACHE_DIR"),
    kind: Kind::Text,
    default: Fallback::Derived("$XDG_CACHE_HOME/narbor, else ~/.cache/narbor"),
    help: "Where to store cached objects [default: $XDG_CACHE_HOME/narbor or ~/.cache/narbor]",
};

pub const MAX_SIZE: Key = Key {
    name: "max-size",
    flag: "max-size",
    value_name: Some("SIZE"),
    env: Some("NARBOR_MAX_SIZE"),
    kind: Kind::Text,
    default: Fallback::Value(&[DEFAULT_MAX_SIZE]),
    help: "The most the store may hold; K, M, G, T are powers of 1024 [default: 200G]",
};

pub const INACTIVE: Key = Key {
    name: "inactive",
    flag: "inactive",
    value_name: Some("DURATION"),
    env: None,
    kind: Kind::Text,
    default: Fallback::Value(&[DEFAULT_INACTIVE]),
    help: "Evict what nobody asked for in this long [default: 30d]",
};

pub const UPSTREAMS: Key = Key {
    name: "upstreams",
    flag: "upstream",
    value_name: Some("URL"),
    env: Some("NARBOR_UPSTREAMS"),
    kind: Kind::List,
    default: Fallback::Value(&[DEFAULT_UPSTREAM]),
    help: "An upstream cache, tried in the order given (repeatable; replaces the default, \
           https://cache.nixos.org)",
};

pub const NO_UPSTREAM: Key = Key {
    name: "no-upstream",
    flag: "no-upstream",
    value_name: None,
    env: None,
    kind: Kind::Bool,
    default: Fallback::Value(&["false"]),
    help: "Serve only what is stored; ask no upstream",
};

pub const NETRC_FILE: Key = Key {
    name: "netrc-file",
    flag: "netrc-file",
    value_name: Some("FILE"),
    env: Some("NARBOR_NETRC_FILE"),
    kind: Kind::Text,
    default: Fallback::Off,
    help: "A netrc file (Nix's `netrc-file` format, as curl reads it): credentials for \
           upstream hosts whose URL carries none",
};

pub const UPSTREAM_TOKEN_FILES: Key = Key {
    name: "upstream-token-files",
    flag: "upstream-token-file",
    value_name: Some("HOST=FILE"),
    env: None,
    kind: Kind::List,
    default: Fallback::Value(&[]),
    help: "`HOST=FILE` (repeatable): send the token in FILE as `Authorization: Bearer` to \
           upstream requests for HOST",
};

pub const PRIORITY: Key = Key {
    name: "priority",
    flag: "priority",
    value_name: Some("N"),
    env: Some("NARBOR_PRIORITY"),
    kind: Kind::Number,
    default: Fallback::Value(&[DEFAULT_PRIORITY]),
    help: "The Priority advertised in nix-cache-info [default: 30, below cache.nixos.org's 40, \
           so Nix asks this cache first]",
};

pub const NARINFO_TTL: Key = Key {
    name: "narinfo-ttl",
    flag: "narinfo-ttl",
    value_name: Some("DURATION"),
    env: None,
    kind: Kind::Text,
    default: Fallback::Value(&[DEFAULT_NARINFO_TTL]),
    help: "How long a stored narinfo is served before asking upstream again [default: 7d]",
};

pub const NEGATIVE_TTL: Key = Key {
    name: "negative-ttl",
    flag: "negative-ttl",
    value_name: Some("DURATION"),
    env: None,
    kind: Kind::Text,
    default: Fallback::Value(&[DEFAULT_NEGATIVE_TTL]),
    help: "How long an upstream 404 is remembered [default: 1m]",
};

pub const UPSTREAM_TIMEOUT: Key = Key {
    name: "upstream-timeout",
    flag: "upstream-timeout",
    value_name: Some("DURATION"),
    env: None,
    kind: Kind::Text,
    default: Fallback::Value(&[DEFAULT_UPSTREAM_TIMEOUT]),
    help: "How long an upstream may send nothing (connecting, or mid-body) before narbor gives \
           up on it [default: 30s]",
};

pub const TRUSTED_KEYS: Key = Key {
    name: "trusted-keys",
    flag: "trusted-key",
    value_name: Some("KEY"),
    env: None,
    kind: Kind::List,
    default: Fallback::Value(&[]),
    help: "A public key `name:base64` (repeatable): when given, a narinfo without a valid \
           signature by one of these keys is neither cached nor served",
};

pub const SIGN_KEY_FILE: Key = Key {
    name: "sign-key-file",
    flag: "sign-key-file",
    value_name: Some("FILE"),
    env: Some("NARBOR_SIGN_KEY_FILE"),
    kind: Kind::Text,
    default: Fallback::Off,
    help: "A secret key file: narbor adds its own signature to every narinfo it stores",
};

pub const LOG: Key = Key {
    name: "log",
    flag: "log",
    value_name: Some("FILTER"),
    env: None,
    kind: Kind::Text,
    default: Fallback::Value(&[DEFAULT_LOG]),
    help: "The log filter, e.g. `info` or `narbor=debug` [default: info; RUST_LOG wins]",
};

pub const STATS_PUBLIC: Key = Key {
    name: "stats-public",
    flag: "stats-public",
    value_name: None,
    env: None,
    kind: Kind::Bool,
    default: Fallback::Value(&["false"]),
    help: "Let every client see /status, /status.json and /metrics, not only loopback ones",
};

pub const LAN: Key = Key {
    name: "lan",
    flag: "lan",
    value_name: None,
    env: None,
    kind: Kind::Bool,
    default: Fallback::Value(&["false"]),
    help: "LAN mode, for a trusted LAN: listen on every interface (port 80 unless --listen \
           says otherwise), stats public, and advertise over mDNS (`narbor discover` finds it)",
};

pub const TLS_CERT: Key = Key {
    name: "tls-cert",
    flag: "tls-cert",
    value_name: Some("FILE"),
    env: Some("NARBOR_TLS_CERT"),
    kind: Kind::Text,
    default: Fallback::Off,
    help: "A PEM certificate chain: serve HTTPS on every --listen address (needs --tls-key). \
           Reloaded when the files change or on SIGHUP",
};

pub const TLS_KEY: Key = Key {
    name: "tls-key",
    flag: "tls-key",
    value_name: Some("FILE"),
    env: Some("NARBOR_TLS_KEY"),
    kind: Kind::Text,
    default: Fallback::Off,
    help: "The PEM private key of --tls-cert (PKCS#8, RSA or EC)",
};

pub const HTTP_REDIRECT_LISTEN: Key = Key {
    name: "http-redirect-listen",
    flag: "http-redirect-listen",
    value_name: Some("ADDR:PORT"),
    env: None,
    kind: Kind::List,
    default: Fallback::Value(&[]),
    help: "A plain-HTTP address that answers every request with a redirect to HTTPS \
           (repeatable; needs --tls-cert)",
};

pub const OCI: Key = Key {
    name: "oci",
    flag: "oci",
    value_name: Some("STORE"),
    env: Some("NARBOR_OCI"),
    kind: Kind::Text,
    default: Fallback::Off,
    help: "An OCI registry cache to serve from its in-memory index, before the upstreams: \
           `oci://HOST/NAME` (HTTPS) or `oci+http://HOST:PORT/NAME`",
};

pub const INDEX_TTL: Key = Key {
    name: "index-ttl",
    flag: "index-ttl",
    value_name: Some("DURATION"),
    env: None,
    kind: Kind::Text,
    default: Fallback::Value(&[DEFAULT_INDEX_TTL]),
    help: "How often the --oci index is refreshed (in the background) [default: 300s]",
};

pub const INDEX_DIR: Key = Key {
    name: "index-dir",
    flag: "index-dir",
    value_name: Some("DIR"),
    env: None,
    kind: Kind::Text,
    default: Fallback::Derived("CACHE_DIR/oci-index"),
    help: "Where the --oci index is saved, so a restart with the registry down still serves \
           it [default: CACHE_DIR/oci-index]",
};

pub const REFRESH_TOKEN_FILE: Key = Key {
    name: "refresh-token-file",
    flag: "refresh-token-file",
    value_name: Some("FILE"),
    env: None,
    kind: Kind::Text,
    default: Fallback::Off,
    help: "A file holding a bearer token that lets non-loopback clients POST /_refresh",
};
