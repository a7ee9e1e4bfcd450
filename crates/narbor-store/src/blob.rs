//! [`BlobWriter`]: a blob being written, hashed as it goes, and visible only
//! once committed.
//!
//! Like pingora-cache's storage handles, a writer must be finished: dropping it
//! without [`BlobWriter::commit`] aborts the write and deletes its temp file,
//! so nothing half-written is ever visible. Writes go straight to the file,
//! unbuffered, so readers tailing [`BlobWriter::temp_path`] see every byte as
//! soon as `write_all` returns.
//!
//! Committing is the order the crate doc describes: verify, fsync, rename into
//! `blobs/`, fsync the directory, one index commit, then evict.
//!
//! For tailing readers: open the temp file while the writer is alive. After a
//! commit the same file (same inode) is in `blobs/`; after an abort it is
//! unlinked, and an open handle still reads what was written.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use narbor_proto::hash::{HashingCounter, Sha256};
use tracing::warn;

use crate::disk::{sync_dir, Inner};
use crate::error::{io_err, IndexResult};
use crate::index::{self, Record, META, OBJECTS};
use crate::{key, EntryKind, IntegrityCheck, StoreError};

/// A blob being written. Not visible until [`BlobWriter::commit`]; dropped
/// uncommitted, it deletes its temp file. Owns a handle on the store, so it can
/// move between threads (`spawn_blocking`) and outlive the borrow that made it.
pub struct BlobWriter {
    store: Arc<Inner>,
    key: String,
    temp_name: String,
    temp_path: PathBuf,
    /// `None` once committed.
    file: Option<File>,
    hasher: HashingCounter,
    /// A write failed: the file may hold bytes the hasher did not see.
    poisoned: bool,
    /// Renamed into place and indexed: nothing left to clean up.
    committed: bool,
}

impl BlobWriter {
    /// Registers `temp_name` as live, then creates it in `tmp/`.
    pub(crate) fn create(
        store: Arc<Inner>,
        key: &str,
        temp_name: String,
    ) -> Result<Self, StoreError> {
        let temp_path = store.tmp.join(&temp_name);
        store.live_temps().insert(temp_name.clone());
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
        {
            Ok(file) => file,
            Err(e) => {
                store.live_temps().remove(&temp_name);
                return Err(io_err("create", &temp_path)(e));
            }
        };
        Ok(BlobWriter {
            store,
            key: key.to_owned(),
            temp_name,
            temp_path,
            file: Some(file),
            hasher: HashingCounter::new(),
            poisoned: false,
            committed: false,
        })
    }

    /// The key this blob will be stored under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The file being written, for readers that tail it.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
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
            return Err(io_err("write", &self.temp_path)(e));
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
        file.sync_all().map_err(io_err("fsync", &self.temp_path))?;
        // The file must hold exactly what was hashed (nothing appended or cut
        // through another handle).
        let on_disk = file
            .metadata()
            .map_err(io_err("stat", &self.temp_path))?
            .len();
        if on_disk != size {
            return Err(self.mismatch(IntegrityCheck::Size, size, on_disk));
        }
        drop(file);
        // On error the temp file may still exist: Drop deletes it.
        publish(&self.store, &self.key, &self.temp_path, size)?;
        self.committed = true;
        Ok(())
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

/// Moves a written, verified, fsynced temp file into place and indexes it (one
/// durable commit), then evicts down to the limit, sparing `key` unless it
/// alone exceeds the limit. The rename, the commit and the accounts change
/// under the store's write lock, so eviction, removal and the orphan sweep see
/// all of it or none.
fn publish(store: &Inner, key: &str, temp: &Path, size: u64) -> Result<(), StoreError> {
    let path = key::blob_path(&store.blobs, key)?;
    let shard = path.parent().unwrap_or(&store.blobs);
    let guard = store.lock_mutate();
    if !shard.is_dir() {
        fs::create_dir_all(shard).map_err(io_err("create directory", shard))?;
        sync_dir(&store.blobs)?;
    }
    fs::rename(temp, &path).map_err(io_err("rename into place", temp))?;
    // The rename must be on disk before the index says the file exists.
    sync_dir(shard)?;
    let now = store.now();
    let record = Record::blob(size, index::unix_secs(now));
    let op = store.index_op("commit blob", Some(key));
    let indexed = store.db.begin_write().ctx(op).and_then(|txn| {
        txn.open_table(OBJECTS)
            .ctx(op)?
            .insert(key, record.encode().as_slice())
            .ctx(op)?;
        txn.open_table(META)
            .ctx(op)?
            .insert(key, record.encode_header().as_slice())
            .ctx(op)?;
        txn.commit().ctx(op)
    });
    // The key may have held a document: its copy in memory goes (also if
    // the commit failed, when what the index holds is uncertain).
    store.hot().invalidate(key);
    if let Err(e) = indexed {
        // Leave no orphan behind. An older entry for the key (its file now
        // replaced) is caught by `open_blob`'s length check.
        if let Err(rm) = fs::remove_file(&path) {
            warn!(key, path = %path.display(), error = %rm, "cannot delete an unindexed blob");
        }
        return Err(e);
    }
    store
        .accounts()
        .insert(key, EntryKind::Blob, size, index::unix_nanos(now));
    store.evict_after_insert(&guard, key);
    Ok(())
}

impl Drop for BlobWriter {
    /// Deletes the temp file unless it was renamed into place (then it is gone
    /// from `tmp/` already), and releases its name.
    fn drop(&mut self) {
        self.file = None;
        if !self.committed {
            match fs::remove_file(&self.temp_path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => warn!(
                    key = self.key,
                    path = %self.temp_path.display(),
                    error = %e,
                    "cannot delete an aborted blob's temp file"
                ),
            }
        }
        self.store.live_temps().remove(&self.temp_name);
    }
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("key", &self.key)
            .field("temp_path", &self.temp_path)
            .field("written", &self.written())
            .finish_non_exhaustive()
    }
}
