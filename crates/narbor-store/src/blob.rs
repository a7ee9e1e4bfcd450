//! [`BlobWriter`]: a blob being written, hashed as it goes, and visible only
//! once committed.
//!
//! Like pingora-cache's storage handles, a writer must be finished: dropping it
//! without [`BlobWriter::commit`] aborts the write and deletes its temp file,
//! so nothing half-written is ever visible. Writes go straight to the file,
//! unbuffered, so a [`BlobWriter::reader`] sees every byte as soon as
//! `write_all` returns.
//!
//! This module owns the writer's side of a blob: the bytes, their running hash
//! and count, the checks before a commit (expected size and sha256, fsync, the
//! length on disk). It does not own where the file lives (`layout`'s
//! [`TempFile`]) or what a commit does to the store: it hands the finished
//! file to the store through [`Publish`], the one thing it knows of it.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use narbor_proto::hash::{HashingCounter, Sha256};

use crate::error::{io_err, IntegrityCheck, StoreError};
use crate::layout::TempFile;

/// What a [`BlobWriter`] needs from its store: making a finished temp file a
/// stored blob. The store implements it; `Send + Sync` so the writer can move
/// between threads.
pub(crate) trait Publish: Send + Sync {
    /// Moves `temp` (`size` bytes, verified and fsynced) into place as the blob
    /// `key`, indexes it in one durable commit and accounts for it, then
    /// evicts down to the store's bound (sparing `key` unless it alone exceeds
    /// it). On error nothing became visible.
    fn publish(&self, key: &str, temp: &mut TempFile, size: u64) -> Result<(), StoreError>;
}

/// A blob being written. Not visible until [`BlobWriter::commit`]; dropped
/// uncommitted, it deletes its temp file. Owns a handle on the store, so it can
/// move between threads (`spawn_blocking`) and outlive the borrow that made it.
pub struct BlobWriter {
    store: Arc<dyn Publish>,
    key: String,
    /// `None` once committed. Declared before `temp`, so it is closed before
    /// the temp file is deleted.
    file: Option<File>,
    temp: TempFile,
    hasher: HashingCounter,
    /// A write failed: the file may hold bytes the hasher did not see.
    poisoned: bool,
}

impl BlobWriter {
    /// A writer of the blob `key` into `temp` (opened for writing as `file`),
    /// published through `store` when committed.
    pub(crate) fn new(store: Arc<dyn Publish>, key: &str, temp: TempFile, file: File) -> Self {
        BlobWriter {
            store,
            key: key.to_owned(),
            file: Some(file),
            temp,
            hasher: HashingCounter::new(),
            poisoned: false,
        }
    }

    /// The key this blob will be stored under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A new reader of the blob being written, for clients that tail it.
    ///
    /// It reads the very file being written (opened read-only), so positioned
    /// reads up to [`written`](Self::written) bytes see every byte written so
    /// far. It stays valid after the writer is gone: after a commit it reads
    /// the stored blob (the same file, renamed), after an abort the deleted
    /// file, up to what was written.
    pub fn reader(&self) -> Result<File, StoreError> {
        let path = self.temp.path();
        File::open(path).map_err(io_err("open for reading", path))
    }

    /// The file being written.
    #[cfg(test)]
    pub(crate) fn temp_path(&self) -> &std::path::Path {
        self.temp.path()
    }

    /// Appends `data` to the file and to the running hash and count.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        let Some(file) = self.file.as_mut() else {
            return Err(self.poisoned_error());
        };
        if let Err(e) = file.write_all(data) {
            self.poisoned = true;
            return Err(io_err("write", self.temp.path())(e));
        }
        self.hasher.update(data);
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Makes the blob visible: checks `expected` (sha256 and size) if given,
    /// fsyncs the file, renames it into `blobs/`, indexes it in one durable
    /// commit, then evicts down to the limit (sparing this blob unless it alone
    /// exceeds the limit, in which case it is evicted at once: the store keeps
    /// its bound, and the caller, who has the bytes, serves them anyway).
    ///
    /// On an integrity mismatch the temp file is deleted and
    /// [`StoreError::Integrity`] says whether the size or the hash differed.
    /// Committing a key that is stored replaces it; the accounts count it once.
    pub fn commit(mut self, expected: Option<(Sha256, u64)>) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        let Some(file) = self.file.take() else {
            return Err(self.poisoned_error());
        };
        let (hash, size) = std::mem::take(&mut self.hasher).finish();
        if let Some((expected_hash, expected_size)) = expected {
            if size != expected_size {
                return Err(self.mismatch(IntegrityCheck::Size, expected_size, size));
            }
            if hash != expected_hash {
                return Err(self.mismatch(IntegrityCheck::Hash, expected_hash, hash));
            }
        }
        file.sync_all().map_err(io_err("fsync", self.temp.path()))?;
        // The file must hold exactly what was hashed (nothing appended or cut
        // through another handle).
        let on_disk = file
            .metadata()
            .map_err(io_err("stat", self.temp.path()))?
            .len();
        if on_disk != size {
            return Err(self.mismatch(IntegrityCheck::Size, size, on_disk));
        }
        drop(file);
        // On error the temp file may still exist: dropping `temp` deletes it.
        self.store.publish(&self.key, &mut self.temp, size)
    }

    fn mismatch(
        &self,
        check: IntegrityCheck,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
    ) -> StoreError {
        StoreError::Integrity {
            key: self.key.clone(),
            check,
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }

    #[cfg(test)]
    pub(crate) fn poison_for_test(&mut self) {
        self.poisoned = true;
    }

    fn poisoned_error(&self) -> StoreError {
        StoreError::Poisoned {
            key: self.key.clone(),
        }
    }
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("key", &self.key)
            .field("temp_path", &self.temp.path())
            .field("written", &self.written())
            .finish_non_exhaustive()
    }
}
