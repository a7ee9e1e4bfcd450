//! Malformed archives built with `NarWriter`, and the error each one gets.
//!
//! Offsets are taken from `NarWriter::written()` at the point where the bad
//! string starts, so each test also pins where the error is reported.

use std::io;

use super::{build, rejection, validate_chunked, NarWriter};
use crate::nar::{validate, NarError, NarErrorKind, NarValidator, MAX_DEPTH};

type W = NarWriter<Vec<u8>>;

/// Writes the good part of an archive, after the magic.
type Prefix = Box<dyn FnOnce(&mut W) -> io::Result<()>>;

fn unexpected(expected: &'static str, got: &[u8]) -> NarErrorKind {
    NarErrorKind::UnexpectedToken {
        expected,
        got: got.to_vec(),
    }
}

/// A root directory holding an empty regular file for each name, in the
/// order given, and the offset of each name's string.
fn dir_with(names: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
    let mut offsets = Vec::new();
    let nar = build(|w| {
        w.magic()?;
        w.begin_directory()?;
        for name in names {
            w.str(b"entry")?;
            w.str(b"(")?;
            w.str(b"name")?;
            offsets.push(w.written());
            w.str(name)?;
            w.str(b"node")?;
            w.regular(false, b"")?;
            w.end_entry()?;
        }
        w.end_directory()
    });
    (nar, offsets)
}

/// Magic, then `prefix`, then `bad`: the archive and where `bad` starts.
fn after(prefix: impl FnOnce(&mut W) -> io::Result<()>, bad: &[u8]) -> (Vec<u8>, u64) {
    let mut at = 0;
    let nar = build(|w| {
        w.magic()?;
        prefix(w)?;
        at = w.written();
        w.str(bad)
    });
    (nar, at)
}

#[test]
fn nar_rejects_bad_magic() {
    for magic in [
        &b"nix-archive-2"[..],
        b"nix-archive-",
        b"",
        b"NIX-ARCHIVE-1",
    ] {
        let nar = build(|w| {
            w.str(magic)?;
            w.regular(false, b"")
        });
        assert_eq!(rejection(&nar), (0, NarErrorKind::BadMagic), "{magic:?}");
    }
    // Not a NAR at all: the "length" is huge, and nothing is buffered for it.
    let (offset, kind) = rejection(b"\x89PNG\r\n\x1a\n and so on");
    assert_eq!((offset, kind), (0, NarErrorKind::BadMagic));
    let e = validate(&b"hello world, not a nar"[..], false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "NAR byte 0: not a NAR: does not start with \"nix-archive-1\""
    );
}

#[test]
fn nar_rejects_unknown_tokens_everywhere() {
    let cases: Vec<(Prefix, &'static str)> = vec![
        (Box::new(|_| Ok(())), "\"(\""),
        (Box::new(|w| w.str(b"(")), "\"type\""),
        (Box::new(|w| w.begin_directory()), "\"entry\" or \")\""),
        (
            Box::new(|w| {
                w.begin_directory()?;
                w.str(b"entry")
            }),
            "\"(\"",
        ),
        (
            Box::new(|w| {
                w.begin_directory()?;
                w.str(b"entry")?;
                w.str(b"(")
            }),
            "\"name\"",
        ),
        (
            Box::new(|w| {
                w.begin_directory()?;
                w.str(b"entry")?;
                w.str(b"(")?;
                w.str(b"name")?;
                w.str(b"a")
            }),
            "\"node\"",
        ),
        (
            Box::new(|w| {
                w.begin_directory()?;
                w.begin_entry(b"a")?;
                w.regular(false, b"")
            }),
            "\")\"",
        ),
        (
            Box::new(|w| {
                w.str(b"(")?;
                w.str(b"type")?;
                w.str(b"regular")
            }),
            "\"executable\" or \"contents\"",
        ),
        (
            Box::new(|w| {
                w.str(b"(")?;
                w.str(b"type")?;
                w.str(b"regular")?;
                w.str(b"executable")?;
                w.str(b"")
            }),
            "\"contents\"",
        ),
        (
            Box::new(|w| {
                w.begin_regular(false, 3)?;
                w.raw(b"abc")?;
                w.padding(3)
            }),
            "\")\"",
        ),
        (
            Box::new(|w| {
                w.str(b"(")?;
                w.str(b"type")?;
                w.str(b"symlink")
            }),
            "\"target\"",
        ),
        (
            Box::new(|w| {
                w.str(b"(")?;
                w.str(b"type")?;
                w.str(b"symlink")?;
                w.str(b"target")?;
                w.str(b"t")
            }),
            "\")\"",
        ),
    ];
    for (prefix, expected) in cases {
        let (nar, at) = after(prefix, b"bogus");
        assert_eq!(rejection(&nar), (at, unexpected(expected, b"bogus")));
    }
}

