//! The push-based NAR validator: feed bytes in any chunking, get the NAR hash,
//! size and optionally the listing, or an error naming the byte at fault.
//!
//! This module owns the grammar of an archive as a state machine. Two layers:
//! a lexer that assembles 8-byte numbers, strings (into one buffer of at most
//! [`MAX_TARGET_LEN`] bytes), file contents (counted and hashed, never kept)
//! and zero padding; and a parser that knows which string may come next. It
//! accepts exactly the canonical form [`dump`](super::dump) and `nix-store
//! --dump` write, the same form Nix's own parser insists on, plus Nix's
//! restore-time rules on names.
//!
//! Memory is bounded whatever the input: the string buffer, and per open
//! directory (at most [`MAX_DEPTH`]) the previous entry name (at most
//! [`MAX_NAME_LEN`] bytes). A listing, when asked for, grows with the archive
//! and is capped by a budget ([`DEFAULT_LISTING_LIMIT`]).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use super::error::{NarError, NarErrorKind};
use super::listing::Node;
use super::{
    invalid_name_reason, padding_len, BUF_SIZE, MAX_DEPTH, MAX_NAME_LEN, MAX_TARGET_LEN, NAR_MAGIC,
};
use crate::hash::{HashingCounter, Sha256};

/// Default cap on the memory a listing may take: 256 MiB, well above the
/// largest store paths in nixpkgs, and small enough to keep a server alive.
pub const DEFAULT_LISTING_LIMIT: u64 = 256 << 20;

/// What one listing node is charged beyond its name and target: the map entry,
/// the node itself and allocator overhead, estimated.
const LISTING_NODE_COST: u64 = 96;

/// Longest keyword string read before giving up on it (`"executable"` is 10).
const MAX_KEYWORD_LEN: u64 = 16;

/// What a whole, valid archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarSummary {
    /// sha256 of the archive bytes: the narinfo's `NarHash`.
    pub nar_hash: Sha256,
    /// Length of the archive in bytes: the narinfo's `NarSize`.
    pub nar_size: u64,
    /// The file tree, when asked for with [`NarValidator::with_listing`].
    pub listing: Option<Node>,
}

/// An error before it is returned: where, and what.
type Fail = (u64, NarErrorKind);

/// Which string (or number) the grammar wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Magic,
    Open,
    TypeTag,
    TypeValue,
    RegularTag,
    ExecutableValue,
    ContentsTag,
    ContentsSize,
    CloseRegular,
    TargetTag,
    TargetValue,
    CloseSymlink,
    DirItem,
    EntryOpen,
    NameTag,
    NameValue,
    NodeTag,
    EntryClose,
    Done,
}

impl Expect {
    fn describe(self) -> &'static str {
        match self {
            Expect::Magic => "\"nix-archive-1\"",
            Expect::Open | Expect::EntryOpen => "\"(\"",
            Expect::TypeTag => "\"type\"",
            Expect::TypeValue => "a file type",
            Expect::RegularTag => "\"executable\" or \"contents\"",
            Expect::ExecutableValue => "\"\"",
            Expect::ContentsTag => "\"contents\"",
            Expect::ContentsSize => "the contents size",
            Expect::CloseRegular | Expect::CloseSymlink | Expect::EntryClose => "\")\"",
            Expect::TargetTag => "\"target\"",
            Expect::TargetValue => "a symlink target",
            Expect::DirItem => "\"entry\" or \")\"",
            Expect::NameTag => "\"name\"",
            Expect::NameValue => "an entry name",
            Expect::NodeTag => "\"node\"",
            Expect::Done => "the end of the archive",
        }
    }
}

/// What the lexer is in the middle of.
#[derive(Debug, Clone, Copy)]
enum Lex {
    /// An 8-byte little-endian number: a string length or the contents size.
    Num { bytes: [u8; 8], have: usize },
    /// The bytes of a string of `len` bytes, gathered in `NarValidator::buf`.
    Str { len: usize },
    /// File contents: counted, not kept.
    Contents { left: u64 },
    /// Zero padding.
    Pad { left: usize },
}

const NUM: Lex = Lex::Num {
    bytes: [0; 8],
    have: 0,
};

/// The lexer state after `len` bytes of string or contents.
fn after(len: u64) -> Lex {
    match padding_len(len) {
        0 => NUM,
        left => Lex::Pad { left },
    }
}

/// An open directory.
#[derive(Default)]
struct Frame {
    /// The last entry name seen; empty before the first (names are never empty).
    prev: Vec<u8>,
    /// The entries so far, when building a listing.
    entries: BTreeMap<Vec<u8>, Node>,
}

