//! The low-level NAR encoder: strings, numbers, padding, and the node framing.
//!
//! [`NarWriter`] only encodes; it does not check that what it is asked to write
//! is a valid archive (sorted entries, good names, a matching `end_regular`
//! size). [`dump`](super::dump) drives it correctly; tests drive it incorrectly
//! on purpose to build malformed archives.

use std::io::{self, Write};

use super::{padding_len, NAR_MAGIC};

const ZEROS: [u8; 8] = [0; 8];

/// Writes NAR encoding to `W`, counting the bytes written.
///
/// A well-formed archive is, for example:
///
/// ```
/// use narbor_proto::nar::NarWriter;
/// let mut w = NarWriter::new(Vec::new());
/// w.magic().unwrap();
/// w.begin_directory().unwrap();
/// w.begin_entry(b"hello").unwrap();
/// w.regular(false, b"hi\n").unwrap();
/// w.end_entry().unwrap();
/// w.end_directory().unwrap();
/// let nar = w.into_inner();
/// assert!(narbor_proto::nar::validate(&nar[..], false).is_ok());
/// ```
#[derive(Debug)]
pub struct NarWriter<W> {
    out: W,
    written: u64,
}

impl<W: Write> NarWriter<W> {
    pub fn new(out: W) -> Self {
        NarWriter { out, written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Writes `bytes` as they are, with no length and no padding.
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes `n` as 8 little-endian bytes.
    pub fn u64(&mut self, n: u64) -> io::Result<()> {
        self.raw(&n.to_le_bytes())
    }

    /// Writes the zero padding that follows `len` bytes of string data.
    pub fn padding(&mut self, len: u64) -> io::Result<()> {
        self.raw(&ZEROS[..padding_len(len)])
    }

    /// Writes one NAR string: length, bytes, padding.
    pub fn str(&mut self, s: &[u8]) -> io::Result<()> {
        self.u64(s.len() as u64)?;
        self.raw(s)?;
        self.padding(s.len() as u64)
    }

    /// Writes the `nix-archive-1` magic.
    pub fn magic(&mut self) -> io::Result<()> {
        self.str(NAR_MAGIC)
    }

    /// Writes a whole regular-file node whose contents are in memory.
    pub fn regular(&mut self, executable: bool, contents: &[u8]) -> io::Result<()> {
        let size = contents.len() as u64;
        self.begin_regular(executable, size)?;
        self.raw(contents)?;
        self.end_regular(size)
    }

    /// Writes a regular-file node up to and including the contents length; the
    /// caller then writes exactly `size` bytes with [`raw`](Self::raw) and calls
    /// [`end_regular`](Self::end_regular).
    pub fn begin_regular(&mut self, executable: bool, size: u64) -> io::Result<()> {
        self.str(b"(")?;
        self.str(b"type")?;
        self.str(b"regular")?;
        if executable {
            self.str(b"executable")?;
            self.str(b"")?;
        }
        self.str(b"contents")?;
        self.u64(size)
    }

    /// Writes the padding after `size` bytes of contents and closes the node.
    pub fn end_regular(&mut self, size: u64) -> io::Result<()> {
        self.padding(size)?;
        self.str(b")")
    }

    /// Writes a whole symlink node.
    pub fn symlink(&mut self, target: &[u8]) -> io::Result<()> {
        self.str(b"(")?;
        self.str(b"type")?;
        self.str(b"symlink")?;
        self.str(b"target")?;
        self.str(target)?;
        self.str(b")")
    }

    /// Opens a directory node; entries follow, then [`end_directory`](Self::end_directory).
    pub fn begin_directory(&mut self) -> io::Result<()> {
        self.str(b"(")?;
        self.str(b"type")?;
        self.str(b"directory")
    }

    /// Opens a directory entry named `name`; its node follows, then
    /// [`end_entry`](Self::end_entry).
    pub fn begin_entry(&mut self, name: &[u8]) -> io::Result<()> {
        self.str(b"entry")?;
        self.str(b"(")?;
        self.str(b"name")?;
        self.str(name)?;
        self.str(b"node")
    }

    /// Closes a directory entry.
    pub fn end_entry(&mut self) -> io::Result<()> {
        self.str(b")")
    }

    /// Closes a directory node.
    pub fn end_directory(&mut self) -> io::Result<()> {
        self.str(b")")
    }
}
