//! The disk store's tests: real files in temp directories, a fake clock where
//! time matters. Each file holds one concern; `security` holds the key and
//! traversal tests.

mod admit;
mod blobs;
mod crash;
mod documents;
mod eviction;
mod hot;
mod meta;
mod open_speed;
mod security;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use narbor_proto::hash::Sha256;
use tempfile::TempDir;

use crate::{DiskStore, StoreConfig};

/// A store directory inside a temp directory (so tests can check that nothing
/// appears next to it), with a clock the test sets.
pub(super) struct Fixture {
    /// The temp directory; the store is its `store/` child.
    pub root: TempDir,
    /// Fake "now", unix seconds.
    pub now: Arc<AtomicU64>,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            root: tempfile::tempdir().unwrap(),
            now: Arc::new(AtomicU64::new(1_700_000_000)),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("store")
    }

    pub fn open(&self, max_size: u64) -> DiskStore {
        let now = Arc::clone(&self.now);
        DiskStore::open_with_clock(
            StoreConfig {
                dir: self.dir(),
                max_size,
            },
            Box::new(move || UNIX_EPOCH + Duration::from_secs(now.load(Ordering::SeqCst))),
        )
        .unwrap()
    }

    pub fn set_time(&self, unix_secs: u64) {
        self.now.store(unix_secs, Ordering::SeqCst);
    }

    pub fn time(&self, unix_secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix_secs)
    }
}

#[test]
fn store_is_shareable_across_threads_and_writers_can_move() {
    fn shared<T: Send + Sync + 'static>() {}
    fn movable<T: Send + 'static>() {}
    shared::<DiskStore>();
    movable::<crate::BlobWriter>();
}

/// `nar/<52 chars>.nar.xz`, distinct for each `i`.
pub(super) fn nar_key(i: usize) -> String {
    format!("nar/{i:052}.nar.xz").replace('0', "a")
}

/// Bytes that differ from one `seed` to the next.
pub(super) fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes `data` as blob `key` and commits it, verified.
pub(super) fn put_blob(store: &DiskStore, key: &str, data: &[u8]) {
    let mut writer = store.begin_blob(key).unwrap();
    for chunk in data.chunks(7000) {
        writer.write_all(chunk).unwrap();
    }
    writer
        .commit(Some((Sha256::digest(data), data.len() as u64)))
        .unwrap();
}

/// The whole content of blob `key`, if served.
pub(super) fn read_blob(store: &DiskStore, key: &str) -> Option<Vec<u8>> {
    let (mut file, size) = store.open_blob(key).unwrap()?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, size);
    Some(out)
}

/// Every file (not directory) under `dir`, sorted.
pub(super) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Sum of the lengths of the files under `dir`.
pub(super) fn bytes_under(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

/// Checks that the accounts match the index exactly, and that every indexed
/// blob's file exists with its recorded size.
pub(super) fn assert_consistent(store: &DiskStore) {
    let entries = store.entries().unwrap();
    let stats = store.stats();
    assert_eq!(stats.objects, entries.len() as u64, "object count");
    assert_eq!(
        stats.bytes,
        entries.iter().map(|e| e.size).sum::<u64>(),
        "byte total"
    );
    for entry in &entries {
        assert!(store.contains(&entry.key), "{}", entry.key);
        if entry.kind == crate::EntryKind::Blob {
            let path = store.blob_path(&entry.key).unwrap();
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                entry.size,
                "{}",
                entry.key
            );
        }
    }
}
