//! A small in-memory copy of the documents read most recently, in front of
//! the index: a hit is a hash lookup and a reference count, with no redb read
//! transaction and no copy of the body.
//!
//! Two generations instead of an LRU list: documents go into `current`; when
//! it holds half the budget it becomes `previous` (whose documents are
//! dropped), and a document found in `previous` moves back into `current`. So
//! whatever was read within the last half-budget of reads stays, memory is
//! bounded by the budget, and every operation is O(1).
//!
//! The index stays the truth. Every change to a document (put, remove, evict)
//! drops its copy here after the index commit, and bumps an
//! epoch; a reader that missed here and read the index may only insert what it
//! read if no change happened meanwhile (see [`HotDocs::epoch`]), so a copy
//! here is never older than the index.

use std::time::SystemTime;

use bytes::Bytes;
use rustc_hash::FxHashMap;

/// The most bytes the copies may hold (bodies, keys and a per-entry
/// overhead, see [`cost`]).
pub(crate) const HOT_BYTES: usize = 8 << 20;
/// Documents larger than this are never copied here: they would push out
/// many small ones (narinfos are 0.5 to 4 KiB; listings and logs can be large).
const MAX_DOC_BYTES: usize = 64 << 10;

#[derive(Clone)]
pub(crate) struct HotDoc {
    pub body: Bytes,
    pub stored_at: SystemTime,
}

#[derive(Default)]
pub(crate) struct HotDocs {
    current: FxHashMap<Box<str>, HotDoc>,
    previous: FxHashMap<Box<str>, HotDoc>,
    current_bytes: usize,
    epoch: u64,
}

/// What a copy costs: its key and body, plus about what the map slot, the
/// key's allocation and the `Bytes` handle take.
const ENTRY_OVERHEAD: usize = 96;

fn cost(key: &str, doc: &HotDoc) -> usize {
    key.len() + doc.body.len() + ENTRY_OVERHEAD
}

impl HotDocs {
    /// The copy of `key`, if there is one.
    pub fn get(&mut self, key: &str) -> Option<HotDoc> {
        if let Some(doc) = self.current.get(key) {
            return Some(doc.clone());
        }
        let (key, doc) = self.previous.remove_entry(key)?;
        self.put_current(key, doc.clone());
        Some(doc)
    }

    /// Changes with every [`HotDocs::invalidate`]: read it before reading the
    /// index, and pass it to [`HotDocs::fill`].
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Keeps a copy of what a reader read from the index, unless a document
    /// changed since the reader took `epoch`.
    pub fn fill(&mut self, epoch: u64, key: &str, doc: HotDoc) {
        if epoch == self.epoch {
            self.insert(key, doc);
        }
    }

    /// Forgets `key` (the caller changed or removed it in the index).
    pub fn invalidate(&mut self, key: &str) {
        self.epoch += 1;
        if let Some(old) = self.current.remove(key) {
            self.current_bytes -= cost(key, &old);
        }
        self.previous.remove(key);
    }

    fn insert(&mut self, key: &str, doc: HotDoc) {
        if doc.body.len() > MAX_DOC_BYTES {
            return;
        }
        self.previous.remove(key);
        self.put_current(key.into(), doc);
    }

    fn put_current(&mut self, key: Box<str>, doc: HotDoc) {
        if let Some(old) = self.current.remove(&key) {
            self.current_bytes -= cost(&key, &old);
        }
        let added = cost(&key, &doc);
        // A full generation becomes the previous one before the insert, so
        // neither ever holds more than half the budget.
        if self.current_bytes + added > HOT_BYTES / 2 {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        self.current_bytes += added;
        self.current.insert(key, doc);
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.current_bytes + self.previous.iter().map(|(k, d)| cost(k, d)).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(len: usize) -> HotDoc {
        HotDoc {
            body: Bytes::from(vec![b'x'; len]),
            stored_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_fill_after_a_change_is_refused() {
        let mut hot = HotDocs::default();
        let epoch = hot.epoch();
        hot.invalidate("a.narinfo");
        hot.fill(epoch, "a.narinfo", doc(10));
        assert!(hot.get("a.narinfo").is_none());
        hot.fill(hot.epoch(), "a.narinfo", doc(10));
        assert_eq!(hot.get("a.narinfo").unwrap().body.len(), 10);
        hot.invalidate("a.narinfo");
        assert!(hot.get("a.narinfo").is_none());
    }

    #[test]
    fn memory_stays_within_the_budget_and_recent_reads_stay() {
        let mut hot = HotDocs::default();
        let size = 1000;
        let per_half = HOT_BYTES / 2 / (size + 20);
        for i in 0..10 * per_half {
            let key = format!("{i:016}.narinfo");
            hot.fill(hot.epoch(), &key, doc(size));
            // A key read all along never leaves.
            if hot.get("0000000000000000.narinfo").is_none() {
                panic!("the hot key was dropped after {i} inserts");
            }
            assert!(hot.bytes() <= HOT_BYTES, "{} bytes", hot.bytes());
        }
        // The most recent inserts are still there; the oldest are gone.
        assert!(hot
            .get(&format!("{:016}.narinfo", 10 * per_half - 1))
            .is_some());
        assert!(hot.get(&format!("{:016}.narinfo", 1)).is_none());
    }

    #[test]
    fn large_documents_are_not_kept() {
        let mut hot = HotDocs::default();
        hot.fill(hot.epoch(), "big.ls", doc(MAX_DOC_BYTES + 1));
        assert!(hot.get("big.ls").is_none());
        hot.fill(hot.epoch(), "small.ls", doc(MAX_DOC_BYTES));
        assert!(hot.get("small.ls").is_some());
    }
}
