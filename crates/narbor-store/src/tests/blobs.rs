//! Blobs: written through a `BlobWriter`, visible only once committed, served
//! as files.

use std::io::Read;
use std::thread;

use super::*;
use crate::{IntegrityCheck, StoreError};

#[test]
fn committed_blob_reads_back_identical() {
    let fx = Fixture::new();
    let store = fx.open(1 << 30);
    let key = nar_key(1);
    let data = bytes(9, 1_000_003);
    put_blob(&store, &key, &data);
    assert!(store.contains(&key));
    assert_eq!(read_blob(&store, &key).unwrap(), data);
    assert_eq!(store.stats().bytes, data.len() as u64);
    let path = store.blob_path(&key).unwrap();
    assert_eq!(path, fx.dir().join("blobs").join("aa").join(&key[4..]));
    assert_eq!(fs::read(&path).unwrap(), data);
    assert!(files_under(&fx.dir().join("tmp")).is_empty());

    drop(store);
    let store = fx.open(1 << 30);
    assert_eq!(read_blob(&store, &key).unwrap(), data);
    assert_eq!(store.stats().bytes, data.len() as u64);
}

#[test]
fn commit_without_expectation_and_empty_blob() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let w = store.begin_blob("nar/empty.nar").unwrap();
    assert_eq!(w.written(), 0);
    w.commit(None).unwrap();
    assert_eq!(read_blob(&store, "nar/empty.nar").unwrap(), b"");

    let mut w = store.begin_blob("nar/x.nar").unwrap();
    w.write_all(b"abc").unwrap();
    w.write_all(b"def").unwrap();
    assert_eq!(w.written(), 6);
    w.commit(None).unwrap();
    assert_eq!(read_blob(&store, "nar/x.nar").unwrap(), b"abcdef");
    assert_eq!((store.stats().objects, store.stats().bytes), (2, 6));
}

#[test]
fn dropped_writer_leaves_nothing() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let key = nar_key(2);
    let mut w = store.begin_blob(&key).unwrap();
    let temp = w.temp_path().to_path_buf();
    assert!(temp.starts_with(fx.dir().join("tmp")));
    w.write_all(&bytes(1, 10_000)).unwrap();
    assert!(temp.exists());
    assert!(!store.contains(&key), "visible before commit");
    assert_eq!(store.open_blob(&key).unwrap().map(|(_, n)| n), None);
    drop(w);

    assert!(!temp.exists());
    assert!(files_under(&fx.dir().join("tmp")).is_empty());
    assert!(files_under(&fx.dir().join("blobs")).is_empty());
    assert!(!store.contains(&key));
    assert_eq!(store.entries().unwrap(), []);
    assert_eq!((store.stats().objects, store.stats().bytes), (0, 0));
}

#[test]
fn integrity_mismatch_leaves_nothing() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let key = nar_key(3);
    let data = bytes(3, 4096);
    let right = Sha256::digest(&data);
    let wrong = Sha256::digest(b"something else");
    for (expected, check) in [
        ((wrong, data.len() as u64), IntegrityCheck::Hash),
        ((right, data.len() as u64 + 1), IntegrityCheck::Size),
        ((right, data.len() as u64 - 1), IntegrityCheck::Size),
    ] {
        let mut w = store.begin_blob(&key).unwrap();
        let temp = w.temp_path().to_path_buf();
        w.write_all(&data).unwrap();
        match w.commit(Some(expected)) {
            Err(StoreError::Integrity {
                key: k,
                check: c,
                expected,
                actual,
            }) => {
                assert_eq!((k.as_str(), c), (key.as_str(), check));
                assert_ne!(expected, actual);
                let message = StoreError::Integrity {
                    key: k,
                    check: c,
                    expected,
                    actual,
                }
                .to_string();
                assert!(
                    message.contains(&check.to_string()) && message.contains(&key),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!temp.exists());
        assert!(!store.contains(&key));
        assert_eq!(store.open_blob(&key).unwrap().map(|(_, n)| n), None);
        assert!(files_under(&fx.dir())
            .iter()
            .all(|p| p.ends_with("index.redb")));
        assert_eq!(store.stats().bytes, 0);
    }
}

#[test]
fn failed_verification_keeps_the_previous_version() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let key = nar_key(4);
    put_blob(&store, &key, b"good");
    let mut w = store.begin_blob(&key).unwrap();
    w.write_all(b"evil").unwrap();
    assert!(w.commit(Some((Sha256::digest(b"good!"), 4))).is_err());
    assert_eq!(read_blob(&store, &key).unwrap(), b"good");
}

