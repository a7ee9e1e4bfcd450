//! sha256 digests in the three spellings real caches use.
//!
//! Nix prints `sha256:<nix32>`; older tools and some caches write
//! `sha256:<hex>`, and `nix path-info --json` writes SRI (`sha256-<base64>`).
//! All three parse into one [`Sha256`]; it always prints as `sha256:<nix32>`.
//! [`HashFormat`] records which spelling was read, so a caller can tell a
//! non-canonical document from a canonical one.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use sha2::Digest;
use thiserror::Error;

use crate::nixbase32;
use crate::store_path::truncate;

/// Length of a sha256 digest in bytes.
pub const SHA256_LEN: usize = 32;

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; SHA256_LEN]);

/// The spelling a hash was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// `sha256:<52 nix32 chars>`: what Nix writes.
    Nix32,
    /// `sha256:<64 hex chars>`.
    Hex,
    /// `sha256-<44 base64 chars>` (SRI).
    Sri,
}

/// Why a string is not a sha256 hash.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashError {
    #[error("hash {0:?} is not sha256 (expected a `sha256:` or `sha256-` prefix)")]
    UnsupportedAlgorithm(String),
    #[error("hash {input:?}: {reason}")]
    Malformed { input: String, reason: String },
}

impl Sha256 {
    /// Digest of `data`.
    pub fn digest(data: &[u8]) -> Self {
        Sha256(sha2::Sha256::digest(data).into())
    }

    /// Parses any of the three spellings.
    pub fn parse(s: &str) -> Result<Self, HashError> {
        Self::parse_with_format(s).map(|(h, _)| h)
    }

    /// Parses any of the three spellings and says which one it was.
    pub fn parse_with_format(s: &str) -> Result<(Self, HashFormat), HashError> {
        let malformed = |reason: String| HashError::Malformed {
            input: truncate(s),
            reason,
        };
        if let Some(rest) = s.strip_prefix("sha256:") {
            match rest.len() {
                52 => nixbase32::decode_fixed::<SHA256_LEN>(rest.as_bytes())
                    .map(|d| (Sha256(d), HashFormat::Nix32))
                    .map_err(|e| malformed(e.to_string())),
                64 => decode_hex(rest)
                    .map(|d| (Sha256(d), HashFormat::Hex))
                    .ok_or_else(|| malformed("invalid hex digit".into())),
                n => Err(malformed(format!(
                    "digest has {n} characters; sha256 takes 52 (nix32) or 64 (hex)"
                ))),
            }
        } else if let Some(rest) = s.strip_prefix("sha256-") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|e| malformed(format!("invalid base64: {e}")))?;
            let d: [u8; SHA256_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
                malformed(format!("SRI digest has {} bytes, expected 32", b.len()))
            })?;
            Ok((Sha256(d), HashFormat::Sri))
        } else {
            Err(HashError::UnsupportedAlgorithm(truncate(s)))
        }
    }

    /// The digest as nixbase32, without the `sha256:` prefix.
    pub fn to_nix32(&self) -> String {
        nixbase32::encode(&self.0)
    }

    /// The digest as lower-case hex, without a prefix.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
        }
        s
    }

    /// The SRI spelling, `sha256-<base64>`.
    pub fn to_sri(&self) -> String {
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

fn decode_hex(s: &str) -> Option<[u8; SHA256_LEN]> {
    let b = s.as_bytes();
    let mut out = [0u8; SHA256_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_nix32())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sha256 {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sha256::parse(s)
    }
}

/// An incremental sha256 that also counts bytes: what every streaming check needs.
#[derive(Clone, Default)]
pub struct HashingCounter {
    hasher: sha2::Sha256,
    len: u64,
}

impl HashingCounter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> (Sha256, u64) {
        (Sha256(self.hasher.finalize().into()), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_NIX32: &str = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    const EMPTY_HEX: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn three_spellings_one_hash() {
        let d = Sha256::digest(b"");
        assert_eq!(
            Sha256::parse_with_format(EMPTY_NIX32).unwrap(),
            (d, HashFormat::Nix32)
        );
        assert_eq!(
            Sha256::parse_with_format(EMPTY_HEX).unwrap(),
            (d, HashFormat::Hex)
        );
        assert_eq!(
            Sha256::parse_with_format(EMPTY_SRI).unwrap(),
            (d, HashFormat::Sri)
        );
        assert_eq!(d.to_string(), EMPTY_NIX32);
        assert_eq!(format!("sha256:{}", d.to_hex()), EMPTY_HEX);
        assert_eq!(d.to_sri(), EMPTY_SRI);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "md5:abc",
            "sha256:",
            "sha256:zz",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256-notbase64!",
            "sha256-AAAA",
            "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7e",
        ] {
            assert!(Sha256::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn counter_hashes_and_counts() {
        let mut c = HashingCounter::new();
        c.update(b"ab");
        c.update(b"c");
        assert_eq!(c.finish(), (Sha256::digest(b"abc"), 3));
    }
}
