//! The URL grammar of a binary cache.
//!
//! A cache answers a small, closed set of paths; this module owns that set
//! ([`CacheUrl`]), the compression suffixes of NAR files ([`NarCompression`]),
//! and the content type of each answer. Parsing is strict on purpose: anything
//! outside the grammar (percent-encodings, `..`, double slashes, upper case,
//! over-long input) is an error before any lookup happens, so a server can
//! answer it with a 4xx and never touch storage. Query strings are the
//! caller's to strip.

use std::fmt;

use thiserror::Error;

use crate::hash::{Sha256, SHA256_LEN};
use crate::nixbase32::{self, DecodeError};
use crate::store_path::{
    truncate, validate_name, NameError, StorePath, StorePathError, StorePathHash, HASH_CHARS,
};

/// The longest request path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 512;

/// Characters in the nixbase32 spelling of a sha256.
const SHA256_CHARS: usize = nixbase32::encoded_len(SHA256_LEN);

/// How a NAR file is compressed, as named in `Compression:` and in its URL suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NarCompression {
    None,
    Xz,
    Zstd,
    Bzip2,
    Brotli,
    Lz4,
    Lzip,
}

impl NarCompression {
    /// Every variant, in declaration order.
    pub const ALL: [NarCompression; 7] = [
        NarCompression::None,
        NarCompression::Xz,
        NarCompression::Zstd,
        NarCompression::Bzip2,
        NarCompression::Brotli,
        NarCompression::Lz4,
        NarCompression::Lzip,
    ];

    /// The suffix after `.nar` in a NAR URL (empty for `None`).
    pub fn extension(self) -> &'static str {
        match self {
            NarCompression::None => "",
            NarCompression::Xz => ".xz",
            NarCompression::Zstd => ".zst",
            NarCompression::Bzip2 => ".bz2",
            NarCompression::Brotli => ".br",
            NarCompression::Lz4 => ".lz4",
            NarCompression::Lzip => ".lzip",
        }
    }

    /// Nix's name for the method, as written in a narinfo's `Compression:` line.
    pub fn name(self) -> &'static str {
        match self {
            NarCompression::None => "none",
            NarCompression::Xz => "xz",
            NarCompression::Zstd => "zstd",
            NarCompression::Bzip2 => "bzip2",
            NarCompression::Brotli => "br",
            NarCompression::Lz4 => "lz4",
            NarCompression::Lzip => "lzip",
        }
    }

    /// The method Nix calls `name`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The method whose URL suffix is `ext` (`""` for none, else with the dot).
    pub fn from_extension(ext: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.extension() == ext)
    }
}

impl fmt::Display for NarCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One path a binary cache serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheUrl {
    /// `nix-cache-info`
    CacheInfo,
    /// `<store path hash>.narinfo`
    NarInfo(StorePathHash),
    /// `nar/<file hash>.nar<extension>`: a NAR named by the sha256 of its
    /// (compressed) bytes, as `nix copy` and cache.nixos.org lay them out.
    Nar {
        file_hash: Sha256,
        compression: NarCompression,
    },
    /// `nar/<store path hash>-<nix32 NarHash>.nar<extension>`: a NAR named by
    /// the path it belongs to and the hash of its uncompressed contents
    /// (nix-serve's layout, and narbor's name for the NARs of upstreams that
    /// are not laid out by file hash: see [`NarInfo`](crate::NarInfo) URLs).
    NarOfPath {
        store_hash: StorePathHash,
        nar_hash: Sha256,
        compression: NarCompression,
    },
    /// `nar/<store path hash>.nar<extension>`: nixcache-oci's layout (and
    /// attic's, without an extension). The name says nothing about the
    /// bytes: only the index that published it can say which blob it is.
    NarOfStoreHash {
        store_hash: StorePathHash,
        compression: NarCompression,
    },
    /// `<store path hash>.ls`
    Listing(StorePathHash),
    /// `log/<base name>`: the build log of a derivation (usually a `.drv` base name;
    /// any valid base name is accepted).
    Log(StorePath),
    /// `realisations/sha256:<drv hash>!<output>.doi`
    Realisation { drv_hash: Sha256, output: String },
    /// `build-trace-v2/<derivation base name>/<output>.doi`: the build trace
    /// entry (the realisation) of one output of a content-addressed
    /// derivation, as Nix 2.35 and later ask for it.
    BuildTrace { drv: StorePath, output: String },
    /// `debuginfo/<build id>` or `debuginfo/<build id>.debug`: where the
    /// separate debug info of an ELF build id is (40 lowercase hex digits;
    /// Hydra writes the first form, `nix copy ?index-debug-info=true` the
    /// second, and debuggers ask for both).
    DebugInfo { build_id: BuildId, suffix: bool },
}

