//! Tests for the NAR module: dump/validate round trips on real trees
//! (`roundtrip`), every rejection of a malformed archive (`reject`), and the
//! listing's JSON against bytes real Nix 2.8 wrote (`listing`).
//!
//! Nothing here runs Nix; the differential tests against the real `nix-store`
//! live in the end-to-end suite.

mod listing;
mod reject;
mod roundtrip;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::listing::Node;
use super::{NarError, NarErrorKind, NarSummary, NarValidator, NarWriter};

/// Builds an archive with the low-level writer.
fn build(f: impl FnOnce(&mut NarWriter<Vec<u8>>) -> io::Result<()>) -> Vec<u8> {
    let mut w = NarWriter::new(Vec::new());
    f(&mut w).expect("writing to a Vec cannot fail");
    w.into_inner()
}

/// Validates `nar` fed in chunks of `chunk` bytes.
fn validate_chunked(nar: &[u8], chunk: usize, listing: bool) -> Result<NarSummary, NarError> {
    let mut v = NarValidator::new();
    if listing {
        v = v.with_listing();
    }
    for c in nar.chunks(chunk) {
        v.update(c)?;
    }
    v.finish()
}

/// The error `nar` is rejected with, checking that every chunking agrees.
fn rejection(nar: &[u8]) -> (u64, NarErrorKind) {
    let whole = validate_chunked(nar, nar.len().max(1), true).expect_err("archive was accepted");
    for chunk in [1, 3, 8, 13] {
        let e = validate_chunked(nar, chunk, true).expect_err("accepted in chunks");
        assert_eq!(
            (e.offset(), e.kind()),
            (whole.offset(), whole.kind()),
            "chunk size {chunk}"
        );
    }
    let kind = whole.kind().expect("not an I/O error").clone();
    (whole.offset(), kind)
}

fn regular(size: u64, executable: bool, nar_offset: u64) -> Node {
    Node::Regular {
        size,
        executable,
        nar_offset,
    }
}

fn symlink_node(target: &[u8]) -> Node {
    Node::Symlink {
        target: target.to_vec(),
    }
}

fn directory<const N: usize>(entries: [(&[u8], Node); N]) -> Node {
    Node::Directory {
        entries: entries
            .into_iter()
            .map(|(name, node)| (name.to_vec(), node))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Writes a regular file with the given permission bits.
fn write_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Recreates the store path real Nix 2.8 built from this script, so tests can
/// compare against what Nix reported for it:
///
/// ```sh
/// mkdir -p $out/bin $out/share/doc $out/share/empty; cd $out
/// printf '#!/bin/sh\necho hello\n' > bin/hello; chmod 755 bin/hello
/// ln -s bin lib
/// printf 'hello, world\n' > share/doc/README
/// printf 'x' > 'odd name=?é'
/// : > "$(printf 'q"b\\t\tn\nc\001d\177')"
/// printf 'y' > "$(printf '\376\377')"
/// ln -s "$(printf 'tab\there')" weird-link
/// ```
fn make_nix_fixture(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("share/doc")).unwrap();
    fs::create_dir_all(root.join("share/empty")).unwrap();
    write_file(&root.join("bin/hello"), b"#!/bin/sh\necho hello\n", 0o555);
    symlink("bin", root.join("lib")).unwrap();
    write_file(&root.join("share/doc/README"), b"hello, world\n", 0o444);
    write_file(&root.join("odd name=?\u{e9}"), b"x", 0o444);
    let weird = std::ffi::OsStr::from_bytes(b"q\"b\\t\tn\nc\x01d\x7f");
    write_file(&root.join(weird), b"", 0o444);
    write_file(
        &root.join(std::ffi::OsStr::from_bytes(b"\xfe\xff")),
        b"y",
        0o444,
    );
    symlink("tab\there", root.join("weird-link")).unwrap();
}

/// What Nix 2.8 reported for [`make_nix_fixture`]'s tree (`NarHash`, `NarSize`
/// in the narinfo of `nix copy --to file://...`).
const FIXTURE_NAR_HASH: &str = "sha256:0nnzc8smn6ms021vafg64f8z0ykq3chz4lzav4bwngp6bgvd9hwl";
const FIXTURE_NAR_SIZE: u64 = 2184;

/// The `.ls` Nix 2.8 wrote for that tree with `write-nar-listing=true`,
/// byte for byte (it is not UTF-8: one name is `\xfe\xff`).
const FIXTURE_LS: &[u8] = b"{\"version\":1,\"root\":{\"type\":\"directory\",\"entries\":{\"bin\":{\"type\":\"directory\",\
      \"entries\":{\"hello\":{\"type\":\"regular\",\"size\":21,\"executable\":true,\
      \"narOffset\":400}}},\"lib\":{\"type\":\"symlink\",\"target\":\"bin\"},\
      \"odd name=?\xc3\xa9\":{\"type\":\"regular\",\"size\":1,\"narOffset\":840},\
      \"q\\\"b\\\\t\\tn\\nc\\u0001d\x7f\":{\"type\":\"regular\",\"size\":0,\"narOffset\":1040},\
      \"share\":{\"type\":\"directory\",\"entries\":{\"doc\":{\"type\":\"directory\",\
      \"entries\":{\"README\":{\"type\":\"regular\",\"size\":13,\"narOffset\":1496}}},\
      \"empty\":{\"type\":\"directory\",\"entries\":{}}}},\"weird-link\":{\"type\":\"symlink\",\
      \"target\":\"tab\\there\"},\"\xfe\xff\":{\"type\":\"regular\",\"size\":1,\
      \"narOffset\":2128}}}}";