#[test]
fn nar_rejects_fields_out_of_order_or_repeated() {
    // "executable" after "contents" is not canonical (Nix's parser refuses it too).
    let (nar, at) = after(
        |w| {
            w.begin_regular(false, 0)?;
            w.padding(0)
        },
        b"executable",
    );
    assert_eq!(rejection(&nar), (at, unexpected("\")\"", b"executable")));
    // A second "type".
    let (nar, at) = after(
        |w| {
            w.str(b"(")?;
            w.str(b"type")?;
            w.str(b"regular")
        },
        b"type",
    );
    let expected = unexpected("\"executable\" or \"contents\"", b"type");
    assert_eq!(rejection(&nar), (at, expected));
    // "executable" twice.
    let (nar, at) = after(
        |w| {
            w.str(b"(")?;
            w.str(b"type")?;
            w.str(b"regular")?;
            w.str(b"executable")?;
            w.str(b"")
        },
        b"executable",
    );
    assert_eq!(
        rejection(&nar),
        (at, unexpected("\"contents\"", b"executable"))
    );
}

#[test]
fn nar_rejects_oversized_tokens_without_buffering_them() {
    // A keyword position announcing an exabyte string: refused at its length.
    let mut at = 0;
    let nar = build(|w| {
        w.magic()?;
        w.str(b"(")?;
        at = w.written();
        w.u64(1 << 60)
    });
    let kind = NarErrorKind::OversizedToken {
        expected: "\"type\"",
        len: 1 << 60,
    };
    assert_eq!(rejection(&nar), (at, kind));
}

#[test]
fn nar_rejects_unknown_file_types() {
    let (nar, at) = after(
        |w| {
            w.str(b"(")?;
            w.str(b"type")
        },
        b"fifo",
    );
    let kind = NarErrorKind::UnknownType {
        got: b"fifo".to_vec(),
    };
    assert_eq!(rejection(&nar), (at, kind));
}

#[test]
fn nar_rejects_non_empty_executable_marker() {
    let (nar, at) = after(
        |w| {
            w.str(b"(")?;
            w.str(b"type")?;
            w.str(b"regular")?;
            w.str(b"executable")
        },
        b"1",
    );
    assert_eq!(
        rejection(&nar),
        (at, NarErrorKind::NonEmptyExecutable { len: 1 })
    );
}

#[test]
fn nar_rejects_unsorted_entries() {
    let (nar, offsets) = dir_with(&[b"a", b"c", b"b"]);
    let kind = NarErrorKind::Unsorted {
        name: b"b".to_vec(),
        prev: b"c".to_vec(),
    };
    assert_eq!(rejection(&nar), (offsets[2], kind));

    // Pin the format of the message, and the offset arithmetic by hand:
    // magic 24 + "(" "type" 32 + "directory" 24 = 80; each entry with a
    // one-byte name and an empty file is 184 bytes; the name is 48 in.
    let (nar, _) = dir_with(&[b"c", b"b"]);
    let e = validate(&nar[..], false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "NAR byte 312: entries not sorted: \"b\" after \"c\""
    );
    // Byte order, not case-insensitive or locale order.
    let (nar, offsets) = dir_with(&[b"a", b"B"]);
    assert_eq!(rejection(&nar).0, offsets[1]);
    assert!(validate(&dir_with(&[b"B", b"a", b"\xc3\xa9"]).0[..], false).is_ok());
    // A prefix sorts first.
    let (nar, offsets) = dir_with(&[b"ab", b"a"]);
    assert_eq!(rejection(&nar).0, offsets[1]);
}

