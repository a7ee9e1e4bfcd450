//! [`DiskStore`]: open, read, write, remove and evict, keeping the redb index,
//! the blob files and the in-memory accounts in step.
//!
//! The blob write path (temp file, hashing, verification, rename, index) is in `blob`;
//! the orphan sweep is in `sweep`. The crate doc says in which order things
//! reach the disk and why.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use redb::{Database, ReadableTable, ReadableTableMetadata};
use tracing::{debug, info, warn};

use crate::accounting::{self, Accounting};
use crate::error::{io_err, IndexOp, IndexResult};
use crate::hot::{HotDoc, HotDocs};
use crate::index::{self, Record, META, OBJECTS};
use crate::{key, BlobWriter, Document, EntryInfo, EntryKind, StoreConfig, StoreError, StoreStats};

/// The redb page cache. Documents are read through it; entry metadata is also
/// in memory, so it only needs to hold the hot documents. The OS page cache
/// serves the rest.
const INDEX_CACHE_BYTES: usize = 64 << 20;

/// The source of "now": the system clock, or a fake one in tests.
pub type Clock = Box<dyn Fn() -> SystemTime + Send + Sync>;

/// The local disk store. `Send + Sync`; share it as `Arc<DiskStore>`.
pub struct DiskStore {
    inner: Arc<Inner>,
}

/// Everything the store and its blob writers share.
pub(crate) struct Inner {
    pub(crate) blobs: PathBuf,
    pub(crate) tmp: PathBuf,
    index_path: PathBuf,
    max_size: u64,
    pub(crate) db: Database,
    /// Held for every change to the index or to `blobs/` (see the crate doc).
    /// Lock order: `mutate`, then `accounts`, then `live_temps`; `hot` is
    /// taken alone.
    mutate: Mutex<()>,
    pub(crate) accounts: Mutex<Accounting>,
    /// File names in `tmp/` that belong to a live [`BlobWriter`]: registered
    /// before the file is created, released after it is gone.
    pub(crate) live_temps: Mutex<HashSet<String>>,
    /// Copies of recently read documents. A leaf lock: nothing else is taken
    /// while it is held.
    hot: Mutex<HotDocs>,
    next_temp: AtomicU64,
    /// Evictions since open, for [`StoreStats`].
    evicted_for_size: AtomicU64,
    evicted_inactive: AtomicU64,
    clock: Clock,
}

/// What opening a blob file found.
enum BlobFile {
    Ok(File),
    Missing,
    WrongSize(u64),
}

impl DiskStore {
    /// Creates the directories, opens or creates `index.redb`, empties `tmp/`
    /// and loads the accounts from the index. Index entries that do not decode
    /// are dropped (with a warning); if the store holds more than `max_size`
    /// (the bound was lowered), it is evicted down to it.
    ///
    /// Blob files without an index entry are left for [`DiskStore::sweep_orphans`]:
    /// they are never served, and listing every file would slow the open down.
    pub fn open(config: StoreConfig) -> Result<DiskStore, StoreError> {
        Self::open_with_clock(config, Box::new(SystemTime::now))
    }

    /// [`open`](Self::open), with "now" from `clock` (for tests that move
    /// time: access times, inactivity, `stored_at`).
    pub fn open_with_clock(config: StoreConfig, clock: Clock) -> Result<DiskStore, StoreError> {
        let started = Instant::now();
        let dir = config.dir;
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        for d in [&dir, &blobs, &tmp] {
            fs::create_dir_all(d).map_err(io_err("create directory", d))?;
        }
        let index_path = dir.join("index.redb");
        // The index first: its file lock makes this process the directory's only
        // owner, so emptying tmp/ cannot destroy another process's writes.
        let db = redb::Builder::new()
            .set_cache_size(INDEX_CACHE_BYTES)
            .create(&index_path)
            .ctx(IndexOp {
                path: &index_path,
                op: "open",
                key: None,
            })?;
        let cleared = empty_dir(&tmp)?;
        let inner = Inner {
            blobs,
            tmp,
            index_path,
            max_size: config.max_size,
            db,
            mutate: Mutex::new(()),
            accounts: Mutex::new(Accounting::default()),
            live_temps: Mutex::new(HashSet::new()),
            hot: Mutex::new(HotDocs::default()),
            next_temp: AtomicU64::new(0),
            evicted_for_size: AtomicU64::new(0),
            evicted_inactive: AtomicU64::new(0),
            clock,
        };
        inner.load()?;
        let store = DiskStore {
            inner: Arc::new(inner),
        };
        let evicted = store.evict_to_limit()?;
        let stats = store.stats();
        info!(
            dir = %dir.display(),
            objects = stats.objects,
            bytes = stats.bytes,
            max_size = stats.max_size,
            evicted = evicted.len(),
            cleared_tmp = cleared,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened disk store"
        );
        Ok(store)
    }

