//! `dump` on real directory trees, then `validate` on what it wrote.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::{regular, symlink_node, validate_chunked, write_file, Node};
use crate::hash::Sha256;
use crate::nar::{dump, validate, DumpError, NarValidator, MAX_DEPTH};

fn dump_vec(path: &Path) -> Vec<u8> {
    let mut nar = Vec::new();
    let n = dump(path, &mut nar).expect("dump");
    assert_eq!(n, nar.len() as u64, "dump's byte count");
    nar
}

/// The listing of `path` as read from the filesystem, with every `nar_offset`
/// zeroed (they are checked against the archive bytes instead).
fn fs_listing(path: &Path) -> Node {
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).unwrap();
        symlink_node(target.as_os_str().as_bytes())
    } else if meta.is_dir() {
        let entries = fs::read_dir(path)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().as_bytes().to_vec(), fs_listing(&e.path()))
            })
            .collect::<BTreeMap<_, _>>();
        Node::Directory { entries }
    } else {
        regular(meta.len(), meta.permissions().mode() & 0o100 != 0, 0)
    }
}

/// Zeroes offsets after checking each points at the file's contents in `nar`.
fn check_offsets(node: &Node, nar: &[u8], path: &Path) -> Node {
    match node {
        Node::Regular {
            size,
            executable,
            nar_offset,
        } => {
            let start = *nar_offset as usize;
            let contents = fs::read(path).unwrap();
            assert_eq!(&nar[start - 8..start], &size.to_le_bytes(), "length field");
            assert_eq!(
                &nar[start..start + *size as usize],
                &contents[..],
                "{path:?}"
            );
            regular(*size, *executable, 0)
        }
        Node::Symlink { .. } => node.clone(),
        Node::Directory { entries } => Node::Directory {
            entries: entries
                .iter()
                .map(|(name, child)| {
                    let child_path = path.join(OsStr::from_bytes(name));
                    (name.clone(), check_offsets(child, nar, &child_path))
                })
                .collect(),
        },
    }
}

/// Dumps `root`, validates the result in several chunkings, and checks the
/// listing against the filesystem.
fn round_trip(root: &Path) -> Vec<u8> {
    let nar = dump_vec(root);
    let summary = validate(&nar[..], true).expect("validate");
    assert_eq!(summary.nar_hash, Sha256::digest(&nar));
    assert_eq!(summary.nar_size, nar.len() as u64);
    for chunk in [1, 5, 8, 4096] {
        assert_eq!(validate_chunked(&nar, chunk, true).unwrap(), summary);
    }
    let without = validate(&nar[..], false).unwrap();
    assert_eq!(without.listing, None);
    assert_eq!(
        (without.nar_hash, without.nar_size),
        (summary.nar_hash, summary.nar_size)
    );

    let listing = summary.listing.expect("listing asked for");
    assert_eq!(check_offsets(&listing, &nar, root), fs_listing(root));
    nar
}

#[test]
fn nar_round_trips_a_tree_with_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    write_file(&root.join("a/b/c/exec"), b"#!/bin/sh\n", 0o755);
    write_file(&root.join("a/plain"), b"plain", 0o644);
    write_file(&root.join("a/empty-file"), b"", 0o644);
    write_file(&root.join("a/empty-exec"), b"", 0o700);
    // Bigger than dump's 64 KiB buffer, and not a multiple of 8.
    let big: Vec<u8> = (0..200_001u32).map(|i| (i * 7 + i / 251) as u8).collect();
    write_file(&root.join("big"), &big, 0o644);
    for name in [
        "with space",
        "uni-\u{e9}\u{20ac}\u{1f600}",
        "eq=q?x&y",
        "quote\"back\\slash",
        "new\nline\ttab",
        "-dash",
        "~tilde",
        ".hidden",
        "...",
    ] {
        write_file(&root.join(name), name.as_bytes(), 0o644);
    }
    write_file(
        &root.join(OsStr::from_bytes(b"not-utf8-\xff\xfe")),
        b"x",
        0o644,
    );
    write_file(&root.join("n".repeat(255)), b"long name", 0o644);
    symlink("a/plain", root.join("relative-link")).unwrap();
    symlink("/nix/store/absolute", root.join("absolute-link")).unwrap();
    symlink("../../dangling", root.join("a/dangling-link")).unwrap();
    symlink(".", root.join("dot-link")).unwrap();
    symlink("empty", root.join("dir-link")).unwrap();
    symlink(
        OsStr::from_bytes(b"\x01\xff odd target"),
        root.join("odd-link"),
    )
    .unwrap();
    symlink("t".repeat(4000), root.join("long-link")).unwrap();

    let nar = round_trip(&root);
    // Dumping is deterministic.
    assert_eq!(dump_vec(&root), nar);
}

