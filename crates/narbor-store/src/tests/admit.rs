//! Admission: a caller asks whether the disk under the store has room for an
//! object before it writes one.

use super::*;
use crate::{StoreError, ADMISSION_HEADROOM};

#[test]
fn small_objects_are_admitted_and_impossible_ones_refused_naming_the_store() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    store.admit(None).unwrap();
    store.admit(Some(0)).unwrap();
    store.admit(Some(4096)).unwrap();
    for len in [u64::MAX, u64::MAX - ADMISSION_HEADROOM + 1, u64::MAX / 2] {
        match store.admit(Some(len)) {
            Err(e @ StoreError::NoRoom { .. }) => {
                let StoreError::NoRoom {
                    ref path,
                    free,
                    needed,
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(path, &fx.dir());
                assert_eq!(needed, len.saturating_add(ADMISSION_HEADROOM));
                assert!(free < needed, "{free} {needed}");
                let message = e.to_string();
                assert!(
                    message.contains("no room") && message.contains(&*fx.dir().to_string_lossy()),
                    "{message}"
                );
            }
            other => panic!("{len}: {other:?}"),
        }
    }
    // Admission writes nothing and changes no account.
    assert!(files_under(&fx.dir().join("tmp")).is_empty());
    assert_eq!((store.stats().objects, store.stats().bytes), (0, 0));
}

/// The headroom is required on top of the object: the free space the store
/// reports, less the headroom, fits; a byte more does not. The free space is
/// read again around each call, so another process writing meanwhile cannot
/// make the test lie, only retry.
#[test]
fn the_headroom_is_required_on_top_of_the_object() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    let free = || {
        let stat = rustix::fs::statvfs(fx.dir().join("tmp")).unwrap();
        stat.f_bavail * stat.f_frsize
    };
    let mut checked = false;
    for _ in 0..20 {
        let before = free();
        let Some(fits) = before.checked_sub(ADMISSION_HEADROOM) else {
            panic!("the test's disk has less than the headroom free");
        };
        let admitted = store.admit(Some(fits)).is_ok();
        let refused = matches!(store.admit(Some(fits + 1)), Err(StoreError::NoRoom { .. }));
        if free() == before {
            assert!(admitted && refused, "{before} free");
            checked = true;
            break;
        }
    }
    assert!(checked, "the free space never held still");
}

#[test]
fn a_disk_that_cannot_be_asked_is_an_error_naming_the_path() {
    let fx = Fixture::new();
    let store = fx.open(1 << 20);
    fs::remove_dir(fx.dir().join("tmp")).unwrap();
    match store.admit(None) {
        Err(StoreError::Io { op, path, .. }) => {
            assert_eq!((op, path), ("statvfs", fx.dir().join("tmp")));
        }
        other => panic!("{other:?}"),
    }
}
