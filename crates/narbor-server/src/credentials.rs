//! Upstream credentials: where they come from (a URL's `user:password@`, a
//! netrc file, a bearer-token file per host) and which request gets which.
//!
//! Nix hands its `netrc-file` to curl in optional mode: credentials in the
//! URL win over the file, and the file is read as curl reads it
//! ([`narbor_proto::netrc`]).
//!
//! It owns no I/O beyond reading the files it is pointed at, and a
//! [`Credential`] never shows its secret: `Debug` prints only its kind.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

pub use narbor_proto::netrc::Netrc;
use narbor_proto::netrc::MAX_NETRC_FILE;

/// What authenticates a request to an upstream.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP Basic (what curl, and so Nix, sends for a URL's user and
    /// password or a netrc entry).
    Basic { user: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Basic { .. } => "Credential::Basic(<redacted>)",
            Credential::Bearer(_) => "Credential::Bearer(<redacted>)",
        })
    }
}

impl Credential {
    /// The `Authorization` header value, marked sensitive (hyper and reqwest
    /// then keep it out of their debug output).
    pub fn header_value(&self) -> Option<http::HeaderValue> {
        use base64::Engine as _;
        let text = match self {
            Credential::Basic { user, password } => {
                let pair = format!("{user}:{password}");
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            Credential::Bearer(token) => format!("Bearer {token}"),
        };
        let mut value = http::HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// Every secret string this credential holds (for tests and redaction).
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Credential::Basic { password, .. } => vec![password.as_str()],
            Credential::Bearer(token) => vec![token.as_str()],
        }
    }
}

/// Reads and parses the netrc file at `path`.
pub fn read_netrc(path: &Path) -> Result<Netrc, NetrcError> {
    let shown = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| NetrcError::Read {
        path: shown.clone(),
        source,
    })?;
    if text.len() > MAX_NETRC_FILE {
        return Err(NetrcError::TooLarge { path: shown });
    }
    Netrc::parse(&String::from_utf8_lossy(&text))
        .map_err(|_| NetrcError::UnclosedQuote { path: shown })
}

/// Why a netrc file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NetrcError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: larger than the {MAX_NETRC_FILE} bytes curl reads")]
    TooLarge { path: String },
    #[error("{path}: a quoted token is not closed (curl refuses such a file)")]
    UnclosedQuote { path: String },
}

/// Every credential narbor may send upstream, and the rule for which request
/// gets which: a base URL's own `user:password@` for requests to that base's
/// origin; otherwise a bearer-token file configured for the request's host;
/// otherwise the netrc file's entry for the host.
#[derive(Clone, Default)]
pub struct Credentials {
    netrc: Netrc,
    /// Bearer tokens by lower-cased host.
    tokens: HashMap<String, String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&String> = self.tokens.keys().collect();
        f.debug_struct("Credentials")
            .field("netrc", &self.netrc)
            .field("token_hosts", &hosts)
            .finish()
    }
}

impl Credentials {
    pub fn new(netrc: Netrc, tokens: HashMap<String, String>) -> Credentials {
        let tokens = tokens
            .into_iter()
            .map(|(h, t)| (h.to_ascii_lowercase(), t))
            .collect();
        Credentials { netrc, tokens }
    }

    /// The credential for a request to `host` that the base URL's own
    /// credentials do not cover.
    pub fn for_host(&self, host: &str) -> Option<Credential> {
        if let Some(token) = self.tokens.get(&host.to_ascii_lowercase()) {
            return Some(Credential::Bearer(token.clone()));
        }
        self.netrc
            .lookup(host)
            .map(|(user, password)| Credential::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            })
    }

    /// Every secret held, for tests that look for leaks.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.tokens.values().cloned().collect();
        out.extend(self.netrc.passwords().map(str::to_owned));
        out
    }
}

/// A bearer token from a file: its content, trimmed.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    if token.contains(['\n', '\r']) {
        return Err(format!("{} holds more than one line", path.display()));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> Option<Credential> {
        Some(Credential::Basic {
            user: user.into(),
            password: password.into(),
        })
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = Credential::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = Credential::Bearer("tok3n".into());
        assert!(!format!("{c:?}").contains("tok3n"));
        let creds = Credentials::new(
            Netrc::parse("machine h password pw1").unwrap(),
            HashMap::from([("H2".to_owned(), "tok3n".to_owned())]),
        );
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("pw1") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert_eq!(
            creds.for_host("h2"),
            Some(Credential::Bearer("tok3n".into()))
        );
        assert_eq!(creds.for_host("h"), basic("", "pw1"));
        assert_eq!(creds.secrets().len(), 2);
        let v = Credential::Bearer("x".into()).header_value().unwrap();
        assert!(v.is_sensitive());
        assert_eq!(
            basic("Aladdin", "open sesame")
                .unwrap()
                .header_value()
                .unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn a_netrc_file_is_read_and_an_unreadable_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("netrc");
        std::fs::write(&file, "machine h login u password p\n").unwrap();
        assert_eq!(read_netrc(&file).unwrap().lookup("h"), Some(("u", "p")));
        std::fs::write(&file, "machine h password \"open\n").unwrap();
        let err = read_netrc(&file).unwrap_err().to_string();
        assert!(err.contains("netrc") && !err.contains("open"), "{err}");
        let err = read_netrc(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
