//! Streaming decompression, for the two places upstream bytes can be
//! compressed: a NAR's `Compression:` (which narbor must undo to check a NAR
//! against its NarHash when the upstream gives no FileHash), and a response's
//! `Content-Encoding` (niks3's narinfos are stored in S3 zstd-encoded, and
//! S3 sends them so whatever the client asked for).
//!
//! A [`Decoder`] is push-based: compressed bytes go in through
//! [`Decoder::write_all`] as they arrive, decompressed bytes come out into the
//! writer it wraps, and [`Decoder::finish`] fails when the input stopped short
//! of the end of its stream. Every method Nix writes is here (none, xz, zstd,
//! bzip2, br), and the content codings a server may send (gzip, deflate).
//! Concatenated streams (pbzip2, pixz, attic's per-chunk frames) decode as one.

use std::io::{self, Write};

use narbor_proto::url::NarCompression;

/// A decompressor writing into `W`.
pub enum Decoder<W: Write> {
    Identity(W),
    Zstd(zstd::stream::write::Decoder<'static, W>),
    Xz(xz2::write::XzDecoder<W>),
    /// `None` only while moving from one stream to the next.
    Bzip2(Option<bzip2::write::BzDecoder<W>>),
    Brotli(Box<brotli::DecompressorWriter<W>>),
    Gzip(flate2::write::MultiGzDecoder<W>),
    Deflate(flate2::write::ZlibDecoder<W>),
}

/// The name of a compression narbor cannot undo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a compression narbor can decompress")]
pub struct Unsupported(pub String);

impl<W: Write> Decoder<W> {
    /// A decoder for a NAR's `Compression:`.
    pub fn for_compression(compression: NarCompression, sink: W) -> Result<Self, Unsupported> {
        Ok(match compression {
            NarCompression::None => Decoder::Identity(sink),
            NarCompression::Zstd => Decoder::zstd(sink)?,
            NarCompression::Xz => Decoder::Xz(xz2::write::XzDecoder::new_multi_decoder(sink)),
            NarCompression::Bzip2 => Decoder::Bzip2(Some(bzip2::write::BzDecoder::new(sink))),
            NarCompression::Brotli => {
                Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(sink, 64 * 1024)))
            }
            NarCompression::Lz4 | NarCompression::Lzip => {
                return Err(Unsupported(compression.name().to_owned()))
            }
        })
    }

    /// A decoder for an HTTP `Content-Encoding` value (RFC 9110 names, and
    /// the `xz`/`bzip2` Nix sent before 2.34).
    pub fn for_content_encoding(encoding: &str, sink: W) -> Result<Self, Unsupported> {
        let e = encoding.trim().to_ascii_lowercase();
        Ok(match e.as_str() {
            "" | "identity" => Decoder::Identity(sink),
            "zstd" => Decoder::zstd(sink)?,
            "br" => Decoder::for_compression(NarCompression::Brotli, sink)?,
            "xz" => Decoder::for_compression(NarCompression::Xz, sink)?,
            "bzip2" | "x-bzip2" => Decoder::for_compression(NarCompression::Bzip2, sink)?,
            "gzip" | "x-gzip" => Decoder::Gzip(flate2::write::MultiGzDecoder::new(sink)),
            "deflate" => Decoder::Deflate(flate2::write::ZlibDecoder::new(sink)),
            _ => return Err(Unsupported(encoding.to_owned())),
        })
    }

    fn zstd(sink: W) -> Result<Self, Unsupported> {
        zstd::stream::write::Decoder::new(sink)
            .map(Decoder::Zstd)
            .map_err(|e| Unsupported(format!("zstd ({e})")))
    }

    /// Decompresses `data` into the sink.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        match self {
            Decoder::Identity(w) => w.write_all(data),
            Decoder::Zstd(d) => d.write_all(data),
            Decoder::Xz(d) => d.write_all(data),
            Decoder::Brotli(d) => d.write_all(data),
            Decoder::Gzip(d) => d.write_all(data),
            Decoder::Deflate(d) => d.write_all(data),
            Decoder::Bzip2(slot) => {
                while !data.is_empty() {
                    let d = slot.as_mut().ok_or_else(broken)?;
                    let n = d.write(data)?;
                    if n == 0 {
                        // That stream ended and more follows: the next one.
                        let sink = slot.take().ok_or_else(broken)?.finish()?;
                        *slot = Some(bzip2::write::BzDecoder::new(sink));
                        continue;
                    }
                    data = &data[n..];
                }
                Ok(())
            }
        }
    }

    /// The sink (what has been decoded so far, for a `Vec`); `None` only
    /// after a failed write.
    pub fn sink_mut(&mut self) -> Option<&mut W> {
        Some(match self {
            Decoder::Identity(w) => w,
            Decoder::Zstd(d) => d.get_mut(),
            Decoder::Xz(d) => d.get_mut(),
            Decoder::Bzip2(slot) => slot.as_mut()?.get_mut(),
            Decoder::Brotli(d) => d.get_mut(),
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Deflate(d) => d.get_mut(),
        })
    }

    /// Ends the input: fails if it stopped before the end of a stream.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Decoder::Identity(w) => Ok(w),
            Decoder::Zstd(d) => d.finish(),
            Decoder::Xz(mut d) => d.finish(),
            Decoder::Bzip2(slot) => slot.ok_or_else(broken)?.finish(),
            Decoder::Brotli(mut d) => {
                d.close()?;
                d.into_inner()
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "brotli stream"))
            }
            Decoder::Gzip(d) => d.finish(),
            Decoder::Deflate(d) => d.finish(),
        }
    }
}

