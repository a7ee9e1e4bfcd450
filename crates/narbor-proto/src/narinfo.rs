//! The `.narinfo` document: parse, print, fingerprint, sign, verify.
//!
//! This module owns the narinfo text format as Nix 2.8 reads and writes it,
//! the quirks real caches produce ([`Quirks`]: recorded, not rejected), the
//! fingerprint that signatures cover, and splitting a text of several
//! documents. It does not fetch anything, and it does not check that a NAR
//! matches its hashes: that is the caller's job once the bytes are in hand.
//!
//! Printing does not escape: a value holding a newline (only possible by
//! building a [`NarInfo`] by hand) produces a document that reads back
//! differently.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::hash::{HashError, HashFormat, Sha256};
use crate::signing::{PublicKey, SecretKey, Signature};
use crate::store_path::{truncate, StorePath, StorePathError};
use crate::url::{CacheUrl, NarCompression};

pub(crate) mod kv;
#[cfg(test)]
mod tests;

pub use kv::LineError;

/// The largest document [`NarInfo::parse`] accepts, in bytes.
pub const MAX_NARINFO_SIZE: usize = 16 * 1024 * 1024;

/// The `Deriver:` value Nix reads as "no deriver".
pub const UNKNOWN_DERIVER: &str = "unknown-deriver";

/// The compression a narinfo without a `Compression:` line means.
pub const DEFAULT_COMPRESSION: &str = "bzip2";

/// One `.narinfo` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub store_path: StorePath,
    /// Where the (possibly compressed) NAR is, relative to the cache root.
    pub url: String,
    /// Nix's compression name; `bzip2` when the line is missing.
    pub compression: String,
    pub file_hash: Option<Sha256>,
    pub file_size: Option<u64>,
    pub nar_hash: Sha256,
    pub nar_size: u64,
    /// In the order written; each is written as a base name.
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub system: Option<String>,
    /// Raw `Sig:` values, kept even when they do not parse (Nix is lenient).
    pub sigs: Vec<String>,
    pub ca: Option<String>,
    /// Fields this crate does not know, in order; printed after the known ones.
    pub unknown: Vec<(String, String)>,
    /// How the document departed from what Nix writes today.
    pub quirks: Quirks,
}

/// Real-world departures from the canonical form, recorded rather than rejected.
///
/// A document with any quirk does not print back byte for byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks {
    /// No `Compression:` line; [`NarInfo::compression`] was set to `bzip2`.
    pub compression_missing: bool,
    /// `NarHash` or `FileHash` was written in hex or SRI rather than nix32.
    pub non_nix32_hashes: bool,
    /// `References` were not in strictly ascending order (or had duplicates).
    pub references_unsorted: bool,
    /// `Deriver: unknown-deriver`, read as no deriver.
    pub unknown_deriver: bool,
}

impl Quirks {
    /// True when any quirk was seen.
    pub fn any(&self) -> bool {
        self.compression_missing
            || self.non_nix32_hashes
            || self.references_unsorted
            || self.unknown_deriver
    }
}

/// Why a text is not a narinfo.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NarInfoError {
    #[error("narinfo is {len} bytes, larger than the {MAX_NARINFO_SIZE} allowed")]
    TooLarge { len: usize },
    #[error("line {line}: {source}")]
    Line { line: usize, source: LineError },
    #[error("line {line} ({field}): {source}")]
    Field {
        line: usize,
        field: &'static str,
        source: FieldError,
    },
    #[error("line {line} ({field}): duplicate field, first given on line {first}")]
    Duplicate {
        line: usize,
        field: &'static str,
        first: usize,
    },
    #[error("missing required field {field}")]
    Missing { field: &'static str },
}

/// Why a field's value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    #[error("invalid number {0:?}")]
    InvalidNumber(String),
    #[error("must not be 0 (Nix reads a zero NarSize as missing)")]
    Zero,
    #[error("must not be empty")]
    Empty,
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    StorePath(#[from] StorePathError),
}

/// The fields this module knows, in Nix's print order. Every `match` on a
/// key is exhaustive, so a new variant must be given a name, a rule for
/// repeating, and a meaning in [`NarInfo::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    StorePath,
    Url,
    Compression,
    FileHash,
    FileSize,
    NarHash,
    NarSize,
    References,
    Deriver,
    System,
    Sig,
    Ca,
}