struct Listing {
    limit: u64,
    used: u64,
    root: Option<Node>,
}

/// A streaming NAR validator. Feed it with [`update`](Self::update) (or as an
/// [`io::Write`]), then call [`finish`](Self::finish).
///
/// After an error, every later call returns that same error.
pub struct NarValidator {
    hasher: HashingCounter,
    /// Bytes parsed so far.
    offset: u64,
    lex: Lex,
    expect: Expect,
    /// Offset of the length field of the string being read.
    token_start: u64,
    /// The string being read; never longer than `MAX_TARGET_LEN`.
    buf: Vec<u8>,
    /// Open directories, innermost last.
    frames: Vec<Frame>,
    executable: bool,
    size: u64,
    nar_offset: u64,
    target: Vec<u8>,
    listing: Option<Listing>,
    failed: Option<Fail>,
}

impl Default for NarValidator {
    fn default() -> Self {
        Self::new()
    }
}

impl NarValidator {
    /// A validator that computes hash and size, without a listing.
    pub fn new() -> Self {
        NarValidator {
            hasher: HashingCounter::new(),
            offset: 0,
            lex: NUM,
            expect: Expect::Magic,
            token_start: 0,
            buf: Vec::new(),
            frames: Vec::new(),
            executable: false,
            size: 0,
            nar_offset: 0,
            target: Vec::new(),
            listing: None,
            failed: None,
        }
    }

    /// Also builds the listing, within [`DEFAULT_LISTING_LIMIT`].
    pub fn with_listing(self) -> Self {
        self.with_listing_limit(DEFAULT_LISTING_LIMIT)
    }

    /// Also builds the listing, failing with [`NarErrorKind::ListingTooLarge`]
    /// once it would need more than about `limit` bytes of memory.
    pub fn with_listing_limit(mut self, limit: u64) -> Self {
        self.listing = Some(Listing {
            limit,
            used: 0,
            root: None,
        });
        self
    }

    /// Bytes accepted so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True once a whole archive has been read: [`finish`](Self::finish)
    /// would succeed, and any further byte would be an error.
    pub fn is_complete(&self) -> bool {
        self.failed.is_none()
            && self.expect == Expect::Done
            && matches!(self.lex, Lex::Num { have: 0, .. })
    }

    /// Consumes the next bytes of the archive.
    pub fn update(&mut self, data: &[u8]) -> Result<(), NarError> {
        if self.failed.is_none() {
            self.hasher.update(data);
            if let Err(fail) = self.parse(data) {
                self.failed = Some(fail);
            }
        }
        match &self.failed {
            None => Ok(()),
            Some((offset, kind)) => Err(NarError::Invalid {
                offset: *offset,
                kind: kind.clone(),
            }),
        }
    }

    /// Checks the archive is complete and returns its summary.
    pub fn finish(self) -> Result<NarSummary, NarError> {
        if let Some((offset, kind)) = self.failed {
            return Err(NarError::Invalid { offset, kind });
        }
        if !self.is_complete() {
            let expected = match self.lex {
                Lex::Contents { .. } => "the rest of the file contents",
                Lex::Pad { .. } => "padding",
                Lex::Str { .. } | Lex::Num { .. } => self.expect.describe(),
            };
            return Err(NarError::Invalid {
                offset: self.offset,
                kind: NarErrorKind::Truncated { expected },
            });
        }
        let (nar_hash, nar_size) = self.hasher.finish();
        Ok(NarSummary {
            nar_hash,
            nar_size,
            listing: self.listing.and_then(|l| l.root),
        })
    }

