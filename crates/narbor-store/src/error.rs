//! The store's one error type, and helpers that attach context to I/O and index errors.
//!
//! Every variant says which key or which path it is about. Errors carry no
//! policy: whether a failure is a 4xx or a 5xx is the server's decision.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::entry::EntryKind;

/// What went wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The key may not name an object (see [`crate::key::validate`]). Nothing was touched.
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey {
        /// The key, cut to its first 80 characters.
        key: String,
        reason: &'static str,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The redb index failed.
    #[error("index {path}: {op}{}: {source}", for_key(key), path = path.display())]
    Index {
        op: &'static str,
        path: PathBuf,
        key: Option<String>,
        #[source]
        source: Box<redb::Error>,
    },
    /// An index entry does not decode.
    #[error("index entry {key:?} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// The key holds the other kind of object (a blob asked for as a document, or
    /// the reverse).
    #[error("{key:?} is a {actual}, not a {expected}")]
    WrongKind {
        key: String,
        expected: EntryKind,
        actual: EntryKind,
    },
    /// The bytes written to a blob are not the bytes expected. The temp file is
    /// deleted and nothing became visible.
    #[error("blob {key:?}: {check} mismatch: expected {expected}, got {actual}")]
    Integrity {
        key: String,
        check: IntegrityCheck,
        expected: String,
        actual: String,
    },
    /// The filesystem under the store has less free space than the object
    /// asked for plus [`ADMISSION_HEADROOM`](crate::ADMISSION_HEADROOM)
    /// ([`DiskStore::admit`](crate::DiskStore::admit)). Nothing was written.
    #[error("no room on the disk under {path}: {free} bytes free, {needed} needed", path = path.display())]
    NoRoom {
        /// The store's directory.
        path: PathBuf,
        /// Bytes free for unprivileged writers.
        free: u64,
        /// The object's length (if known) plus the headroom.
        needed: u64,
    },
    /// A write to this blob failed earlier, so what is on disk is not what was
    /// hashed; the writer can only be dropped.
    #[error("blob {key:?}: an earlier write failed, the blob cannot be committed")]
    Poisoned { key: String },
}

/// Which check of [`StoreError::Integrity`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// The number of bytes written.
    Size,
    /// The sha256 of the bytes written.
    Hash,
}

impl fmt::Display for IntegrityCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IntegrityCheck::Size => "size",
            IntegrityCheck::Hash => "sha256",
        })
    }
}

fn for_key(key: &Option<String>) -> String {
    match key {
        Some(key) => format!(" of {key:?}"),
        None => String::new(),
    }
}

/// `map_err(io_err("rename", &path))`.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// Which index operation failed, on which key: the context of
/// [`StoreError::Index`]. Attach it with [`IndexResult::ctx`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexOp<'a> {
    pub path: &'a Path,
    pub op: &'static str,
    pub key: Option<&'a str>,
}

/// `result.ctx(op)?` turns any redb error into a [`StoreError::Index`].
pub(crate) trait IndexResult<T> {
    fn ctx(self, op: IndexOp<'_>) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> IndexResult<T> for Result<T, E> {
    fn ctx(self, op: IndexOp<'_>) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Index {
            op: op.op,
            path: op.path.to_path_buf(),
            key: op.key.map(str::to_owned),
            source: Box::new(source.into()),
        })
    }
}