#[test]
fn second_commit_of_a_key_replaces_without_double_count() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let key = nar_key(5);
    let mut first = store.begin_blob(&key).unwrap();
    let mut second = store.begin_blob(&key).unwrap();
    assert_ne!(first.temp_path(), second.temp_path());
    first.write_all(&bytes(1, 1000)).unwrap();
    second.write_all(&bytes(2, 600)).unwrap();
    first.commit(None).unwrap();
    assert_eq!(store.stats().bytes, 1000);
    second.commit(None).unwrap();
    assert_eq!((store.stats().objects, store.stats().bytes), (1, 600));
    assert_eq!(read_blob(&store, &key).unwrap(), bytes(2, 600));
    assert_eq!(files_under(&fx.dir().join("blobs")).len(), 1);
    assert_consistent(&store);
    drop(store);
    assert_eq!(fx.open(1 << 20).stats().bytes, 600);
}

#[test]
fn readers_keep_reading_a_removed_blob() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let key = nar_key(6);
    let data = bytes(6, 100_000);
    put_blob(&store, &key, &data);
    let (mut file, size) = store.open_blob(&key).unwrap().unwrap();
    let mut head = vec![0u8; 10];
    file.read_exact(&mut head).unwrap();
    assert!(store.remove(&key).unwrap());
    assert!(!store.blob_path(&key).unwrap().exists());
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert_eq!((head.len() as u64, head), (size, data));
    assert_eq!(store.open_blob(&key).unwrap().map(|(_, n)| n), None);
    assert_eq!(store.stats().bytes, 0);
}

#[test]
fn a_reader_tailing_the_writer_sees_every_byte() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let key = nar_key(7);
    let mut w = store.begin_blob(&key).unwrap();
    let mut tail = w.reader().unwrap();
    w.write_all(b"first ").unwrap();
    let mut seen = Vec::new();
    tail.read_to_end(&mut seen).unwrap();
    assert_eq!(seen, b"first ");
    w.write_all(b"second").unwrap();
    w.commit(None).unwrap();
    tail.read_to_end(&mut seen).unwrap();
    assert_eq!(seen, b"first second");
}

/// As the server reads: positioned reads up to `written()`, from a reader
/// taken before the first byte, on another thread than the writer's.
#[test]
fn positioned_reads_up_to_written_match_the_committed_blob() {
    use std::os::unix::fs::FileExt;
    let fx = Fixture::new();
    let store = fx.open(1 << 30);
    let key = nar_key(8);
    let data = bytes(8, 300_001);
    let mut w = store.begin_blob(&key).unwrap();
    let reader = w.reader().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let tailer = thread::spawn(move || {
        let mut seen = Vec::new();
        for written in rx {
            let mut buf = vec![0u8; written as usize - seen.len()];
            reader.read_exact_at(&mut buf, seen.len() as u64).unwrap();
            seen.extend(buf);
        }
        seen
    });
    for chunk in data.chunks(4099) {
        w.write_all(chunk).unwrap();
        tx.send(w.written()).unwrap();
    }
    w.commit(Some((Sha256::digest(&data), data.len() as u64)))
        .unwrap();
    drop(tx);
    assert_eq!(tailer.join().unwrap(), data);
    assert_eq!(read_blob(&store, &key).unwrap(), data);
}

