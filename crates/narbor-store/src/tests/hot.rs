//! Documents read from memory are never older than the index: every put,
//! removal and eviction shows in the next read. (A reader racing a writer is
//! `hot::tests::a_fill_after_a_change_is_refused`: threads cannot hit that
//! window on demand.)

use super::*;

const KEY: &str = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r.narinfo";

#[test]
fn a_replaced_document_is_read_new() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    store.put_document(KEY, b"old").unwrap();
    for _ in 0..3 {
        assert_eq!(store.get_document(KEY).unwrap().unwrap().body, &b"old"[..]);
    }
    fx.set_time(1_700_000_100);
    store.put_document(KEY, b"new").unwrap();
    let doc = store.get_document(KEY).unwrap().unwrap();
    assert_eq!(doc.body, &b"new"[..]);
    assert_eq!(doc.stored_at, fx.time(1_700_000_100));
    store.put_documents(&[(KEY, b"bulk".as_slice())]).unwrap();
    assert_eq!(store.get_document(KEY).unwrap().unwrap().body, &b"bulk"[..]);
}

#[test]
fn removed_and_evicted_documents_are_gone() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    store.put_document(KEY, b"body").unwrap();
    store.get_document(KEY).unwrap().unwrap();
    assert!(store.remove(KEY).unwrap());
    assert_eq!(store.get_document(KEY).unwrap(), None);

    store.put_document(KEY, b"body").unwrap();
    store.get_document(KEY).unwrap().unwrap();
    fx.set_time(1_700_001_000);
    let evicted = store.evict_inactive(fx.time(1_700_000_500)).unwrap();
    assert_eq!(evicted, vec![KEY.to_owned()]);
    assert_eq!(store.get_document(KEY).unwrap(), None);

    // Eviction for size: a second document pushes the first one out.
    let fx = Fixture::new();
    let small = fx.open(10);
    small.put_document("a.ls", b"0123456789").unwrap();
    small.get_document("a.ls").unwrap().unwrap();
    fx.set_time(1_700_000_100);
    small.put_document("b.ls", b"9876543210").unwrap();
    assert_eq!(small.get_document("a.ls").unwrap(), None);
    assert_eq!(
        small.get_document("b.ls").unwrap().unwrap().body,
        &b"9876543210"[..]
    );
}
