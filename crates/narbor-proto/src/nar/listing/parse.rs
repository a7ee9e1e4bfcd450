//! Reading a `.ls` document back into a [`Node`].
//!
//! A small JSON reader over bytes rather than `serde_json`, for two reasons:
//! Nix writes names and targets as raw bytes (a `.ls` need not be UTF-8), and
//! `serde_json` stops at 128 levels of nesting, which is only 62 directories.
//! Keys may come in any order and unknown keys are skipped, so listings from
//! other implementations and later Nix versions read as well.

use std::collections::BTreeMap;

use thiserror::Error;

use super::Node;
use crate::nar::{invalid_name_reason, Quoted, MAX_DEPTH, MAX_NAME_LEN};

/// Most levels of JSON nesting accepted: two per directory, one for the
/// document, and some room for unknown values.
const MAX_NESTING: usize = 2 * MAX_DEPTH + 8;

/// Why a `.ls` document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(".ls byte {offset}: {reason}")]
pub struct ListingParseError {
    pub offset: usize,
    pub reason: String,
}

type Result<T> = std::result::Result<T, ListingParseError>;

/// Parses a `.ls` document, `{"version":1,"root":<node>}`, into its root node.
///
/// A regular file without `narOffset` (which Nix omits when it is 0) reads as
/// offset 0; one without `executable` as not executable.
pub fn parse_json(json: &[u8]) -> Result<Node> {
    let mut p = Parser {
        s: json,
        pos: 0,
        depth: 0,
    };
    let mut version = None;
    let mut root = None;
    p.object(|p, key| {
        match key.as_slice() {
            b"version" => version = Some((p.pos, p.u64()?)),
            b"root" => root = Some(p.node()?),
            _ => p.skip_value(1)?,
        }
        Ok(())
    })?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("data after the end of the document"));
    }
    match version {
        Some((_, 1)) => {}
        Some((at, v)) => {
            return Err(ListingParseError {
                offset: at,
                reason: format!("unsupported listing version {v}, expected 1"),
            })
        }
        None => return Err(p.err_at(0, "no \"version\" in the document")),
    }
    root.ok_or_else(|| p.err_at(0, "no \"root\" in the document"))
}

/// Nix's rules for an entry name, as the validator applies them.
fn check_name(name: &[u8]) -> std::result::Result<(), String> {
    if let Some(reason) = invalid_name_reason(name) {
        return Err(format!("entry name {} is {reason}", Quoted(name)));
    }
    if name.len() > MAX_NAME_LEN {
        let len = name.len();
        return Err(format!(
            "entry name of {len} bytes is longer than {MAX_NAME_LEN}"
        ));
    }
    Ok(())
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// JSON nesting of the document itself, outside `node`'s own stack.
    depth: usize,
}

/// An object `node` is inside of.
enum Ctx {
    /// A node object, and the members read so far.
    Node { start: usize, fields: Fields },
    /// A directory's `entries` object, and the name of the member being read.
    Entries {
        map: BTreeMap<Vec<u8>, Node>,
        name: Vec<u8>,
        name_at: usize,
    },
}

#[derive(Default)]
struct Fields {
    kind: Option<Vec<u8>>,
    size: Option<u64>,
    executable: bool,
    nar_offset: u64,
    target: Option<Vec<u8>>,
    entries: Option<BTreeMap<Vec<u8>, Node>>,
}

/// What `node` does next.
enum Step {
    /// Open a node object.
    BeginNode,
    /// Just after `{`: a member or `}`.
    FirstMember,
    /// A member of the innermost object.
    Member,
    /// After a member: `,` or `}`.
    AfterMember,
    /// The innermost object is closed; hand it to its parent.
    Close,
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> ListingParseError {
        self.err_at(self.pos, reason)
    }