    /// The document stored under `key`, recording the access. Recently read
    /// documents come from memory (see `hot`), the rest from the index.
    pub fn get_document(&self, key: &str) -> Result<Option<Document>, StoreError> {
        key::validate(key)?;
        let inner = &self.inner;
        let epoch = {
            let mut hot = inner.hot();
            if let Some(doc) = hot.get(key) {
                drop(hot);
                inner.touch(key);
                return Ok(Some(Document {
                    body: doc.body,
                    stored_at: doc.stored_at,
                }));
            }
            hot.epoch()
        };
        let Some(value) = inner.read_value(key)? else {
            return Ok(None);
        };
        let record = Record::decode(key, &value)?;
        if record.kind != EntryKind::Document {
            return Err(wrong_kind(key, EntryKind::Document, record.kind));
        }
        let stored_at = index::from_unix_secs(record.stored_at);
        // The body is the value past its header: no copy.
        let body = Bytes::from(value).slice(index::HEADER_LEN..);
        let doc = HotDoc {
            body: body.clone(),
            stored_at,
        };
        inner.hot().fill(epoch, key, doc);
        inner.touch(key);
        Ok(Some(Document { body, stored_at }))
    }

    /// Stores `body` under `key`, replacing whatever was there (a blob's file
    /// is deleted), then evicts down to the limit.
    pub fn put_document(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        key::validate(key)?;
        let inner = &self.inner;
        let guard = inner.lock_mutate();
        let now = inner.now();
        let record = Record::document(body, index::unix_secs(now));
        let op = inner.index_op("put document", Some(key));
        let txn = inner.db.begin_write().ctx(op)?;
        let old_kind = {
            let mut table = txn.open_table(OBJECTS).ctx(op)?;
            let old = table.insert(key, record.encode().as_slice()).ctx(op)?;
            let old_kind = old.map(|old| Record::decode(key, old.value()).map(|r| r.kind).ok());
            let mut meta = txn.open_table(META).ctx(op)?;
            meta.insert(key, record.encode_header().as_slice())
                .ctx(op)?;
            old_kind
        };
        let committed = txn.commit();
        // After the commit (a reader refilling meanwhile would keep the old
        // body), and also when it failed.
        inner.hot().invalidate(key);
        committed.ctx(op)?;
        inner.accounts().insert(
            key,
            EntryKind::Document,
            body.len() as u64,
            index::unix_nanos(now),
        );
        if let Some(old_kind) = old_kind {
            if old_kind != Some(EntryKind::Document) {
                inner.delete_blob_file(key);
            }
        }
        inner.evict_after_insert(&guard, key);
        Ok(())
    }

    /// Stores many documents in one transaction (one fsync instead of one per
    /// document): for importing, seeding and measuring. Same semantics as
    /// [`put_document`](Self::put_document) for each.
    pub fn put_documents(&self, docs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        for (key, _) in docs {
            key::validate(key)?;
        }
        let inner = &self.inner;
        let guard = inner.lock_mutate();
        let now = inner.now();
        let op = inner.index_op("put documents", None);
        let txn = inner.db.begin_write().ctx(op)?;
        let mut replaced_blobs = Vec::new();
        {
            let mut table = txn.open_table(OBJECTS).ctx(op)?;
            let mut meta = txn.open_table(META).ctx(op)?;
            for (key, body) in docs {
                let record = Record::document(body, index::unix_secs(now));
                meta.insert(*key, record.encode_header().as_slice())
                    .ctx(op)?;
                let old = table.insert(*key, record.encode().as_slice()).ctx(op)?;
                let old_kind = old.map(|old| Record::decode(key, old.value()).map(|r| r.kind).ok());
                if matches!(old_kind, Some(k) if k != Some(EntryKind::Document)) {
                    replaced_blobs.push(*key);
                }
            }
        }
        let committed = txn.commit();
        {
            let mut hot = inner.hot();
            for (key, _) in docs {
                hot.invalidate(key);
            }
        }
        committed.ctx(op)?;
        {
            let mut accounts = inner.accounts();
            for (key, body) in docs {
                accounts.insert(
                    key,
                    EntryKind::Document,
                    body.len() as u64,
                    index::unix_nanos(now),
                );
            }
        }
        for key in replaced_blobs {
            inner.delete_blob_file(key);
        }
        if let Some((last, _)) = docs.last() {
            inner.evict_after_insert(&guard, last);
        }
        Ok(())
    }

