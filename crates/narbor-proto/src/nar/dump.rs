//! Archiving a filesystem path as a NAR, byte-identical to `nix-store --dump`.
//!
//! This module owns the walk: `lstat` (symlinks are archived, never followed),
//! directory entries sorted by the bytes of their names, the executable bit
//! taken from `S_IXUSR` alone (as Nix does), and file contents streamed through
//! one fixed buffer. Memory is bounded by that buffer, one write buffer and one
//! directory listing per level of nesting; the walk is a loop over an explicit
//! stack, so deep trees cannot overflow the call stack.
//!
//! It does not own the encoding (that is [`NarWriter`]) and does not filter,
//! canonicalise or otherwise alter what it reads.

use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{NarWriter, BUF_SIZE, MAX_DEPTH};

/// `S_IXUSR`: the only mode bit Nix looks at to mark a file executable.
const S_IXUSR: u32 = 0o100;

/// Why [`dump`] could not archive a path. On error, the output holds an
/// incomplete archive and must be discarded.
#[derive(Debug, Error)]
pub enum DumpError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done: `lstat`, `open`, `read`, `read directory`, `read link`.
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the NAR failed: {0}")]
    Write(#[source] io::Error),
    #[error("{} is a {kind}; a NAR holds only regular files, symlinks and directories", path.display())]
    UnsupportedType { path: PathBuf, kind: &'static str },
    #[error("{} changed while being archived: {detail}", path.display())]
    Changed { path: PathBuf, detail: String },
    #[error("{} is nested deeper than {max} directories", path.display())]
    TooDeep { path: PathBuf, max: usize },
}

/// Writes the NAR of `path` to `out` and returns the number of bytes written.
///
/// The output is byte-identical to `nix-store --dump path`. `out` is written
/// through a 64 KiB buffer and flushed before returning, so it needs no
/// buffering of its own. A regular file whose size changes while it is read,
/// or that is replaced between `lstat` and `open`, is an error rather than a
/// silently inconsistent archive.
pub fn dump<W: Write>(path: &Path, out: &mut W) -> Result<u64, DumpError> {
    let mut w = NarWriter::new(BufWriter::with_capacity(BUF_SIZE, out));
    let mut buf = vec![0u8; BUF_SIZE];
    let mut cur = path.to_path_buf();
    // One sorted listing per open directory, innermost last.
    let mut stack: Vec<Listing> = Vec::new();

    w.magic().map_err(DumpError::Write)?;
    if let Some(dir) = dump_node(&mut w, &cur, &mut buf)? {
        stack.push(dir);
    }
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.get_mut(top.next).map(std::mem::take) else {
            stack.pop();
            w.end_directory().map_err(DumpError::Write)?;
            if !stack.is_empty() {
                w.end_entry().map_err(DumpError::Write)?;
                cur.pop();
            }
            continue;
        };
        top.next += 1;
        w.begin_entry(name.as_bytes()).map_err(DumpError::Write)?;
        cur.push(&name);
        match dump_node(&mut w, &cur, &mut buf)? {
            Some(dir) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(DumpError::TooDeep {
                        path: cur,
                        max: MAX_DEPTH,
                    });
                }
                stack.push(dir);
            }
            None => {
                w.end_entry().map_err(DumpError::Write)?;
                cur.pop();
            }
        }
    }

    let written = w.written();
    w.into_inner().flush().map_err(DumpError::Write)?;
    Ok(written)
}

/// The entries of a directory being archived, sorted, and how far we are.
struct Listing {
    names: Vec<OsString>,
    next: usize,
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DumpError + 'a {
    move |source| DumpError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a regular file or symlink node whole. For a directory, writes its
/// opening and returns its sorted entries for the caller to walk.
fn dump_node<W: Write>(
    w: &mut NarWriter<W>,
    path: &Path,
    buf: &mut [u8],
) -> Result<Option<Listing>, DumpError> {
    let meta = fs::symlink_metadata(path).map_err(io_error("lstat", path))?;
    let ft = meta.file_type();
    if ft.is_file() {
        dump_regular(w, path, &meta, buf)?;
        Ok(None)
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_error("read link", path))?;
        w.symlink(target.as_os_str().as_bytes())
            .map_err(DumpError::Write)?;
        Ok(None)
    } else if ft.is_dir() {
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(io_error("read directory", path))? {
            names.push(entry.map_err(io_error("read directory", path))?.file_name());
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        w.begin_directory().map_err(DumpError::Write)?;
        Ok(Some(Listing { names, next: 0 }))
    } else {
        let kind = if ft.is_socket() {
            "socket"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_block_device() {
            "block device"
        } else if ft.is_char_device() {
            "character device"
        } else {
            "file of unknown type"
        };
        Err(DumpError::UnsupportedType {
            path: path.to_path_buf(),
            kind,
        })
    }
}

fn dump_regular<W: Write>(
    w: &mut NarWriter<W>,
    path: &Path,
    lstat: &Metadata,
    buf: &mut [u8],
) -> Result<(), DumpError> {
    let changed = |detail: String| DumpError::Changed {
        path: path.to_path_buf(),
        detail,
    };
    let mut file = File::open(path).map_err(io_error("open", path))?;
    let meta = file.metadata().map_err(io_error("fstat", path))?;
    if !meta.is_file() || meta.dev() != lstat.dev() || meta.ino() != lstat.ino() {
        return Err(changed("replaced between lstat and open".into()));
    }
    let size = lstat.len();
    if meta.len() != size {
        return Err(changed(format!(
            "size went from {size} to {} bytes",
            meta.len()
        )));
    }

    w.begin_regular(meta.mode() & S_IXUSR != 0, size)
        .map_err(DumpError::Write)?;
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(changed(format!(
                    "ended after {} of {size} bytes",
                    size - left
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error("read", path)(e)),
        };
        w.raw(&buf[..n]).map_err(DumpError::Write)?;
        left -= n as u64;
    }
    // The archive has promised `size` bytes; a file that grew would be cut short.
    loop {
        match file.read(&mut buf[..1]) {
            Ok(0) => break,
            Ok(_) => return Err(changed(format!("grew beyond {size} bytes"))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error("read", path)(e)),
        }
    }
    w.end_regular(size).map_err(DumpError::Write)
}