impl Key {
    /// Every key, in declaration order (`ALL[k as usize] == k`).
    const ALL: [Key; 12] = [
        Key::StorePath,
        Key::Url,
        Key::Compression,
        Key::FileHash,
        Key::FileSize,
        Key::NarHash,
        Key::NarSize,
        Key::References,
        Key::Deriver,
        Key::System,
        Key::Sig,
        Key::Ca,
    ];

    /// The key as written in a document.
    fn name(self) -> &'static str {
        match self {
            Key::StorePath => "StorePath",
            Key::Url => "URL",
            Key::Compression => "Compression",
            Key::FileHash => "FileHash",
            Key::FileSize => "FileSize",
            Key::NarHash => "NarHash",
            Key::NarSize => "NarSize",
            Key::References => "References",
            Key::Deriver => "Deriver",
            Key::System => "System",
            Key::Sig => "Sig",
            Key::Ca => "CA",
        }
    }

    /// The known key named `name`; None for a field this module keeps as
    /// [`NarInfo::unknown`].
    fn parse(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// True when a second line of this key is an error; `Sig` repeats.
    fn once(self) -> bool {
        match self {
            Key::Sig => false,
            Key::StorePath
            | Key::Url
            | Key::Compression
            | Key::FileHash
            | Key::FileSize
            | Key::NarHash
            | Key::NarSize
            | Key::References
            | Key::Deriver
            | Key::System
            | Key::Ca => true,
        }
    }
}

fn parse_u64(value: &str) -> Result<u64, FieldError> {
    // `u64::from_str` takes a leading '+'; Nix's writers never do.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::InvalidNumber(truncate(value)));
    }
    value
        .parse()
        .map_err(|_| FieldError::InvalidNumber(truncate(value)))
}

fn parse_hash(value: &str, quirks: &mut Quirks) -> Result<Sha256, FieldError> {
    let (hash, format) = Sha256::parse_with_format(value)?;
    if format != HashFormat::Nix32 {
        quirks.non_nix32_hashes = true;
    }
    Ok(hash)
}

impl NarInfo {
    /// A minimal narinfo: no compression (`none`), no file hash or size, no
    /// references, deriver, signatures or extra fields.
    pub fn new(store_path: StorePath, url: String, nar_hash: Sha256, nar_size: u64) -> Self {
        NarInfo {
            store_path,
            url,
            compression: NarCompression::None.name().to_owned(),
            file_hash: None,
            file_size: None,
            nar_hash,
            nar_size,
            references: Vec::new(),
            deriver: None,
            system: None,
            sigs: Vec::new(),
            ca: None,
            unknown: Vec::new(),
            quirks: Quirks::default(),
        }
    }

