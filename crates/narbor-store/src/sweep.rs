//! The orphan sweep: deletes files the index does not account for.
//!
//! Orphans come from a crash between a blob's rename and its index commit, a
//! failed unlink after an eviction, or anything else dropped into the
//! directory. They are never served (reads go through the index), only
//! wasted space, so the sweep runs in the background, not in `open`.
//!
//! The listing runs without the store's write lock; each candidate is checked
//! again under the lock just before it is deleted, so a blob committed while the
//! sweep runs is never taken for an orphan (a commit renames and indexes under
//! that same lock).

use std::fs::{self, DirEntry};
use std::io;
use std::path::Path;

use tracing::{info, warn};

use crate::disk::Inner;
use crate::error::io_err;
use crate::{key, EntryKind, StoreError};

/// Deletes stray files in `tmp/` and unindexed files in `blobs/`; returns how many.
pub(crate) fn sweep(store: &Inner) -> Result<usize, StoreError> {
    let tmp = sweep_tmp(store)?;
    let blobs = sweep_blobs(store)?;
    if tmp + blobs > 0 {
        info!(tmp, blobs, "swept orphan files");
    }
    Ok(tmp + blobs)
}

/// Files in `tmp/` that no live writer owns.
fn sweep_tmp(store: &Inner) -> Result<usize, StoreError> {
    let mut count = 0;
    for entry in list(&store.tmp)? {
        let name = entry.file_name();
        // Held while deleting: a writer registers its name before creating the
        // file, so a name absent here cannot become live under our feet.
        let live = store.live_temps();
        if name.to_str().is_some_and(|name| live.contains(name)) {
            continue;
        }
        if delete(&entry)? {
            count += 1;
        }
    }
    Ok(count)
}

/// Files under `blobs/` that are not the file of an indexed blob.
fn sweep_blobs(store: &Inner) -> Result<usize, StoreError> {
    let mut count = 0;
    for shard in list(&store.blobs)? {
        let shard_path = shard.path();
        if !is_real_dir(&shard) {
            // blobs/ holds only shard directories.
            count += usize::from(delete(&shard)?);
            continue;
        }
        for file in list(&shard_path)? {
            if is_real_dir(&file) {
                warn!(path = %file.path().display(), "unexpected directory in the blob store; left alone");
                continue;
            }
            let key = file.file_name().to_str().and_then(|name| {
                let key = key::blob_key_for_file_name(name)?;
                // A file in the wrong shard is not where its key points.
                (shard.file_name().to_str() == Some(key::shard(name))).then_some(key)
            });
            let is_indexed = |key: &Option<String>| {
                key.as_deref()
                    .and_then(|key| store.accounts().get(key).map(|meta| meta.kind))
                    == Some(EntryKind::Blob)
            };
            if is_indexed(&key) {
                continue;
            }
            let _guard = store.lock_mutate();
            if !is_indexed(&key) && delete(&file)? {
                warn!(path = %file.path().display(), "deleted an orphan blob file");
                count += 1;
            }
        }
    }
    Ok(count)
}

fn list(dir: &Path) -> Result<Vec<DirEntry>, StoreError> {
    fs::read_dir(dir)
        .and_then(|entries| entries.collect::<io::Result<Vec<_>>>())
        .map_err(io_err("list", dir))
}

/// A directory, not a symlink to one.
fn is_real_dir(entry: &DirEntry) -> bool {
    entry.file_type().is_ok_and(|t| t.is_dir())
}

/// Deletes `entry` (a directory with its contents); returns false if it was
/// already gone.
fn delete(entry: &DirEntry) -> Result<bool, StoreError> {
    let path = entry.path();
    let result = if is_real_dir(entry) {
        fs::remove_dir_all(&path)
    } else {
        fs::remove_file(&path)
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("delete", &path)(e)),
    }
}