#[test]
fn nar_round_trips_single_files_and_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    write_file(&file, b"hi\n", 0o644);
    let nar = round_trip(&file);
    // Layout as Nix writes it: magic, "(", "type", "regular", "contents", 3, "hi\n".
    assert_eq!(nar.len(), 24 + 16 + 16 + 16 + 16 + 8 + 8 + 16);
    let summary = validate(&nar[..], true).unwrap();
    assert_eq!(summary.listing, Some(regular(3, false, 96)));

    let link = tmp.path().join("link");
    symlink("/nowhere", &link).unwrap();
    round_trip(&link);

    let empty = tmp.path().join("empty-dir");
    fs::create_dir(&empty).unwrap();
    round_trip(&empty);
}

#[test]
fn nar_executable_is_the_owner_exec_bit_only() {
    let tmp = tempfile::tempdir().unwrap();
    for (mode, executable) in [
        (0o644, false),
        (0o654, false),
        (0o645, false),
        (0o744, true),
        (0o500, true),
        (0o4755, true),
    ] {
        let path = tmp.path().join(format!("f{mode:o}"));
        write_file(&path, b"x", mode);
        let summary = validate(&dump_vec(&path)[..], true).unwrap();
        let Some(Node::Regular { executable: e, .. }) = summary.listing else {
            panic!("not a regular file");
        };
        assert_eq!(e, executable, "mode {mode:o}");
    }
}

#[test]
fn nar_entries_sort_by_bytes_not_locale() {
    let tmp = tempfile::tempdir().unwrap();
    let names: [&[u8]; 8] = [b"a", b"B", b"_", b"Z", b"z", b"a.b", b"a-b", b"\xc3\xa9"];
    for name in names {
        write_file(&tmp.path().join(OsStr::from_bytes(name)), b"", 0o644);
    }
    let nar = round_trip(tmp.path());
    let listing = validate(&nar[..], true).unwrap().listing.unwrap();
    let Node::Directory { entries } = listing else {
        panic!("not a directory");
    };
    let order: Vec<&[u8]> = entries.keys().map(Vec::as_slice).collect();
    let expected: [&[u8]; 8] = [b"B", b"Z", b"_", b"a", b"a-b", b"a.b", b"z", b"\xc3\xa9"];
    assert_eq!(order, expected);
    // And in that order in the archive itself.
    let positions: Vec<usize> = expected
        .iter()
        .map(|name| {
            let mut needle = (name.len() as u64).to_le_bytes().to_vec();
            needle.extend_from_slice(name);
            nar.windows(needle.len()).position(|w| w == needle).unwrap()
        })
        .collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
}

#[test]
fn nar_deep_nesting_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let mut deep = tmp.path().join("root");
    for i in 0..300 {
        deep.push(format!("d{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    write_file(&deep.join("leaf"), b"leaf", 0o644);
    round_trip(&tmp.path().join("root"));
}

#[test]
fn nar_dump_depth_limit_matches_the_validator() {
    let tmp = tempfile::tempdir().unwrap();
    // MAX_DEPTH directories, the root included: accepted by both.
    let root = tmp.path().join("r");
    let mut deepest = root.clone();
    for _ in 1..MAX_DEPTH {
        deepest.push("d");
    }
    fs::create_dir_all(&deepest).unwrap();
    write_file(&deepest.join("f"), b"f", 0o644);
    let nar = dump_vec(&root);
    validate(&nar[..], false).unwrap();

    // One more directory is refused by dump, as the validator would.
    fs::create_dir(deepest.join("d")).unwrap();
    let err = dump(&root, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&err, DumpError::TooDeep { max, .. } if *max == MAX_DEPTH),
        "{err}"
    );
}

#[test]
fn nar_dump_refuses_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(tmp.path().join("sock")).unwrap();
    let err = dump(tmp.path(), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&err, DumpError::UnsupportedType { kind: "socket", path } if path.ends_with("sock")),
        "{err}"
    );
}

#[test]
fn nar_dump_refuses_a_file_larger_than_its_stat() {
    // procfs files stat as empty but have contents: the same as a file that
    // grew between stat and read.
    let path = Path::new("/proc/self/status");
    if !path.exists() {
        return;
    }
    let err = dump(path, &mut Vec::new()).unwrap_err();
    assert!(matches!(&err, DumpError::Changed { .. }), "{err}");
    assert!(err.to_string().contains("grew beyond 0 bytes"), "{err}");
}

#[test]
fn nar_dump_of_a_missing_path_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let err = dump(&missing, &mut Vec::new()).unwrap_err();
    assert!(matches!(&err, DumpError::Io { op: "lstat", .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn nar_validator_works_as_an_io_sink() {
    let tmp = tempfile::tempdir().unwrap();
    write_file(&tmp.path().join("f"), b"contents", 0o644);
    let nar = dump_vec(tmp.path());
    let mut v = NarValidator::new().with_listing();
    std::io::copy(&mut &nar[..], &mut v).unwrap();
    assert!(v.is_complete());
    assert_eq!(v.offset(), nar.len() as u64);
    assert_eq!(v.finish().unwrap(), validate(&nar[..], true).unwrap());

    let mut v = NarValidator::new();
    let err = std::io::copy(&mut &b"garbage garbage"[..], &mut v).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}
