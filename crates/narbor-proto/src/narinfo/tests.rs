//! Unit tests for `narinfo`: real documents, quirks, errors, signing.

use super::*;

const NIXOS_KEY: &str = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

/// Real, from cache.nixos.org: references, no deriver.
const ASSIMP: &str = "\
StorePath: /nix/store/hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-assimp-3.1.1
URL: nar/0blq0zn4g9bsjc5r4c077m84cv4nr7a2rlvk245b7jid5db11vx5.nar.xz
Compression: xz
FileHash: sha256:0blq0zn4g9bsjc5r4c077m84cv4nr7a2rlvk245b7jid5db11vx5
FileSize: 2071468
NarHash: sha256:1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6
NarSize: 8284184
References: cr88am4p5saqinmygwhlybhlzabgxjiq-gcc-5.3.0 hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-assimp-3.1.1 nxzl460xr1xzgfll65pfgvq87civg0iq-glibc-2.23
Sig: cache.nixos.org-1:dfd+QiisCjhN2STTqlaehDy41SWY69bBrvYPMxU04VKvA5MWDWOShj05yggJ4G/VcuQ/R+D7PceX3TkNtW1qAA==
";

/// Real: empty references (note the trailing space), Deriver and System.
const SDL_MAN: &str = "\
StorePath: /nix/store/x0f207608azddhv24bv8xhimfdjmlya9-SDL-1.2.15-man
URL: nar/1qf88paw85l7w8gdi3sk46ixiaf2vvr6vgymh3f6zyivnppl6f70.nar.xz
Compression: xz
FileHash: sha256:1qf88paw85l7w8gdi3sk46ixiaf2vvr6vgymh3f6zyivnppl6f70
FileSize: 99272
NarHash: sha256:0l2hilx7fjd61dgj5wi4vl35psdmblqr9j7p9gcmf0i83pamh607
NarSize: 133936
References: 
Deriver: hi8pmk8pxr3hji28rak75pm6dx6cvzmi-SDL-1.2.15.drv
System: i686-linux
Sig: cache.nixos.org-1:cSo/GN840u+b7Puv8ex9A9lCkUd+V9vG78agpS9xIGJ6QOKWqQXcZ8cQm1AuTqUFilNF8hlpQxoio02xB1RpBw==
";

/// Real: a `CA:` line, which Nix 2.8 prints after the signatures.
const SOURCE_CA: &str = "\
StorePath: /nix/store/vlapfq163ddwdcn2smfk31x6fs0c9jh6-source
URL: nar/1asncm54lyva8c3avi3g76pn6cdsc19n6rmg9sfaky8cjbdmnk7x.nar.xz
Compression: xz
FileHash: sha256:1asncm54lyva8c3avi3g76pn6cdsc19n6rmg9sfaky8cjbdmnk7x
FileSize: 6615828
NarHash: sha256:0gkkhap0ljzw750z2ypjr87n4mhinv07flvcshvi9l4jlqs2w1bc
NarSize: 9936584
References: 
Deriver: by3hkyrwyinabq75qpp6sn0p32zck57g-source.drv
Sig: cache.nixos.org-1:kyeHeMcGiMnMnQ8vi72hmHC0TgeSUhlMFf44Yr40GFreavrahF3kKEHeDplIcgffuKDrtlwZyj9kuryLIRjiBw==
CA: fixed:r:sha256:0gkkhap0ljzw750z2ypjr87n4mhinv07flvcshvi9l4jlqs2w1bc
";

fn nixos_key() -> Vec<PublicKey> {
    vec![PublicKey::parse(NIXOS_KEY).unwrap()]
}

fn test_key(name: &str, seed: u8) -> SecretKey {
    SecretKey::from_seed(name, [seed; 32]).unwrap()
}

