//! What the store hands back about its objects: their kind, a document with
//! its time, an index entry as listed.
//!
//! Plain values, no behaviour: every other module may use them, and this one
//! uses none of the others.

use std::fmt;
use std::time::SystemTime;

/// A document and when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub body: bytes::Bytes,
    pub stored_at: SystemTime,
}

/// Which kind of object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Stored inline in the index.
    Document,
    /// Stored as a file under `blobs/`.
    Blob,
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::Document => "document",
            EntryKind::Blob => "blob",
        })
    }
}

/// One index entry, as [`DiskStore::entries`](crate::DiskStore::entries) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub key: String,
    pub kind: EntryKind,
    /// Bytes: the blob file's length or the document body's.
    pub size: u64,
    pub stored_at: SystemTime,
}
