//! The `nix-cache-info` document at the root of a binary cache.
//!
//! This module owns its three known fields (`StoreDir`, `WantMassQuery`,
//! `Priority`) and keeps unknown ones. The line format is shared with
//! `.narinfo` (see [`crate::narinfo`]). Whether the store directory matches the
//! client's is for the caller to judge.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::narinfo::LineError;
use crate::store_path::{truncate, STORE_DIR};

/// The largest document [`CacheInfo::parse`] accepts, in bytes.
pub const MAX_CACHE_INFO_SIZE: usize = 64 * 1024;

/// A binary cache's `nix-cache-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheInfo {
    /// `StoreDir`; `/nix/store` when the line is missing.
    pub store_dir: String,
    /// `WantMassQuery: 1`; false when missing.
    pub want_mass_query: bool,
    /// `Priority`; lower is preferred by Nix (cache.nixos.org uses 40).
    pub priority: Option<u32>,
    /// Fields this crate does not know, in order; printed after the known ones.
    pub unknown: Vec<(String, String)>,
}

/// Why a text is not a `nix-cache-info`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CacheInfoError {
    #[error("nix-cache-info is {len} bytes, larger than the {MAX_CACHE_INFO_SIZE} allowed")]
    TooLarge { len: usize },
    #[error("line {line}: {source}")]
    Line { line: usize, source: LineError },
    #[error("line {line} ({field}): invalid value {value:?}: {expected}")]
    InvalidValue {
        line: usize,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("line {line} ({field}): duplicate field, first given on line {first}")]
    Duplicate {
        line: usize,
        field: &'static str,
        first: usize,
    },
}

/// The fields this module knows. Every `match` on a key is exhaustive, so
/// a new variant must be given a name and a meaning in [`CacheInfo::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    StoreDir,
    WantMassQuery,
    Priority,
}

impl Key {
    /// Every key, in declaration order (`ALL[k as usize] == k`).
    const ALL: [Key; 3] = [Key::StoreDir, Key::WantMassQuery, Key::Priority];

    /// The key as written in a document.
    fn name(self) -> &'static str {
        match self {
            Key::StoreDir => "StoreDir",
            Key::WantMassQuery => "WantMassQuery",
            Key::Priority => "Priority",
        }
    }

    /// The known key named `name`; None for a field kept as
    /// [`CacheInfo::unknown`].
    fn parse(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl Default for CacheInfo {
    /// `/nix/store`, no mass queries, no priority.
    fn default() -> Self {
        CacheInfo {
            store_dir: STORE_DIR.to_owned(),
            want_mass_query: false,
            priority: None,
            unknown: Vec::new(),
        }
    }
}

impl CacheInfo {
    /// Parses a `nix-cache-info` document. No field is required.
    pub fn parse(s: &str) -> Result<Self, CacheInfoError> {
        if s.len() > MAX_CACHE_INFO_SIZE {
            return Err(CacheInfoError::TooLarge { len: s.len() });
        }
        let mut info = CacheInfo::default();
        let mut first_line = [0usize; Key::ALL.len()];
        for f in crate::narinfo::kv::fields(s) {
            let f = f.map_err(|(line, source)| CacheInfoError::Line { line, source })?;
            let Some(key) = Key::parse(f.key) else {
                info.unknown.push((f.key.to_owned(), f.value.to_owned()));
                continue;
            };
            let (line, field, value) = (f.line, key.name(), f.value);
            let first = &mut first_line[key as usize];
            if *first != 0 {
                return Err(CacheInfoError::Duplicate {
                    line,
                    field,
                    first: *first,
                });
            }
            *first = line;
            let invalid = |expected| CacheInfoError::InvalidValue {
                line,
                field,
                value: truncate(value),
                expected,
            };
            match key {
                Key::StoreDir if value.starts_with('/') => value.clone_into(&mut info.store_dir),
                Key::StoreDir => return Err(invalid("an absolute path")),
                Key::WantMassQuery => {
                    info.want_mass_query = match value {
                        "1" => true,
                        "0" => false,
                        _ => return Err(invalid("1 or 0")),
                    }
                }
                Key::Priority => {
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(invalid("a non-negative integer"));
                    }
                    info.priority = Some(
                        value
                            .parse()
                            .map_err(|_| invalid("an integer below 2^32"))?,
                    );
                }
            }
        }
        Ok(info)
    }
}

