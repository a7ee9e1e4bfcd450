//! Store references: `oci://HOST/NAME` and `oci+http://HOST:PORT/NAME`.

use std::fmt;

use crate::OciError;

/// Where a cache lives: a registry and a repository name in it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreRef {
    /// `https` for `oci://`, `http` for `oci+http://` (loopback tests).
    pub scheme: &'static str,
    /// `host` or `host:port`, as written.
    pub host: String,
    /// The repository name, e.g. `owner/repo/nix-cache`.
    pub name: String,
}

impl StoreRef {
    /// Parses `oci://HOST[:PORT]/NAME` or `oci+http://HOST[:PORT]/NAME`. The
    /// name follows the distribution spec's grammar: lower-case path
    /// components of `[a-z0-9]` separated by `.`, `_`, `__` or `-`s.
    pub fn parse(input: &str) -> Result<Self, OciError> {
        let bad = |reason: &str| OciError::Reference {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = if let Some(r) = input.strip_prefix("oci://") {
            ("https", r)
        } else if let Some(r) = input.strip_prefix("oci+http://") {
            ("http", r)
        } else {
            return Err(bad("expected oci://HOST/NAME or oci+http://HOST:PORT/NAME"));
        };
        let (host, name) = rest
            .split_once('/')
            .ok_or_else(|| bad("no repository name after the host"))?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return Err(bad("invalid host"));
        }
        if host.contains('@') {
            return Err(bad("credentials do not belong in the reference"));
        }
        let name = name.trim_end_matches('/');
        if name.is_empty() || name.len() > 255 {
            return Err(bad("the repository name must have 1 to 255 characters"));
        }
        for component in name.split('/') {
            if !valid_component(component) {
                return Err(bad(&format!(
                    "invalid repository name component {component:?} (lower-case letters, digits, and . _ - between them)"
                )));
            }
        }
        Ok(StoreRef {
            scheme,
            host: host.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `scheme://host`, the base every API path is appended to.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// The host without a port, for matching credentials.
    pub fn hostname(&self) -> &str {
        if self.host.starts_with('[') {
            return self
                .host
                .split(']')
                .next()
                .map(|h| &h[1..])
                .unwrap_or(&self.host);
        }
        self.host.split(':').next().unwrap_or(&self.host)
    }
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut prev_sep = false;
    for (i, &ch) in b.iter().enumerate() {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            prev_sep = false;
        } else if ch == b'.' || ch == b'-' || ch == b'_' {
            // `.` and a single `_` may not repeat; `__` and runs of `-` may.
            if prev_sep && ch == b'.' {
                return false;
            }
            if ch == b'_' && i >= 2 && b[i - 1] == b'_' && b[i - 2] == b'_' {
                return false;
            }
            prev_sep = true;
        } else {
            return false;
        }
    }
    true
}

impl fmt::Display for StoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.scheme == "http" {
            "oci+http"
        } else {
            "oci"
        };
        write!(f, "{prefix}://{}/{}", self.host, self.name)
    }
}

impl fmt::Debug for StoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes() {
        let r = StoreRef::parse("oci://ghcr.io/owner/repo/nix-cache").unwrap();
        assert_eq!(
            (r.scheme, r.host.as_str(), r.name.as_str()),
            ("https", "ghcr.io", "owner/repo/nix-cache")
        );
        assert_eq!(r.base_url(), "https://ghcr.io");
        assert_eq!(r.to_string(), "oci://ghcr.io/owner/repo/nix-cache");
        let r = StoreRef::parse("oci+http://127.0.0.1:5000/cache").unwrap();
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        assert_eq!(r.hostname(), "127.0.0.1");
        assert_eq!(r.to_string(), "oci+http://127.0.0.1:5000/cache");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "ghcr.io/x",
            "https://ghcr.io/x",
            "oci://ghcr.io",
            "oci://ghcr.io/",
            "oci:///x",
            "oci://ghcr.io/Upper",
            "oci://ghcr.io/a..b",
            "oci://ghcr.io/-a",
            "oci://user:pw@ghcr.io/a",
            "oci://ghcr.io/a b",
        ] {
            assert!(StoreRef::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(StoreRef::parse("oci://ghcr.io/a__b/c-d.e/f--g").is_ok());
    }
}