#[test]
fn nar_rejects_duplicate_entries() {
    let (nar, offsets) = dir_with(&[b"a", b"dup", b"dup"]);
    let kind = NarErrorKind::Duplicate {
        name: b"dup".to_vec(),
    };
    assert_eq!(rejection(&nar), (offsets[2], kind));
}

#[test]
fn nar_rejects_invalid_names() {
    for (name, reason) in [
        (&b""[..], "empty"),
        (b".", "a relative path component"),
        (b"..", "a relative path component"),
        (b"a/b", "contains '/'"),
        (b"/", "contains '/'"),
        (b"a\0b", "contains NUL"),
    ] {
        let (nar, offsets) = dir_with(&[name]);
        let kind = NarErrorKind::InvalidName {
            name: name.to_vec(),
            reason,
        };
        assert_eq!(rejection(&nar), (offsets[0], kind), "{name:?}");
    }
    // Names that only look odd are fine.
    assert!(validate(&dir_with(&[b"...", b".a", b"a..", b"\xff"]).0[..], false).is_ok());
}

#[test]
fn nar_name_and_target_length_limits() {
    let max_name = vec![b'n'; 255];
    assert!(validate(&dir_with(&[&max_name]).0[..], false).is_ok());
    let long_name = vec![b'n'; 256];
    let (nar, offsets) = dir_with(&[&long_name]);
    let kind = NarErrorKind::NameTooLong { len: 256, max: 255 };
    assert_eq!(rejection(&nar), (offsets[0], kind));

    let link = |target: &[u8]| {
        build(|w| {
            w.magic()?;
            w.symlink(target)
        })
    };
    assert!(validate(&link(&[b't'; 4096])[..], false).is_ok());
    // magic 24, "(" "type" "symlink" "target" 64: the target is at 88.
    let kind = NarErrorKind::TargetTooLong {
        len: 4097,
        max: 4096,
    };
    assert_eq!(rejection(&link(&[b't'; 4097])), (88, kind));
}

#[test]
fn nar_rejects_symlink_targets_no_filesystem_has() {
    for (target, reason) in [(&b""[..], "empty"), (b"a\0b", "contains NUL")] {
        let nar = build(|w| {
            w.magic()?;
            w.symlink(target)
        });
        let kind = NarErrorKind::InvalidTarget {
            target: target.to_vec(),
            reason,
        };
        assert_eq!(rejection(&nar), (88, kind));
    }
}

#[test]
fn nar_rejects_non_zero_padding() {
    // In the padding of a string: the magic's 13 bytes are padded by 3.
    let mut nar = build(|w| {
        w.magic()?;
        w.regular(false, b"")
    });
    nar[22] = 1;
    assert_eq!(
        rejection(&nar),
        (22, NarErrorKind::NonZeroPadding { byte: 1 })
    );

    // In the padding of file contents.
    let mut at = 0;
    let mut nar = build(|w| {
        w.magic()?;
        w.begin_regular(false, 5)?;
        w.raw(b"hello")?;
        at = w.written();
        w.end_regular(5)
    });
    nar[at as usize + 2] = 0xff;
    let kind = NarErrorKind::NonZeroPadding { byte: 0xff };
    assert_eq!(rejection(&nar), (at + 2, kind));
}

fn sample_archive() -> Vec<u8> {
    build(|w| {
        w.magic()?;
        w.begin_directory()?;
        w.begin_entry(b"bin")?;
        w.regular(true, b"thirteen byte")?;
        w.end_entry()?;
        w.begin_entry(b"dir")?;
        w.begin_directory()?;
        w.begin_entry(b"empty")?;
        w.begin_directory()?;
        w.end_directory()?;
        w.end_entry()?;
        w.end_directory()?;
        w.end_entry()?;
        w.begin_entry(b"link")?;
        w.symlink(b"bin")?;
        w.end_entry()?;
        w.end_directory()
    })
}

