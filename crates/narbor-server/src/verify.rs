//! What a NAR's bytes must hash to before a client gets the last of them.
//!
//! A NAR narbor serves under the name cache.nixos.org uses
//! (`nar/<FileHash>.nar.xz`) is checked against that name. Other upstreams
//! name NARs by other things (a store path hash, a UUID, a query string), and
//! some give no FileHash at all; for those the check comes from their
//! narinfo: the FileHash and FileSize when given (they describe the bytes the
//! upstream sends), otherwise the NarHash and NarSize, checked while the
//! bytes are decompressed as they stream ([`NarCheck::Nar`]).
//!
//! This module owns the checks and their streaming [`Verifier`]; fetching and
//! storing the bytes is the fill's.

use std::io::{self, Write};

use narbor_proto::hash::{HashingCounter, Sha256};
use narbor_proto::url::NarCompression;

use crate::decode::{Decoder, Unsupported};

/// How a NAR's bytes are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NarCheck {
    /// The bytes as sent hash to `hash` (a FileHash, or the digest in the
    /// name), and number `size` when that is known.
    File { hash: Sha256, size: Option<u64> },
    /// The bytes, decompressed as `compression` says, are a NAR of this
    /// NarHash and NarSize.
    Nar {
        hash: Sha256,
        size: u64,
        compression: NarCompression,
    },
}

impl NarCheck {
    /// The length of the bytes as sent, when the check knows it in advance
    /// (what a HEAD can answer without asking upstream).
    pub fn file_size(&self) -> Option<u64> {
        match self {
            NarCheck::File { size, .. } => *size,
            NarCheck::Nar {
                size,
                compression: NarCompression::None,
                ..
            } => Some(*size),
            NarCheck::Nar { .. } => None,
        }
    }

    /// Whether narbor can carry out this check (it can decompress every
    /// method Nix writes but lz4 and lzip).
    pub fn supported(&self) -> Result<(), Unsupported> {
        match self {
            NarCheck::File { .. } => Ok(()),
            NarCheck::Nar { compression, .. } => {
                Decoder::for_compression(*compression, io::sink()).map(drop)
            }
        }
    }
}

/// Counts and hashes what a decoder writes, refusing to go past `limit`
/// (so a wrong or hostile stream fails as soon as it is too long).
struct NarSink {
    hasher: HashingCounter,
    limit: u64,
}

impl Write for NarSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.hasher.len() + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("decompresses to more than the NarSize {}", self.limit),
            ));
        }
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why bytes failed their check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the bytes do not match the NAR's {0}")]
    Mismatch(&'static str),
    #[error("the bytes do not decompress: {0}")]
    Corrupt(String),
}

/// Checks bytes as they pass, in order.
pub struct Verifier {
    kind: Kind,
}

enum Kind {
    File {
        hasher: HashingCounter,
        hash: Sha256,
        size: Option<u64>,
    },
    Nar {
        decoder: Box<Decoder<NarSink>>,
        hash: Sha256,
        size: u64,
    },
}

impl Verifier {
    pub fn new(check: &NarCheck) -> Result<Verifier, Unsupported> {
        let kind = match check {
            NarCheck::File { hash, size } => Kind::File {
                hasher: HashingCounter::new(),
                hash: *hash,
                size: *size,
            },
            NarCheck::Nar {
                hash,
                size,
                compression,
            } => Kind::Nar {
                decoder: Box::new(Decoder::for_compression(
                    *compression,
                    NarSink {
                        hasher: HashingCounter::new(),
                        limit: *size,
                    },
                )?),
                hash: *hash,
                size: *size,
            },
        };
        Ok(Verifier { kind })
    }

    /// Takes the next bytes.
    pub fn update(&mut self, data: &[u8]) -> Result<(), VerifyError> {
        match &mut self.kind {
            Kind::File { hasher, size, .. } => {
                hasher.update(data);
                if size.is_some_and(|s| hasher.len() > s) {
                    return Err(VerifyError::Mismatch("FileSize"));
                }
                Ok(())
            }
            Kind::Nar { decoder, .. } => decoder
                .write_all(data)
                .map_err(|e| VerifyError::Corrupt(e.to_string())),
        }
    }

