//! Upstream credentials: where they come from (a URL's `user:password@`, a
//! netrc file, a bearer-token file per host) and which request gets which.
//!
//! Nix hands its `netrc-file` to curl in optional mode, so this module follows
//! curl's reading of netrc (lib/netrc.c, curl 8.14.1 and master at 5c61e16):
//! whole-line `#` comments, tokens split by blanks and newlines, `"quoted"`
//! tokens with `\n`, `\r`, `\t` and `\X` escapes, case-insensitive keywords,
//! `macdef` skipped up to the next empty line, a host compared exactly (no
//! port, case-insensitive), and the first entry that matches (a `machine`, or
//! `default`) and gives a login or password wins. Credentials in the URL win
//! over the file, as with curl's `CURL_NETRC_OPTIONAL`.
//!
//! It owns no I/O beyond reading the files it is pointed at, and a
//! [`Credential`] never shows its secret: `Debug` prints only its kind.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

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

/// curl's limits (lib/netrc.c, `MAX_NETRC_FILE`, `MAX_NETRC_TOKEN`).
const MAX_NETRC_FILE: usize = 128 * 1024;
const MAX_NETRC_TOKEN: usize = 4096;

/// One `machine` (or `default`, with no host) entry.
#[derive(Clone, PartialEq, Eq)]
struct NetrcEntry {
    host: Option<String>,
    login: Option<String>,
    password: Option<String>,
}

/// A parsed netrc file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Netrc {
    entries: Vec<NetrcEntry>,
}

impl fmt::Debug for Netrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Netrc({} entries, <redacted>)", self.entries.len())
    }
}

/// A token of a netrc file, and whether it was quoted (a quoted `machine`
/// is a value, never a keyword).
struct Token {
    text: String,
    quoted: bool,
}

