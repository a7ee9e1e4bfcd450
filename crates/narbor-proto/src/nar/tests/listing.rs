//! The `.ls` JSON: exact bytes as Nix 2.8 writes them, and reading them back.

use super::{
    directory, make_nix_fixture, regular, symlink_node, FIXTURE_LS, FIXTURE_NAR_HASH,
    FIXTURE_NAR_SIZE,
};
use crate::hash::Sha256;
use crate::nar::listing::{parse_json, to_json, Node};
use crate::nar::{dump, validate, MAX_DEPTH};

#[test]
fn nar_fixture_matches_what_real_nix_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fx");
    make_nix_fixture(&root);
    let mut nar = Vec::new();
    dump(&root, &mut nar).unwrap();
    let summary = validate(&nar[..], true).unwrap();
    assert_eq!(summary.nar_hash, Sha256::parse(FIXTURE_NAR_HASH).unwrap());
    assert_eq!(summary.nar_size, FIXTURE_NAR_SIZE);
    let json = to_json(summary.listing.as_ref().unwrap());
    assert_eq!(
        json,
        FIXTURE_LS,
        "\n ours: {}\nnix's: {}",
        json.escape_ascii(),
        FIXTURE_LS.escape_ascii()
    );
    assert_eq!(parse_json(FIXTURE_LS).unwrap(), summary.listing.unwrap());
}

#[test]
fn nar_listing_json_exact_bytes_for_a_small_tree() {
    let tree = directory([
        (b"bin", directory([(b"hello", regular(21, true, 400))])),
        (b"lib", symlink_node(b"bin")),
        (b"empty", directory([])),
        (b"f", regular(0, false, 1040)),
    ]);
    let expected: &[u8] = br#"{"version":1,"root":{"type":"directory","entries":{"bin":{"type":"directory","entries":{"hello":{"type":"regular","size":21,"executable":true,"narOffset":400}}},"empty":{"type":"directory","entries":{}},"f":{"type":"regular","size":0,"narOffset":1040},"lib":{"type":"symlink","target":"bin"}}}}"#;
    assert_eq!(to_json(&tree), expected);
    assert_eq!(parse_json(expected).unwrap(), tree);
}

