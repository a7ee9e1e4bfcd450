//! The NAR (Nix ARchive) format: writing, streaming validation, and the `.ls` listing.
//!
//! A NAR is a sequence of strings, each an unsigned 64-bit little-endian length,
//! the bytes, and zero padding to a multiple of 8:
//!
//! ```text
//! "nix-archive-1" node
//! node      = "(" "type" ( regular | symlink | directory ) ")"
//! regular   = "regular" [ "executable" "" ] "contents" <contents>
//! symlink   = "symlink" "target" <target>
//! directory = "directory" { "entry" "(" "name" <name> "node" node ")" }
//! ```
//!
//! with directory entries sorted by the bytes of their names.
//!
//! This module owns:
//! - [`dump`]: a filesystem path to NAR bytes, byte-identical to `nix-store --dump`;
//! - [`NarWriter`]: the low-level encoder `dump` is built on (also for building
//!   edge-case archives in tests);
//! - [`NarValidator`] and [`validate`]: a push-based, bounded-memory validator that
//!   accepts exactly the canonical archives `dump` produces and computes the NAR
//!   hash, size and, optionally, the [`listing`];
//! - [`listing`]: the file tree of a NAR and its JSON form, Nix's `<hash>.ls`.
//!
//! It does not own compression, narinfo documents or store paths, and it never
//! unpacks a NAR onto disk.

mod dump;
mod error;
pub mod listing;
mod validator;
mod writer;

#[cfg(test)]
mod tests;

pub use dump::{dump, DumpError};
pub use error::{NarError, NarErrorKind};
pub use validator::{validate, NarSummary, NarValidator, DEFAULT_LISTING_LIMIT};
pub use writer::NarWriter;

/// The magic string every NAR starts with.
pub const NAR_MAGIC: &[u8] = b"nix-archive-1";

/// Longest directory entry name accepted (Linux's `NAME_MAX`, which Nix inherits).
pub const MAX_NAME_LEN: usize = 255;

/// Longest symlink target accepted (Linux's `PATH_MAX`).
pub const MAX_TARGET_LEN: usize = 4096;

/// Most directories an archive may nest, the root directory included. Both
/// [`dump`] and [`NarValidator`] refuse anything deeper, so every archive `dump`
/// writes validates, and the validator's memory stays bounded.
pub const MAX_DEPTH: usize = 1024;

/// Size of the read buffer [`dump`] and [`validate`] stream through.
pub(crate) const BUF_SIZE: usize = 64 * 1024;

/// Number of zero bytes that follow `len` bytes to reach a multiple of 8.
pub(crate) const fn padding_len(len: u64) -> usize {
    ((8 - (len % 8)) % 8) as usize
}

/// Why `name` cannot be a directory entry name, if it cannot. Nix's rule: not
/// empty, not `.` or `..`, no `/` and no NUL. Length is checked separately.
pub(crate) fn invalid_name_reason(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name == b"." || name == b".." {
        Some("a relative path component")
    } else if name.contains(&b'/') {
        Some("contains '/'")
    } else if name.contains(&0) {
        Some("contains NUL")
    } else {
        None
    }
}

/// Displays bytes as a quoted string: as Rust's `{:?}` when UTF-8, with
/// `\xNN` escapes otherwise.
pub(crate) struct Quoted<'a>(pub &'a [u8]);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "\"{}\"", self.0.escape_ascii()),
        }
    }
}
