//! The errors of NAR validation: where in the archive, and what is wrong.
//!
//! This module owns [`NarError`] and [`NarErrorKind`]; the state machine that
//! raises them is in the validator. Names and targets in messages are quoted
//! as Rust strings when UTF-8, with `\xNN` escapes otherwise.

use std::io;

use thiserror::Error;

use super::Quoted;

/// Why bytes are not a valid NAR.
#[derive(Debug, Error)]
pub enum NarError {
    /// The archive itself is at fault, at byte `offset`.
    #[error("NAR byte {offset}: {kind}")]
    Invalid { offset: u64, kind: NarErrorKind },
    /// Reading the archive failed after `offset` good bytes ([`validate`](super::validate) only).
    #[error("NAR byte {offset}: read failed: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

impl NarError {
    /// The byte offset in the archive the error is about.
    pub fn offset(&self) -> u64 {
        match self {
            NarError::Invalid { offset, .. } | NarError::Io { offset, .. } => *offset,
        }
    }

    /// What is wrong with the archive, unless reading it failed.
    pub fn kind(&self) -> Option<&NarErrorKind> {
        match self {
            NarError::Invalid { kind, .. } => Some(kind),
            NarError::Io { .. } => None,
        }
    }
}

/// What is wrong with an archive. The offset is in [`NarError`]: for a bad
/// string it is the offset of the string's length field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NarErrorKind {
    #[error("not a NAR: does not start with \"nix-archive-1\"")]
    BadMagic,
    #[error("expected {expected}, got {}", Quoted(got))]
    UnexpectedToken {
        expected: &'static str,
        got: Vec<u8>,
    },
    #[error("expected {expected}, got a string of {len} bytes")]
    OversizedToken { expected: &'static str, len: u64 },
    #[error("unknown file type {}", Quoted(got))]
    UnknownType { got: Vec<u8> },
    #[error("executable marker has a non-empty value of {len} bytes")]
    NonEmptyExecutable { len: u64 },
    #[error("invalid entry name {}: {reason}", Quoted(name))]
    InvalidName { name: Vec<u8>, reason: &'static str },
    #[error("entry name of {len} bytes is longer than {max}")]
    NameTooLong { len: u64, max: usize },
    #[error("entries not sorted: {} after {}", Quoted(name), Quoted(prev))]
    Unsorted { name: Vec<u8>, prev: Vec<u8> },
    #[error("duplicate entry {}", Quoted(name))]
    Duplicate { name: Vec<u8> },
    #[error("symlink target of {len} bytes is longer than {max}")]
    TargetTooLong { len: u64, max: usize },
    #[error("invalid symlink target {}: {reason}", Quoted(target))]
    InvalidTarget {
        target: Vec<u8>,
        reason: &'static str,
    },
    #[error("directories nested deeper than {max}")]
    TooDeep { max: usize },
    #[error("non-zero padding byte {byte:#04x}")]
    NonZeroPadding { byte: u8 },
    #[error("archive ends early: expected {expected}")]
    Truncated { expected: &'static str },
    #[error("trailing bytes after the end of the archive")]
    TrailingBytes,
    #[error("listing needs more than its budget of {limit} bytes")]
    ListingTooLarge { limit: u64 },
}
