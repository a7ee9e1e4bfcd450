//! In-memory accounts: every key's size and last access, the total, and which
//! keys to evict.
//!
//! This module only keeps accounts; it never touches the index or the disk,
//! and it is not synchronised. `disk` holds it behind a mutex, loads it from
//! the index at open, updates it after every index commit, and asks it for
//! victims (like pingora's eviction manager, whose `admit` returns victims the
//! caller deletes).
//!
//! Access times are kept as a *stamp*: unix nanoseconds, forced strictly
//! increasing, so two accesses in the same second (or under a clock that steps
//! back) still have an order. The index stores whole seconds, so after a
//! reopen accesses less than a second apart may tie; ties break by key.

use std::collections::{BinaryHeap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::entry::EntryKind;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// What is kept per key: 24 bytes besides the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub size: u64,
    /// Last access, unix nanoseconds (see the module doc).
    pub stamp: u64,
    pub kind: EntryKind,
    /// Accessed since the index last recorded its access time.
    pub dirty: bool,
}

/// Unix nanoseconds of `t`, the unit of stamps (0 before the epoch,
/// saturating in the year 2554).
pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A stamp in whole unix seconds, as the index stores access times.
pub(crate) fn stamp_secs(stamp: u64) -> u64 {
    stamp / NANOS_PER_SEC
}

/// The accounts of one store. Not synchronised: `disk` wraps it in a mutex.
#[derive(Debug, Default)]
pub(crate) struct Accounting {
    /// FxHash, not SipHash: keys are cache paths named by hashes that the
    /// upstream (not the client) chose, and hashing a million of them at open
    /// was the largest cost of a restart.
    entries: HashMap<Box<str>, Meta, rustc_hash::FxBuildHasher>,
    total: u64,
    last_stamp: u64,
}

impl Accounting {
    /// Makes room for `additional` more entries without rehashing.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    /// Records an entry read from the index at open.
    pub fn load(&mut self, key: &str, kind: EntryKind, size: u64, last_access_secs: u64) {
        let stamp = last_access_secs.saturating_mul(NANOS_PER_SEC);
        self.last_stamp = self.last_stamp.max(stamp);
        let meta = Meta {
            size,
            stamp,
            kind,
            dirty: false,
        };
        if let Some(old) = self.entries.insert(key.into(), meta) {
            self.total -= old.size;
        }
        self.total += size;
    }

    /// Records a newly committed entry (replacing any old one) accessed at
    /// `now_nanos`; returns the entry it replaced.
    pub fn insert(
        &mut self,
        key: &str,
        kind: EntryKind,
        size: u64,
        now_nanos: u64,
    ) -> Option<Meta> {
        let meta = Meta {
            size,
            stamp: self.next_stamp(now_nanos),
            kind,
            // The index entry was just written with this access time.
            dirty: false,
        };
        let old = self.entries.insert(key.into(), meta);
        if let Some(old) = old {
            self.total -= old.size;
        }
        self.total += size;
        old
    }

    /// Forgets `key`; returns what was recorded.
    pub fn remove(&mut self, key: &str) -> Option<Meta> {
        let old = self.entries.remove(key)?;
        self.total -= old.size;
        Some(old)
    }

    /// Records an access to `key`, if it is known.
    pub fn touch(&mut self, key: &str, now_nanos: u64) {
        let stamp = self.next_stamp(now_nanos);
        if let Some(meta) = self.entries.get_mut(key) {
            meta.stamp = stamp;
            meta.dirty = true;
        }
    }

    pub fn get(&self, key: &str) -> Option<&Meta> {
        self.entries.get(key)
    }

    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Sum of the sizes of all entries.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The least recently used keys whose removal brings the total to at most
    /// `max_size`, oldest first. `protect` is chosen last, and only if removing
    /// every other key is not enough (it alone exceeds `max_size`).
    ///
    /// One pass over the entries with a heap of the victims so far: O(n log k)
    /// for k victims, no full sort, and nothing at all while under the limit.
    pub fn lru_victims(&self, max_size: u64, protect: Option<&str>) -> Vec<String> {
        let Some(excess) = self.total.checked_sub(max_size).filter(|&e| e > 0) else {
            return Vec::new();
        };
        // Max-heap on (stamp, key): the newest chosen victim is on top, ready to
        // be dropped when older ones already cover the excess.
        let mut heap: BinaryHeap<(u64, &str, u64)> = BinaryHeap::new();
        let mut chosen = 0u64;
        for (key, meta) in &self.entries {
            if Some(&**key) == protect {
                continue;
            }
            heap.push((meta.stamp, key, meta.size));
            chosen += meta.size;
            while let Some(&(_, _, newest)) = heap.peek() {
                if chosen - newest >= excess {
                    chosen -= newest;
                    heap.pop();
                } else {
                    break;
                }
            }
        }
        let mut victims: Vec<String> = heap
            .into_sorted_vec()
            .into_iter()
            .map(|(_, key, _)| key.to_owned())
            .collect();
        if chosen < excess {
            if let Some(key) = protect.filter(|key| self.entries.contains_key(*key)) {
                victims.push(key.to_owned());
            }
        }
        victims
    }

