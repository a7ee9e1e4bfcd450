//! Documents: stored inline, replaced whole, counted by body length.

use super::*;
use crate::{EntryKind, StoreError};

const NARINFO: &str = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r.narinfo";

#[test]
fn put_then_get_returns_the_body_and_store_time() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    assert_eq!(store.get_document(NARINFO).unwrap(), None);
    assert!(!store.contains(NARINFO));

    store
        .put_document(NARINFO, b"StorePath: /nix/store/x\n")
        .unwrap();
    let doc = store.get_document(NARINFO).unwrap().unwrap();
    assert_eq!(doc.body, b"StorePath: /nix/store/x\n"[..]);
    assert_eq!(doc.stored_at, fx.time(1_700_000_000));
    assert!(store.contains(NARINFO));
    assert_eq!(store.stats().objects, 1);
    assert_eq!(store.stats().bytes, 24);

    drop(store);
    let store = fx.open(1 << 20);
    assert_eq!(
        store.get_document(NARINFO).unwrap().unwrap().body,
        b"StorePath: /nix/store/x\n"[..]
    );
    assert_eq!(store.stats().bytes, 24);
}

#[test]
fn empty_document_is_stored() {
    let fx = Fixture::new();
    let store = fx.open(100);
    store.put_document("x.ls", b"").unwrap();
    assert_eq!(store.get_document("x.ls").unwrap().unwrap().body, b""[..]);
    assert_eq!((store.stats().objects, store.stats().bytes), (1, 0));
}

#[test]
fn replacing_a_document_counts_it_once() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    store.put_document(NARINFO, &[b'a'; 100]).unwrap();
    store.put_document("other.ls", &[b'b'; 7]).unwrap();
    fx.set_time(1_700_000_100);
    store.put_document(NARINFO, &[b'c'; 40]).unwrap();
    assert_eq!(store.stats().objects, 2);
    assert_eq!(store.stats().bytes, 47);
    let doc = store.get_document(NARINFO).unwrap().unwrap();
    assert_eq!(doc.body, [b'c'; 40][..]);
    assert_eq!(doc.stored_at, fx.time(1_700_000_100));
    assert_consistent(&store);
    drop(store);
    assert_eq!(fx.open(1 << 20).stats().bytes, 47);
}

#[test]
fn a_document_replaces_a_blob_and_deletes_its_file() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let key = nar_key(1);
    put_blob(&store, &key, &bytes(1, 5000));
    let path = store.blob_path(&key).unwrap();
    assert!(path.exists());

    store.put_document(&key, b"small").unwrap();
    assert!(!path.exists());
    assert_eq!(store.stats().bytes, 5);
    assert_eq!(
        store.get_document(&key).unwrap().unwrap().body,
        b"small"[..]
    );
    assert_consistent(&store);

    // And back: a blob replaces the document (also the copy in memory the
    // read above left).
    put_blob(&store, &key, &bytes(2, 300));
    assert_eq!(read_blob(&store, &key).unwrap(), bytes(2, 300));
    assert!(matches!(
        store.get_document(&key),
        Err(StoreError::WrongKind { .. })
    ));
    assert_eq!(store.stats().bytes, 300);
    assert_consistent(&store);
}

#[test]
fn asking_for_the_other_kind_is_an_error() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let key = nar_key(1);
    put_blob(&store, &key, b"nar bytes");
    match store.get_document(&key) {
        Err(StoreError::WrongKind {
            expected: EntryKind::Document,
            actual: EntryKind::Blob,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    store.put_document("nar/doc", b"d").unwrap();
    match store.open_blob("nar/doc") {
        Err(StoreError::WrongKind {
            expected: EntryKind::Blob,
            actual: EntryKind::Document,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A document key that cannot be a blob is refused as a blob key.
    store.put_document(NARINFO, b"n").unwrap();
    assert!(matches!(
        store.open_blob(NARINFO),
        Err(StoreError::InvalidKey { .. })
    ));
}

#[test]
fn remove_forgets_a_document() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    store.put_document(NARINFO, b"abc").unwrap();
    assert!(store.remove(NARINFO).unwrap());
    assert!(!store.remove(NARINFO).unwrap());
    assert_eq!(store.get_document(NARINFO).unwrap(), None);
    assert_eq!((store.stats().objects, store.stats().bytes), (0, 0));
    drop(store);
    assert_eq!(fx.open(1 << 20).entries().unwrap(), []);
}

#[test]
fn entries_lists_both_kinds() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    store.put_document(NARINFO, b"abc").unwrap();
    put_blob(&store, &nar_key(3), &bytes(3, 10));
    let entries = store.entries().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].key, NARINFO);
    assert_eq!((entries[0].kind, entries[0].size), (EntryKind::Document, 3));
    assert_eq!(entries[1].key, nar_key(3));
    assert_eq!((entries[1].kind, entries[1].size), (EntryKind::Blob, 10));
    assert_eq!(entries[1].stored_at, fx.time(1_700_000_000));
}

#[test]
fn put_documents_stores_all_in_one_go_with_exact_accounts() {
    let fx = Fixture::new();
    let store = fx.open(u64::MAX);
    store.put_document("a.narinfo", b"old").unwrap();
    let docs: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("{i:032}.narinfo"), vec![b'x'; i + 1]))
        .chain([("a.narinfo".to_owned(), b"new!".to_vec())])
        .collect();
    let refs: Vec<(&str, &[u8])> = docs
        .iter()
        .map(|(k, b)| (k.as_str(), b.as_slice()))
        .collect();
    store.put_documents(&refs).unwrap();
    let expected: u64 = (1..=100).sum::<u64>() + 4;
    assert_eq!(store.stats().objects, 101);
    assert_eq!(store.stats().bytes, expected);
    assert_eq!(
        store.get_document("a.narinfo").unwrap().unwrap().body,
        b"new!"[..]
    );
    drop(store);
    let store = fx.open(u64::MAX);
    assert_eq!(store.stats().bytes, expected, "the same after reopening");
    assert!(
        store.put_documents(&[("../x", b"x")]).is_err(),
        "keys are checked first"
    );
    assert_eq!(store.stats().objects, 101, "and nothing was written");
}
