//! Eviction: least recently used first, down to `max_size`; inactive objects;
//! access times kept across a flush and a reopen.

use super::*;

const T0: u64 = 1_700_000_000;

#[test]
fn lru_evicts_the_least_recently_accessed_not_the_oldest_stored() {
    let fx = Fixture::new();
    let store = fx.open(250);
    let (a, b, c) = (nar_key(1), nar_key(2), nar_key(3));
    put_blob(&store, &a, &bytes(1, 100));
    put_blob(&store, &b, &bytes(2, 100));
    // A is the older by storage; reading it after B makes B the least recent.
    assert!(read_blob(&store, &b).is_some());
    assert!(read_blob(&store, &a).is_some());
    assert_eq!(store.evict_to_limit().unwrap(), Vec::<String>::new());

    put_blob(&store, &c, &bytes(3, 100));
    assert!(store.contains(&a));
    assert!(!store.contains(&b));
    assert!(store.contains(&c));
    assert!(!store.blob_path(&b).unwrap().exists());
    assert_eq!(store.stats().bytes, 200);
    assert_consistent(&store);
}

#[test]
fn documents_and_blobs_share_one_lru() {
    let fx = Fixture::new();
    let store = fx.open(100);
    store.put_document("a.narinfo", &[0; 40]).unwrap();
    store.put_document("b.narinfo", &[0; 40]).unwrap();
    store.get_document("a.narinfo").unwrap();
    put_blob(&store, &nar_key(1), &bytes(1, 30));
    assert!(!store.contains("b.narinfo"));
    assert!(store.contains("a.narinfo"));
    assert_eq!(store.stats().bytes, 70);
}

#[test]
fn evicts_as_many_as_needed_oldest_first() {
    let fx = Fixture::new();
    let store = fx.open(1000);
    for i in 0..10 {
        store.put_document(&format!("{i}.ls"), &[0; 100]).unwrap();
    }
    assert_eq!(store.stats().bytes, 1000);
    put_blob(&store, &nar_key(0), &bytes(0, 250));
    // 1250 bytes: three 100-byte documents go, the oldest three.
    assert_eq!(store.stats().bytes, 950);
    assert_eq!(store.stats().evicted_for_size, 3);
    assert_eq!(store.stats().evicted_inactive, 0);
    let left: Vec<String> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert!(!left.contains(&"0.ls".to_owned()));
    assert!(!left.contains(&"1.ls".to_owned()));
    assert!(!left.contains(&"2.ls".to_owned()));
    assert!(left.contains(&"3.ls".to_owned()));
}

#[test]
fn the_just_committed_blob_is_spared_unless_it_alone_is_too_big() {
    let fx = Fixture::new();
    let store = fx.open(100);
    // Crossing the limit evicts others first, never the blob being committed.
    store.put_document("old.narinfo", &[0; 50]).unwrap();
    put_blob(&store, &nar_key(1), &bytes(1, 90));
    assert!(store.contains(&nar_key(1)));
    assert!(!store.contains("old.narinfo"));

    // A blob bigger than the whole store cannot stay; it is evicted with the rest.
    put_blob(&store, &nar_key(2), &bytes(2, 101));
    assert!(!store.contains(&nar_key(2)));
    assert!(!store.contains(&nar_key(1)));
    assert_eq!((store.stats().objects, store.stats().bytes), (0, 0));
    assert!(files_under(&fx.dir().join("blobs")).is_empty());
}

#[test]
fn lowering_max_size_evicts_at_open() {
    let fx = Fixture::new();
    let store = fx.open(1000);
    for i in 0..5 {
        put_blob(&store, &nar_key(i), &bytes(i as u8, 100));
    }
    drop(store);
    let store = fx.open(250);
    assert_eq!(store.stats().bytes, 200);
    assert_consistent(&store);
}

#[test]
fn evict_inactive_removes_what_was_not_accessed_since_the_cutoff() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    fx.set_time(T0);
    store.put_document("stale.narinfo", b"s").unwrap();
    put_blob(&store, &nar_key(1), b"stale blob");
    store.put_document("read.narinfo", b"r").unwrap();
    fx.set_time(T0 + 100);
    store.put_document("fresh.narinfo", b"f").unwrap();
    fx.set_time(T0 + 200);
    store.get_document("read.narinfo").unwrap();

    let mut evicted = store.evict_inactive(fx.time(T0 + 50)).unwrap();
    evicted.sort();
    assert_eq!(evicted, [nar_key(1), "stale.narinfo".to_owned()]);
    assert!(!store.blob_path(&nar_key(1)).unwrap().exists());
    assert!(store.contains("read.narinfo") && store.contains("fresh.narinfo"));

    assert_eq!(
        store.evict_inactive(fx.time(T0 + 150)).unwrap(),
        ["fresh.narinfo"]
    );
    assert_eq!(store.stats().objects, 1);
    assert_eq!(store.stats().evicted_inactive, 3);
    assert_eq!(store.stats().evicted_for_size, 0);
    assert_consistent(&store);
}

#[test]
fn access_times_survive_flush_and_reopen() {
    let fx = Fixture::new();
    fx.set_time(T0);
    let store = fx.open(30);
    for key in ["a.ls", "b.ls", "c.ls"] {
        store.put_document(key, &[0; 10]).unwrap();
    }
    fx.set_time(T0 + 10);
    store.get_document("c.ls").unwrap();
    fx.set_time(T0 + 20);
    store.get_document("a.ls").unwrap();
    store.flush_access_times().unwrap();
    drop(store);

    // Without the flush all three would tie at T0 and "a.ls" would go first.
    fx.set_time(T0 + 30);
    let store = fx.open(30);
    store.put_document("d.ls", &[0; 10]).unwrap();
    assert!(!store.contains("b.ls"));
    assert_eq!(store.evict_inactive(fx.time(T0 + 15)).unwrap(), ["c.ls"]);
    assert!(store.contains("a.ls") && store.contains("d.ls"));
}

#[test]
fn access_times_are_not_written_without_a_flush() {
    let fx = Fixture::new();
    fx.set_time(T0);
    let store = fx.open(1 << 20);
    store.put_document("a.ls", b"a").unwrap();
    fx.set_time(T0 + 100);
    store.get_document("a.ls").unwrap();
    drop(store);
    let store = fx.open(1 << 20);
    // The access at T0 + 100 was lost, as documented: only the store time counts.
    assert_eq!(store.evict_inactive(fx.time(T0 + 50)).unwrap(), ["a.ls"]);
}
