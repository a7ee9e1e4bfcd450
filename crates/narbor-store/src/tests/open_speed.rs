//! How long `open` takes on a big index. Printed, not asserted: the numbers
//! depend on the machine (run with `--nocapture` to see them). The crate doc's
//! "Costs" table holds the results, with the date and the machine.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use redb::Database;

use super::*;
use crate::index::{Record, OBJECTS};

const ENTRIES: usize = 100_000;

/// Tells the child of `open_after_kill_with_100k_documents` where its store is.
const CHILD_DIR_ENV: &str = "NARBOR_STORE_OPEN_SPEED_CHILD_DIR";

/// A narinfo-sized document (1 KiB), different for each `i`.
fn narinfo(i: usize) -> Vec<u8> {
    let mut doc = format!(
        "StorePath: /nix/store/{i:032}-package-{i}\nURL: nar/{i:052}.nar.xz\nCompression: xz\n"
    )
    .into_bytes();
    doc.resize(1024, b'x');
    doc
}

/// Writes an index of `ENTRIES` documents into `dir` in one transaction
/// (100k `put_document`s would be 100k fsyncs); prints how long it took.
fn write_index(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let started = Instant::now();
    let db = Database::create(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(OBJECTS).unwrap();
        for i in 0..ENTRIES {
            let body = narinfo(i);
            let record = Record::document(&body, 1_700_000_000 + i as u64);
            table
                .insert(
                    format!("{i:032}.narinfo").as_str(),
                    record.encode().as_slice(),
                )
                .unwrap();
        }
    }
    txn.commit().unwrap();
    let size = fs::metadata(dir.join("index.redb")).unwrap().len();
    println!(
        "wrote {ENTRIES} documents in {:?}; index.redb is {} MiB",
        started.elapsed(),
        size >> 20
    );
}

fn timed_open(fx: &Fixture, what: &str) -> DiskStore {
    let started = Instant::now();
    let store = fx.open(u64::MAX);
    println!("{what}: DiskStore::open took {:?}", started.elapsed());
    store
}

#[test]
fn open_with_100k_documents() {
    let fx = Fixture::new();
    write_index(&fx.dir());
    let store = timed_open(&fx, "100k documents, clean");
    assert_eq!(store.stats().objects, ENTRIES as u64);
    assert_eq!(store.stats().bytes, (ENTRIES * 1024) as u64);
    let doc = store
        .get_document(&format!("{:032}.narinfo", 4242))
        .unwrap()
        .unwrap();
    assert_eq!(doc.body, narinfo(4242));

    // The worst flush: every entry accessed since the last one.
    let started = Instant::now();
    for i in 0..ENTRIES {
        store.get_document(&format!("{i:032}.narinfo")).unwrap();
    }
    let read = started.elapsed();
    let started = Instant::now();
    store.flush_access_times().unwrap();
    println!(
        "100k documents: reading each took {read:?}, then flushing 100k access times {:?}",
        started.elapsed()
    );
}

/// After `kill -9` redb verifies checksums and rebuilds its allocator state
/// before the open returns. Slow (it writes 100k entries), so run by hand:
/// `cargo test -p narbor-store --release -- --ignored --nocapture open_after_kill`.
#[test]
#[ignore = "a measurement, run by hand"]
fn open_after_kill_with_100k_documents() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        let dir = PathBuf::from(dir);
        write_index(&dir);
        let store = DiskStore::open(StoreConfig {
            dir,
            max_size: u64::MAX,
        })
        .unwrap();
        store.put_document("last.narinfo", b"x").unwrap();
        println!("ready");
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let fx = Fixture::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::open_speed::open_after_kill_with_100k_documents",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR_ENV, fx.dir())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "ready");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "the child died before it was ready");
    let store = timed_open(&fx, "100k documents, after kill -9");
    assert_eq!(store.stats().objects, ENTRIES as u64 + 1);
    drop(store);
    timed_open(&fx, "100k documents, clean reopen");
}