    /// The end of the bytes: did they check out?
    pub fn finish(self) -> Result<(), VerifyError> {
        match self.kind {
            Kind::File { hasher, hash, size } => {
                let (got, len) = hasher.finish();
                if size.is_some_and(|s| s != len) {
                    return Err(VerifyError::Mismatch("FileSize"));
                }
                if got != hash {
                    return Err(VerifyError::Mismatch("FileHash"));
                }
                Ok(())
            }
            Kind::Nar {
                decoder,
                hash,
                size,
            } => {
                let sink = decoder
                    .finish()
                    .map_err(|e| VerifyError::Corrupt(e.to_string()))?;
                let (got, len) = sink.hasher.finish();
                if len != size {
                    return Err(VerifyError::Mismatch("NarSize"));
                }
                if got != hash {
                    return Err(VerifyError::Mismatch("NarHash"));
                }
                Ok(())
            }
        }
    }
}

/// Why an upstream body was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    #[error("sent more than the {0} bytes it promised")]
    TooLarge(u64),
    #[error("promised {promised} bytes and sent {sent}")]
    Truncated { promised: u64, sent: u64 },
    #[error("its Content-Encoding does not decode: {0}")]
    Encoding(String),
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// An upstream NAR body as it arrives: raw bytes in (counted against the
/// promised `Content-Length`), the NAR file's bytes out (a `Content-Encoding`
/// undone), checked as they pass.
pub struct Intake {
    content: Option<Decoder<Vec<u8>>>,
    verifier: Option<Verifier>,
    raw: u64,
    promised: Option<u64>,
}

impl Intake {
    /// `check` is carried out here unless it is a [`NarCheck::File`] and
    /// `file_checked_elsewhere` (the store hashes what it writes).
    pub fn new(
        check: &NarCheck,
        content_encoding: Option<&str>,
        promised: Option<u64>,
        file_checked_elsewhere: bool,
    ) -> Result<Intake, Unsupported> {
        let content = match content_encoding.map(str::trim) {
            None | Some("") => None,
            Some(e) if e.eq_ignore_ascii_case("identity") => None,
            Some(e) => Some(Decoder::for_content_encoding(e, Vec::new())?),
        };
        let verifier = match check {
            NarCheck::File { .. } if file_checked_elsewhere => None,
            _ => Some(Verifier::new(check)?),
        };
        Ok(Intake {
            content,
            verifier,
            raw: 0,
            promised,
        })
    }

    /// The bytes the body will decode to, when known before the end.
    pub fn file_len(&self, check: &NarCheck) -> Option<u64> {
        match self.content {
            None => self.promised.or(check.file_size()),
            Some(_) => check.file_size(),
        }
    }

    /// The file's bytes in this raw chunk (none while a decoder buffers).
    pub fn take(&mut self, raw: bytes::Bytes) -> Result<bytes::Bytes, IntakeError> {
        self.raw += raw.len() as u64;
        if let Some(p) = self.promised {
            if self.raw > p {
                return Err(IntakeError::TooLarge(p));
            }
        }
        let file = match &mut self.content {
            None => raw,
            Some(d) => {
                d.write_all(&raw)
                    .map_err(|e| IntakeError::Encoding(e.to_string()))?;
                let sink = d
                    .sink_mut()
                    .ok_or_else(|| IntakeError::Encoding("the decoder failed".to_owned()))?;
                bytes::Bytes::from(std::mem::take(sink))
            }
        };
        if let Some(v) = &mut self.verifier {
            v.update(&file)?;
        }
        Ok(file)
    }