#[test]
fn nar_listing_json_escapes_like_nix() {
    // Observed from Nix 2.8: `"` `\` by backslash, \n \r \t by name, other
    // control bytes as \u00xx in lower-case hex; DEL and bytes >= 0x80 raw.
    let cases: [(&[u8], &[u8]); 7] = [
        (b"q\"b\\", br#""q\"b\\""#),
        (b"nl\nx", br#""nl\nx""#),
        (b"cr\rx", br#""cr\rx""#),
        (b"tab\tx", br#""tab\tx""#),
        (b"ctl\x08\x0cx", br#""ctl\u0008\u000cx""#),
        (b"\x01\x1f\x7f\x80", b"\"\\u0001\\u001f\x7f\x80\""),
        (b"\xe2\x82\xaceuro\xff", b"\"\xe2\x82\xaceuro\xff\""),
    ];
    for (target, quoted) in cases {
        let mut expected = br#"{"version":1,"root":{"type":"symlink","target":"#.to_vec();
        expected.extend_from_slice(quoted);
        expected.extend_from_slice(b"}}");
        let node = symlink_node(target);
        assert_eq!(to_json(&node), expected, "{}", target.escape_ascii());
        assert_eq!(parse_json(&expected).unwrap(), node);
    }
}

#[test]
fn nar_listing_root_file_and_zero_offset() {
    assert_eq!(
        to_json(&regular(3, false, 96)),
        br#"{"version":1,"root":{"type":"regular","size":3,"narOffset":96}}"#
    );
    // Nix leaves narOffset out when it is 0 (never so in a real archive).
    let json = br#"{"version":1,"root":{"type":"regular","size":0}}"#;
    assert_eq!(to_json(&regular(0, false, 0)), json);
    assert_eq!(parse_json(json).unwrap(), regular(0, false, 0));
}

#[test]
fn nar_listing_parse_is_lenient_about_layout() {
    let json = br#" { "root" : { "entries" : { "x" : { "narOffset" : 8 , "size" : 1 ,
        "future" : [ 1.5e3 , null , { "a" : [ ] } , "s" , false ] , "type" : "regular" ,
        "executable" : false } } , "type" : "directory" } , "version" : 1 } "#;
    let expected = directory([(b"x", regular(1, false, 8))]);
    assert_eq!(parse_json(json).unwrap(), expected);
    // Escapes Nix never writes, but JSON allows.
    let json = br#"{"version":1,"root":{"type":"symlink","target":"\/\u00e9\ud83d\ude00\b\f"}}"#;
    let target = "/\u{e9}\u{1f600}\x08\x0c".as_bytes();
    assert_eq!(parse_json(json).unwrap(), symlink_node(target));
}

#[test]
fn nar_listing_parse_rejects_bad_documents() {
    for (json, needle) in [
        (&br#"{"version":2,"root":{"type":"directory","entries":{}}}"#[..], "version 2"),
        (br#"{"root":{"type":"directory","entries":{}}}"#, "no \"version\""),
        (br#"{"version":1}"#, "no \"root\""),
        (br#"{"version":1,"root":{"type":"directory","entries":{}}} x"#, "after the end"),
        (br#"{"version":1,"root":{"type":"regular"}}"#, "without \"size\""),
        (br#"{"version":1,"root":{"type":"symlink"}}"#, "without \"target\""),
        (br#"{"version":1,"root":{"type":"directory"}}"#, "without \"entries\""),
        (br#"{"version":1,"root":{"type":"fifo"}}"#, "unknown node type"),
        (br#"{"version":1,"root":{}}"#, "without \"type\""),
        (br#"{"version":1,"root":{"type":"regular","size":-1}}"#, "unsigned"),
        (br#"{"version":1,"root":{"type":"regular","size":1.5}}"#, "unsigned"),
        (br#"{"version":1,"root":{"type":"regular","size":18446744073709551616}}"#, "64 bits"),
        (br#"{"version":1,"root":{"type":"symlink","target":"a"#, "unterminated"),
        (b"{\"version\":1,\"root\":{\"type\":\"symlink\",\"target\":\"a\x01\"}}", "control"),
        (br#"{"version":1,"root":{"type":"symlink","target":"\ud800"}}"#, "surrogate"),
        (br#"{"version":1,"root":{"type":"symlink","target":"\q"}}"#, "unknown escape"),
        (
            br#"{"version":1,"root":{"type":"directory","entries":{"a/b":{"type":"directory","entries":{}}}}}"#,
            "contains '/'",
        ),
        (
            br#"{"version":1,"root":{"type":"directory","entries":{"..":{"type":"directory","entries":{}}}}}"#,
            "relative path",
        ),
        (
            br#"{"version":1,"root":{"type":"directory","entries":{"a":{"type":"symlink","target":"x"},"a":{"type":"symlink","target":"y"}}}}"#,
            "duplicate entry",
        ),
        (b"", "expected '{'"),
        (b"[]", "expected '{'"),
    ] {
        let e = parse_json(json).expect_err(&String::from_utf8_lossy(json));
        assert!(e.to_string().contains(needle), "{e} (wanted {needle:?})");
    }
}

#[test]
fn nar_listing_deep_trees_neither_overflow_nor_hit_json_limits() {
    let mut node = regular(1, false, 8);
    for _ in 0..MAX_DEPTH {
        node = Node::Directory {
            entries: [(b"d".to_vec(), node)].into(),
        };
    }
    let json = to_json(&node);
    assert_eq!(parse_json(&json).unwrap(), node);

    // Hostile nesting is refused with an error, not a stack overflow.
    let mut hostile = br#"{"version":1,"junk":"#.to_vec();
    hostile.extend(std::iter::repeat_n(b'[', 100_000));
    let e = parse_json(&hostile).unwrap_err();
    assert!(e.to_string().contains("nested deeper"), "{e}");
}