    /// The blob stored under `key` (a blob key, `nar/<name>`), opened for
    /// reading, and its size; records the access.
    ///
    /// If the index names the blob but its file is missing or has another
    /// length than recorded, the entry is removed, a warning logged, and `None`
    /// returned. Other errors opening the file (permissions, too many open
    /// files) are returned as errors and leave the entry alone.
    pub fn open_blob(&self, key: &str) -> Result<Option<(File, u64)>, StoreError> {
        let path = self.blob_path(key)?;
        let inner = &self.inner;
        let Some(size) = inner.blob_size(key)? else {
            return Ok(None);
        };
        if let BlobFile::Ok(file) = open_blob_file(&path, size)? {
            inner.touch(key);
            return Ok(Some((file, size)));
        }
        // Maybe a commit, removal or eviction raced this read: look again with
        // writers excluded before deciding the entry is broken.
        let guard = inner.lock_mutate();
        let Some(size) = inner.blob_size(key)? else {
            return Ok(None);
        };
        let problem = match open_blob_file(&path, size)? {
            BlobFile::Ok(file) => {
                inner.touch(key);
                return Ok(Some((file, size)));
            }
            BlobFile::Missing => "is missing".to_owned(),
            BlobFile::WrongSize(actual) => format!("has {actual} bytes, the index says {size}"),
        };
        warn!(key, path = %path.display(), "blob file {problem}; dropping its index entry");
        inner.remove_locked(&guard, &[key.to_owned()])?;
        Ok(None)
    }

    /// Whether `key` is stored (as either kind). Invalid keys are not stored.
    pub fn contains(&self, key: &str) -> bool {
        self.inner.accounts().get(key).is_some()
    }

    /// Starts writing the blob `key` (`nar/<name>`) into a new file in `tmp/`.
    /// Nothing is visible until [`BlobWriter::commit`]; dropping the writer
    /// deletes the file.
    pub fn begin_blob(&self, key: &str) -> Result<BlobWriter, StoreError> {
        let name = key::blob_file_name(key)?;
        let seq = self.inner.next_temp.fetch_add(1, Ordering::Relaxed);
        // Short enough for any filesystem, and still says which blob it is.
        let shown: String = name.chars().take(100).collect();
        let temp_name = format!("{seq:08}-{shown}");
        BlobWriter::create(Arc::clone(&self.inner), key, temp_name)
    }

    /// Removes `key`; returns whether it was stored. A reader holding the
    /// blob's file keeps reading it.
    pub fn remove(&self, key: &str) -> Result<bool, StoreError> {
        key::validate(key)?;
        let inner = &self.inner;
        let guard = inner.lock_mutate();
        let removed = inner.remove_locked(&guard, &[key.to_owned()])?;
        Ok(!removed.is_empty())
    }

    /// Evicts the least recently used objects until the total is at most
    /// `max_size`; returns the evicted keys, oldest first. Called after every
    /// put and commit.
    pub fn evict_to_limit(&self) -> Result<Vec<String>, StoreError> {
        let inner = &self.inner;
        let guard = inner.lock_mutate();
        let victims = inner.accounts().lru_victims(inner.max_size, None);
        let removed = inner.remove_locked(&guard, &victims)?;
        inner.count_evictions(&inner.evicted_for_size, removed.len());
        Ok(removed)
    }

