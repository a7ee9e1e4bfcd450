//! Registry credentials and the `WWW-Authenticate` challenge.
//!
//! Credentials come from `NARBOR_REGISTRY_USERNAME`/`NARBOR_REGISTRY_PASSWORD`,
//! from `GITHUB_TOKEN`/`GH_TOKEN` for ghcr.io, or from a docker `config.json`.
//! The password never appears in `Debug` output, logs or errors. The token
//! flow itself (fetch, cache, refresh) lives in the client.

use std::fmt;
use std::path::PathBuf;

use base64::Engine;

/// A user name and a password (or personal access token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The value of an `Authorization: Basic ...` header.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// Finds credentials for `host` (without port for the GitHub rule; the
    /// docker config is searched under `host` as written and without a port):
    ///
    /// 1. `NARBOR_REGISTRY_USERNAME` and `NARBOR_REGISTRY_PASSWORD`;
    /// 2. for `ghcr.io` and for the registry nixcache-oci's
    ///    `NIXCACHE_REGISTRY` names (the seed sends them to any registry),
    ///    `GITHUB_TOKEN` or `GH_TOKEN` (user name `token`);
    /// 3. `auths.<host>.auth` (base64 `user:pass`) in `$DOCKER_CONFIG/config.json`
    ///    or `$HOME/.docker/config.json`.
    ///
    /// `env` looks a variable up (pass `|k| std::env::var(k).ok()`).
    pub fn discover(host: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<Credentials> {
        let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
        if let (Some(u), Some(p)) = (
            nonempty("NARBOR_REGISTRY_USERNAME"),
            nonempty("NARBOR_REGISTRY_PASSWORD"),
        ) {
            return Some(Credentials::new(u, p));
        }
        let bare = host.split(':').next().unwrap_or(host);
        let nixcache_registry = nonempty("NIXCACHE_REGISTRY").is_some_and(|r| {
            let r = r.trim();
            let r = r
                .strip_prefix("https://")
                .or(r.strip_prefix("http://"))
                .unwrap_or(r);
            r.trim_end_matches('/') == host
        });
        if bare == "ghcr.io" || nixcache_registry {
            if let Some(t) = nonempty("GITHUB_TOKEN").or_else(|| nonempty("GH_TOKEN")) {
                return Some(Credentials::new("token", t));
            }
        }
        let config = match nonempty("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir).join("config.json"),
            None => PathBuf::from(nonempty("HOME")?).join(".docker/config.json"),
        };
        let text = std::fs::read_to_string(&config).ok()?;
        let found = from_docker_config(&text, host).or_else(|| from_docker_config(&text, bare));
        if found.is_none() {
            tracing::debug!(config = %config.display(), host, "no usable credentials in docker config");
        }
        found
    }
}

/// `auths.<host>.auth` of a docker `config.json`; keys may be written with a
/// scheme (`https://host`) as older docker versions did.
fn from_docker_config(text: &str, host: &str) -> Option<Credentials> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, e)| {
        let key = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let key = key
            .strip_suffix("/v1")
            .or(key.strip_suffix("/v2"))
            .unwrap_or(key);
        (key == host).then_some(e)
    })?;
    let auth = entry.get("auth")?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (u, p) = raw.split_once(':')?;
    (!u.is_empty()).then(|| Credentials::new(u, p))
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Basic realm="..."` or `Bearer realm="...",service="...",scope="..."`.
    pub(crate) fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(params);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `k="v", k2=v2` with quoted values that may contain commas.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = Credentials::new("alice", "s3cr3t-pw");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn discovery_order() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:pw2");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"https://reg.example:5000":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let d = dir.path().to_string_lossy().into_owned();
        let env = |vars: Vec<(&'static str, String)>| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        let e = env(vec![("DOCKER_CONFIG", d.clone())]);
        assert_eq!(
            Credentials::discover("reg.example:5000", &e),
            Some(Credentials::new("bob", "pw2"))
        );
        assert_eq!(Credentials::discover("other.example", &e), None);
        let e = env(vec![
            ("DOCKER_CONFIG", d.clone()),
            ("GH_TOKEN", "ghp".into()),
        ]);
        assert_eq!(
            Credentials::discover("ghcr.io", &e),
            Some(Credentials::new("token", "ghp"))
        );
        let e = env(vec![
            ("GH_TOKEN", "ghp".into()),
            ("NARBOR_REGISTRY_USERNAME", "u".into()),
            ("NARBOR_REGISTRY_PASSWORD", "p".into()),
        ]);
        assert_eq!(
            Credentials::discover("ghcr.io", &e),
            Some(Credentials::new("u", "p"))
        );
    }
}
