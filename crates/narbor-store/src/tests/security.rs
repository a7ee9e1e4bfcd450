//! Hostile keys: refused with `InvalidKey` by every method, and nothing is
//! ever created outside the store's directory.

use super::*;
use crate::StoreError;

fn hostile_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "",
        "../x",
        "/abs",
        "a//b",
        "nar/..",
        "nar/../../escape",
        "nar/../index.redb",
        "..",
        "nar/a\0b",
        "a\0",
        "nar/a b",
        "nar/a\\..\\b",
        "nar/a\nb",
        "nar/./x",
        "nar/x/",
        "nar/ü",
        "/etc/passwd",
        "nar//etc/passwd",
    ]
    .map(str::to_owned)
    .to_vec();
    keys.push("a".repeat(1000));
    keys.push(format!("nar/{}", "b".repeat(600)));
    keys
}

fn assert_invalid<T: std::fmt::Debug>(key: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::InvalidKey { .. }) => {}
        other => panic!("{key:?}: {other:?}"),
    }
}

#[test]
fn every_method_refuses_hostile_keys_and_nothing_escapes() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    for key in hostile_keys() {
        let key = key.as_str();
        assert_invalid(key, store.put_document(key, b"x"));
        assert_invalid(key, store.get_document(key));
        assert_invalid(key, store.open_blob(key));
        assert_invalid(key, store.begin_blob(key));
        assert_invalid(key, store.remove(key));
        assert_invalid(key, store.blob_path(key));
        assert!(!store.contains(key));
    }
    let outside: Vec<_> = fs::read_dir(fx.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["store"], "nothing next to the store");
    let mut inside: Vec<_> = fs::read_dir(fx.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    inside.sort();
    assert_eq!(inside, ["blobs", "index.redb", "tmp"]);
    assert!(files_under(&fx.dir().join("blobs")).is_empty());
    assert!(files_under(&fx.dir().join("tmp")).is_empty());
    assert_eq!(store.entries().unwrap(), []);
    assert_eq!(store.stats().objects, 0);
}

#[test]
fn blob_keys_other_than_nar_slash_name_are_refused() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    for key in [
        "x.narinfo",
        "log/x.drv",
        "nar/a/b",
        "realisations/sha256:ab!out.doi",
    ] {
        assert_invalid(key, store.begin_blob(key));
    }
    assert!(files_under(&fx.dir())
        .iter()
        .all(|p| p.ends_with("index.redb")));
}

#[test]
fn invalid_key_errors_name_the_key_but_stay_short() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let message = store.get_document("../secret").unwrap_err().to_string();
    assert!(
        message.contains("../secret") && message.contains(".."),
        "{message}"
    );
    let message = store
        .get_document(&"k".repeat(1000))
        .unwrap_err()
        .to_string();
    assert!(message.len() < 200, "{message}");
}