    /// The value of the first `key` line of the narinfo text `s`, and the
    /// byte offset where it starts, with lines split as [`parse`](Self::parse)
    /// splits them. For reading a field back from a text that parsed, without
    /// keeping a copy of it.
    pub fn field_in<'a>(s: &'a str, key: &str) -> Option<(usize, &'a str)> {
        kv::fields(s)
            .filter_map(Result::ok)
            .find(|f| f.key == key)
            .map(|f| (f.value.as_ptr() as usize - s.as_ptr() as usize, f.value))
    }

    /// The text `s` (a narinfo that parsed) with the value of its `key`
    /// line replaced by `value`, or with `key: value` appended when it has
    /// none; every other byte is kept, and the result ends in a newline
    /// (Nix 2.8 reads a last line without one as a corrupt narinfo). For
    /// the fields no signature covers (`URL`, `Compression`, `FileHash`,
    /// `FileSize`), which a cache that serves the NAR from elsewhere must
    /// rewrite.
    pub fn with_field(s: &str, key: &str, value: &str) -> String {
        let mut out = String::with_capacity(s.len() + value.len() + key.len() + 3);
        match Self::field_in(s, key) {
            Some((start, old)) => {
                out.push_str(&s[..start]);
                out.push_str(value);
                out.push_str(&s[start + old.len()..]);
                ensure_final_newline(&mut out);
            }
            None => {
                out.push_str(s.trim_end_matches(['\n', ' ', '\t', '\r']));
                out.push('\n');
                out.push_str(key);
                out.push_str(": ");
                out.push_str(value);
                out.push('\n');
            }
        }
        out
    }

    /// The text `s` without its `key` lines (every other byte kept).
    pub fn without_field(s: &str, key: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for line in s.split_inclusive('\n') {
            let is_key = line
                .split_once(": ")
                .is_some_and(|(k, _)| k == key && !k.contains('\n'));
            if !is_key {
                out.push_str(line);
            }
        }
        ensure_final_newline(&mut out);
        out
    }

    /// Parses one document.
    pub fn parse(s: &str) -> Result<Self, NarInfoError> {
        if s.len() > MAX_NARINFO_SIZE {
            return Err(NarInfoError::TooLarge { len: s.len() });
        }
        let mut quirks = Quirks::default();
        let mut first_line = [0usize; Key::ALL.len()];
        let mut store_path = None;
        let mut url = None;
        let mut compression = None;
        let mut file_hash = None;
        let mut file_size = None;
        let mut nar_hash = None;
        let mut nar_size = None;
        let mut references = Vec::new();
        let mut deriver = None;
        let mut system = None;
        let mut sigs = Vec::new();
        let mut ca = None;
        let mut unknown = Vec::new();

        for f in kv::fields(s) {
            let f = f.map_err(|(line, source)| NarInfoError::Line { line, source })?;
            let (line, value) = (f.line, f.value);
            let Some(key) = Key::parse(f.key) else {
                unknown.push((f.key.to_owned(), value.to_owned()));
                continue;
            };
            let field = key.name();
            if key.once() {
                let first = &mut first_line[key as usize];
                if *first != 0 {
                    return Err(NarInfoError::Duplicate {
                        line,
                        field,
                        first: *first,
                    });
                }
                *first = line;
            }
            let err = |source: FieldError| NarInfoError::Field {
                line,
                field,
                source,
            };
            match key {
                Key::StorePath => {
                    store_path =
                        Some(StorePath::from_absolute_path(value).map_err(|e| err(e.into()))?);
                }
                Key::Url if value.is_empty() => return Err(err(FieldError::Empty)),
                Key::Url => url = Some(value.to_owned()),
                Key::Compression => compression = Some(value.to_owned()),
                Key::FileHash => file_hash = Some(parse_hash(value, &mut quirks).map_err(err)?),
                Key::FileSize => file_size = Some(parse_u64(value).map_err(err)?),
                Key::NarHash => nar_hash = Some(parse_hash(value, &mut quirks).map_err(err)?),
                Key::NarSize => match parse_u64(value).map_err(err)? {
                    0 => return Err(err(FieldError::Zero)),
                    n => nar_size = Some(n),
                },
                Key::References => {
                    for r in value.split_ascii_whitespace() {
                        references.push(StorePath::from_base_name(r).map_err(|e| err(e.into()))?);
                    }
                }
                Key::Deriver if value == UNKNOWN_DERIVER => quirks.unknown_deriver = true,
                Key::Deriver => {
                    deriver = Some(StorePath::from_base_name(value).map_err(|e| err(e.into()))?);
                }
                Key::System => system = Some(value.to_owned()),
                Key::Sig => sigs.push(value.to_owned()),
                Key::Ca => ca = Some(value.to_owned()),
            }
        }

        let missing = |field| NarInfoError::Missing { field };
        quirks.references_unsorted = references.windows(2).any(|w| w[0] >= w[1]);
        let compression = compression.unwrap_or_else(|| {
            quirks.compression_missing = true;
            DEFAULT_COMPRESSION.to_owned()
        });
        Ok(NarInfo {
            store_path: store_path.ok_or_else(|| missing("StorePath"))?,
            url: url.ok_or_else(|| missing("URL"))?,
            compression,
            file_hash,
            file_size,
            nar_hash: nar_hash.ok_or_else(|| missing("NarHash"))?,
            nar_size: nar_size.ok_or_else(|| missing("NarSize"))?,
            references,
            deriver,
            system,
            sigs,
            ca,
            unknown,
            quirks,
        })
    }

    /// What a signature covers:
    /// `1;<store path>;sha256:<nix32 NarHash>;<NarSize>;<sorted, comma-joined reference paths>`.
    pub fn fingerprint(&self) -> String {
        let mut refs: Vec<&StorePath> = self.references.iter().collect();
        refs.sort();
        refs.dedup();
        let refs: Vec<String> = refs.iter().map(|r| r.to_absolute_path()).collect();
        format!(
            "1;{};{};{};{}",
            self.store_path,
            self.nar_hash,
            self.nar_size,
            refs.join(",")
        )
    }

    /// Signs the fingerprint with `key`, replacing any signature by a key of the
    /// same name (in place, so other signatures keep their order).
    pub fn sign(&mut self, key: &SecretKey) {
        let sig = key.sign(self.fingerprint().as_bytes()).to_string();
        let prefix = format!("{}:", key.name());
        let mut replaced = false;
        self.sigs.retain_mut(|s| {
            if !s.starts_with(&prefix) {
                true
            } else if !replaced {
                replaced = true;
                s.clone_from(&sig);
                true
            } else {
                false
            }
        });
        if !replaced {
            self.sigs.push(sig);
        }
    }

    /// The `Sig:` values that parse; the rest are skipped.
    pub fn signatures(&self) -> impl Iterator<Item = Signature> + '_ {
        self.sigs.iter().filter_map(|s| Signature::parse(s).ok())
    }

    /// The names of the keys in `keys` that made a valid signature, each once,
    /// in the order of `keys`.
    pub fn valid_signers<'k>(&self, keys: &'k [PublicKey]) -> Vec<&'k str> {
        let fingerprint = self.fingerprint();
        let sigs: Vec<Signature> = self.signatures().collect();
        let mut names: Vec<&str> = Vec::new();
        for k in keys {
            if !names.contains(&k.name())
                && sigs.iter().any(|s| k.verify(fingerprint.as_bytes(), s))
            {
                names.push(k.name());
            }
        }
        names
    }

    /// True when some signature verifies with a key of the same name in `keys`.
    pub fn verify(&self, keys: &[PublicKey]) -> bool {
        let fingerprint = self.fingerprint();
        self.signatures()
            .any(|s| keys.iter().any(|k| k.verify(fingerprint.as_bytes(), &s)))
    }

    /// The file hash spelled in the URL, when the URL is `nar/<nix32>.nar[.ext]`.
    pub fn file_url_hash(&self) -> Option<Sha256> {
        match CacheUrl::parse(&self.url) {
            Ok(CacheUrl::Nar { file_hash, .. }) => Some(file_hash),
            _ => None,
        }
    }

    /// The compression, when it is one [`NarCompression`] knows.
    pub fn nar_compression(&self) -> Option<NarCompression> {
        NarCompression::from_name(&self.compression)
    }
}

