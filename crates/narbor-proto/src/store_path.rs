//! Store paths: `/nix/store/<32 nix32 chars>-<name>`.
//!
//! This module owns the store path hash ([`StorePathHash`], 20 bytes), the name
//! rules, and the three spellings a store path comes in (absolute path, base
//! name, hash plus name). It does not know what a path contains, whether it
//! exists, or how its hash was computed.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::nixbase32::{self, DecodeError};

/// The only store directory this crate knows.
pub const STORE_DIR: &str = "/nix/store";

/// Bytes in a store path hash.
pub const HASH_LEN: usize = 20;

/// Characters in the nixbase32 spelling of a store path hash.
pub const HASH_CHARS: usize = nixbase32::encoded_len(HASH_LEN);

/// The longest name Nix accepts, in bytes.
pub const MAX_NAME_LEN: usize = 211;

/// The 20-byte hash part of a store path.
///
/// Ordering is the ordering of the nixbase32 spelling (the order Nix sorts store
/// paths in), not the order of the raw bytes: nixbase32 writes the last byte
/// first, so the bytes are compared from the end.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StorePathHash(pub [u8; HASH_LEN]);

/// Why a string is not a store path, a store path hash or a store path name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorePathError {
    #[error("store path hash {input:?}: {source}")]
    InvalidHash { input: String, source: DecodeError },
    #[error("{input:?} is not in {STORE_DIR} (expected {STORE_DIR}/<hash>-<name>)")]
    NotInStore { input: String },
    #[error(
        "store path {input:?} is too short or has no '-' after the {HASH_CHARS}-character hash"
    )]
    MissingName { input: String },
    #[error("store path name {input:?}: {reason}")]
    InvalidName { input: String, reason: NameError },
}

/// Why a string is not a valid store path name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {len} bytes, longer than the {MAX_NAME_LEN} allowed")]
    TooLong { len: usize },
    #[error("name starts with '.'")]
    LeadingDot,
    #[error("invalid character {char:?} at byte {position} (allowed: A-Z a-z 0-9 + - . _ ? =)")]
    InvalidChar { char: char, position: usize },
}

/// Untrusted input as this crate's errors quote it: 100 characters at most.
pub(crate) fn truncate(s: &str) -> String {
    crate::text::shorten(s, 100)
}

/// True for the characters Nix allows in a store path name.
pub fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"+-._?=".contains(&c)
}

/// Checks a store path name (also used for derivation output names).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if name.starts_with('.') {
        return Err(NameError::LeadingDot);
    }
    match name
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() || !is_name_char(c as u8))
    {
        Some((position, char)) => Err(NameError::InvalidChar { char, position }),
        None => Ok(()),
    }
}

impl StorePathHash {
    /// Parses exactly 32 nixbase32 characters.
    pub fn parse(s: &str) -> Result<Self, StorePathError> {
        nixbase32::decode_fixed::<HASH_LEN>(s.as_bytes())
            .map(StorePathHash)
            .map_err(|source| StorePathError::InvalidHash {
                input: truncate(s),
                source,
            })
    }

    /// The 32-character nixbase32 spelling.
    pub fn to_nix32(&self) -> String {
        nixbase32::encode(&self.0)
    }
}

impl Ord for StorePathHash {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

impl PartialOrd for StorePathHash {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for StorePathHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nix32())
    }
}

impl fmt::Debug for StorePathHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nix32())
    }
}

impl FromStr for StorePathHash {
    type Err = StorePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A store path: a hash and a validated name.
///
/// Ordered by base name (`<hash>-<name>`), which is the order Nix sorts paths in.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    // Field order matters: the derived `Ord` compares the hash first, then the name,
    // which equals comparing base names because the hash has a fixed length.
    hash: StorePathHash,
    name: String,
}

impl StorePath {
    /// A store path from its parts; the name is validated.
    pub fn new(hash: StorePathHash, name: &str) -> Result<Self, StorePathError> {
        validate_name(name).map_err(|reason| StorePathError::InvalidName {
            input: truncate(name),
            reason,
        })?;
        Ok(StorePath {
            hash,
            name: name.to_owned(),
        })
    }

    /// Parses `/nix/store/<hash>-<name>`. No trailing slash, no sub-path.
    pub fn from_absolute_path(s: &str) -> Result<Self, StorePathError> {
        let base = s
            .strip_prefix(STORE_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore { input: truncate(s) })?;
        Self::from_base_name(base)
    }

    /// Parses `<hash>-<name>`.
    pub fn from_base_name(s: &str) -> Result<Self, StorePathError> {
        let missing = || StorePathError::MissingName { input: truncate(s) };
        let hash_part = s.get(..HASH_CHARS).ok_or_else(missing)?;
        let name = s.get(HASH_CHARS..).and_then(|r| r.strip_prefix('-'));
        let hash = StorePathHash::parse(hash_part)?;
        Self::new(hash, name.ok_or_else(missing)?)
    }