/// An ELF build id as Nix indexes it: 20 bytes, written as 40 lowercase hex
/// digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BuildId(pub [u8; 20]);

impl BuildId {
    /// Parses exactly 40 lowercase hex digits (what Nix's `index-debug-info`
    /// accepts).
    pub fn parse(s: &str) -> Option<BuildId> {
        let b = s.as_bytes();
        if b.len() != 40 {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 20];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(BuildId(out))
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a request path is not one a cache serves.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("request path is {len} bytes, longer than the {MAX_PATH_LEN} allowed")]
    TooLong { len: usize },
    #[error("request path {path:?} is not part of the binary cache protocol")]
    Unknown { path: String },
    #[error("request path {path:?}: invalid hash: {source}")]
    InvalidHash { path: String, source: DecodeError },
    #[error("request path {path:?}: {source}")]
    InvalidStorePath {
        path: String,
        source: StorePathError,
    },
    #[error("request path {path:?}: unknown NAR compression suffix {suffix:?}")]
    UnknownCompression { path: String, suffix: String },
    #[error("request path {path:?}: output name: {reason}")]
    InvalidOutputName { path: String, reason: NameError },
}

impl CacheUrl {
    /// Parses the path part of a request; one leading `/` is optional.
    pub fn parse(path: &str) -> Result<Self, UrlError> {
        if path.len() > MAX_PATH_LEN {
            return Err(UrlError::TooLong { len: path.len() });
        }
        let p = path.strip_prefix('/').unwrap_or(path);
        let unknown = || UrlError::Unknown {
            path: truncate(path),
        };
        let bad_hash = |source| UrlError::InvalidHash {
            path: truncate(path),
            source,
        };
        let store_hash = |s: &str| {
            nixbase32::decode_fixed::<20>(s.as_bytes())
                .map(StorePathHash)
                .map_err(bad_hash)
        };
        let sha256 = |s: &str| {
            nixbase32::decode_fixed::<SHA256_LEN>(s.as_bytes())
                .map(Sha256)
                .map_err(bad_hash)
        };

        if p == "nix-cache-info" {
            return Ok(CacheUrl::CacheInfo);
        }
        if let Some(rest) = p.strip_prefix("nar/") {
            // `<name>.nar<extension>`, where the name is a file hash (52
            // characters), a store path hash (32), or both joined by `-`.
            let (name, suffix) = rest.split_once(".nar").ok_or_else(unknown)?;
            let compression = NarCompression::from_extension(suffix).ok_or_else(|| {
                UrlError::UnknownCompression {
                    path: truncate(path),
                    suffix: truncate(suffix),
                }
            })?;
            return match name.len() {
                SHA256_CHARS => Ok(CacheUrl::Nar {
                    file_hash: sha256(name)?,
                    compression,
                }),
                HASH_CHARS => Ok(CacheUrl::NarOfStoreHash {
                    store_hash: store_hash(name)?,
                    compression,
                }),
                _ => {
                    let (store, nar) = name.split_once('-').ok_or_else(unknown)?;
                    if store.len() != HASH_CHARS || nar.len() != SHA256_CHARS {
                        return Err(unknown());
                    }
                    Ok(CacheUrl::NarOfPath {
                        store_hash: store_hash(store)?,
                        nar_hash: sha256(nar)?,
                        compression,
                    })
                }
            };
        }
        if let Some(rest) = p.strip_prefix("log/") {
            return StorePath::from_base_name(rest)
                .map(CacheUrl::Log)
                .map_err(|source| UrlError::InvalidStorePath {
                    path: truncate(path),
                    source,
                });
        }
        if let Some(rest) = p.strip_prefix("build-trace-v2/") {
            let rest = rest.strip_suffix(".doi").ok_or_else(unknown)?;
            let (drv, output) = rest.split_once('/').ok_or_else(unknown)?;
            let drv =
                StorePath::from_base_name(drv).map_err(|source| UrlError::InvalidStorePath {
                    path: truncate(path),
                    source,
                })?;
            if !drv.is_derivation() {
                return Err(unknown());
            }
            validate_name(output).map_err(|reason| UrlError::InvalidOutputName {
                path: truncate(path),
                reason,
            })?;
            return Ok(CacheUrl::BuildTrace {
                drv,
                output: output.to_owned(),
            });
        }
        if let Some(rest) = p.strip_prefix("debuginfo/") {
            let (id, suffix) = match rest.strip_suffix(".debug") {
                Some(id) => (id, true),
                None => (rest, false),
            };
            let build_id = BuildId::parse(id).ok_or_else(unknown)?;
            return Ok(CacheUrl::DebugInfo { build_id, suffix });
        }
        if let Some(rest) = p.strip_prefix("realisations/sha256:") {
            let rest = rest.strip_suffix(".doi").ok_or_else(unknown)?;
            let (hash, output) = rest.split_once('!').ok_or_else(unknown)?;
            if hash.len() != SHA256_CHARS {
                return Err(unknown());
            }
            let drv_hash = sha256(hash)?;
            validate_name(output).map_err(|reason| UrlError::InvalidOutputName {
                path: truncate(path),
                reason,
            })?;
            return Ok(CacheUrl::Realisation {
                drv_hash,
                output: output.to_owned(),
            });
        }
        // `<hash>.narinfo` and `<hash>.ls`: the hash is exactly 32 characters, so
        // anything else (a slash, a longer stem) is not ours.
        let (stem, ext) = p.split_at_checked(HASH_CHARS).ok_or_else(unknown)?;
        match ext {
            ".narinfo" => Ok(CacheUrl::NarInfo(store_hash(stem)?)),
            ".ls" => Ok(CacheUrl::Listing(store_hash(stem)?)),
            _ => Err(unknown()),
        }
    }