    /// Removes every object not accessed since `cutoff`; returns their keys,
    /// oldest first. Access times read back from the index have whole-second
    /// precision.
    pub fn evict_inactive(&self, cutoff: SystemTime) -> Result<Vec<String>, StoreError> {
        let inner = &self.inner;
        let guard = inner.lock_mutate();
        let victims = inner.accounts().inactive_victims(index::unix_nanos(cutoff));
        let removed = inner.remove_locked(&guard, &victims)?;
        inner.count_evictions(&inner.evicted_inactive, removed.len());
        Ok(removed)
    }

    /// Writes the in-memory access times that changed to the index's `meta`
    /// table (headers only, never document bodies), in one transaction. Call
    /// it periodically and on shutdown; dropping the store does not.
    pub fn flush_access_times(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let _guard = inner.lock_mutate();
        let dirty = inner.accounts().dirty();
        if dirty.is_empty() {
            return Ok(());
        }
        let op = inner.index_op("flush access times", None);
        let txn = inner.db.begin_write().ctx(op)?;
        {
            let mut table = txn.open_table(META).ctx(op)?;
            for (key, stamp) in &dirty {
                let Some(mut value) = table.get(key.as_str()).ctx(op)?.map(|v| v.value().to_vec())
                else {
                    continue;
                };
                if Record::decode_header(key, &value).is_ok() {
                    index::set_last_access(&mut value, accounting::stamp_secs(*stamp));
                    table.insert(key.as_str(), value.as_slice()).ctx(op)?;
                }
            }
        }
        txn.commit().ctx(op)?;
        let mut accounts = inner.accounts();
        for (key, stamp) in &dirty {
            accounts.mark_flushed(key, *stamp);
        }
        debug!(entries = dirty.len(), "flushed access times");
        Ok(())
    }

    /// Deletes blob files that have no index entry and files in `tmp/` that no
    /// live writer owns; returns how many. Lists every file, so the server runs
    /// it in the background after open; it holds the store's write lock only to
    /// delete each orphan it found.
    pub fn sweep_orphans(&self) -> Result<usize, StoreError> {
        crate::sweep::sweep(&self.inner)
    }

    /// How many objects and bytes the store holds (from memory, no I/O).
    pub fn stats(&self) -> StoreStats {
        let accounts = self.inner.accounts();
        StoreStats {
            objects: accounts.len(),
            bytes: accounts.total(),
            max_size: self.inner.max_size,
            evicted_for_size: self.inner.evicted_for_size.load(Ordering::Relaxed),
            evicted_inactive: self.inner.evicted_inactive.load(Ordering::Relaxed),
        }
    }

    /// Every entry of the index, in key order.
    pub fn entries(&self) -> Result<Vec<EntryInfo>, StoreError> {
        let inner = &self.inner;
        let op = inner.index_op("list entries", None);
        let txn = inner.db.begin_read().ctx(op)?;
        let table = txn.open_table(META).ctx(op)?;
        let mut entries = Vec::with_capacity(usize::try_from(table.len().ctx(op)?).unwrap_or(0));
        for item in table.iter().ctx(op)? {
            let (key, value) = item.ctx(op)?;
            let key = key.value();
            let record = Record::decode_header(key, value.value())?;
            entries.push(EntryInfo {
                key: key.to_owned(),
                kind: record.kind,
                size: record.size,
                stored_at: index::from_unix_secs(record.stored_at),
            });
        }
        Ok(entries)
    }

    /// Where the blob `key` lives (whether or not it is stored).
    pub fn blob_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        key::blob_path(&self.inner.blobs, key)
    }

    /// The store's temp directory, where [`BlobWriter`]s write.
    pub fn tmp_dir(&self) -> &Path {
        &self.inner.tmp
    }
}