    pub fn hash(&self) -> &StorePathHash {
        &self.hash
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<hash>-<name>`.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.hash, self.name)
    }

    /// `/nix/store/<hash>-<name>`.
    pub fn to_absolute_path(&self) -> String {
        format!("{STORE_DIR}/{}-{}", self.hash, self.name)
    }

    /// True when the name ends in `.drv`.
    pub fn is_derivation(&self) -> bool {
        self.name.ends_with(".drv")
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR}/{}-{}", self.hash, self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({}-{})", self.hash, self.name)
    }
}

/// Parses an absolute path.
impl FromStr for StorePath {
    type Err = StorePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_absolute_path(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf";

    #[test]
    fn round_trips_all_spellings() {
        let abs = format!("/nix/store/{BASE}");
        let p = StorePath::from_absolute_path(&abs).unwrap();
        assert_eq!(p.name(), "dbus-conf");
        assert_eq!(p.hash().to_nix32(), "0a3yijp35sygmy51cnrrz11vimwapz7c");
        assert_eq!(p.base_name(), BASE);
        assert_eq!(p.to_absolute_path(), abs);
        assert_eq!(p.to_string(), abs);
        assert_eq!(StorePath::from_base_name(BASE).unwrap(), p);
        assert_eq!(StorePath::new(*p.hash(), "dbus-conf").unwrap(), p);
        assert_eq!(abs.parse::<StorePath>().unwrap(), p);
        assert_eq!(
            format!("{:?}", p.hash()),
            "0a3yijp35sygmy51cnrrz11vimwapz7c"
        );
        assert_eq!(format!("{p:?}"), format!("StorePath({BASE})"));
    }

    #[test]
    fn hash_round_trips_bytes() {
        let h = StorePathHash([0xa5; 20]);
        assert_eq!(StorePathHash::parse(&h.to_nix32()).unwrap(), h);
        assert_eq!(h.to_string().len(), 32);
    }

    #[test]
    fn hash_rejects_bad_input() {
        for bad in [
            "",
            "0a3yijp35sygmy51cnrrz11vimwapz7",   // 31
            "0a3yijp35sygmy51cnrrz11vimwapz7cc", // 33
            "0a3yijp35sygmy51cnrrz11vimwapz7e",  // 'e' not in alphabet
            "0A3YIJP35SYGMY51CNRRZ11VIMWAPZ7C",  // upper case
            "0a3yijp35sygmy51cnrrz11vimwapzé",   // multi-byte
        ] {
            assert!(
                matches!(
                    StorePathHash::parse(bad),
                    Err(StorePathError::InvalidHash { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ordering_is_base_name_ordering() {
        // Hashes whose byte order and nix32 order disagree.
        let mut paths: Vec<StorePath> = [[1u8, 0], [0, 1], [2, 0], [0, 0]]
            .iter()
            .flat_map(|&[a, b]| {
                let mut h = [0u8; 20];
                h[0] = a;
                h[19] = b;
                ["b", "a"].map(|n| StorePath::new(StorePathHash(h), n).unwrap())
            })
            .collect();
        let mut by_string: Vec<String> = paths.iter().map(StorePath::base_name).collect();
        by_string.sort();
        paths.sort();
        let sorted: Vec<String> = paths.iter().map(StorePath::base_name).collect();
        assert_eq!(sorted, by_string);
    }

    #[test]
    fn name_rules() {
        let h = StorePathHash([0; 20]);
        assert!(StorePath::new(h, "a+b-c._?=Z9").is_ok());
        assert!(StorePath::new(h, &"x".repeat(211)).is_ok());
        let reason = |n: &str| match StorePath::new(h, n) {
            Err(StorePathError::InvalidName { reason, .. }) => reason,
            other => panic!("{n:?}: {other:?}"),
        };
        assert_eq!(reason(""), NameError::Empty);
        assert_eq!(reason(&"x".repeat(212)), NameError::TooLong { len: 212 });
        assert_eq!(reason(".hidden"), NameError::LeadingDot);
        assert_eq!(
            reason("a/b"),
            NameError::InvalidChar {
                char: '/',
                position: 1
            }
        );
        assert_eq!(
            reason("naïve"),
            NameError::InvalidChar {
                char: 'ï',
                position: 2
            }
        );
        assert!(matches!(
            reason("a b"),
            NameError::InvalidChar { char: ' ', .. }
        ));
    }

    #[test]
    fn absolute_path_errors() {
        for bad in [
            "",
            "nix/store/0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf",
            "/nix/store0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf",
            "/gnu/store/0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf",
        ] {
            assert!(
                matches!(
                    StorePath::from_absolute_path(bad),
                    Err(StorePathError::NotInStore { .. })
                ),
                "{bad:?}"
            );
        }
        for bad in [
            "/nix/store/0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf/",
            "/nix/store/0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf/bin/sh",
            "/nix/store/0a3yijp35sygmy51cnrrz11vimwapz7c-..",
        ] {
            assert!(
                matches!(
                    StorePath::from_absolute_path(bad),
                    Err(StorePathError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn base_name_errors() {
        for bad in [
            "",
            "0a3yijp35sygmy51cnrrz11vimwapz7c",
            "0a3yijp35sygmy51cnrrz11vimwapz7c_dbus",
            "short-name",
        ] {
            assert!(
                matches!(
                    StorePath::from_base_name(bad),
                    Err(StorePathError::MissingName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            StorePath::from_base_name("0a3yijp35sygmy51cnrrz11vimwapz7c-"),
            Err(StorePathError::InvalidName {
                reason: NameError::Empty,
                ..
            })
        ));
        assert!(matches!(
            StorePath::from_base_name("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x"),
            Err(StorePathError::InvalidHash { .. })
        ));
        // A multi-byte character straddling the hash boundary must not panic.
        assert!(StorePath::from_base_name("0a3yijp35sygmy51cnrrz11vimwapz7é-x").is_err());
    }

    #[test]
    fn errors_name_the_input_truncated() {
        let long = format!("/nix/store/{}", "x".repeat(500));
        let msg = StorePath::from_absolute_path(&long)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("xxxxxxxx"), "{msg}");
        assert!(msg.len() < 250, "{msg}");
        let msg = StorePath::from_base_name(&format!("{}-a b", &BASE[..32]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "store path name \"a b\": invalid character ' ' at byte 1 (allowed: A-Z a-z 0-9 + - . _ ? =)"
        );
    }
}