/// `ASSIMP` with one line replaced (found by its key).
fn with_line(doc: &str, key: &str, line: Option<&str>) -> String {
    doc.lines()
        .filter_map(|l| {
            if l.starts_with(&format!("{key}: ")) {
                line
            } else {
                Some(l)
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn real_documents_parse_print_and_verify() {
    for doc in [ASSIMP, SDL_MAN, SOURCE_CA] {
        let info = NarInfo::parse(doc).unwrap();
        assert_eq!(info.to_string(), doc);
        assert_eq!(info.quirks, Quirks::default());
        assert!(info.verify(&nixos_key()), "{}", info.store_path);
        assert_eq!(info.valid_signers(&nixos_key()), ["cache.nixos.org-1"]);
    }
}

#[test]
fn fields_of_a_real_document() {
    let info = NarInfo::parse(ASSIMP).unwrap();
    assert_eq!(info.store_path.name(), "assimp-3.1.1");
    assert_eq!(info.compression, "xz");
    assert_eq!(info.nar_compression(), Some(NarCompression::Xz));
    assert_eq!(info.file_size, Some(2071468));
    assert_eq!(info.nar_size, 8284184);
    assert_eq!(info.file_url_hash(), info.file_hash);
    assert!(info.file_hash.is_some());
    let refs: Vec<&str> = info.references.iter().map(|r| r.name()).collect();
    assert_eq!(refs, ["gcc-5.3.0", "assimp-3.1.1", "glibc-2.23"]);
    assert_eq!(info.deriver, None);
    assert_eq!(info.sigs.len(), 1);

    let sdl = NarInfo::parse(SDL_MAN).unwrap();
    assert!(sdl.references.is_empty());
    assert_eq!(sdl.deriver.as_ref().unwrap().name(), "SDL-1.2.15.drv");
    assert_eq!(sdl.system.as_deref(), Some("i686-linux"));
    let ca = NarInfo::parse(SOURCE_CA).unwrap();
    assert_eq!(
        ca.ca.as_deref(),
        Some("fixed:r:sha256:0gkkhap0ljzw750z2ypjr87n4mhinv07flvcshvi9l4jlqs2w1bc")
    );
}

#[test]
fn fingerprint_is_nix_format() {
    let info = NarInfo::parse(ASSIMP).unwrap();
    assert_eq!(
        info.fingerprint(),
        "1;/nix/store/hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-assimp-3.1.1;\
         sha256:1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6;8284184;\
         /nix/store/cr88am4p5saqinmygwhlybhlzabgxjiq-gcc-5.3.0,\
         /nix/store/hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-assimp-3.1.1,\
         /nix/store/nxzl460xr1xzgfll65pfgvq87civg0iq-glibc-2.23"
    );
    let sdl = NarInfo::parse(SDL_MAN).unwrap();
    assert!(
        sdl.fingerprint().ends_with(";133936;"),
        "{}",
        sdl.fingerprint()
    );
}

#[test]
fn fingerprint_sorts_and_dedups_references() {
    let mut info = NarInfo::parse(ASSIMP).unwrap();
    let canonical = info.fingerprint();
    info.references.reverse();
    info.references.push(info.references[0].clone());
    assert_eq!(info.fingerprint(), canonical);
    // ...so a document with out-of-order references still verifies.
    assert!(info.verify(&nixos_key()));
}

#[test]
fn tampered_documents_do_not_verify() {
    let keys = nixos_key();
    let tamper = [
        with_line(ASSIMP, "NarSize", Some("NarSize: 8284185")),
        with_line(
            ASSIMP,
            "NarHash",
            Some("NarHash: sha256:0ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6"),
        ),
        with_line(
            ASSIMP,
            "References",
            Some("References: cr88am4p5saqinmygwhlybhlzabgxjiq-gcc-5.3.0"),
        ),
        with_line(
            ASSIMP,
            "StorePath",
            Some("StorePath: /nix/store/hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-assimp-3.1.2"),
        ),
    ];
    for doc in &tamper {
        let info = NarInfo::parse(doc).unwrap();
        assert!(!info.verify(&keys), "{doc}");
        assert!(info.valid_signers(&keys).is_empty());
    }
    // Fields outside the fingerprint may change.
    let url = with_line(ASSIMP, "URL", Some("URL: elsewhere"));
    assert!(NarInfo::parse(&url).unwrap().verify(&keys));
}

#[test]
fn wrong_keys_do_not_verify() {
    let info = NarInfo::parse(ASSIMP).unwrap();
    // A different key under the right name.
    let impostor = test_key("cache.nixos.org-1", 1).public_key();
    assert!(!info.verify(&[impostor]));
    // The right key bytes under another name.
    let renamed = PublicKey::parse(&NIXOS_KEY.replace("cache.nixos.org-1", "other-1")).unwrap();
    assert!(!info.verify(&[renamed]));
    assert!(!info.verify(&[]));
}

#[test]
fn unparsable_signatures_are_kept_and_skipped() {
    let doc = with_line(ASSIMP, "Sig", None) + "Sig: garbage\nSig: k:AAAA\n";
    let mut with_real = doc.clone();
    with_real.push_str(ASSIMP.lines().find(|l| l.starts_with("Sig: ")).unwrap());
    with_real.push('\n');
    let info = NarInfo::parse(&with_real).unwrap();
    assert_eq!(info.sigs.len(), 3);
    assert_eq!(info.sigs[0], "garbage");
    assert_eq!(info.signatures().count(), 1);
    assert!(info.verify(&nixos_key()));
    assert_eq!(info.to_string(), with_real);
    assert!(!NarInfo::parse(&doc).unwrap().verify(&nixos_key()));
}

#[test]
fn sign_then_verify_and_replace() {
    let a = test_key("a-1", 1);
    let b = test_key("b-1", 2);
    let keys = [a.public_key(), b.public_key()];
    let mut info = NarInfo::parse(SDL_MAN).unwrap();
    info.sign(&a);
    assert_eq!(info.sigs.len(), 2);
    assert!(info.sigs[1].starts_with("a-1:"));
    assert_eq!(info.valid_signers(&keys), ["a-1"]);
    info.sign(&b);
    assert_eq!(info.valid_signers(&keys), ["a-1", "b-1"]);
    // The original cache.nixos.org signature is untouched.
    assert!(info.verify(&nixos_key()));

    // Re-signing after a change replaces the stale signature in place.
    info.nar_size += 1;
    assert!(info.valid_signers(&keys).is_empty());
    info.sigs.push("a-1:stale".into());
    info.sign(&a);
    assert_eq!(info.sigs.len(), 3);
    assert!(info.sigs[1].starts_with("a-1:"));
    assert_eq!(info.valid_signers(&keys), ["a-1"]);
    assert!(!info.verify(&nixos_key()));
    // Printed and parsed again, it still verifies.
    let again = NarInfo::parse(&info.to_string()).unwrap();
    assert_eq!(again, info);
    assert!(again.verify(&[a.public_key()]));
}

#[test]
fn new_prints_minimal_document() {
    let sdl = NarInfo::parse(SDL_MAN).unwrap();
    let mut info = NarInfo::new(
        sdl.store_path.clone(),
        "nar/x.nar".into(),
        sdl.nar_hash,
        sdl.nar_size,
    );
    assert_eq!(
        info.to_string(),
        "StorePath: /nix/store/x0f207608azddhv24bv8xhimfdjmlya9-SDL-1.2.15-man\n\
         URL: nar/x.nar\n\
         Compression: none\n\
         NarHash: sha256:0l2hilx7fjd61dgj5wi4vl35psdmblqr9j7p9gcmf0i83pamh607\n\
         NarSize: 133936\n\
         References: \n"
    );
    assert_eq!(info.file_url_hash(), None);
    info.unknown.push(("X-B".into(), "2".into()));
    assert_eq!(NarInfo::parse(&info.to_string()).unwrap(), info);
}

#[test]
fn unknown_fields_are_kept_in_order_and_printed_last() {
    let doc = format!("X-First: 1\n{ASSIMP}X-Second: a: b\nX-First: 3\n");
    let info = NarInfo::parse(&doc).unwrap();
    assert_eq!(
        info.unknown,
        [
            ("X-First".to_owned(), "1".to_owned()),
            ("X-Second".to_owned(), "a: b".to_owned()),
            ("X-First".to_owned(), "3".to_owned()),
        ]
    );
    assert_eq!(
        info.to_string(),
        format!("{ASSIMP}X-First: 1\nX-Second: a: b\nX-First: 3\n")
    );
    assert!(!info.quirks.any());
}

#[test]
fn field_order_in_input_does_not_matter() {
    let mut lines: Vec<&str> = SDL_MAN.lines().collect();
    lines.reverse();
    let doc = lines.join("\n");
    let info = NarInfo::parse(&doc).unwrap();
    assert_eq!(info.to_string(), SDL_MAN);
}

#[test]
fn trailing_blank_lines_and_missing_final_newline_are_fine() {
    let info = NarInfo::parse(ASSIMP).unwrap();
    assert_eq!(NarInfo::parse(&format!("{ASSIMP}\n\n")).unwrap(), info);
    assert_eq!(NarInfo::parse(ASSIMP.trim_end()).unwrap(), info);
}

// --- quirks: one named test each ---

#[test]
fn quirk_compression_missing() {
    let doc = with_line(ASSIMP, "Compression", None);
    let info = NarInfo::parse(&doc).unwrap();
    assert_eq!(info.compression, "bzip2");
    assert_eq!(info.nar_compression(), Some(NarCompression::Bzip2));
    assert_eq!(
        info.quirks,
        Quirks {
            compression_missing: true,
            ..Quirks::default()
        }
    );
    assert!(info.to_string().contains("\nCompression: bzip2\n"));
    assert!(info.verify(&nixos_key()));
}

#[test]
fn quirk_non_nix32_hashes() {
    let canonical = NarInfo::parse(ASSIMP).unwrap();
    let hex = format!("NarHash: sha256:{}", canonical.nar_hash.to_hex());
    let doc = with_line(ASSIMP, "NarHash", Some(&hex));
    let info = NarInfo::parse(&doc).unwrap();
    assert_eq!(info.nar_hash, canonical.nar_hash);
    assert!(info.quirks.non_nix32_hashes);
    assert_eq!(info.to_string(), ASSIMP, "printed back as nix32");
    assert!(info.verify(&nixos_key()), "fingerprint uses nix32");

    let sri = format!("FileHash: {}", canonical.file_hash.unwrap().to_sri());
    let info = NarInfo::parse(&with_line(ASSIMP, "FileHash", Some(&sri))).unwrap();
    assert_eq!(info.file_hash, canonical.file_hash);
    assert_eq!(
        info.quirks,
        Quirks {
            non_nix32_hashes: true,
            ..Quirks::default()
        }
    );
}

#[test]
fn quirk_references_unsorted() {
    let refs = "References: nxzl460xr1xzgfll65pfgvq87civg0iq-glibc-2.23 \
                cr88am4p5saqinmygwhlybhlzabgxjiq-gcc-5.3.0 \
                hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-assimp-3.1.1";
    let doc = with_line(ASSIMP, "References", Some(refs));
    let info = NarInfo::parse(&doc).unwrap();
    assert_eq!(
        info.quirks,
        Quirks {
            references_unsorted: true,
            ..Quirks::default()
        }
    );
    assert_eq!(info.references[0].name(), "glibc-2.23", "order as written");
    assert_eq!(info.to_string(), doc, "printed as written");
    assert!(info.verify(&nixos_key()));

    let dup = "References: cr88am4p5saqinmygwhlybhlzabgxjiq-gcc-5.3.0 \
               cr88am4p5saqinmygwhlybhlzabgxjiq-gcc-5.3.0";
    let info = NarInfo::parse(&with_line(ASSIMP, "References", Some(dup))).unwrap();
    assert!(info.quirks.references_unsorted, "duplicates count");
}

#[test]
fn quirk_unknown_deriver() {
    let doc = with_line(SDL_MAN, "Deriver", Some("Deriver: unknown-deriver"));
    let info = NarInfo::parse(&doc).unwrap();
    assert_eq!(info.deriver, None);
    assert_eq!(
        info.quirks,
        Quirks {
            unknown_deriver: true,
            ..Quirks::default()
        }
    );
    assert!(!info.to_string().contains("Deriver"));
    assert!(info.verify(&nixos_key()));
}

// --- errors ---

fn err(doc: &str) -> String {
    NarInfo::parse(doc).unwrap_err().to_string()
}

#[test]
fn error_invalid_numbers() {
    assert_eq!(
        err(&with_line(ASSIMP, "NarSize", Some("NarSize: 12x"))),
        "line 7 (NarSize): invalid number \"12x\""
    );
    for bad in [
        "",
        "+12",
        "-1",
        " 12",
        "1 2",
        "18446744073709551616",
        "0x10",
    ] {
        let doc = with_line(ASSIMP, "FileSize", Some(&format!("FileSize: {bad}")));
        assert!(
            matches!(
                NarInfo::parse(&doc),
                Err(NarInfoError::Field {
                    line: 5,
                    field: "FileSize",
                    source: FieldError::InvalidNumber(_)
                })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        err(&with_line(ASSIMP, "NarSize", Some("NarSize: 0"))),
        "line 7 (NarSize): must not be 0 (Nix reads a zero NarSize as missing)"
    );
}

#[test]
fn error_missing_required_fields() {
    for field in ["StorePath", "URL", "NarHash", "NarSize"] {
        assert_eq!(
            NarInfo::parse(&with_line(ASSIMP, field, None)),
            Err(NarInfoError::Missing { field }),
        );
    }
    assert_eq!(err(""), "missing required field StorePath");
    assert_eq!(
        err(&with_line(ASSIMP, "URL", Some("URL: "))),
        "line 2 (URL): must not be empty"
    );
}

#[test]
fn error_duplicate_fields() {
    for field in Key::ALL.into_iter().filter(|k| k.once()).map(Key::name) {
        let doc = format!("{ASSIMP}{field}: x\n");
        match NarInfo::parse(&doc) {
            Err(NarInfoError::Duplicate {
                line: 10, field: f, ..
            }) => assert_eq!(f, field),
            // Fields ASSIMP lacks are parsed (and fail or pass) on their own.
            other => assert!(
                ["Deriver", "System", "CA"].contains(&field),
                "{field}: {other:?}"
            ),
        }
    }
    assert_eq!(
        err(&format!("{ASSIMP}NarSize: 1\n")),
        "line 10 (NarSize): duplicate field, first given on line 7"
    );
    let doc = format!("{SDL_MAN}System: x86_64-linux\n");
    assert!(matches!(
        NarInfo::parse(&doc),
        Err(NarInfoError::Duplicate {
            field: "System",
            first: 10,
            ..
        })
    ));
}

#[test]
fn error_bad_hashes() {
    for bad in [
        "sha256:1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix",
        "sha256:1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ixe",
        "md5:1ri21f7h1j1dhqwlml39maab2h7m",
        "1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6",
        "",
    ] {
        let doc = with_line(ASSIMP, "NarHash", Some(&format!("NarHash: {bad}")));
        assert!(
            matches!(
                NarInfo::parse(&doc),
                Err(NarInfoError::Field {
                    line: 6,
                    field: "NarHash",
                    source: FieldError::Hash(_)
                })
            ),
            "{bad:?}"
        );
    }
    let msg = err(&with_line(ASSIMP, "FileHash", Some("FileHash: sha256:zz")));
    assert!(
        msg.starts_with("line 4 (FileHash): hash \"sha256:zz\""),
        "{msg}"
    );
}

#[test]
fn error_bad_store_paths() {
    for (key, line, value) in [
        (
            "StorePath",
            1,
            "/nix/store/hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy",
        ),
        (
            "StorePath",
            1,
            "hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-assimp-3.1.1",
        ),
        (
            "StorePath",
            1,
            "/nix/store/hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-a/b",
        ),
        (
            "References",
            8,
            "/nix/store/cr88am4p5saqinmygwhlybhlzabgxjiq-gcc",
        ),
        ("References", 8, "cr88am4p5saqinmygwhlybhlzabgxjiq-gcc x"),
        ("Deriver", 10, "hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-.drv"),
    ] {
        let doc = with_line(ASSIMP, key, Some(&format!("{key}: {value}")));
        let doc = if key == "Deriver" {
            format!("{doc}Deriver: {value}\n")
        } else {
            doc
        };
        match NarInfo::parse(&doc) {
            Err(NarInfoError::Field {
                line: l,
                field,
                source: FieldError::StorePath(_),
            }) => assert_eq!((l, field), (line, key), "{value:?}"),
            other => panic!("{value:?}: {other:?}"),
        }
    }
    let msg = err(&with_line(ASSIMP, "StorePath", Some("StorePath: /tmp/x")));
    assert_eq!(
        msg,
        "line 1 (StorePath): \"/tmp/x\" is not in /nix/store (expected /nix/store/<hash>-<name>)"
    );
}

#[test]
fn error_malformed_lines() {
    assert_eq!(
        err(&format!("{ASSIMP}Garbage\n")),
        "line 10: expected `Key: value`, found \"Garbage\""
    );
    assert_eq!(
        err(&format!("{ASSIMP}NoSpace:x\n")),
        "line 10: expected `Key: value`, found \"NoSpace:x\""
    );
    let blank = ASSIMP.replacen("\nURL", "\n\nURL", 1);
    assert_eq!(err(&blank), "line 2: blank line inside the document");
    assert_eq!(err(&format!("{ASSIMP}: v\n")), "line 10: empty field name");
}

#[test]
fn error_oversized_input() {
    let huge = format!("{ASSIMP}X: {}\n", "a".repeat(MAX_NARINFO_SIZE));
    assert_eq!(
        NarInfo::parse(&huge),
        Err(NarInfoError::TooLarge { len: huge.len() })
    );
}

#[test]
fn parse_does_not_panic_on_odd_input() {
    for doc in [
        "\0",
        "é: é",
        "StorePath: /nix/store/é",
        "References: é",
        "NarSize: ٣",
        "\r\n",
        ": ",
        "StorePath: \nURL: \n",
    ] {
        let _ = NarInfo::parse(doc);
    }
}

// --- split_documents ---

#[test]
fn split_documents_reports_first_lines() {
    let text = format!("\n{ASSIMP}\n\n  \n{SDL_MAN}\n{}", SOURCE_CA.trim_end());
    let docs = split_documents(&text);
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0], (2, ASSIMP));
    assert_eq!(docs[1], (2 + 9 + 3, SDL_MAN));
    assert_eq!(docs[2], (14 + 11 + 1, SOURCE_CA.trim_end()));
    assert!(split_documents("").is_empty());
    assert!(split_documents("\n\n \n").is_empty());
    assert_eq!(split_documents("a: b"), [(1, "a: b")]);
    for (_, doc) in docs {
        assert!(NarInfo::parse(doc).unwrap().verify(&nixos_key()));
    }
}

#[test]
fn a_field_is_found_where_parse_reads_it() {
    let info = NarInfo::parse(ASSIMP).unwrap();
    let (at, url) = NarInfo::field_in(ASSIMP, "URL").unwrap();
    assert_eq!(url, info.url);
    assert_eq!(&ASSIMP[at..at + url.len()], url);
    // Split at the first ": ", as parse splits: this line's key is X-Note.
    let decoy = with_line(ASSIMP, "URL", Some("X-Note: URL: nar/decoy\nURL: nar/real"));
    assert_eq!(
        NarInfo::field_in(&decoy, "URL").map(|f| f.1),
        Some("nar/real")
    );
    assert_eq!(NarInfo::field_in(ASSIMP, "Nothing"), None);
}

#[test]
fn rewriting_an_unsigned_field_keeps_every_other_byte_and_the_signature() {
    let new_url = "nar/hfc7zqwc8nx2hn6g12dpylb5j4gfc3dy-1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6.nar.xz";
    let out = NarInfo::with_field(ASSIMP, "URL", new_url);
    assert_eq!(
        out,
        ASSIMP.replace(&NarInfo::parse(ASSIMP).unwrap().url, new_url)
    );
    let info = NarInfo::parse(&out).unwrap();
    assert_eq!(info.url, new_url);
    assert!(
        info.verify(&nixos_key()),
        "URL is not covered by the signature"
    );
    // A field the text lacks is appended, and the text gains its final newline.
    let bare = SDL_MAN.trim_end();
    let out = NarInfo::with_field(bare, "CA", "text:sha256:x");
    assert_eq!(out, format!("{bare}\nCA: text:sha256:x\n"));
    let out = NarInfo::with_field(bare, "FileSize", "7");
    assert_eq!(
        out,
        format!("{}\n", bare.replace("FileSize: 99272", "FileSize: 7"))
    );
    let out = NarInfo::with_field(&NarInfo::without_field(bare, "FileSize"), "FileSize", "7");
    assert_eq!(NarInfo::parse(&out).unwrap().file_size, Some(7));
    // A rewrite of the last line of a text without a final newline adds one.
    let out = NarInfo::with_field(SOURCE_CA.trim_end(), "CA", "x");
    assert!(out.ends_with("CA: x\n"));
}

#[test]
fn removing_a_field_removes_only_its_lines() {
    let out = NarInfo::without_field(ASSIMP, "FileHash");
    assert_eq!(
        out,
        ASSIMP.replace(
            "FileHash: sha256:0blq0zn4g9bsjc5r4c077m84cv4nr7a2rlvk245b7jid5db11vx5\n",
            ""
        )
    );
    assert_eq!(NarInfo::parse(&out).unwrap().file_hash, None);
    // Only lines whose key is exactly the field: not values that mention it.
    let decoy = with_line(ASSIMP, "URL", Some("X-Note: FileHash: x\nURL: nar/real"));
    let out = NarInfo::without_field(&decoy, "FileHash");
    assert!(out.contains("X-Note: FileHash: x\n"));
    assert_eq!(NarInfo::without_field("", "URL"), "");
}

#[test]
fn keys_are_listed_once_in_order_and_named_back() {
    for (i, key) in Key::ALL.into_iter().enumerate() {
        assert_eq!(key as usize, i, "{key:?}");
        assert_eq!(Key::parse(key.name()), Some(key));
    }
    assert_eq!(Key::parse("Sig").map(Key::once), Some(false));
    assert_eq!(Key::parse("ca"), None, "keys are case-sensitive, as in Nix");
}