    fn parse(&mut self, mut data: &[u8]) -> Result<(), Fail> {
        while !data.is_empty() {
            let taken;
            match &mut self.lex {
                Lex::Num { bytes, have } => {
                    if *have == 0 {
                        if self.expect == Expect::Done {
                            return Err((self.offset, NarErrorKind::TrailingBytes));
                        }
                        self.token_start = self.offset;
                    }
                    taken = (8 - *have).min(data.len());
                    bytes[*have..*have + taken].copy_from_slice(&data[..taken]);
                    *have += taken;
                    if *have == 8 {
                        let n = u64::from_le_bytes(*bytes);
                        self.lex = NUM;
                        self.offset += taken as u64;
                        self.number(n)?;
                        data = &data[taken..];
                        continue;
                    }
                }
                Lex::Str { len } => {
                    let len = *len;
                    taken = (len - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..taken]);
                    if self.buf.len() == len {
                        self.lex = after(len as u64);
                        self.offset += taken as u64;
                        self.token()?;
                        data = &data[taken..];
                        continue;
                    }
                }
                Lex::Contents { left } => {
                    taken = usize::try_from(*left).map_or(data.len(), |l| l.min(data.len()));
                    *left -= taken as u64;
                    if *left == 0 {
                        self.lex = after(self.size);
                    }
                }
                Lex::Pad { left } => {
                    taken = (*left).min(data.len());
                    if let Some(i) = data[..taken].iter().position(|&b| b != 0) {
                        let kind = NarErrorKind::NonZeroPadding { byte: data[i] };
                        return Err((self.offset + i as u64, kind));
                    }
                    *left -= taken;
                    if *left == 0 {
                        self.lex = NUM;
                    }
                }
            }
            self.offset += taken as u64;
            data = &data[taken..];
        }
        Ok(())
    }

    /// A complete 8-byte number: the contents size, or a string length.
    fn number(&mut self, n: u64) -> Result<(), Fail> {
        let at = self.token_start;
        let expect = self.expect;
        if expect == Expect::ContentsSize {
            self.size = n;
            self.nar_offset = self.offset;
            self.expect = Expect::CloseRegular;
            self.lex = match n {
                0 => NUM,
                left => Lex::Contents { left },
            };
            return Ok(());
        }
        let max = match expect {
            Expect::Magic if n != NAR_MAGIC.len() as u64 => {
                return Err((at, NarErrorKind::BadMagic));
            }
            Expect::ExecutableValue if n != 0 => {
                return Err((at, NarErrorKind::NonEmptyExecutable { len: n }));
            }
            Expect::NameValue if n > MAX_NAME_LEN as u64 => {
                let kind = NarErrorKind::NameTooLong {
                    len: n,
                    max: MAX_NAME_LEN,
                };
                return Err((at, kind));
            }
            Expect::TargetValue if n > MAX_TARGET_LEN as u64 => {
                let kind = NarErrorKind::TargetTooLong {
                    len: n,
                    max: MAX_TARGET_LEN,
                };
                return Err((at, kind));
            }
            Expect::NameValue | Expect::TargetValue => n,
            _ => MAX_KEYWORD_LEN,
        };
        if n > max {
            let kind = NarErrorKind::OversizedToken {
                expected: expect.describe(),
                len: n,
            };
            return Err((at, kind));
        }
        self.buf.clear();
        match usize::try_from(n) {
            Ok(0) => self.token(),
            Ok(len) => {
                self.lex = Lex::Str { len };
                Ok(())
            }
            // Unreachable: `n <= max <= MAX_TARGET_LEN`.
            Err(_) => Err((
                at,
                NarErrorKind::TargetTooLong {
                    len: n,
                    max: MAX_TARGET_LEN,
                },
            )),
        }
    }

    /// A complete string, in `self.buf`.
    fn token(&mut self) -> Result<(), Fail> {
        let tok = std::mem::take(&mut self.buf);
        let result = self.handle(&tok);
        self.buf = tok;
        result
    }

    fn handle(&mut self, tok: &[u8]) -> Result<(), Fail> {
        let at = self.token_start;
        let expected = self.expect.describe();
        let keyword = |want: &[u8], next: Expect| -> Result<Expect, Fail> {
            if tok == want {
                Ok(next)
            } else {
                let kind = NarErrorKind::UnexpectedToken {
                    expected,
                    got: tok.to_vec(),
                };
                Err((at, kind))
            }
        };
        self.expect = match self.expect {
            Expect::Magic if tok != NAR_MAGIC => return Err((at, NarErrorKind::BadMagic)),
            Expect::Magic => Expect::Open,
            Expect::Open => keyword(b"(", Expect::TypeTag)?,
            Expect::TypeTag => keyword(b"type", Expect::TypeValue)?,
            Expect::TypeValue => match tok {
                b"regular" => {
                    self.executable = false;
                    Expect::RegularTag
                }
                b"symlink" => Expect::TargetTag,
                b"directory" => {
                    if self.frames.len() >= MAX_DEPTH {
                        return Err((at, NarErrorKind::TooDeep { max: MAX_DEPTH }));
                    }
                    self.frames.push(Frame::default());
                    Expect::DirItem
                }
                _ => return Err((at, NarErrorKind::UnknownType { got: tok.to_vec() })),
            },
            Expect::RegularTag if tok == b"executable" => Expect::ExecutableValue,
            Expect::RegularTag => keyword(b"contents", Expect::ContentsSize)?,
            Expect::ExecutableValue => {
                // The length check in `number` let only "" through.
                self.executable = true;
                Expect::ContentsTag
            }
            Expect::ContentsTag => keyword(b"contents", Expect::ContentsSize)?,
            Expect::CloseRegular => {
                keyword(b")", Expect::Done)?;
                let node = Node::Regular {
                    size: self.size,
                    executable: self.executable,
                    nar_offset: self.nar_offset,
                };
                return self.node_done(|| node, 0);
            }
            Expect::TargetTag => keyword(b"target", Expect::TargetValue)?,
            Expect::TargetValue => {
                let reason = if tok.is_empty() {
                    Some("empty")
                } else if tok.contains(&0) {
                    Some("contains NUL")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let target = tok.to_vec();
                    return Err((at, NarErrorKind::InvalidTarget { target, reason }));
                }
                if self.listing.is_some() {
                    self.target.clear();
                    self.target.extend_from_slice(tok);
                }
                Expect::CloseSymlink
            }
            Expect::CloseSymlink => {
                keyword(b")", Expect::Done)?;
                let target = std::mem::take(&mut self.target);
                let cost = target.len() as u64;
                return self.node_done(|| Node::Symlink { target }, cost);
            }
            Expect::DirItem if tok == b"entry" => Expect::EntryOpen,
            Expect::DirItem => {
                keyword(b")", Expect::Done)?;
                let entries = self.frames.pop().map(|f| f.entries).unwrap_or_default();
                return self.node_done(|| Node::Directory { entries }, 0);
            }
            Expect::EntryOpen => keyword(b"(", Expect::NameTag)?,
            Expect::NameTag => keyword(b"name", Expect::NameValue)?,
            Expect::NameValue => {
                if let Some(reason) = invalid_name_reason(tok) {
                    let name = tok.to_vec();
                    return Err((at, NarErrorKind::InvalidName { name, reason }));
                }
                if let Some(frame) = self.frames.last_mut() {
                    if !frame.prev.is_empty() {
                        let kind = match tok.cmp(frame.prev.as_slice()) {
                            Ordering::Greater => None,
                            Ordering::Equal => Some(NarErrorKind::Duplicate { name: tok.to_vec() }),
                            Ordering::Less => Some(NarErrorKind::Unsorted {
                                name: tok.to_vec(),
                                prev: frame.prev.clone(),
                            }),
                        };
                        if let Some(kind) = kind {
                            return Err((at, kind));
                        }
                    }
                    frame.prev.clear();
                    frame.prev.extend_from_slice(tok);
                }
                Expect::NodeTag
            }
            Expect::NodeTag => keyword(b"node", Expect::Open)?,
            Expect::EntryClose => keyword(b")", Expect::DirItem)?,
            // Never asked for a string: the size is a number, and `parse`
            // stops at the first byte after the end.
            Expect::ContentsSize | Expect::Done => {
                let kind = NarErrorKind::UnexpectedToken {
                    expected,
                    got: tok.to_vec(),
                };
                return Err((at, kind));
            }
        };
        Ok(())
    }

    /// A node is complete: attach it to its directory (or make it the root),
    /// charging the listing `extra` bytes beyond the node and its name.
    fn node_done(&mut self, node: impl FnOnce() -> Node, extra: u64) -> Result<(), Fail> {
        let parent = self.frames.last_mut();
        self.expect = if parent.is_some() {
            Expect::EntryClose
        } else {
            Expect::Done
        };
        let Some(listing) = &mut self.listing else {
            return Ok(());
        };
        let name_len = parent.as_ref().map_or(0, |p| p.prev.len() as u64);
        listing.used = listing
            .used
            .saturating_add(LISTING_NODE_COST + name_len + extra);
        if listing.used > listing.limit {
            let kind = NarErrorKind::ListingTooLarge {
                limit: listing.limit,
            };
            return Err((self.token_start, kind));
        }
        match parent {
            Some(p) => {
                p.entries.insert(p.prev.clone(), node());
            }
            None => listing.root = Some(node()),
        }
        Ok(())
    }
}

impl Write for NarValidator {
    /// Feeds the validator; an invalid archive is an `InvalidData` error
    /// wrapping the [`NarError`].
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.update(data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Validates the whole archive `r` yields, reading through a 64 KiB buffer.
pub fn validate<R: Read>(mut r: R, with_listing: bool) -> Result<NarSummary, NarError> {
    let mut v = NarValidator::new();
    if with_listing {
        v = v.with_listing();
    }
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return v.finish(),
            Ok(n) => v.update(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(NarError::Io {
                    offset: v.offset(),
                    source,
                })
            }
        }
    }
}