fn broken() -> io::Error {
    io::Error::other("decoder used after a failure")
}

/// A sink that refuses to grow past `limit` bytes.
pub struct Limited {
    pub bytes: Vec<u8>,
    limit: usize,
}

impl Limited {
    pub fn new(limit: usize) -> Limited {
        Limited {
            bytes: Vec::new(),
            limit,
        }
    }
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("decodes to more than {} bytes", self.limit),
            ));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A whole body sent with `Content-Encoding: encoding`, decoded, at most
/// `limit` bytes once decoded.
pub fn decode_body(encoding: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut d =
        Decoder::for_content_encoding(encoding, Limited::new(limit)).map_err(|e| e.to_string())?;
    d.write_all(body)
        .map_err(|e| format!("Content-Encoding {encoding}: {e}"))?;
    d.finish()
        .map(|l| l.bytes)
        .map_err(|e| format!("Content-Encoding {encoding}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"StorePath: /nix/store/x\nURL: nar/x.nar\n";

    fn compress(encoding: &str, data: &[u8]) -> Vec<u8> {
        match encoding {
            "zstd" => zstd::bulk::compress(data, 3).unwrap(),
            "xz" => {
                let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "bzip2" => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "br" => {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    w.write_all(data).unwrap();
                }
                out
            }
            "gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "deflate" => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            _ => data.to_vec(),
        }
    }

    #[test]
    fn every_encoding_round_trips_in_small_pieces() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for enc in ["identity", "zstd", "xz", "bzip2", "br", "gzip", "deflate"] {
            let packed = compress(enc, &data);
            let mut d = Decoder::for_content_encoding(enc, Vec::new()).unwrap();
            for piece in packed.chunks(777) {
                d.write_all(piece).unwrap();
            }
            assert_eq!(d.finish().unwrap(), data, "{enc}");
            assert_eq!(
                decode_body(enc, &packed, data.len()).unwrap(),
                data,
                "{enc}"
            );
        }
    }

    #[test]
    fn concatenated_streams_decode_as_one() {
        for enc in ["zstd", "xz", "bzip2", "gzip"] {
            let mut packed = compress(enc, b"first ");
            packed.extend(compress(enc, b"second"));
            assert_eq!(
                decode_body(enc, &packed, 100).unwrap(),
                b"first second",
                "{enc}"
            );
        }
    }

    #[test]
    fn a_cut_stream_fails_at_finish_and_garbage_fails() {
        for enc in ["zstd", "xz", "bzip2", "br", "gzip", "deflate"] {
            let packed = compress(enc, &TEXT.repeat(100));
            let cut = &packed[..packed.len() - 4];
            assert!(decode_body(enc, cut, 1 << 20).is_err(), "{enc} cut");
            assert!(
                decode_body(enc, b"not compressed at all", 1 << 20).is_err(),
                "{enc}"
            );
        }
    }

    #[test]
    fn limits_and_unknown_names() {
        let packed = compress("zstd", &[0u8; 100_000]);
        let err = decode_body("zstd", &packed, 1000).unwrap_err();
        assert!(err.contains("more than 1000"), "{err}");
        assert!(decode_body("compress", b"x", 10).is_err());
        assert_eq!(decode_body("", b"plain", 10).unwrap(), b"plain");
        assert_eq!(
            decode_body(" ZSTD ", &compress("zstd", b"a"), 10).unwrap(),
            b"a"
        );
        assert!(Decoder::for_compression(NarCompression::Lz4, Vec::new()).is_err());
    }
}