    /// Keys last accessed before `cutoff_nanos`, oldest first.
    pub fn inactive_victims(&self, cutoff_nanos: u64) -> Vec<String> {
        let mut victims: Vec<(u64, &str)> = self
            .entries
            .iter()
            .filter(|(_, meta)| meta.stamp < cutoff_nanos)
            .map(|(key, meta)| (meta.stamp, &**key))
            .collect();
        victims.sort_unstable();
        victims.into_iter().map(|(_, key)| key.to_owned()).collect()
    }

    /// Keys accessed since their access time was last written, with their stamp.
    pub fn dirty(&self) -> Vec<(String, u64)> {
        self.entries
            .iter()
            .filter(|(_, meta)| meta.dirty)
            .map(|(key, meta)| (key.to_string(), meta.stamp))
            .collect()
    }

    /// Marks `key` clean if it was not accessed again after `stamp` was read.
    pub fn mark_flushed(&mut self, key: &str, stamp: u64) {
        if let Some(meta) = self.entries.get_mut(key) {
            if meta.stamp == stamp {
                meta.dirty = false;
            }
        }
    }

    /// `now_nanos`, or one more than the last stamp handed out if the clock has
    /// not moved past it.
    fn next_stamp(&mut self, now_nanos: u64) -> u64 {
        self.last_stamp = now_nanos.max(self.last_stamp.saturating_add(1));
        self.last_stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS_PER_SEC;

    fn accounts(entries: &[(&str, u64)]) -> Accounting {
        let mut a = Accounting::default();
        for (i, (key, size)) in entries.iter().enumerate() {
            a.insert(key, EntryKind::Blob, *size, (i as u64 + 1) * S);
        }
        a
    }

    #[test]
    fn totals_follow_insert_replace_remove() {
        let mut a = accounts(&[("a", 10), ("b", 5)]);
        assert_eq!((a.len(), a.total()), (2, 15));
        let old = a.insert("a", EntryKind::Document, 3, 9 * S).unwrap();
        assert_eq!(old.size, 10);
        assert_eq!((a.len(), a.total()), (2, 8));
        assert_eq!(a.remove("b").unwrap().size, 5);
        assert!(a.remove("b").is_none());
        assert_eq!((a.len(), a.total()), (1, 3));
        a.load("a", EntryKind::Blob, 4, 1);
        assert_eq!((a.len(), a.total()), (1, 4));
    }

    #[test]
    fn lru_picks_the_oldest_until_under_the_limit() {
        let mut a = accounts(&[("a", 10), ("b", 10), ("c", 10), ("d", 10)]);
        assert!(a.lru_victims(40, None).is_empty());
        assert_eq!(a.lru_victims(35, None), ["a"]);
        assert_eq!(a.lru_victims(20, None), ["a", "b"]);
        assert_eq!(a.lru_victims(19, None), ["a", "b", "c"]);
        a.touch("a", 10 * S);
        assert_eq!(a.lru_victims(20, None), ["b", "c"]);
        assert_eq!(a.lru_victims(0, None), ["b", "c", "d", "a"]);
    }

    #[test]
    fn lru_takes_a_big_old_entry_alone() {
        let a = accounts(&[("small", 1), ("big", 100), ("newer", 1)]);
        assert_eq!(a.lru_victims(2, None), ["small", "big"]);
        assert_eq!(a.lru_victims(100, None), ["small", "big"]);
    }

    #[test]
    fn protected_key_goes_last_and_only_if_it_alone_is_too_big() {
        let a = accounts(&[("new", 10), ("old", 10)]);
        // "new" is older by stamp, but protected.
        assert_eq!(a.lru_victims(15, Some("new")), ["old"]);
        assert_eq!(a.lru_victims(10, Some("new")), ["old"]);
        assert_eq!(a.lru_victims(9, Some("new")), ["old", "new"]);
        assert_eq!(a.lru_victims(9, Some("absent")), ["new", "old"]);
    }

    #[test]
    fn stamps_strictly_increase_within_a_second_and_backwards() {
        let mut a = accounts(&[("a", 1), ("b", 1)]);
        a.touch("b", 5 * S);
        a.touch("a", 5 * S);
        a.touch("b", 4 * S);
        let (sa, sb) = (a.get("a").unwrap().stamp, a.get("b").unwrap().stamp);
        assert!(5 * S < sa && sa < sb, "{sa} {sb}");
        assert_eq!(a.lru_victims(1, None), ["a"]);
    }

    #[test]
    fn inactive_and_dirty() {
        let mut a = accounts(&[("a", 1), ("b", 1), ("c", 1)]);
        assert_eq!(a.inactive_victims(3 * S), ["a", "b"]);
        assert!(a.dirty().is_empty());
        a.touch("a", 10 * S);
        assert_eq!(a.inactive_victims(3 * S), ["b"]);
        let dirty = a.dirty();
        assert_eq!(dirty.len(), 1);
        let (key, stamp) = &dirty[0];
        a.touch("a", 11 * S);
        a.mark_flushed(key, *stamp);
        assert!(a.get("a").unwrap().dirty, "a newer access stays dirty");
        a.mark_flushed("a", 11 * S);
        assert!(!a.get("a").unwrap().dirty);
        assert_eq!(stamp_secs(a.get("a").unwrap().stamp), 11);
    }

    #[test]
    fn times_become_stamps_without_panicking() {
        use std::time::Duration;
        assert_eq!(unix_nanos(UNIX_EPOCH + Duration::from_secs(2)), 2 * S);
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(
            stamp_secs(unix_nanos(UNIX_EPOCH + Duration::from_secs(7))),
            7
        );
    }
}
