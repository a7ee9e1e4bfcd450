//! The `meta` table: built for a store that predates it, kept in step with
//! `objects` by every write, and the only table open and the access-time flush
//! read.

use redb::{Database, ReadableTableMetadata};

use super::*;
use crate::index::{Record, META, OBJECTS};

/// (objects, meta) entry counts of a closed store's index.
fn table_lengths(dir: &Path) -> (u64, u64) {
    let db = Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let objects = txn.open_table(OBJECTS).unwrap().len().unwrap();
    let meta = txn.open_table(META).map_or(0, |t| t.len().unwrap());
    (objects, meta)
}

#[test]
fn a_store_without_the_meta_table_gets_it_at_open() {
    let fx = Fixture::new();
    fs::create_dir_all(fx.dir()).unwrap();
    {
        // An index as written before `meta` existed, with one corrupt entry.
        let db = Database::create(fx.dir().join("index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(OBJECTS).unwrap();
            let mut old = Record::document(b"old body", 1_600_000_000);
            old.last_access = 1_600_000_000;
            table.insert("a.narinfo", old.encode().as_slice()).unwrap();
            let newer = Record::document(b"newer body!", 1_650_000_000);
            table
                .insert("b.narinfo", newer.encode().as_slice())
                .unwrap();
            let mut bad = Record::document(b"xyz", 1).encode();
            bad.pop();
            table.insert("c.narinfo", bad.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    {
        let store = fx.open(u64::MAX);
        assert_eq!(store.stats().objects, 2);
        assert_eq!(store.stats().bytes, 8 + 11);
        assert_eq!(
            store.get_document("a.narinfo").unwrap().unwrap().body,
            b"old body"[..]
        );
        assert!(store.get_document("c.narinfo").unwrap().is_none());
        let keys: Vec<String> = store
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["a.narinfo", "b.narinfo"]);
    }
    assert_eq!(table_lengths(&fx.dir()), (2, 2));
    // The access times came along: the older entry is evicted first.
    let store = fx.open(11);
    assert!(!store.contains("a.narinfo"));
    assert!(store.contains("b.narinfo"));
}

#[test]
fn every_write_keeps_both_tables_in_step() {
    let fx = Fixture::new();
    {
        let store = fx.open(u64::MAX);
        store.put_document("a.narinfo", b"one").unwrap();
        store
            .put_documents(&[("b.narinfo", b"two"), ("c.narinfo", b"three")])
            .unwrap();
        put_blob(&store, &nar_key(1), &bytes(1, 1000));
        put_blob(&store, &nar_key(2), &bytes(2, 1000));
        store.remove("b.narinfo").unwrap();
        store.remove(&nar_key(2)).unwrap();
        // A blob replaced by a document.
        store.put_document(&nar_key(1), b"now a document").unwrap();
        store.get_document("c.narinfo").unwrap().unwrap();
        store.flush_access_times().unwrap();
    }
    assert_eq!(table_lengths(&fx.dir()), (3, 3));
    let store = fx.open(u64::MAX);
    assert_eq!(store.stats().objects, 3);
    assert_eq!(store.stats().bytes, 3 + 5 + 14);
    assert_consistent(&store);
}

#[test]
fn flushed_access_times_decide_eviction_after_reopen() {
    let fx = Fixture::new();
    {
        let store = fx.open(u64::MAX);
        fx.set_time(1_700_000_000);
        store.put_document("a.narinfo", b"aaaa").unwrap();
        fx.set_time(1_700_000_010);
        store.put_document("b.narinfo", b"bbbb").unwrap();
        fx.set_time(1_700_000_020);
        store.get_document("a.narinfo").unwrap().unwrap();
        store.flush_access_times().unwrap();
    }
    // Only room for one: the one read last stays.
    let store = fx.open(4);
    assert!(store.contains("a.narinfo"));
    assert!(!store.contains("b.narinfo"));
}
