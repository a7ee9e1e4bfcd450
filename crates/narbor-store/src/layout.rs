//! The store's files: its directories, where a blob's file lives, temp files
//! for blobs being written, placing one as a blob (rename and fsyncs),
//! deleting and opening blob files, the free space under the store, and the
//! sweep of files nothing accounts for.
//!
//! ```text
//! <dir>/index.redb                the index (opened by `index`, only named here)
//! <dir>/blobs/<2 chars>/<name>    blob files; blob keys are `nar/<name>`
//! <dir>/tmp/<seq>-<name>          blobs being written; emptied at open
//! ```
//!
//! This module owns the paths and every filesystem call on them, and the
//! registry of temp names that belong to live writers. It does not own which
//! blobs exist (the index says, through `disk`), sizes or eviction
//! (`accounting`), or the store's write lock: [`Layout::place`] runs under it
//! and the sweep takes it through the closure its caller passes.
//!
//! # The orphan sweep
//!
//! Orphans come from a crash between a blob's rename and its index commit, a
//! failed unlink after an eviction, or anything else dropped into the
//! directory. They are never served (reads go through the index), only wasted
//! space, so the sweep runs in the background, not in `open`. The listing runs
//! without the store's write lock; each candidate is checked again under the
//! lock just before it is deleted, so a blob committed while the sweep runs is
//! never taken for an orphan (a commit renames and indexes under that lock).