    /// The end of the body: the last of the file's bytes, once everything
    /// checked out.
    pub fn finish(self) -> Result<bytes::Bytes, IntakeError> {
        if let Some(p) = self.promised {
            if self.raw != p {
                return Err(IntakeError::Truncated {
                    promised: p,
                    sent: self.raw,
                });
            }
        }
        let rest = match self.content {
            None => bytes::Bytes::new(),
            Some(d) => bytes::Bytes::from(
                d.finish()
                    .map_err(|e| IntakeError::Encoding(e.to_string()))?,
            ),
        };
        if let Some(mut v) = self.verifier {
            v.update(&rest)?;
            v.finish()?;
        }
        Ok(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all(check: &NarCheck, bytes: &[u8]) -> Result<(), VerifyError> {
        let mut v = Verifier::new(check).unwrap();
        for piece in bytes.chunks(1000) {
            v.update(piece)?;
        }
        v.finish()
    }

    #[test]
    fn a_file_check_wants_the_hash_and_the_size() {
        let bytes = vec![7u8; 10_000];
        let hash = Sha256::digest(&bytes);
        let ok = NarCheck::File {
            hash,
            size: Some(10_000),
        };
        assert_eq!(check_all(&ok, &bytes), Ok(()));
        assert_eq!(
            check_all(&NarCheck::File { hash, size: None }, &bytes),
            Ok(())
        );
        assert_eq!(
            check_all(&ok, &bytes[..9_999]),
            Err(VerifyError::Mismatch("FileSize"))
        );
        let mut wrong = bytes.clone();
        wrong[5000] ^= 1;
        assert_eq!(
            check_all(&ok, &wrong),
            Err(VerifyError::Mismatch("FileHash"))
        );
        // Too long fails at once, not at the end.
        let mut v = Verifier::new(&ok).unwrap();
        assert!(v.update(&[0u8; 10_001]).is_err());
    }

    #[test]
    fn a_nar_check_decompresses_and_wants_nar_hash_and_size() {
        let nar: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let check = |compression| NarCheck::Nar {
            hash: Sha256::digest(&nar),
            size: nar.len() as u64,
            compression,
        };
        let zst = zstd::bulk::compress(&nar, 3).unwrap();
        assert_eq!(check_all(&check(NarCompression::Zstd), &zst), Ok(()));
        assert_eq!(check_all(&check(NarCompression::None), &nar), Ok(()));
        // Right length, wrong bytes.
        let mut wrong = nar.clone();
        wrong[100] ^= 0xff;
        assert_eq!(
            check_all(&check(NarCompression::None), &wrong),
            Err(VerifyError::Mismatch("NarHash"))
        );
        // Cut short: the stream does not end (zstd), or the size is short (none).
        assert!(check_all(&check(NarCompression::Zstd), &zst[..zst.len() / 2]).is_err());
        assert_eq!(
            check_all(&check(NarCompression::None), &nar[..nar.len() - 1]),
            Err(VerifyError::Mismatch("NarSize"))
        );
        // Longer than NarSize fails as soon as it is.
        let mut v = Verifier::new(&check(NarCompression::None)).unwrap();
        assert!(v.update(&nar).is_ok());
        assert!(v.update(b"x").is_err());
        // Not what the Compression says.
        assert!(check_all(&check(NarCompression::Xz), &zst).is_err());
    }

    #[test]
    fn an_intake_undoes_a_content_encoding_and_counts_what_was_promised() {
        let file = vec![42u8; 30_000];
        let check = NarCheck::File {
            hash: Sha256::digest(&file),
            size: Some(30_000),
        };
        let sent = zstd::bulk::compress(&file, 3).unwrap();
        let mut intake = Intake::new(&check, Some("zstd"), Some(sent.len() as u64), false).unwrap();
        let mut got = Vec::new();
        for piece in sent.chunks(100) {
            got.extend_from_slice(&intake.take(bytes::Bytes::copy_from_slice(piece)).unwrap());
        }
        got.extend_from_slice(&intake.finish().unwrap());
        assert_eq!(got, file);
        // Fewer bytes than promised, or more, fail.
        let mut intake = Intake::new(&check, None, Some(30_001), false).unwrap();
        intake.take(bytes::Bytes::from(file.clone())).unwrap();
        assert!(matches!(
            intake.finish(),
            Err(IntakeError::Truncated { .. })
        ));
        let mut intake = Intake::new(&check, None, Some(29_999), false).unwrap();
        assert_eq!(
            intake.take(bytes::Bytes::from(file.clone())),
            Err(IntakeError::TooLarge(29_999))
        );
        // A file check left to the store is not done twice, but a NAR check is.
        let mut wrong = file.clone();
        wrong[0] = 0;
        let mut intake = Intake::new(&check, None, None, true).unwrap();
        intake.take(bytes::Bytes::from(wrong.clone())).unwrap();
        assert!(intake.finish().is_ok());
        let nar = NarCheck::Nar {
            hash: Sha256::digest(&file),
            size: 30_000,
            compression: NarCompression::None,
        };
        let mut intake = Intake::new(&nar, Some("identity"), None, true).unwrap();
        intake.take(bytes::Bytes::from(wrong)).unwrap();
        assert!(matches!(intake.finish(), Err(IntakeError::Verify(_))));
    }

    #[test]
    fn what_a_head_can_say_and_what_is_supported() {
        let h = Sha256::digest(b"");
        let nar = |compression| NarCheck::Nar {
            hash: h,
            size: 9,
            compression,
        };
        assert_eq!(nar(NarCompression::None).file_size(), Some(9));
        assert_eq!(nar(NarCompression::Zstd).file_size(), None);
        assert_eq!(
            NarCheck::File {
                hash: h,
                size: Some(3)
            }
            .file_size(),
            Some(3)
        );
        assert!(nar(NarCompression::Lz4).supported().is_err());
        assert!(nar(NarCompression::Bzip2).supported().is_ok());
    }
}
