//! Store keys: which strings may name an object, and where a blob's file lives.
//!
//! A key is a cache URL path (`<hash>.narinfo`, `nar/<nix32>.nar.xz`, `log/<drv>`,
//! `realisations/sha256:...!out.doi`). The server validates its URLs; this module
//! validates again, because a key becomes a file name and a file name must never
//! escape the store's directory, whatever the caller passes. This module does no
//! I/O: it only checks strings and joins paths.

use std::path::{Path, PathBuf};

use narbor_proto::text::shorten;

use crate::error::StoreError;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// The longest blob file name, in bytes: what common filesystems allow.
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Every blob key starts with this; the rest is the blob's file name.
pub const BLOB_PREFIX: &str = "nar/";

/// How many characters of the key are kept in an `InvalidKey` error (a rejected
/// key can be long, and it ends up in logs).
const SHOWN_KEY_LEN: usize = 80;

/// Checks that `key` may name an object.
///
/// Refused: the empty key, keys longer than [`MAX_KEY_LEN`], keys starting with
/// `/`, containing `..`, `//`, NUL or a character outside `[A-Za-z0-9+\-._?=!:/]`,
/// and keys with an empty or `.` path segment (`a/`, `./a`): no cache URL has one,
/// and refusing them keeps "one key, one file" true.
pub fn validate(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        Some("empty")
    } else if key.len() > MAX_KEY_LEN {
        Some("longer than 512 bytes")
    } else if key.starts_with('/') {
        Some("starts with '/'")
    } else if key.contains("..") {
        Some("contains '..'")
    } else if key.contains("//") {
        Some("contains '//'")
    } else if key.contains('\0') {
        Some("contains NUL")
    } else if !key.bytes().all(allowed_byte) {
        Some("contains a character outside [A-Za-z0-9+-._?=!:/]")
    } else if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == ".")
    {
        Some("has an empty or '.' path segment")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(invalid(key, reason)),
        None => Ok(()),
    }
}

/// The file name of the blob `key` (`nar/<name>` gives `<name>`), after checking
/// that `key` is a valid blob key.
///
/// Blob keys are exactly `nar/<name>` with no further `/`: the file name is the
/// key's last segment, and allowing other prefixes would let two keys
/// (`nar/x`, `log/x`) share one file.
pub fn blob_file_name(key: &str) -> Result<&str, StoreError> {
    validate(key)?;
    match key.strip_prefix(BLOB_PREFIX) {
        Some(name) if name.contains('/') => Err(invalid(key, "a blob key must be nar/<file name>")),
        Some(name) if name.len() > MAX_FILE_NAME_LEN => {
            Err(invalid(key, "blob file name longer than 255 bytes"))
        }
        Some(name) => Ok(name),
        None => Err(invalid(key, "a blob key must be nar/<file name>")),
    }
}

/// The key of the blob whose file is called `name`, if `name` can be one.
pub(crate) fn blob_key_for_file_name(name: &str) -> Option<String> {
    let key = format!("{BLOB_PREFIX}{name}");
    blob_file_name(&key).ok()?;
    Some(key)
}

/// `<blobs_dir>/<first two chars of name>/<name>` for the blob `key`.
pub(crate) fn blob_path(blobs_dir: &Path, key: &str) -> Result<PathBuf, StoreError> {
    let name = blob_file_name(key)?;
    Ok(blobs_dir.join(shard(name)).join(name))
}

/// The sub-directory of `blobs/` holding the file `name`: its first two
/// characters (the whole name if it is shorter). Never `.` or `..`: a valid
/// name is not `.` and contains no `..`.
pub(crate) fn shard(name: &str) -> &str {
    // Valid names are ASCII, so any byte index is a char boundary.
    name.get(..2).unwrap_or(name)
}

fn allowed_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+-._?=!:/".contains(&b)
}

fn invalid(key: &str, reason: &'static str) -> StoreError {
    StoreError::InvalidKey {
        key: shorten(key, SHOWN_KEY_LEN),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAR: &str = "nar/0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s7v8w9x0y1z2a3b4c.nar.xz";

    #[test]
    fn accepts_real_cache_keys() {
        for key in [
            "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r.narinfo",
            NAR,
            "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r.ls",
            "log/0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-hello-2.12.drv",
            "realisations/sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s!out.doi",
            "nix-cache-info",
            "a?b=c",
            "x",
        ] {
            assert!(validate(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn refuses_bad_keys() {
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for (key, reason) in [
            ("", "empty"),
            (long.as_str(), "longer"),
            ("/abs", "starts with"),
            ("../x", ".."),
            ("nar/..", ".."),
            ("a..b", ".."),
            ("a//b", "//"),
            ("a\0b", "NUL"),
            ("a b", "character"),
            ("a\\b", "character"),
            ("ü", "character"),
            ("a/", "segment"),
            ("./a", "segment"),
            ("a/./b", "segment"),
            (".", "segment"),
        ] {
            match validate(key) {
                Err(StoreError::InvalidKey { reason: r, .. }) => {
                    assert!(r.contains(reason), "{key:?}: {r}")
                }
                other => panic!("{key:?}: {other:?}"),
            }
        }
        assert!(validate(&"a".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn long_keys_are_shortened_in_errors() {
        let long = "a".repeat(1000);
        let err = validate(&long).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn blob_keys_are_nar_slash_name() {
        assert_eq!(blob_file_name(NAR).unwrap(), &NAR[4..]);
        for key in ["x.narinfo", "log/x", "nar/a/b", "narx", "nar/", "nar/."] {
            assert!(blob_file_name(key).is_err(), "{key}");
        }
        assert_eq!(
            blob_key_for_file_name("ab.nar").as_deref(),
            Some("nar/ab.nar")
        );
        assert_eq!(blob_key_for_file_name(".."), None);
        assert!(blob_file_name(&format!("nar/{}", "a".repeat(255))).is_ok());
        assert!(blob_file_name(&format!("nar/{}", "a".repeat(256))).is_err());
        assert_eq!(blob_key_for_file_name("a/b"), None);
    }

    #[test]
    fn blob_paths_stay_in_the_blob_dir() {
        let dir = Path::new("/store/blobs");
        let path = blob_path(dir, NAR).unwrap();
        assert_eq!(path, dir.join("0a").join(&NAR[4..]));
        assert_eq!(blob_path(dir, "nar/x").unwrap(), dir.join("x").join("x"));
        assert_eq!(blob_path(dir, "nar/.a").unwrap(), dir.join(".a").join(".a"));
        assert!(blob_path(dir, "nar/../../etc/passwd").is_err());
    }
}