#[test]
fn a_reader_outlives_an_aborted_write_and_cannot_write() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let key = nar_key(9);
    let mut w = store.begin_blob(&key).unwrap();
    w.write_all(b"partial").unwrap();
    let mut reader = w.reader().unwrap();
    assert!(
        std::io::Write::write_all(&mut reader, b"evil").is_err(),
        "a reader is read-only"
    );
    let temp = w.temp_path().to_path_buf();
    drop(w);
    assert!(!temp.exists());
    let mut seen = Vec::new();
    reader.read_to_end(&mut seen).unwrap();
    assert_eq!(seen, b"partial");
    assert!(files_under(&fx.dir().join("tmp")).is_empty());
    assert!(!store.contains(&key));
}

#[test]
fn blob_deleted_externally_is_not_served_and_leaves_the_accounts() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let (gone, truncated, kept) = (nar_key(1), nar_key(2), nar_key(3));
    put_blob(&store, &gone, &bytes(1, 700));
    put_blob(&store, &truncated, &bytes(2, 500));
    put_blob(&store, &kept, &bytes(3, 300));
    assert_eq!(store.stats().bytes, 1500);

    fs::remove_file(store.blob_path(&gone).unwrap()).unwrap();
    assert!(store.open_blob(&gone).unwrap().is_none());
    assert!(!store.contains(&gone));
    assert_eq!((store.stats().objects, store.stats().bytes), (2, 800));

    fs::write(store.blob_path(&truncated).unwrap(), b"short").unwrap();
    assert!(store.open_blob(&truncated).unwrap().is_none());
    assert!(
        !store.blob_path(&truncated).unwrap().exists(),
        "bad file deleted"
    );
    assert_eq!((store.stats().objects, store.stats().bytes), (1, 300));
    assert_consistent(&store);

    drop(store);
    let store = fx.open(1 << 20);
    assert_eq!(
        (store.stats().objects, store.stats().bytes),
        (1, 300),
        "fixed in the index too"
    );
}

#[test]
fn poisoned_writer_cannot_commit() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let mut w = store.begin_blob(&nar_key(1)).unwrap();
    w.write_all(b"ok").unwrap();
    // Simulate a failed write: the file and the hash may disagree from now on.
    w.poison_for_test();
    assert!(matches!(
        w.write_all(b"x"),
        Err(StoreError::Poisoned { .. })
    ));
    assert!(matches!(w.commit(None), Err(StoreError::Poisoned { .. })));
    assert!(files_under(&fx.dir().join("tmp")).is_empty());
    assert!(!store.contains(&nar_key(1)));
}

#[test]
fn writers_and_readers_on_many_threads_keep_exact_accounts() {
    let fx = Fixture::new();
    let store = Arc::new(fx.open(200_000));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in 0..40usize {
                    // Keys overlap between threads: replaces race with each other.
                    let key = nar_key(i % 12);
                    let data = bytes(t, 1000 + 97 * i + usize::from(t));
                    let mut w = store.begin_blob(&key).unwrap();
                    w.write_all(&data).unwrap();
                    if i % 5 == 4 {
                        drop(w);
                    } else {
                        w.commit(Some((Sha256::digest(&data), data.len() as u64)))
                            .unwrap();
                    }
                    if let Some((mut f, size)) = store.open_blob(&nar_key((i + 3) % 12)).unwrap() {
                        let mut out = Vec::new();
                        f.read_to_end(&mut out).unwrap();
                        assert_eq!(out.len() as u64, size);
                    }
                    store
                        .put_document(&format!("{t}-{i}.narinfo"), &data[..100])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(store.stats().bytes <= 200_000);
    assert_consistent(&store);
    let indexed_blobs = store
        .entries()
        .unwrap()
        .iter()
        .filter(|e| e.kind == crate::EntryKind::Blob)
        .count();
    assert_eq!(files_under(&fx.dir().join("blobs")).len(), indexed_blobs);
    assert!(files_under(&fx.dir().join("tmp")).is_empty());
    assert_eq!(store.sweep_orphans().unwrap(), 0);
}