/// Prints in Nix 2.8's `NarInfo::to_string` order.
impl fmt::Display for NarInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "StorePath: {}", self.store_path)?;
        writeln!(f, "URL: {}", self.url)?;
        writeln!(f, "Compression: {}", self.compression)?;
        if let Some(h) = &self.file_hash {
            writeln!(f, "FileHash: {h}")?;
        }
        if let Some(n) = self.file_size {
            writeln!(f, "FileSize: {n}")?;
        }
        writeln!(f, "NarHash: {}", self.nar_hash)?;
        writeln!(f, "NarSize: {}", self.nar_size)?;
        f.write_str("References: ")?;
        for (i, r) in self.references.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}-{}", r.hash(), r.name())?;
        }
        f.write_str("\n")?;
        if let Some(d) = &self.deriver {
            writeln!(f, "Deriver: {}-{}", d.hash(), d.name())?;
        }
        if let Some(s) = &self.system {
            writeln!(f, "System: {s}")?;
        }
        for s in &self.sigs {
            writeln!(f, "Sig: {s}")?;
        }
        if let Some(ca) = &self.ca {
            writeln!(f, "CA: {ca}")?;
        }
        for (k, v) in &self.unknown {
            writeln!(f, "{k}: {v}")?;
        }
        Ok(())
    }
}

impl FromStr for NarInfo {
    type Err = NarInfoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Appends a newline unless `s` is empty or ends in one.
fn ensure_final_newline(s: &mut String) {
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
}

/// Splits a text of several documents separated by one or more blank lines into
/// `(1-based line number of the document's first line, document text)` pairs.
/// Each document keeps its final newline, if it had one.
pub fn split_documents(s: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start: Option<(usize, usize)> = None; // (line, byte offset)
    let mut end = 0;
    let mut offset = 0;
    for (i, line) in s.split_inclusive('\n').enumerate() {
        let next = offset + line.len();
        if line.trim().is_empty() {
            if let Some((first, begin)) = start.take() {
                docs.push((first, &s[begin..end]));
            }
        } else {
            start.get_or_insert((i + 1, offset));
            end = next;
        }
        offset = next;
    }
    if let Some((first, begin)) = start {
        docs.push((first, &s[begin..end]));
    }
    docs
}
