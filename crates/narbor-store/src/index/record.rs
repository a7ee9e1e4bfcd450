//! The fixed binary encoding of the index's values.
//!
//! Table `objects` maps a key to:
//!
//! ```text
//! [version u8 = 1][kind u8: 0 document, 1 blob][size u64 LE][stored_at u64 LE][last_access u64 LE][body]
//! ```
//!
//! Times are unix seconds. `body` is the document itself for a document (so
//! `size == body.len()`) and empty for a blob, whose bytes live in a file. A
//! fixed layout instead of a serde format: 26 bytes, no dependency, and
//! `last_access` can be patched in place when access times are flushed.
//!
//! Table `meta` maps the same keys to the same 26-byte header without the body.
//! `meta`'s `last_access` is the one that counts (the copy in `objects` is the
//! time of the write).
//!
//! This module only encodes and decodes bytes; the tables and every
//! transaction on them are its parent's (`index`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::entry::EntryKind;
use crate::error::StoreError;

/// The encoding version this code writes and reads.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// Bytes before the body.
pub(crate) const HEADER_LEN: usize = 26;

const KIND_DOCUMENT: u8 = 0;
const KIND_BLOB: u8 = 1;
const LAST_ACCESS_AT: usize = 18;

/// One decoded index value; `body` borrows from the encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub kind: EntryKind,
    pub size: u64,
    /// Unix seconds.
    pub stored_at: u64,
    /// Unix seconds.
    pub last_access: u64,
    pub body: &'a [u8],
}

impl<'a> Record<'a> {
    /// A document entry: its size is the body's length.
    pub fn document(body: &'a [u8], now_secs: u64) -> Self {
        Record {
            kind: EntryKind::Document,
            size: body.len() as u64,
            stored_at: now_secs,
            last_access: now_secs,
            body,
        }
    }

    /// A blob entry: the bytes are in the blob's file.
    pub fn blob(size: u64, now_secs: u64) -> Self {
        Record {
            kind: EntryKind::Blob,
            size,
            stored_at: now_secs,
            last_access: now_secs,
            body: &[],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.push(FORMAT_VERSION);
        out.push(match self.kind {
            EntryKind::Document => KIND_DOCUMENT,
            EntryKind::Blob => KIND_BLOB,
        });
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.stored_at.to_le_bytes());
        out.extend_from_slice(&self.last_access.to_le_bytes());
        out.extend_from_slice(self.body);
        out
    }

    /// The header alone: the value of the `meta` table.
    pub fn encode_header(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = FORMAT_VERSION;
        out[1] = match self.kind {
            EntryKind::Document => KIND_DOCUMENT,
            EntryKind::Blob => KIND_BLOB,
        };
        out[2..10].copy_from_slice(&self.size.to_le_bytes());
        out[10..18].copy_from_slice(&self.stored_at.to_le_bytes());
        out[LAST_ACCESS_AT..].copy_from_slice(&self.last_access.to_le_bytes());
        out
    }

    /// Decodes a `meta` value: a header, and nothing after it.
    pub fn decode_header(key: &str, bytes: &'a [u8]) -> Result<Self, StoreError> {
        if bytes.len() != HEADER_LEN {
            return Err(StoreError::Corrupt {
                key: key.to_owned(),
                reason: format!("metadata of {} bytes, not {HEADER_LEN}", bytes.len()),
            });
        }
        let mut record = Self::decode_any(key, bytes)?;
        record.body = &[];
        Ok(record)
    }

    /// Decodes the value stored under `key` (the key is only used in errors).
    pub fn decode(key: &str, bytes: &'a [u8]) -> Result<Self, StoreError> {
        let record = Self::decode_any(key, bytes)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        let body = record.body;
        match record.kind {
            EntryKind::Document if record.size != body.len() as u64 => Err(corrupt(format!(
                "document size {} but body of {} bytes",
                record.size,
                body.len()
            ))),
            EntryKind::Blob if !body.is_empty() => Err(corrupt(format!(
                "blob with a {}-byte inline body",
                body.len()
            ))),
            _ => Ok(record),
        }
    }