    /// The path, without a leading slash; [`CacheUrl::parse`] reads it back.
    pub fn to_path(&self) -> String {
        match self {
            CacheUrl::CacheInfo => "nix-cache-info".to_owned(),
            CacheUrl::NarInfo(h) => format!("{h}.narinfo"),
            CacheUrl::Nar {
                file_hash,
                compression,
            } => format!(
                "nar/{}.nar{}",
                file_hash.to_nix32(),
                compression.extension()
            ),
            CacheUrl::NarOfPath {
                store_hash,
                nar_hash,
                compression,
            } => format!(
                "nar/{store_hash}-{}.nar{}",
                nar_hash.to_nix32(),
                compression.extension()
            ),
            CacheUrl::NarOfStoreHash {
                store_hash,
                compression,
            } => format!("nar/{store_hash}.nar{}", compression.extension()),
            CacheUrl::Listing(h) => format!("{h}.ls"),
            CacheUrl::Log(p) => format!("log/{}", p.base_name()),
            CacheUrl::Realisation { drv_hash, output } => {
                format!("realisations/sha256:{}!{output}.doi", drv_hash.to_nix32())
            }
            CacheUrl::BuildTrace { drv, output } => {
                format!("build-trace-v2/{}/{output}.doi", drv.base_name())
            }
            CacheUrl::DebugInfo { build_id, suffix } => {
                format!(
                    "debuginfo/{build_id}{}",
                    if *suffix { ".debug" } else { "" }
                )
            }
        }
    }