impl fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskStore")
            .field("index", &self.inner.index_path)
            .field("max_size", &self.inner.max_size)
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn now(&self) -> SystemTime {
        (self.clock)()
    }

    pub(crate) fn lock_mutate(&self) -> MutexGuard<'_, ()> {
        self.mutate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn hot(&self) -> MutexGuard<'_, HotDocs> {
        self.hot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn accounts(&self) -> MutexGuard<'_, Accounting> {
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn live_temps(&self) -> MutexGuard<'_, HashSet<String>> {
        self.live_temps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn index_op<'a>(&'a self, op: &'static str, key: Option<&'a str>) -> IndexOp<'a> {
        IndexOp {
            path: &self.index_path,
            op,
            key,
        }
    }

    fn touch(&self, key: &str) {
        let now = index::unix_nanos(self.now());
        self.accounts().touch(key, now);
    }

    /// A copy of the index value of `key`.
    fn read_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let op = self.index_op("read", Some(key));
        let txn = self.db.begin_read().ctx(op)?;
        let table = txn.open_table(OBJECTS).ctx(op)?;
        let value = table.get(key).ctx(op)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// The recorded size of the blob `key`, or `None` if it is not stored;
    /// `WrongKind` if it is a document.
    fn blob_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let Some(value) = self.read_value(key)? else {
            return Ok(None);
        };
        let record = Record::decode(key, &value)?;
        match record.kind {
            EntryKind::Blob => Ok(Some(record.size)),
            kind => Err(wrong_kind(key, EntryKind::Blob, kind)),
        }
    }

    /// Evicts down to the limit after `key` was stored, sparing `key` unless it
    /// alone exceeds the limit. The insert already succeeded, so a failure here
    /// is logged, not returned: the caller's object is stored.
    pub(crate) fn evict_after_insert(&self, guard: &MutexGuard<'_, ()>, key: &str) {
        let victims = self.accounts().lru_victims(self.max_size, Some(key));
        match self.remove_locked(guard, &victims) {
            Ok(removed) => self.count_evictions(&self.evicted_for_size, removed.len()),
            Err(e) => warn!(key, error = %e, "eviction after a store failed"),
        }
    }

    fn count_evictions(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Removes `keys` from the index in one transaction, then from the
    /// accounts, then deletes their files. Returns the keys that were stored.
    /// The caller holds `mutate` (the guard proves it).
    pub(crate) fn remove_locked(
        &self,
        _mutating: &MutexGuard<'_, ()>,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let op = self.index_op("remove", keys.first().map(String::as_str));
        let txn = self.db.begin_write().ctx(op)?;
        // (key, whether a file may exist)
        let mut removed: Vec<(&str, bool)> = Vec::with_capacity(keys.len());
        {
            let mut table = txn.open_table(OBJECTS).ctx(op)?;
            let mut meta = txn.open_table(META).ctx(op)?;
            for key in keys {
                meta.remove(key.as_str()).ctx(op)?;
                if let Some(old) = table.remove(key.as_str()).ctx(op)? {
                    let kind = Record::decode(key, old.value()).map(|r| r.kind).ok();
                    removed.push((key, kind != Some(EntryKind::Document)));
                }
            }
        }
        let committed = txn.commit();
        {
            let mut hot = self.hot();
            for key in keys {
                hot.invalidate(key);
            }
        }
        committed.ctx(op)?;
        {
            // Also forgets keys the index did not have, so the accounts cannot
            // keep a phantom entry that eviction picks forever.
            let mut accounts = self.accounts();
            for key in keys {
                accounts.remove(key);
            }
        }
        for &(key, may_have_file) in &removed {
            if may_have_file {
                self.delete_blob_file(key);
            }
        }
        if !removed.is_empty() {
            debug!(
                count = removed.len(),
                first = removed[0].0,
                "removed objects"
            );
        }
        Ok(removed.into_iter().map(|(key, _)| key.to_owned()).collect())
    }

    /// Deletes the file of blob `key` if there is one. A failure is logged: the
    /// file is then an orphan, which `sweep_orphans` deletes later.
    fn delete_blob_file(&self, key: &str) {
        let Ok(path) = key::blob_path(&self.blobs, key) else {
            return;
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(key, path = %path.display(), error = %e, "cannot delete a blob file"),
        }
    }
}

fn wrong_kind(key: &str, expected: EntryKind, actual: EntryKind) -> StoreError {
    StoreError::WrongKind {
        key: key.to_owned(),
        expected,
        actual,
    }
}

fn open_blob_file(path: &Path, size: u64) -> Result<BlobFile, StoreError> {
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

/// Deletes everything in `dir`; returns how many entries it held.
fn empty_dir(dir: &Path) -> Result<usize, StoreError> {
    let mut count = 0;
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let path = entry.map_err(io_err("list", dir))?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(io_err("delete", &path))?;
        count += 1;
    }
    Ok(count)
}

/// fsyncs a directory, so renames into it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
