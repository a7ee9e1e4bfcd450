//! [`DiskStore`]: the store's public face, composing the index (`index`), the
//! files (`layout`), the accounts (`accounting`) and the hot documents (`hot`)
//! under one write lock, so that they change together.
//!
//! This module owns the order in which they change (the crate doc says which
//! order and why), the write lock, the clock, eviction as a whole (the
//! accounts pick victims; the index, the copies and the files lose them) and
//! admission by free space. It owns no transaction, no path and no encoding:
//! those are the parts'. [`BlobWriter`]s reach the store only through
//! [`Publish`], which `Inner` implements here.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use tracing::{debug, info, warn};

use crate::accounting::{self, unix_nanos, Accounting};
use crate::blob::{BlobWriter, Publish};
use crate::entry::{Document, EntryInfo, EntryKind};
use crate::error::StoreError;
use crate::hot::{HotDoc, HotDocs};
use crate::index::{Index, Stored};
use crate::key;
use crate::layout::{BlobFile, Layout, TempFile};

/// Free space [`DiskStore::admit`] requires on top of the object itself: room
/// for the index to grow and for other blobs being written at the same time.
pub const ADMISSION_HEADROOM: u64 = 4 << 20;

/// Where a [`DiskStore`] lives and how much it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The store's directory; created if missing.
    pub dir: PathBuf,
    /// The most bytes of objects (blob files plus document bodies) kept after
    /// any put or commit: past it, the least recently used objects are evicted.
    pub max_size: u64,
}

/// What the store holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of entries.
    pub objects: u64,
    /// Sum of their sizes.
    pub bytes: u64,
    /// The configured bound.
    pub max_size: u64,
    /// Objects evicted to stay within `max_size` since the store was opened.
    pub evicted_for_size: u64,
    /// Objects evicted as inactive ([`DiskStore::evict_inactive`]) since the store was opened.
    pub evicted_inactive: u64,
}

/// The source of "now": the system clock, or a fake one in tests.
pub type Clock = Box<dyn Fn() -> SystemTime + Send + Sync>;

/// The local disk store. `Send + Sync`; share it as `Arc<DiskStore>`.
pub struct DiskStore {
    inner: Arc<Inner>,
}

/// Everything the store and its blob writers share. Only this module sees
/// its fields.
struct Inner {
    layout: Layout,
    index: Index,
    max_size: u64,
    /// Held for every change to the index or to `blobs/` (see the crate doc).
    /// Lock order: `mutate`, then `accounts`, then the layout's registry of
    /// live temp files; `hot` is taken alone.
    mutate: Mutex<()>,
    accounts: Mutex<Accounting>,
    /// Copies of recently read documents. A leaf lock: nothing else is taken
    /// while it is held.
    hot: Mutex<HotDocs>,
    /// Evictions since open, for [`StoreStats`].
    evicted_for_size: AtomicU64,
    evicted_inactive: AtomicU64,
    clock: Clock,
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
        let layout = Layout::create(config.dir)?;
        // The index first: its file lock makes this process the directory's only
        // owner, so emptying tmp/ cannot destroy another process's writes.
        let index = Index::open(layout.index_path())?;
        let cleared = layout.empty_tmp()?;
        let inner = Inner {
            layout,
            index,
            max_size: config.max_size,
            mutate: Mutex::new(()),
            accounts: Mutex::new(Accounting::default()),
            hot: Mutex::new(HotDocs::default()),
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
            dir = %store.inner.layout.dir().display(),
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
        let doc = match inner.index.get(key)? {
            None => return Ok(None),
            Some(Stored::Document(doc)) => doc,
            Some(Stored::Blob { .. }) => {
                return Err(wrong_kind(key, EntryKind::Document, EntryKind::Blob))
            }
        };
        let copy = HotDoc {
            body: doc.body.clone(),
            stored_at: doc.stored_at,
        };
        inner.hot().fill(epoch, key, copy);
        inner.touch(key);
        Ok(Some(doc))
    }