impl fmt::Display for CacheInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "StoreDir: {}", self.store_dir)?;
        writeln!(f, "WantMassQuery: {}", u8::from(self.want_mass_query))?;
        if let Some(p) = self.priority {
            writeln!(f, "Priority: {p}")?;
        }
        for (k, v) in &self.unknown {
            writeln!(f, "{k}: {v}")?;
        }
        Ok(())
    }
}

impl FromStr for CacheInfo {
    type Err = CacheInfoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let text = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n";
        let info = CacheInfo::parse(text).unwrap();
        assert_eq!(
            info,
            CacheInfo {
                store_dir: "/nix/store".into(),
                want_mass_query: true,
                priority: Some(30),
                unknown: vec![],
            }
        );
        assert_eq!(info.to_string(), text);
    }

    #[test]
    fn optional_fields_and_unknowns() {
        let info = CacheInfo::parse("X-Extra: a: b\nWantMassQuery: 0\n\n").unwrap();
        assert_eq!(info.store_dir, STORE_DIR);
        assert!(!info.want_mass_query);
        assert_eq!(info.priority, None);
        assert_eq!(info.unknown, [("X-Extra".into(), "a: b".into())]);
        assert_eq!(
            info.to_string(),
            "StoreDir: /nix/store\nWantMassQuery: 0\nX-Extra: a: b\n"
        );
        assert_eq!(CacheInfo::parse("").unwrap(), CacheInfo::default());
        // No final newline is fine.
        assert_eq!(
            CacheInfo::parse("StoreDir: /gnu/store").unwrap().store_dir,
            "/gnu/store"
        );
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = |s: &str| CacheInfo::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("StoreDir: /nix/store\nPriority: 3x\n"),
            "line 2 (Priority): invalid value \"3x\": a non-negative integer"
        );
        assert_eq!(
            err("Priority: 99999999999\n"),
            "line 1 (Priority): invalid value \"99999999999\": an integer below 2^32"
        );
        assert_eq!(
            err("Priority: -1\n"),
            "line 1 (Priority): invalid value \"-1\": a non-negative integer"
        );
        assert_eq!(
            err("WantMassQuery: yes\n"),
            "line 1 (WantMassQuery): invalid value \"yes\": 1 or 0"
        );
        assert_eq!(
            err("WantMassQuery: \n"),
            "line 1 (WantMassQuery): invalid value \"\": 1 or 0"
        );
        assert_eq!(
            err("StoreDir: nix/store\n"),
            "line 1 (StoreDir): invalid value \"nix/store\": an absolute path"
        );
        assert_eq!(
            err("Priority: 1\nWantMassQuery: 1\nPriority: 2\n"),
            "line 3 (Priority): duplicate field, first given on line 1"
        );
        assert_eq!(
            err("StoreDir: /nix/store\nWantMassQuery 1\n"),
            "line 2: expected `Key: value`, found \"WantMassQuery 1\""
        );
        assert_eq!(
            err("StoreDir: /nix/store\n\nPriority: 1\n"),
            "line 2: blank line inside the document"
        );
        assert!(matches!(
            CacheInfo::parse(&"X: y\n".repeat(20_000)),
            Err(CacheInfoError::TooLarge { .. })
        ));
    }

    #[test]
    fn keys_are_listed_once_in_order_and_named_back() {
        for (i, key) in Key::ALL.into_iter().enumerate() {
            assert_eq!(key as usize, i, "{key:?}");
            assert_eq!(Key::parse(key.name()), Some(key));
        }
    }
}