use std::collections::HashSet;
use std::fs::{self, DirEntry, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::{info, warn};

use crate::error::{io_err, StoreError};
use crate::key;

/// The files of one store.
pub(crate) struct Layout {
    dir: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    /// Names in `tmp/` that belong to a live [`TempFile`]: registered before
    /// the file is created, released after it is gone. Taken after the store's
    /// write lock and the accounts, never before.
    live: LiveTemps,
    next_temp: AtomicU64,
}

type LiveTemps = Arc<Mutex<HashSet<String>>>;

fn lock(live: &LiveTemps) -> MutexGuard<'_, HashSet<String>> {
    live.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What opening a blob file found.
pub(crate) enum BlobFile {
    Ok(File),
    Missing,
    WrongSize(u64),
}

/// A file in `tmp/` that a blob writer owns. Dropped before it was placed, it
/// is deleted; either way its name is released.
pub(crate) struct TempFile {
    name: String,
    path: PathBuf,
    live: LiveTemps,
    /// Renamed into `blobs/`: nothing left to delete.
    placed: bool,
}

impl Layout {
    /// Creates the store's directories if missing. Touches nothing in them.
    pub fn create(dir: PathBuf) -> Result<Layout, StoreError> {
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        for d in [&dir, &blobs, &tmp] {
            fs::create_dir_all(d).map_err(io_err("create directory", d))?;
        }
        Ok(Layout {
            dir,
            blobs,
            tmp,
            live: LiveTemps::default(),
            next_temp: AtomicU64::new(0),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the index's database file is.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join("index.redb")
    }

    /// Deletes everything in `tmp/`; returns how many entries it held. Only
    /// for open, once the index's lock proves no other process uses the store.
    pub fn empty_tmp(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for entry in list(&self.tmp)? {
            delete(&entry)?;
            count += 1;
        }
        Ok(count)
    }

    /// Bytes that unprivileged writers may still use on the filesystem under
    /// the store (statvfs of `tmp/`, where blobs are written; `blobs/` is on
    /// the same filesystem, as renames between them require).
    pub fn free_space(&self) -> Result<u64, StoreError> {
        let stat =
            rustix::fs::statvfs(&self.tmp).map_err(|e| io_err("statvfs", &self.tmp)(e.into()))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// `blobs/<first two chars of name>/<name>` for the blob `key`.
    pub fn blob_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        key::blob_path(&self.blobs, key)
    }

    /// Opens the blob file at `path` and checks that it has `size` bytes.
    pub fn open_blob(&self, path: &Path, size: u64) -> Result<BlobFile, StoreError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BlobFile::Missing),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let len = file.metadata().map_err(io_err("stat", path))?.len();
        Ok(if len == size {
            BlobFile::Ok(file)
        } else {
            BlobFile::WrongSize(len)
        })
    }

    /// Deletes the file of blob `key` if there is one. A failure is logged: the
    /// file is then an orphan, which the sweep deletes later.
    pub fn delete_blob(&self, key: &str) {
        let Ok(path) = self.blob_path(key) else {
            return;
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(key, path = %path.display(), error = %e, "cannot delete a blob file"),
        }
    }

    /// Creates a new temp file for the blob `key`, opened for writing.
    pub fn new_temp(&self, key: &str) -> Result<(TempFile, File), StoreError> {
        let name = key::blob_file_name(key)?;
        let seq = self.next_temp.fetch_add(1, Ordering::Relaxed);
        // Short enough for any filesystem, and still says which blob it is.
        let shown: String = name.chars().take(100).collect();
        let temp_name = format!("{seq:08}-{shown}");
        let path = self.tmp.join(&temp_name);
        lock(&self.live).insert(temp_name.clone());
        let file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) => {
                lock(&self.live).remove(&temp_name);
                return Err(io_err("create", &path)(e));
            }
        };
        let temp = TempFile {
            name: temp_name,
            path,
            live: Arc::clone(&self.live),
            placed: false,
        };
        Ok((temp, file))
    }

    /// Renames `temp` (written, verified, fsynced) into place as the blob
    /// `key` and makes the rename durable; returns the blob's path. The caller
    /// holds the store's write lock and indexes the blob next.
    ///
    /// If this fails after the rename, the file is an orphan for the sweep.
    pub fn place(&self, temp: &mut TempFile, key: &str) -> Result<PathBuf, StoreError> {
        let path = self.blob_path(key)?;
        let shard = path.parent().unwrap_or(&self.blobs);
        if !shard.is_dir() {
            fs::create_dir_all(shard).map_err(io_err("create directory", shard))?;
            sync_dir(&self.blobs)?;
        }
        fs::rename(&temp.path, &path).map_err(io_err("rename into place", &temp.path))?;
        temp.placed = true;
        // The rename must be on disk before the index says the file exists.
        sync_dir(shard)?;
        Ok(path)
    }

    /// Deletes a placed blob file that could not be indexed, so it leaves no
    /// orphan. An older entry for the key (its file now replaced) is caught by
    /// the length check when it is opened.
    pub fn unplace(&self, key: &str, path: &Path) {
        if let Err(e) = fs::remove_file(path) {
            warn!(key, path = %path.display(), error = %e, "cannot delete an unindexed blob");
        }
    }

    /// Deletes files in `tmp/` that no live writer owns and files in `blobs/`
    /// that are not an indexed blob's; returns how many.
    ///
    /// `is_blob(key)` says whether `key` is indexed as a blob; `exclusive()`
    /// takes the store's write lock, under which `is_blob` is asked again
    /// before each deletion.
    pub fn sweep<G>(
        &self,
        is_blob: impl Fn(&str) -> bool,
        exclusive: impl Fn() -> G,
    ) -> Result<usize, StoreError> {
        let tmp = self.sweep_tmp()?;
        let blobs = self.sweep_blobs(is_blob, exclusive)?;
        if tmp + blobs > 0 {
            info!(tmp, blobs, "swept orphan files");
        }
        Ok(tmp + blobs)
    }

    /// Files in `tmp/` that no live writer owns.
    fn sweep_tmp(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for entry in list(&self.tmp)? {
            let name = entry.file_name();
            // Held while deleting: a writer registers its name before creating
            // the file, so a name absent here cannot become live under our feet.
            let live = lock(&self.live);
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
    fn sweep_blobs<G>(
        &self,
        is_blob: impl Fn(&str) -> bool,
        exclusive: impl Fn() -> G,
    ) -> Result<usize, StoreError> {
        let mut count = 0;
        for shard in list(&self.blobs)? {
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
                let is_indexed = || key.as_deref().is_some_and(&is_blob);
                if is_indexed() {
                    continue;
                }
                let _guard = exclusive();
                if !is_indexed() && delete(&file)? {
                    warn!(path = %file.path().display(), "deleted an orphan blob file");
                    count += 1;
                }
            }
        }
        Ok(count)
    }
}

impl TempFile {
    /// The file's path in `tmp/`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.placed {
            match fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => warn!(
                    path = %self.path.display(),
                    error = %e,
                    "cannot delete an aborted blob's temp file"
                ),
            }
        }
        lock(&self.live).remove(&self.name);
    }
}

/// fsyncs a directory, so renames into it are durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
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