    fn err_at(&self, offset: usize, reason: impl Into<String>) -> ListingParseError {
        ListingParseError {
            offset,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.peek() != Some(c) {
            return Err(self.err(format!("expected '{}'", c as char)));
        }
        self.pos += 1;
        Ok(())
    }

    fn check_nesting(&self, depth: usize) -> Result<()> {
        if depth > MAX_NESTING {
            return Err(self.err(format!("nested deeper than {MAX_NESTING} levels")));
        }
        Ok(())
    }

    /// Reads the document's object, calling `member` with each key; `member`
    /// must consume the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, Vec<u8>) -> Result<()>) -> Result<()> {
        self.depth += 1;
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.ws();
                let key = self.string()?;
                self.expect(b':')?;
                member(self, key)?;
                self.ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.err("expected ',' or '}'")),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// Reads a node and everything below it, with an explicit stack so a
    /// deep tree cannot overflow the call stack.
    fn node(&mut self) -> Result<Node> {
        let mut stack: Vec<Ctx> = Vec::new();
        let mut step = Step::BeginNode;
        loop {
            step = match step {
                Step::BeginNode => {
                    self.check_nesting(self.depth + stack.len() + 1)?;
                    self.ws();
                    let start = self.pos;
                    self.expect(b'{')?;
                    stack.push(Ctx::Node {
                        start,
                        fields: Fields::default(),
                    });
                    Step::FirstMember
                }
                Step::FirstMember => {
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        Step::Close
                    } else {
                        Step::Member
                    }
                }
                Step::Member => {
                    self.ws();
                    let key_at = self.pos;
                    let key = self.string()?;
                    self.expect(b':')?;
                    let depth = self.depth + stack.len() + 1;
                    match stack.last_mut() {
                        Some(Ctx::Node { fields, .. }) => match key.as_slice() {
                            b"type" => fields.kind = Some(self.string()?),
                            b"size" => fields.size = Some(self.u64()?),
                            b"executable" => fields.executable = self.bool()?,
                            b"narOffset" => fields.nar_offset = self.u64()?,
                            b"target" => fields.target = Some(self.string()?),
                            b"entries" => {
                                self.check_nesting(depth)?;
                                self.expect(b'{')?;
                                stack.push(Ctx::Entries {
                                    map: BTreeMap::new(),
                                    name: Vec::new(),
                                    name_at: 0,
                                });
                                step = Step::FirstMember;
                                continue;
                            }
                            _ => self.skip_value(depth)?,
                        },
                        Some(Ctx::Entries { name, name_at, .. }) => {
                            check_name(&key).map_err(|reason| self.err_at(key_at, reason))?;
                            *name = key;
                            *name_at = key_at;
                            step = Step::BeginNode;
                            continue;
                        }
                        None => return Err(self.err("internal: no open object")),
                    }
                    Step::AfterMember
                }
                Step::AfterMember => {
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            Step::Member
                        }
                        Some(b'}') => {
                            self.pos += 1;
                            Step::Close
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
                Step::Close => match stack.pop() {
                    Some(Ctx::Node { start, fields }) => {
                        let node = self.build(start, fields)?;
                        match stack.last_mut() {
                            None => return Ok(node),
                            Some(Ctx::Entries { map, name, name_at }) => {
                                if map.contains_key(name.as_slice()) {
                                    let reason = format!("duplicate entry {}", Quoted(name));
                                    return Err(self.err_at(*name_at, reason));
                                }
                                map.insert(std::mem::take(name), node);
                                Step::AfterMember
                            }
                            Some(Ctx::Node { .. }) => {
                                return Err(self.err("internal: node inside a node"))
                            }
                        }
                    }
                    Some(Ctx::Entries { map, .. }) => match stack.last_mut() {
                        Some(Ctx::Node { fields, .. }) => {
                            fields.entries = Some(map);
                            Step::AfterMember
                        }
                        _ => return Err(self.err("internal: entries outside a node")),
                    },
                    None => return Err(self.err("internal: no open object")),
                },
            };
        }
    }