    /// True for the NAR forms: their answer is a (compressed) NAR, streamed.
    pub fn is_nar(&self) -> bool {
        matches!(
            self,
            CacheUrl::Nar { .. } | CacheUrl::NarOfPath { .. } | CacheUrl::NarOfStoreHash { .. }
        )
    }

    /// The `Content-Type` of the answer.
    pub fn content_type(&self) -> &'static str {
        match self {
            CacheUrl::CacheInfo => "text/x-nix-cache-info",
            CacheUrl::NarInfo(_) => "text/x-nix-narinfo",
            CacheUrl::Nar { .. } | CacheUrl::NarOfPath { .. } | CacheUrl::NarOfStoreHash { .. } => {
                "application/x-nix-nar"
            }
            CacheUrl::Listing(_)
            | CacheUrl::Realisation { .. }
            | CacheUrl::BuildTrace { .. }
            | CacheUrl::DebugInfo { .. } => "application/json",
            CacheUrl::Log(_) => "text/plain; charset=utf-8",
        }
    }
}

/// Writes [`CacheUrl::to_path`].
impl fmt::Display for CacheUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H32: &str = "0a3yijp35sygmy51cnrrz11vimwapz7c";
    const H52: &str = "0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c";

    fn ok(p: &str) -> CacheUrl {
        CacheUrl::parse(p).unwrap_or_else(|e| panic!("{p:?}: {e}"))
    }

    #[test]
    fn every_kind_parses_and_round_trips() {
        let cases = [
            ("nix-cache-info", "text/x-nix-cache-info"),
            (&format!("{H32}.narinfo"), "text/x-nix-narinfo"),
            (&format!("{H32}.ls"), "application/json"),
            (&format!("nar/{H52}.nar"), "application/x-nix-nar"),
            (&format!("nar/{H52}.nar.xz"), "application/x-nix-nar"),
            (
                &format!("log/{H32}-hello-2.12.drv"),
                "text/plain; charset=utf-8",
            ),
            (
                &format!("realisations/sha256:{H52}!out.doi"),
                "application/json",
            ),
            (&format!("nar/{H32}-{H52}.nar"), "application/x-nix-nar"),
            (&format!("nar/{H32}-{H52}.nar.zst"), "application/x-nix-nar"),
            (&format!("nar/{H32}.nar.xz"), "application/x-nix-nar"),
            (&format!("nar/{H32}.nar"), "application/x-nix-nar"),
            (
                &format!("build-trace-v2/{H32}-hello-2.12.drv/out.doi"),
                "application/json",
            ),
            (
                "debuginfo/0123456789abcdef0123456789abcdef01234567",
                "application/json",
            ),
            (
                "debuginfo/0123456789abcdef0123456789abcdef01234567.debug",
                "application/json",
            ),
        ];
        for (path, ct) in cases {
            let u = ok(path);
            assert_eq!(u.to_path(), path);
            assert_eq!(u.to_string(), path);
            assert_eq!(ok(&format!("/{path}")), u, "leading slash");
            assert_eq!(u.content_type(), ct, "{path}");
        }
        assert_eq!(
            ok(&format!("{H32}.narinfo")),
            CacheUrl::NarInfo(StorePathHash::parse(H32).unwrap())
        );
        assert_eq!(
            ok(&format!("realisations/sha256:{H52}!dev.doi")),
            CacheUrl::Realisation {
                drv_hash: Sha256::parse(&format!("sha256:{H52}")).unwrap(),
                output: "dev".into()
            }
        );
    }

    #[test]
    fn the_three_nar_namings_are_told_apart() {
        // cache.nixos.org: the file hash.
        assert!(matches!(
            ok(&format!("nar/{H52}.nar.xz")),
            CacheUrl::Nar { .. }
        ));
        // nix-serve (nix-serve.psgi at e27bbf84: "nar/$hashPart-$narHash2.nar")
        // and narbor's own name for other upstreams' NARs.
        assert_eq!(
            ok(&format!("nar/{H32}-{H52}.nar.zst")),
            CacheUrl::NarOfPath {
                store_hash: StorePathHash::parse(H32).unwrap(),
                nar_hash: Sha256::parse(&format!("sha256:{H52}")).unwrap(),
                compression: NarCompression::Zstd,
            }
        );
        // nixcache-oci (lib/cache-builder.sh at 6a4b9e4: "URL: nar/${hash_prefix}.nar.xz").
        assert_eq!(
            ok(&format!("nar/{H32}.nar.xz")),
            CacheUrl::NarOfStoreHash {
                store_hash: StorePathHash::parse(H32).unwrap(),
                compression: NarCompression::Xz,
            }
        );
        for bad in [
            format!("nar/{H32}-{H32}.nar"),
            format!("nar/{H52}-{H32}.nar"),
            format!("nar/{H32}_{H52}.nar"),
            format!("nar/{H32}-{H52}-.nar"),
            format!("nar/{}.nar", &H32[..31]),
            format!("nar/{H32}-{H52}.nar.gz"),
        ] {
            assert!(CacheUrl::parse(&bad).is_err(), "{bad:?} parsed");
        }
        assert!(ok(&format!("nar/{H32}.nar")).is_nar());
        assert!(!ok(&format!("{H32}.narinfo")).is_nar());
    }

    #[test]
    fn build_traces_and_debug_info() {
        let url = ok(&format!("build-trace-v2/{H32}-hello-2.12.drv/dev.doi"));
        match &url {
            CacheUrl::BuildTrace { drv, output } => {
                assert_eq!(drv.name(), "hello-2.12.drv");
                assert_eq!(output, "dev");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            format!("build-trace-v2/{H32}-hello-2.12/out.doi"),
            format!("build-trace-v2/{H32}-hello.drv/out"),
            format!("build-trace-v2/{H32}-hello.drv/a/b.doi"),
            format!("build-trace-v2/{H32}-hello.drv/.doi"),
            format!("build-trace-v2/{H32}-hello.drv.doi"),
            "debuginfo/0123456789ABCDEF0123456789abcdef01234567".to_owned(),
            "debuginfo/0123456789abcdef0123456789abcdef0123456".to_owned(),
            "debuginfo/0123456789abcdef0123456789abcdef012345678".to_owned(),
            "debuginfo/0123456789abcdef0123456789abcdef01234567.dbg".to_owned(),
            "debuginfo/".to_owned(),
        ] {
            assert!(CacheUrl::parse(&bad).is_err(), "{bad:?} parsed");
        }
        let id = BuildId::parse("00ff0123456789abcdef0123456789abcdef0123").unwrap();
        assert_eq!(id.0[0], 0);
        assert_eq!(id.0[1], 0xff);
        assert_eq!(id.to_string(), "00ff0123456789abcdef0123456789abcdef0123");
    }

    #[test]
    fn every_compression_round_trips() {
        for c in NarCompression::ALL {
            let path = format!("nar/{H52}.nar{}", c.extension());
            match ok(&path) {
                CacheUrl::Nar {
                    file_hash,
                    compression,
                } => {
                    assert_eq!(compression, c);
                    assert_eq!(file_hash.to_nix32(), H52);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(NarCompression::from_name(c.name()), Some(c));
            assert_eq!(NarCompression::from_extension(c.extension()), Some(c));
            assert_eq!(ok(&path).to_path(), path);
        }
        let names: Vec<_> = NarCompression::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["none", "xz", "zstd", "bzip2", "br", "lz4", "lzip"]);
        let exts: Vec<_> = NarCompression::ALL.iter().map(|c| c.extension()).collect();
        assert_eq!(exts, ["", ".xz", ".zst", ".bz2", ".br", ".lz4", ".lzip"]);
        assert_eq!(NarCompression::from_name("gzip"), None);
    }

    #[test]
    fn rejects_unknown_shapes() {
        let upper = H32.to_uppercase();
        let bad = [
            "".to_owned(),
            "/".to_owned(),
            "nix-cache-info/".to_owned(),
            "//nix-cache-info".to_owned(),
            "nix-cache-info?x=1".to_owned(),
            "nix%2Dcache-info".to_owned(),
            format!("{H32}.narinfo/"),
            format!("{H32}.narinfo.xz"),
            format!("{H32}.NARINFO"),
            format!("{H32}x.narinfo"),
            format!("x/{H32}.narinfo"),
            format!("../{H32}.narinfo"),
            format!("nar/../{H32}.narinfo"),
            format!("nar//{H52}.nar"),
            format!("nar/{H52}.nar/"),
            format!("nar/{H52}"),
            format!("nar/{H52}.nar.xz/x"),
            format!("nar/sub/{H52}.nar"),
            format!("realisations/sha256:{H52}.doi"),
            format!("realisations/sha256:{H52}!out"),
            format!("realisations/sha256:{H52}x!out.doi"),
            format!("realisations/{H52}!out.doi"),
            format!("{upper}.ls"),
        ];
        for p in &bad {
            assert!(CacheUrl::parse(p).is_err(), "{p:?} parsed");
        }
        assert!(matches!(
            CacheUrl::parse(&format!("{upper}.narinfo")),
            Err(UrlError::InvalidHash { .. })
        ));
        assert!(matches!(
            CacheUrl::parse("..%2F..%2Fetc%2Fpasswd"),
            Err(UrlError::Unknown { .. })
        ));
    }

    #[test]
    fn specific_errors() {
        let bad_char = format!("{}e.narinfo", &H32[..31]);
        assert!(matches!(
            CacheUrl::parse(&bad_char),
            Err(UrlError::InvalidHash { .. })
        ));
        let overflow = format!("nar/z{}.nar", &H52[1..]);
        assert!(matches!(
            CacheUrl::parse(&overflow),
            Err(UrlError::InvalidHash {
                source: DecodeError::TrailingBits { .. },
                ..
            })
        ));
        assert_eq!(
            CacheUrl::parse(&format!("nar/{H52}.nar.gz")),
            Err(UrlError::UnknownCompression {
                path: format!("nar/{H52}.nar.gz"),
                suffix: ".gz".into()
            })
        );
        for p in [
            "log/..".to_owned(),
            format!("log/{H32}-a/b"),
            format!("log/{H32}-%2e%2e"),
            format!("log/{H32}-"),
        ] {
            assert!(
                matches!(CacheUrl::parse(&p), Err(UrlError::InvalidStorePath { .. })),
                "{p:?}"
            );
        }
        for out in ["", ".hidden", "a/b", "a!b", "%41"] {
            let p = format!("realisations/sha256:{H52}!{out}.doi");
            assert!(
                matches!(CacheUrl::parse(&p), Err(UrlError::InvalidOutputName { .. })),
                "{p:?}"
            );
        }
    }

    #[test]
    fn overlong_input_is_rejected_before_parsing() {
        let long = format!("log/{H32}-{}", "a".repeat(600));
        assert_eq!(
            CacheUrl::parse(&long),
            Err(UrlError::TooLong { len: long.len() })
        );
        // The limit is inclusive and counts the leading slash.
        let at_limit = "a".repeat(MAX_PATH_LEN);
        assert!(matches!(
            CacheUrl::parse(&at_limit),
            Err(UrlError::Unknown { .. })
        ));
    }

    #[test]
    fn multibyte_input_does_not_panic() {
        for p in [
            "é".repeat(20),
            format!("{}é.narinfo", &H32[..31]),
            format!("nar/{}é.nar", &H52[..51]),
            format!("realisations/sha256:{}é!out.doi", &H52[..51]),
            format!("log/{}é-x", &H32[..31]),
        ] {
            assert!(CacheUrl::parse(&p).is_err(), "{p:?}");
        }
    }
}