    /// Stores `body` under `key`, replacing whatever was there (a blob's file
    /// is deleted), then evicts down to the limit.
    pub fn put_document(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        key::validate(key)?;
        let inner = &self.inner;
        let guard = inner.lock_mutate();
        let now = inner.now();
        let put = inner.index.put_document(key, body, now);
        // After the commit (a reader refilling meanwhile would keep the old
        // body), and also when it failed.
        inner.hot().invalidate(key);
        let replaced_blob = put?;
        inner
            .accounts()
            .insert(key, EntryKind::Document, body.len() as u64, unix_nanos(now));
        if replaced_blob {
            inner.layout.delete_blob(key);
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
        let put = inner.index.put_documents(docs, now);
        {
            let mut hot = inner.hot();
            for (key, _) in docs {
                hot.invalidate(key);
            }
        }
        let replaced_blobs = put?;
        {
            let mut accounts = inner.accounts();
            for (key, body) in docs {
                accounts.insert(key, EntryKind::Document, body.len() as u64, unix_nanos(now));
            }
        }
        for key in replaced_blobs {
            inner.layout.delete_blob(key);
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
        if let BlobFile::Ok(file) = inner.layout.open_blob(&path, size)? {
            inner.touch(key);
            return Ok(Some((file, size)));
        }
        // Maybe a commit, removal or eviction raced this read: look again with
        // writers excluded before deciding the entry is broken.
        let guard = inner.lock_mutate();
        let Some(size) = inner.blob_size(key)? else {
            return Ok(None);
        };
        let problem = match inner.layout.open_blob(&path, size)? {
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
        let (temp, file) = self.inner.layout.new_temp(key)?;
        let store: Arc<dyn Publish> = self.inner.clone();
        Ok(BlobWriter::new(store, key, temp, file))
    }

    /// Whether the disk under the store has room for an object of `len` bytes
    /// (`None`, not known yet: the headroom alone) plus
    /// [`ADMISSION_HEADROOM`]. A fill asks before it writes anything, and
    /// passes the object through unstored when refused
    /// ([`StoreError::NoRoom`]). It checks free space only, not `max_size`:
    /// eviction keeps that bound after the object is committed.
    pub fn admit(&self, len: Option<u64>) -> Result<(), StoreError> {
        let free = self.inner.layout.free_space()?;
        let needed = len.unwrap_or(0).saturating_add(ADMISSION_HEADROOM);
        if free < needed {
            return Err(StoreError::NoRoom {
                path: self.inner.layout.dir().to_path_buf(),
                free,
                needed,
            });
        }
        Ok(())
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
        let victims = inner.accounts().inactive_victims(unix_nanos(cutoff));
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
        inner.index.flush_access_times(
            dirty
                .iter()
                .map(|(key, stamp)| (key.as_str(), accounting::stamp_secs(*stamp))),
        )?;
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
        let inner = &self.inner;
        inner.layout.sweep(
            |key| inner.accounts().get(key).map(|meta| meta.kind) == Some(EntryKind::Blob),
            || inner.lock_mutate(),
        )
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
        self.inner.index.entries()
    }

    /// Where the blob `key` lives (whether or not it is stored).
    pub fn blob_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        self.inner.layout.blob_path(key)
    }
}

impl fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskStore")
            .field("index", &self.inner.index.path())
            .field("max_size", &self.inner.max_size)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn now(&self) -> SystemTime {
        (self.clock)()
    }

    fn lock_mutate(&self) -> MutexGuard<'_, ()> {
        self.mutate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hot(&self) -> MutexGuard<'_, HotDocs> {
        self.hot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accounts(&self) -> MutexGuard<'_, Accounting> {
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the index's headers into the accounts; removes entries that do
    /// not decode.
    fn load(&self) -> Result<(), StoreError> {
        let corrupt = {
            let mut accounts = self.accounts();
            accounts.reserve(usize::try_from(self.index.len()?).unwrap_or(0));
            self.index.for_each_header(|key, kind, size, last_access| {
                accounts.load(key, kind, size, last_access)
            })?
        };
        if !corrupt.is_empty() {
            let guard = self.lock_mutate();
            self.remove_locked(&guard, &corrupt)?;
        }
        Ok(())
    }

    fn touch(&self, key: &str) {
        let now = unix_nanos(self.now());
        self.accounts().touch(key, now);
    }

    /// The recorded size of the blob `key`, or `None` if it is not stored;
    /// `WrongKind` if it is a document.
    fn blob_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.index.get(key)? {
            None => Ok(None),
            Some(Stored::Blob { size }) => Ok(Some(size)),
            Some(Stored::Document(_)) => Err(wrong_kind(key, EntryKind::Blob, EntryKind::Document)),
        }
    }

    /// Evicts down to the limit after `key` was stored, sparing `key` unless it
    /// alone exceeds the limit. The insert already succeeded, so a failure here
    /// is logged, not returned: the caller's object is stored.
    fn evict_after_insert(&self, guard: &MutexGuard<'_, ()>, key: &str) {
        let victims = self.accounts().lru_victims(self.max_size, Some(key));
        match self.remove_locked(guard, &victims) {
            Ok(removed) => self.count_evictions(&self.evicted_for_size, removed.len()),
            Err(e) => warn!(key, error = %e, "eviction after a store failed"),
        }
    }

    fn count_evictions(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Removes `keys` from the index in one transaction, then from the hot
    /// copies and the accounts, then deletes their files. Returns the keys that
    /// were stored. The caller holds `mutate` (the guard proves it).
    fn remove_locked(
        &self,
        _mutating: &MutexGuard<'_, ()>,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let removed = self.index.remove(keys);
        {
            // Also when the commit failed, when what the index holds is uncertain.
            let mut hot = self.hot();
            for key in keys {
                hot.invalidate(key);
            }
        }
        let removed = removed?;
        {
            // Also forgets keys the index did not have, so the accounts cannot
            // keep a phantom entry that eviction picks forever.
            let mut accounts = self.accounts();
            for key in keys {
                accounts.remove(key);
            }
        }
        for gone in &removed {
            if gone.may_have_file {
                self.layout.delete_blob(&gone.key);
            }
        }
        if let Some(first) = removed.first() {
            debug!(count = removed.len(), first = first.key, "removed objects");
        }
        Ok(removed.into_iter().map(|gone| gone.key).collect())
    }
}

impl Publish for Inner {
    /// The rename, the index commit and the accounts change under the write
    /// lock, so eviction, removal and the orphan sweep see all of it or none.
    fn publish(&self, key: &str, temp: &mut TempFile, size: u64) -> Result<(), StoreError> {
        let guard = self.lock_mutate();
        let path = self.layout.place(temp, key)?;
        let now = self.now();
        let indexed = self.index.put_blob(key, size, now);
        // The key may have held a document: its copy in memory goes (also if
        // the commit failed, when what the index holds is uncertain).
        self.hot().invalidate(key);
        if let Err(e) = indexed {
            self.layout.unplace(key, &path);
            return Err(e);
        }
        self.accounts()
            .insert(key, EntryKind::Blob, size, unix_nanos(now));
        self.evict_after_insert(&guard, key);
        Ok(())
    }
}

fn wrong_kind(key: &str, expected: EntryKind, actual: EntryKind) -> StoreError {
    StoreError::WrongKind {
        key: key.to_owned(),
        expected,
        actual,
    }
}
