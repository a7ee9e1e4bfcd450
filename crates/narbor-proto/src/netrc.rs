//! The netrc file Nix hands to curl (`netrc-file`, default
//! `/etc/nix/netrc`): credentials for the hosts of binary caches.
//!
//! Parsed as curl reads it (lib/netrc.c at curl 8.14.1 and master 5c61e16,
//! which Nix uses in `CURL_NETRC_OPTIONAL` mode, src/libstore/filetransfer.cc):
//! whole-line `#` comments, tokens split by blanks and newlines, `"quoted"`
//! tokens with `\n`, `\r`, `\t` and `\X` escapes, case-insensitive keywords
//! (`machine`, `default`, `login`, `password`, `account`, `macdef`), a
//! `macdef` body skipped up to the next empty line, a host compared exactly
//! (no port, case-insensitive), and the first entry that matches (a
//! `machine`, or `default`) and gives a login or a password wins. Pure: the
//! caller reads the file. `Debug` shows no secret.

use std::fmt;

use thiserror::Error;

/// curl refuses a file with a quoted token that is never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a quoted token is not closed")]
pub struct UnclosedQuote;

/// curl's limits (lib/netrc.c, `MAX_NETRC_FILE`, `MAX_NETRC_TOKEN`).
pub const MAX_NETRC_FILE: usize = 128 * 1024;
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
    /// Parses netrc text; the one hard syntax error (as curl's) is an
    /// unclosed quote.
    pub fn parse(text: &str) -> Result<Netrc, UnclosedQuote> {
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

    /// The login and password for `host`: of the first entry naming it
    /// (compared without case) or `default` that gives either (the other
    /// is then empty).
    pub fn lookup(&self, host: &str) -> Option<(&str, &str)> {
        self.entries
            .iter()
            .filter(|e| e.host.as_ref().is_none_or(|h| h.eq_ignore_ascii_case(host)))
            .find(|e| e.login.is_some() || e.password.is_some())
            .map(|e| {
                (
                    e.login.as_deref().unwrap_or(""),
                    e.password.as_deref().unwrap_or(""),
                )
            })
    }

    /// Every password in the file.
    pub fn passwords(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| e.password.as_deref())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Splits netrc text into tokens as curl does, dropping comment lines and
/// `macdef` bodies.
fn tokenize(text: &str) -> Result<Vec<Token>, UnclosedQuote> {
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
                    return Err(UnclosedQuote);
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != ' ' && *c != '\t') {
                    text.push(c);
                }
            }
            // curl's limit is in bytes: cut at the last whole character
            // below it (`String::truncate` panics inside one).
            while text.len() > MAX_NETRC_TOKEN {
                text.pop();
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair<'a>(n: &'a Netrc, host: &str) -> Option<(&'a str, &'a str)> {
        n.lookup(host)
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
        assert_eq!(pair(&n, "cache.example.org"), Some(("alice", "s3cret")));
        assert_eq!(pair(&n, "CACHE.Example.ORG"), Some(("alice", "s3cret")));
        assert_eq!(pair(&n, "other.example"), Some(("b o b", "p\"w\td")));
        // Keywords are case-insensitive; a mid-line '#' is an ordinary token.
        assert_eq!(pair(&n, "upper.example"), Some(("u", "p")));
        assert_eq!(pair(&n, "nowhere.example"), None);
    }

    #[test]
    fn first_match_wins_and_default_shadows_later_machines() {
        let n = Netrc::parse(
            "machine a.example password one\n\
             default login anon password dflt\n\
             machine b.example password two\n",
        )
        .unwrap();
        assert_eq!(pair(&n, "a.example"), Some(("", "one")));
        assert_eq!(pair(&n, "b.example"), Some(("anon", "dflt")));
        assert_eq!(pair(&n, "c.example"), Some(("anon", "dflt")));
        // cachix writes an entry with a password and no login
        // (cachix/src/Cachix/Client/NetRc.hs at e1d8f8cd).
        let n = Netrc::parse("machine x.cachix.org password TOKEN").unwrap();
        assert_eq!(pair(&n, "x.cachix.org"), Some(("", "TOKEN")));
    }

    #[test]
    fn an_entry_without_login_or_password_does_not_match() {
        let n = Netrc::parse("machine a.example account x\nmachine a.example login l\n").unwrap();
        assert_eq!(pair(&n, "a.example"), Some(("l", "")));
    }

    #[test]
    fn macdef_bodies_are_skipped_up_to_an_empty_line() {
        let n = Netrc::parse(
            "macdef init\nmachine evil.example password no\n\nmachine good.example password yes\n",
        )
        .unwrap();
        assert_eq!(pair(&n, "evil.example"), None);
        assert_eq!(pair(&n, "good.example"), Some(("", "yes")));
    }

    #[test]
    fn an_unclosed_quote_is_an_error_and_odd_input_does_not_panic() {
        assert_eq!(
            Netrc::parse("machine a password \"open"),
            Err(UnclosedQuote)
        );
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
        assert_eq!(pair(&n, "machine"), Some(("", "p")));
        let shown = format!("{n:?}");
        assert!(
            !shown.contains('p') || !shown.contains("password"),
            "{shown}"
        );
    }

    #[test]
    fn bug_token_cut_inside_a_character_panicked() {
        // 4095 bytes, then a 2-byte character across curl's 4096-byte limit.
        let long = format!("{}é", "a".repeat(MAX_NETRC_TOKEN - 1));
        let n = Netrc::parse(&format!("machine m password {long}")).unwrap();
        assert_eq!(pair(&n, "m"), Some(("", &long[..MAX_NETRC_TOKEN - 1])));
        let exact = "a".repeat(MAX_NETRC_TOKEN + 3);
        let n = Netrc::parse(&format!("machine m password {exact}")).unwrap();
        assert_eq!(pair(&n, "m"), Some(("", &exact[..MAX_NETRC_TOKEN])));
    }
}