    /// The header's fields and whatever follows it, unchecked against each other.
    fn decode_any(key: &str, bytes: &'a [u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        let (header, body) = bytes
            .split_at_checked(HEADER_LEN)
            .ok_or_else(|| corrupt(format!("{} bytes, shorter than the header", bytes.len())))?;
        if header[0] != FORMAT_VERSION {
            return Err(corrupt(format!("unknown format version {}", header[0])));
        }
        let kind = match header[1] {
            KIND_DOCUMENT => EntryKind::Document,
            KIND_BLOB => EntryKind::Blob,
            other => return Err(corrupt(format!("unknown kind {other}"))),
        };
        Ok(Record {
            kind,
            size: u64_at(header, 2),
            stored_at: u64_at(header, 10),
            last_access: u64_at(header, LAST_ACCESS_AT),
            body,
        })
    }
}

/// Rewrites the `last_access` field of an encoded value in place.
pub(crate) fn set_last_access(encoded: &mut [u8], secs: u64) {
    if let Some(field) = encoded.get_mut(LAST_ACCESS_AT..LAST_ACCESS_AT + 8) {
        field.copy_from_slice(&secs.to_le_bytes());
    }
}

fn u64_at(header: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&header[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Unix seconds of `t` (0 before the epoch).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The time `secs` unix seconds (clamped instead of overflowing).
pub(crate) fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_round_trips() {
        let record = Record::document(b"StorePath: /nix/store/x\n", 1_700_000_000);
        let bytes = record.encode();
        assert_eq!(bytes.len(), HEADER_LEN + record.body.len());
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(bytes[1], KIND_DOCUMENT);
        assert_eq!(Record::decode("k", &bytes).unwrap(), record);
    }

    #[test]
    fn blob_round_trips_and_layout_is_fixed() {
        let mut record = Record::blob(0x0102_0304_0506_0708, 7);
        record.last_access = 9;
        let bytes = record.encode();
        assert_eq!(
            bytes,
            [
                &[1u8, 1][..],
                &0x0102_0304_0506_0708u64.to_le_bytes(),
                &7u64.to_le_bytes(),
                &9u64.to_le_bytes()
            ]
            .concat()
        );
        assert_eq!(Record::decode("k", &bytes).unwrap(), record);
    }

    #[test]
    fn last_access_is_patched_in_place() {
        let mut bytes = Record::document(b"body", 5).encode();
        set_last_access(&mut bytes, 42);
        let record = Record::decode("k", &bytes).unwrap();
        assert_eq!((record.stored_at, record.last_access), (5, 42));
        assert_eq!(record.body, b"body");
    }

    #[test]
    fn header_is_the_value_without_its_body() {
        let record = Record::document(b"StorePath: /nix/store/x\n", 1_700_000_000);
        let header = record.encode_header();
        assert_eq!(header[..], record.encode()[..HEADER_LEN]);
        let decoded = Record::decode_header("k", &header).unwrap();
        assert_eq!((decoded.kind, decoded.size), (record.kind, record.size));
        assert!(decoded.body.is_empty());
        let err = Record::decode_header("the-key", &record.encode()).unwrap_err();
        assert!(err.to_string().contains("the-key"), "{err}");
    }

    #[test]
    fn corrupt_values_are_errors_naming_the_key() {
        let good = Record::document(b"abc", 1).encode();
        let mut bad_version = good.clone();
        bad_version[0] = 2;
        let mut bad_kind = good.clone();
        bad_kind[1] = 7;
        let mut blob_with_body = Record::blob(3, 1).encode();
        blob_with_body.push(0);
        for (bytes, needle) in [
            (&good[..10], "shorter"),
            (&bad_version[..], "version"),
            (&bad_kind[..], "kind"),
            (&good[..good.len() - 1], "body"),
            (&blob_with_body[..], "inline"),
        ] {
            let err = Record::decode("the-key", bytes).unwrap_err().to_string();
            assert!(err.contains("the-key") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn times_convert_without_panicking() {
        assert_eq!(unix_secs(from_unix_secs(1234)), 1234);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), 0);
        let _ = from_unix_secs(u64::MAX);
    }
}