impl Netrc {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Netrc, NetrcError> {
        let shown = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| NetrcError::Read {
            path: shown.clone(),
            source,
        })?;
        if text.len() > MAX_NETRC_FILE {
            return Err(NetrcError::TooLarge { path: shown });
        }
        Netrc::parse(&String::from_utf8_lossy(&text))
            .map_err(|()| NetrcError::UnclosedQuote { path: shown })
    }

    /// Parses netrc text; `Err` only for an unclosed quote (curl's one hard
    /// syntax error).
    #[allow(clippy::result_unit_err)]
    pub fn parse(text: &str) -> Result<Netrc, ()> {
        let tokens = tokenize(text)?;
        let mut entries: Vec<NetrcEntry> = Vec::new();
        let mut i = 0;
        let keyword = |t: &Token, k: &str| !t.quoted && t.text.eq_ignore_ascii_case(k);
        while i < tokens.len() {
            let t = &tokens[i];
            if keyword(t, "machine") || keyword(t, "default") {
                let host = if keyword(t, "machine") {
                    i += 1;
                    match tokens.get(i) {
                        Some(h) => Some(h.text.clone()),
                        None => break,
                    }
                } else {
                    None
                };
                entries.push(NetrcEntry {
                    host,
                    login: None,
                    password: None,
                });
            } else if keyword(t, "login") || keyword(t, "password") || keyword(t, "account") {
                let is_login = keyword(t, "login");
                let is_password = keyword(t, "password");
                i += 1;
                let Some(value) = tokens.get(i) else { break };
                if let Some(entry) = entries.last_mut() {
                    if is_login {
                        entry.login = Some(value.text.clone());
                    } else if is_password {
                        entry.password = Some(value.text.clone());
                    }
                }
            }
            // Anything else (a macdef was dropped by the tokenizer) is junk.
            i += 1;
        }
        Ok(Netrc { entries })
    }

    /// The credentials for `host`: the first entry naming it (compared
    /// without case) or `default` that gives a login or a password.
    pub fn lookup(&self, host: &str) -> Option<Credential> {
        self.entries
            .iter()
            .filter(|e| e.host.as_ref().is_none_or(|h| h.eq_ignore_ascii_case(host)))
            .find(|e| e.login.is_some() || e.password.is_some())
            .map(|e| Credential::Basic {
                user: e.login.clone().unwrap_or_default(),
                password: e.password.clone().unwrap_or_default(),
            })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Splits netrc text into tokens as curl does, dropping comment lines and
/// `macdef` bodies.
fn tokenize(text: &str) -> Result<Vec<Token>, ()> {
    let mut tokens = Vec::new();
    let mut in_macdef = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if in_macdef {
            // A macro runs up to (and including) the next empty line.
            if line.is_empty() {
                in_macdef = false;
            }
            continue;
        }
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut chars = line.chars().peekable();
        loop {
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            let Some(&first) = chars.peek() else { break };
            let mut text = String::new();
            let quoted = first == '"';
            if quoted {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some('n') => text.push('\n'),
                            Some('r') => text.push('\r'),
                            Some('t') => text.push('\t'),
                            Some(other) => text.push(other),
                            None => break,
                        },
                        c => text.push(c),
                    }
                }
                if !closed {
                    return Err(());
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != ' ' && *c != '\t') {
                    text.push(c);
                }
            }
            text.truncate(MAX_NETRC_TOKEN);
            let is_macdef = !quoted && text.eq_ignore_ascii_case("macdef");
            tokens.push(Token { text, quoted });
            if is_macdef {
                // Its name is the rest of this line; the body follows.
                in_macdef = true;
                tokens.pop();
                break;
            }
        }
    }
    Ok(tokens)
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
        self.netrc.lookup(host)
    }

    /// Every secret held, for tests that look for leaks.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.tokens.values().cloned().collect();
        out.extend(self.netrc.entries.iter().filter_map(|e| e.password.clone()));
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
    fn curls_grammar() {
        let n = Netrc::parse(
            "# a comment line\n\
             machine cache.example.org login alice password s3cret\n\
             machine other.example login \"b o b\" password \"p\\\"w\\td\"\n\
             \x20 # also a comment\n\
             MACHINE upper.example\n  LOGIN u\n  PASSWORD p # not a comment\n",
        )
        .unwrap();
        assert_eq!(n.lookup("cache.example.org"), basic("alice", "s3cret"));
        assert_eq!(n.lookup("CACHE.Example.ORG"), basic("alice", "s3cret"));
        assert_eq!(n.lookup("other.example"), basic("b o b", "p\"w\td"));
        // Keywords are case-insensitive; a mid-line '#' is an ordinary token.
        assert_eq!(n.lookup("upper.example"), basic("u", "p"));
        assert_eq!(n.lookup("nowhere.example"), None);
    }

    #[test]
    fn first_match_wins_and_default_shadows_later_machines() {
        let n = Netrc::parse(
            "machine a.example password one\n\
             default login anon password dflt\n\
             machine b.example password two\n",
        )
        .unwrap();
        assert_eq!(n.lookup("a.example"), basic("", "one"));
        assert_eq!(n.lookup("b.example"), basic("anon", "dflt"));
        assert_eq!(n.lookup("c.example"), basic("anon", "dflt"));
        // cachix writes an entry with a password and no login
        // (cachix/src/Cachix/Client/NetRc.hs at e1d8f8cd).
        let n = Netrc::parse("machine x.cachix.org password TOKEN").unwrap();
        assert_eq!(n.lookup("x.cachix.org"), basic("", "TOKEN"));
    }

    #[test]
    fn an_entry_without_login_or_password_does_not_match() {
        let n = Netrc::parse("machine a.example account x\nmachine a.example login l\n").unwrap();
        assert_eq!(n.lookup("a.example"), basic("l", ""));
    }

    #[test]
    fn macdef_bodies_are_skipped_up_to_an_empty_line() {
        let n = Netrc::parse(
            "macdef init\nmachine evil.example password no\n\nmachine good.example password yes\n",
        )
        .unwrap();
        assert_eq!(n.lookup("evil.example"), None);
        assert_eq!(n.lookup("good.example"), basic("", "yes"));
    }

    #[test]
    fn an_unclosed_quote_is_an_error_and_odd_input_does_not_panic() {
        assert!(Netrc::parse("machine a password \"open").is_err());
        for text in [
            "",
            "machine",
            "login",
            "default password",
            "\"\"",
            "\\",
            "machine \"\"",
        ] {
            let _ = Netrc::parse(text);
        }
        // A quoted keyword is a value.
        let n = Netrc::parse("machine \"machine\" password p").unwrap();
        assert_eq!(n.lookup("machine"), basic("", "p"));
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
}
