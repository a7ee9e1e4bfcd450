//! The file tree of a NAR, and its JSON form: the `<hash>.ls` file Nix writes
//! next to a `.narinfo` with `write-nar-listing=true`.
//!
//! This module owns [`Node`], [`to_json`] (byte-identical to Nix 2.8) and
//! [`parse_json`]. It does not read NARs: [`NarValidator`](super::NarValidator)
//! builds a [`Node`] while it validates.
//!
//! The JSON Nix writes is not always valid JSON: names and symlink targets are
//! written as their raw bytes, so a name that is not UTF-8 gives a `.ls` that
//! is not UTF-8. Both directions here therefore work on bytes.

mod parse;

use std::collections::{btree_map, BTreeMap};

pub use parse::{parse_json, ListingParseError};

/// One file-system object in a NAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Regular {
        /// Length of the contents in bytes.
        size: u64,
        executable: bool,
        /// Offset in the NAR of the first byte of the contents, just after
        /// the contents length field.
        nar_offset: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    Directory {
        /// Entries by name; a `BTreeMap` keeps the byte order a NAR uses.
        entries: BTreeMap<Vec<u8>, Node>,
    },
}

/// The `.ls` document for a NAR whose root is `root`, exactly as Nix 2.8 writes
/// it: `{"version":1,"root":<node>}` with no whitespace and keys in Nix's order.
///
/// Strings are escaped as Nix's `toJSON` does: `"` and `\` with a backslash,
/// `\n` `\r` `\t` by name, other bytes below 0x20 as `\u00xx` (lower-case hex),
/// and every other byte (0x7f and non-UTF-8 bytes included) as it is.
pub fn to_json(root: &Node) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(br#"{"version":1,"root":"#);
    write_tree(&mut out, root);
    out.push(b'}');
    out
}

/// Writes `root` and everything below it, using an explicit stack of
/// directory iterators so deep trees cannot overflow the call stack.
fn write_tree(out: &mut Vec<u8>, root: &Node) {
    // Per open directory: its remaining entries, and whether one was written.
    let mut stack: Vec<(btree_map::Iter<'_, Vec<u8>, Node>, bool)> = Vec::new();
    let mut next = Some(root);
    loop {
        match next.take() {
            Some(Node::Regular {
                size,
                executable,
                nar_offset,
            }) => {
                out.extend_from_slice(br#"{"type":"regular","size":"#);
                out.extend_from_slice(size.to_string().as_bytes());
                if *executable {
                    out.extend_from_slice(br#","executable":true"#);
                }
                // Nix writes narOffset only when it is non-zero; it never is
                // in a real archive, but keep the rule.
                if *nar_offset != 0 {
                    out.extend_from_slice(br#","narOffset":"#);
                    out.extend_from_slice(nar_offset.to_string().as_bytes());
                }
                out.push(b'}');
            }
            Some(Node::Symlink { target }) => {
                out.extend_from_slice(br#"{"type":"symlink","target":"#);
                write_string(out, target);
                out.push(b'}');
            }
            Some(Node::Directory { entries }) => {
                out.extend_from_slice(br#"{"type":"directory","entries":{"#);
                stack.push((entries.iter(), false));
            }
            None => {}
        }
        let Some((entries, any)) = stack.last_mut() else {
            return;
        };
        match entries.next() {
            Some((name, child)) => {
                if *any {
                    out.push(b',');
                }
                *any = true;
                write_string(out, name);
                out.push(b':');
                next = Some(child);
            }
            None => {
                out.extend_from_slice(b"}}");
                stack.pop();
            }
        }
    }
}

/// Nix 2.8's `toJSON(std::string_view)`.
fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}