#[test]
fn nar_every_truncation_is_reported_at_the_end() {
    let nar = sample_archive();
    assert!(validate(&nar[..], true).is_ok());
    for len in 0..nar.len() {
        for chunk in [1, len.max(1)] {
            let e = validate_chunked(&nar[..len], chunk, true).unwrap_err();
            assert_eq!(e.offset(), len as u64, "prefix of {len}");
            assert!(
                matches!(e.kind(), Some(NarErrorKind::Truncated { .. })),
                "prefix of {len}: {e}"
            );
        }
    }
    let e = validate(&[][..], false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "NAR byte 0: archive ends early: expected \"nix-archive-1\""
    );
    // magic 24, "(" "type" "regular" "contents" 64, size 8: contents at 96.
    let file = build(|w| {
        w.magic()?;
        w.regular(false, b"contents")
    });
    let e = validate(&file[..100], false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "NAR byte 100: archive ends early: expected the rest of the file contents"
    );
    let e = validate(&file[..file.len() - 3], false).unwrap_err();
    assert!(e.to_string().ends_with("expected padding"), "{e}");
}

#[test]
fn nar_rejects_trailing_bytes() {
    let nar = sample_archive();
    for tail in [&[0u8][..], b"\0\0\0\0\0\0\0\0", &nar] {
        let mut long = nar.clone();
        long.extend_from_slice(tail);
        let kind = NarErrorKind::TrailingBytes;
        assert_eq!(rejection(&long), (nar.len() as u64, kind));
    }
}

fn nested_dirs(depth: usize) -> (Vec<u8>, u64) {
    let mut last_type = 0;
    let nar = build(|w| {
        w.magic()?;
        for i in 0..depth {
            if i > 0 {
                w.begin_entry(b"d")?;
            }
            w.str(b"(")?;
            w.str(b"type")?;
            last_type = w.written();
            w.str(b"directory")?;
        }
        for i in 0..depth {
            w.end_directory()?;
            if i + 1 < depth {
                w.end_entry()?;
            }
        }
        Ok(())
    });
    (nar, last_type)
}

#[test]
fn nar_rejects_nesting_deeper_than_max_depth() {
    let (nar, _) = nested_dirs(MAX_DEPTH);
    assert!(validate(&nar[..], true).is_ok());
    let (nar, at) = nested_dirs(MAX_DEPTH + 1);
    let kind = NarErrorKind::TooDeep { max: MAX_DEPTH };
    assert_eq!(rejection(&nar), (at, kind));
}

#[test]
fn nar_huge_contents_are_counted_not_buffered() {
    let mut v = NarValidator::new().with_listing();
    let head = build(|w| {
        w.magic()?;
        w.begin_regular(false, u64::MAX - 7)
    });
    v.update(&head).unwrap();
    let chunk = vec![0xa5; 1 << 20];
    for _ in 0..16 {
        v.update(&chunk).unwrap();
    }
    let end = head.len() as u64 + 16 * (1 << 20);
    let e = v.finish().unwrap_err();
    assert_eq!(e.offset(), end);
    assert!(matches!(e.kind(), Some(NarErrorKind::Truncated { .. })));
}

#[test]
fn nar_validator_stays_failed() {
    let mut v = NarValidator::new();
    let first = v.update(b"not a nar at all").unwrap_err();
    let again = v.update(&sample_archive()).unwrap_err();
    assert_eq!(
        (again.offset(), again.kind()),
        (first.offset(), first.kind())
    );
    let last = v.finish().unwrap_err();
    assert_eq!((last.offset(), last.kind()), (first.offset(), first.kind()));
}

#[test]
fn nar_listing_budget_is_enforced() {
    let (nar, _) = dir_with(&[b"a", b"b", b"c", b"d"]);
    let mut v = NarValidator::new().with_listing_limit(300);
    let e = v.update(&nar).unwrap_err();
    assert_eq!(
        e.kind(),
        Some(&NarErrorKind::ListingTooLarge { limit: 300 })
    );
    // The same archive without a listing has no such limit.
    assert!(validate(&nar[..], false).is_ok());
}

#[test]
fn nar_validate_reports_read_errors_with_the_offset() {
    struct Failing(usize);
    impl io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = self.0.min(buf.len());
            buf[..n].copy_from_slice(&sample_archive()[..n]);
            self.0 -= n;
            Ok(n)
        }
    }
    let e = validate(Failing(40), false).unwrap_err();
    assert!(matches!(e, NarError::Io { offset: 40, .. }), "{e}");
    assert_eq!(e.to_string(), "NAR byte 40: read failed: disk on fire");
}