    fn build(&self, start: usize, f: Fields) -> Result<Node> {
        let missing = |what: &str, field: &str| {
            self.err_at(start, format!("{what} node without \"{field}\""))
        };
        match f.kind.as_deref() {
            Some(b"regular") => Ok(Node::Regular {
                size: f.size.ok_or_else(|| missing("regular", "size"))?,
                executable: f.executable,
                nar_offset: f.nar_offset,
            }),
            Some(b"symlink") => Ok(Node::Symlink {
                target: f.target.ok_or_else(|| missing("symlink", "target"))?,
            }),
            Some(b"directory") => Ok(Node::Directory {
                entries: f.entries.ok_or_else(|| missing("directory", "entries"))?,
            }),
            Some(other) => Err(self.err_at(start, format!("unknown node type {}", Quoted(other)))),
            None => Err(self.err_at(start, "node without \"type\"")),
        }
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => self.escape(&mut out)?,
                0..=0x1f => return Err(self.err_at(self.pos - 1, "control character in a string")),
                _ => out.push(b),
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let Some(c) = self.peek() else {
            return Err(self.err("unterminated string"));
        };
        self.pos += 1;
        let b = match c {
            b'"' | b'\\' | b'/' => c,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let at = self.pos - 2;
                let hi = self.hex4()?;
                let code = if (0xd800..0xdc00).contains(&hi) {
                    if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return Err(self.err_at(at, "unpaired surrogate in \\u escape"));
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&lo) {
                        return Err(self.err_at(at, "unpaired surrogate in \\u escape"));
                    }
                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                } else {
                    hi
                };
                let ch = char::from_u32(code)
                    .ok_or_else(|| self.err_at(at, "unpaired surrogate in \\u escape"))?;
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                return Ok(());
            }
            _ => return Err(self.err_at(self.pos - 2, "unknown escape in a string")),
        };
        out.push(b);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let mut v = 0;
        for &d in digits {
            let d = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.err("bad hex digit in \\u escape"))?;
            v = v * 16 + d;
        }
        self.pos += 4;
        Ok(v)
    }

    fn u64(&mut self) -> Result<u64> {
        self.ws();
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or_else(|| self.err_at(start, "number does not fit in 64 bits"))?;
            self.pos += 1;
        }
        if self.pos == start || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(self.err_at(start, "expected an unsigned integer"));
        }
        Ok(v)
    }

    fn bool(&mut self) -> Result<bool> {
        self.ws();
        if self.s[self.pos..].starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if self.s[self.pos..].starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            Err(self.err("expected true or false"))
        }
    }

    /// Skips one JSON value of any kind, nested in `depth` levels already.
    fn skip_value(&mut self, depth: usize) -> Result<()> {
        // The containers open inside the value: b'{' or b'['.
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value.
            self.ws();
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    self.check_nesting(depth + open.len() + 1)?;
                    self.pos += 1;
                    self.ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                    } else {
                        open.push(c);
                        if c == b'{' {
                            self.string()?;
                            self.expect(b':')?;
                        }
                        continue;
                    }
                }
                Some(b'"') => drop(self.string()?),
                Some(b't' | b'f') => drop(self.bool()?),
                Some(b'n') if self.s[self.pos..].starts_with(b"null") => self.pos += 4,
                Some(b'-' | b'0'..=b'9') => {
                    while matches!(
                        self.peek(),
                        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    ) {
                        self.pos += 1;
                    }
                }
                _ => return Err(self.err("expected a JSON value")),
            }
            // After a value: close what is finished, up to the next member.
            loop {
                let Some(&top) = open.last() else {
                    return Ok(());
                };
                self.ws();
                match (top, self.peek()) {
                    (_, Some(b',')) => {
                        self.pos += 1;
                        if top == b'{' {
                            self.ws();
                            self.string()?;
                            self.expect(b':')?;
                        }
                        break;
                    }
                    (b'{', Some(b'}')) | (b'[', Some(b']')) => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return Err(self.err("expected ',' or the end of a container")),
                }
            }
        }
    }
}
