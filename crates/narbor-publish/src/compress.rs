//! Dumping a store path as a NAR straight into a compressor and a temporary
//! file, hashing both streams as they pass: memory stays bounded whatever the
//! NAR's size.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use narbor_proto::hash::HashingCounter;
use narbor_proto::url::NarCompression;
use narbor_proto::Sha256;

use crate::PublishError;

/// How NARs are compressed, with a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd(i32),
    Xz(u32),
}

impl Compression {
    /// zstd level 3: zstd's own default, fast on one core and about as small
    /// as xz -1 (what nixcache-oci used) on typical store paths.
    pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
    /// xz preset 6: what Nix uses for `nix copy --to file://`.
    pub const DEFAULT_XZ_LEVEL: u32 = 6;

    /// `zstd`, `xz` or `none`, with an optional level.
    pub fn from_name(name: &str, level: Option<i32>) -> Result<Self, PublishError> {
        match name {
            "zstd" => {
                let l = level.unwrap_or(Self::DEFAULT_ZSTD_LEVEL);
                if !(1..=22).contains(&l) {
                    return Err(PublishError::Invalid(format!(
                        "zstd level {l}: use 1 to 22"
                    )));
                }
                Ok(Compression::Zstd(l))
            }
            "xz" => {
                let l = level.unwrap_or(Self::DEFAULT_XZ_LEVEL as i32);
                if !(0..=9).contains(&l) {
                    return Err(PublishError::Invalid(format!("xz level {l}: use 0 to 9")));
                }
                Ok(Compression::Xz(l as u32))
            }
            "none" => Ok(Compression::None),
            other => Err(PublishError::Invalid(format!(
                "unknown compression {other:?}: use zstd, xz or none"
            ))),
        }
    }

    pub fn nar_compression(self) -> NarCompression {
        match self {
            Compression::None => NarCompression::None,
            Compression::Zstd(_) => NarCompression::Zstd,
            Compression::Xz(_) => NarCompression::Xz,
        }
    }
}

/// A NAR dumped and compressed into a file.
pub(crate) struct Dumped {
    pub file: tempfile::NamedTempFile,
    pub nar_hash: Sha256,
    pub nar_size: u64,
    pub file_hash: Sha256,
    pub file_size: u64,
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    h: HashingCounter,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W>(inner: W) -> Hashing<W> {
    Hashing {
        inner,
        h: HashingCounter::new(),
    }
}

/// Dumps `path` as a NAR, compresses it into a new temporary file in `tmp`.
pub(crate) fn dump_compressed(
    path: &Path,
    compression: Compression,
    tmp: &Path,
) -> Result<Dumped, PublishError> {
    let file = tempfile::NamedTempFile::new_in(tmp).map_err(PublishError::io(format!(
        "creating a file in {}",
        tmp.display()
    )))?;
    let out = file
        .reopen()
        .map_err(PublishError::io("opening the temporary file"))?;
    let sink = hashing(BufWriter::with_capacity(1 << 20, out));
    let dump_err = |e: narbor_proto::nar::DumpError| PublishError::Dump {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let io = |e: io::Error| PublishError::Io {
        what: format!("compressing the NAR of {}", path.display()),
        source: e,
    };
    // `nar` hashes the NAR itself; uncompressed, the file is the NAR, so the
    // sink's hash serves for both (one sha256 pass instead of two).
    let (nar, mut sink) = match compression {
        Compression::None => {
            let mut sink = sink;
            narbor_proto::nar::dump(path, &mut sink).map_err(dump_err)?;
            (None, sink)
        }
        Compression::Zstd(level) => {
            let enc = zstd::stream::write::Encoder::new(sink, level).map_err(io)?;
            let mut w = hashing(enc);
            narbor_proto::nar::dump(path, &mut w).map_err(dump_err)?;
            (Some(w.h), w.inner.finish().map_err(io)?)
        }
        Compression::Xz(level) => {
            let enc = xz2::write::XzEncoder::new(sink, level);
            let mut w = hashing(enc);
            narbor_proto::nar::dump(path, &mut w).map_err(dump_err)?;
            (Some(w.h), w.inner.finish().map_err(io)?)
        }
    };
    sink.flush()
        .map_err(PublishError::io("writing the temporary file"))?;
    let (file_hash, file_size) = sink.h.finish();
    let (nar_hash, nar_size) = match nar {
        Some(h) => h.finish(),
        None => (file_hash, file_size),
    };
    Ok(Dumped {
        file,
        nar_hash,
        nar_size,
        file_hash,
        file_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn every_method_round_trips_and_hashes_both_streams() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"hello world hello world hello world").unwrap();
        let mut reference = Vec::new();
        narbor_proto::nar::dump(&src, &mut reference).unwrap();
        for c in [Compression::None, Compression::Zstd(3), Compression::Xz(1)] {
            let d = dump_compressed(&src, c, dir.path()).unwrap();
            assert_eq!(d.nar_hash, Sha256::digest(&reference));
            assert_eq!(d.nar_size, reference.len() as u64);
            let bytes = std::fs::read(d.file.path()).unwrap();
            assert_eq!(d.file_hash, Sha256::digest(&bytes));
            assert_eq!(d.file_size, bytes.len() as u64);
            let mut back = Vec::new();
            match c {
                Compression::None => back = bytes,
                Compression::Zstd(_) => back = zstd::decode_all(&bytes[..]).unwrap(),
                Compression::Xz(_) => {
                    xz2::read::XzDecoder::new(&bytes[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
            }
            assert_eq!(back, reference, "{c:?}");
        }
        assert!(Compression::from_name("gzip", None).is_err());
        assert!(Compression::from_name("zstd", Some(30)).is_err());
    }
}
