//! Where the NAR of an upstream narinfo is, and the name narbor serves it
//! under.
//!
//! cache.nixos.org and every cache `nix copy` writes name a NAR by the hash
//! of its file: `URL: nar/<FileHash>.nar.xz`. narbor serves those narinfos
//! byte for byte and fetches the NAR from the same path of the same upstream.
//! Other caches do not (see the table in docs/configuration.md, "Upstreams"):
//! cachix names NARs by a hex FileHash or a UUID, attic by the store path hash
//! (`nar/<hash>.nar`, redirected to S3), harmonia by the NarHash with a query
//! string, nix-serve by `<store hash>-<NarHash>`, snix by an encoded castore
//! node, and any of them may give an absolute URL. narbor serves those NARs
//! under a name of its own, `nar/<store path hash>-<NarHash>.nar<ext>`
//! ([`CacheUrl::NarOfPath`]): `URL` is one of the fields no signature covers
//! (with `Compression`, `FileHash`, `FileSize`), so the narinfo keeps every
//! signature. The name carries the store path hash, so narbor can find the
//! upstream's URL again from the upstream's narinfo after a restart; the
//! [`NarSources`] map remembers it in between.
//!
//! This module decides; it fetches nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use narbor_proto::url::NarCompression;
use narbor_proto::{CacheUrl, NarInfo};

use crate::verify::NarCheck;

/// Where a NAR narbor serves under a name of its own really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarSource {
    /// The upstream whose narinfo named it.
    pub upstream: usize,
    /// The absolute URL to GET (the narinfo's `URL` resolved against the
    /// upstream's base; it may carry a query string).
    pub url: String,
    pub check: NarCheck,
}

/// An upstream narinfo made servable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Localized {
    /// The narinfo narbor serves (the upstream's text, with `URL` rewritten
    /// when the NAR gets a name of narbor's, and a final newline).
    pub text: String,
    /// The path narbor serves the NAR under (its store key).
    pub key: String,
    /// Where the NAR is, when that is not `key` under the same upstream.
    pub source: Option<NarSource>,
}

/// Makes the narinfo `text` (parsed as `info`) that upstream `upstream`
/// (base URL `base`) served into the one narbor serves. Fails when narbor
/// could not check the NAR it names (a compression it does not know and no
/// FileHash).
pub fn localize(
    info: &NarInfo,
    text: &str,
    upstream: usize,
    base: &str,
) -> Result<Localized, String> {
    let compression = info
        .nar_compression()
        .ok_or_else(|| format!("unknown Compression {:?}", info.compression))?;
    let relative = info.url.trim_start_matches('/');
    if let Ok(CacheUrl::Nar {
        file_hash,
        compression: named,
    }) = CacheUrl::parse(relative)
    {
        // The name is the file's hash when the narinfo says so, or when the
        // file is the NAR itself. niks3 names zstd NARs by their NarHash,
        // which looks the same and is not.
        let names_the_file = match info.file_hash {
            Some(h) => h == file_hash,
            None => compression == NarCompression::None && info.nar_hash == file_hash,
        };
        if named == compression && names_the_file {
            let mut text = text.to_owned();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            return Ok(Localized {
                text,
                key: relative.to_owned(),
                source: None,
            });
        }
    }
    let key = CacheUrl::NarOfPath {
        store_hash: *info.store_path.hash(),
        nar_hash: info.nar_hash,
        compression,
    }
    .to_path();
    let check = match info.file_hash {
        Some(hash) => NarCheck::File {
            hash,
            size: info.file_size,
        },
        None => NarCheck::Nar {
            hash: info.nar_hash,
            size: info.nar_size,
            compression,
        },
    };
    check.supported().map_err(|e| {
        format!("{e}, and the narinfo gives no FileHash: its NAR could not be checked")
    })?;
    Ok(Localized {
        text: NarInfo::with_field(text, "URL", &key),
        source: Some(NarSource {
            upstream,
            url: resolve(base, &info.url),
            check,
        }),
        key,
    })
}

/// The absolute URL of `url` (a narinfo's `URL`) on the cache at `base`:
/// absolute `http(s)://` URLs as they are, anything else under the base
/// (a leading `/` too, as Nix up to 2.31 reads it).
pub fn resolve(base: &str, url: &str) -> String {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return url.to_owned();
    }
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        url.trim_start_matches('/')
    )
}

/// The most sources remembered; past it the map starts over (a forgotten
/// source is found again from the upstream's narinfo).
const MAX_SOURCES: usize = 50_000;

/// Sources of the NARs narbor named, by key, since their narinfo was fetched.
#[derive(Default)]
pub struct NarSources {
    map: Mutex<HashMap<String, NarSource>>,
}

impl NarSources {
    pub fn remember(&self, key: &str, source: NarSource) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SOURCES && !map.contains_key(key) {
            map.clear();
        }
        map.insert(key.to_owned(), source);
    }

    pub fn get(&self, key: &str) -> Option<NarSource> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    pub fn forget(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use narbor_proto::Sha256;

    const H32: &str = "0a3yijp35sygmy51cnrrz11vimwapz7c";
    const NAR_HASH: &str = "sha256:1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6";
    const FILE_HASH: &str = "sha256:0blq0zn4g9bsjc5r4c077m84cv4nr7a2rlvk245b7jid5db11vx5";

    fn narinfo(url: &str, compression: Option<&str>, file: bool) -> String {
        let mut s = format!("StorePath: /nix/store/{H32}-hello\nURL: {url}\n");
        if let Some(c) = compression {
            s.push_str(&format!("Compression: {c}\n"));
        }
        if file {
            s.push_str(&format!("FileHash: {FILE_HASH}\nFileSize: 4000\n"));
        }
        s.push_str(&format!(
            "NarHash: {NAR_HASH}\nNarSize: 8000\nReferences: \nSig: k-1:c2ln\n"
        ));
        s
    }

    fn go(text: &str) -> Result<Localized, String> {
        localize(
            &NarInfo::parse(text).unwrap(),
            text,
            1,
            "https://up.example/cache/",
        )
    }

    fn own_key(ext: &str) -> String {
        format!("nar/{H32}-{}.nar{ext}", &NAR_HASH[7..])
    }

    #[test]
    fn a_file_hash_name_is_served_as_it_is() {
        let url = format!("nar/{}.nar.xz", &FILE_HASH[7..]);
        let text = narinfo(&url, Some("xz"), true);
        let l = go(&text).unwrap();
        assert_eq!(
            (l.text.as_str(), l.key.as_str(), l.source),
            (text.as_str(), url.as_str(), None)
        );
        // A leading slash is the same path; the text is still served unchanged.
        let text = narinfo(&format!("/{url}"), Some("xz"), true);
        let l = go(&text).unwrap();
        assert_eq!((l.text, l.key), (text, url));
        // Without a FileHash, a hash name is the file's only for an
        // uncompressed NAR whose NarHash it is; otherwise narbor cannot tell
        // (niks3 names zstd NARs by their NarHash) and checks the NarHash.
        let bare = format!("nar/{}.nar", &NAR_HASH[7..]);
        let l = go(&narinfo(&bare, Some("none"), false)).unwrap();
        assert_eq!((l.key.as_str(), l.source), (bare.as_str(), None));
        let l = go(&narinfo(
            &format!("nar/{}.nar.xz", &FILE_HASH[7..]),
            Some("xz"),
            false,
        ))
        .unwrap();
        assert_eq!(l.key, own_key(".xz"));
        // A missing final newline is added (Nix 2.8 needs it).
        let text = narinfo(&format!("nar/{}.nar.xz", &FILE_HASH[7..]), Some("xz"), true);
        assert_eq!(go(text.trim_end()).unwrap().text, text);
    }

    /// The URL templates below are those of the upstream servers' sources,
    /// cited in tests/e2e/interop.rs where each is served to real Nix.
    #[test]
    fn other_layouts_get_narbors_name_and_keep_their_signature() {
        let nar_hash = Sha256::parse(NAR_HASH).unwrap();
        let file_hash = Sha256::parse(FILE_HASH).unwrap();
        /// URL, Compression, FileHash given, the key's extension, what is
        /// fetched, the check.
        type Case<'a> = (&'a str, Option<&'a str>, bool, &'a str, &'a str, NarCheck);
        let cases: [Case; 7] = [
            // attic: no extension, no FileHash; compression from the field.
            (
                "nar/0a3yijp35sygmy51cnrrz11vimwapz7c.nar",
                Some("zstd"),
                false,
                ".zst",
                "https://up.example/cache/nar/0a3yijp35sygmy51cnrrz11vimwapz7c.nar",
                NarCheck::Nar { hash: nar_hash, size: 8000, compression: NarCompression::Zstd },
            ),
            // harmonia: a query string, FileHash = NarHash.
            (
                "nar/1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6.nar?hash=0a3yijp35sygmy51cnrrz11vimwapz7c",
                Some("none"),
                true,
                "",
                "https://up.example/cache/nar/1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6.nar?hash=0a3yijp35sygmy51cnrrz11vimwapz7c",
                NarCheck::File { hash: file_hash, size: Some(4000) },
            ),
            // cachix: a UUID; an absolute URL elsewhere.
            (
                "https://cdn.example/nar/d0c36585-67ac-4e1e-8747-3af0cbc09b90.nar.zst",
                Some("zstd"),
                true,
                ".zst",
                "https://cdn.example/nar/d0c36585-67ac-4e1e-8747-3af0cbc09b90.nar.zst",
                NarCheck::File { hash: file_hash, size: Some(4000) },
            ),
            // A missing Compression means bzip2.
            (
                "nar/x.nar.bz2",
                None,
                false,
                ".bz2",
                "https://up.example/cache/nar/x.nar.bz2",
                NarCheck::Nar { hash: nar_hash, size: 8000, compression: NarCompression::Bzip2 },
            ),
            // A file-hash name that is not this narinfo's FileHash.
            (
                "nar/1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6.nar.xz",
                Some("xz"),
                true,
                ".xz",
                "https://up.example/cache/nar/1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6.nar.xz",
                NarCheck::File { hash: file_hash, size: Some(4000) },
            ),
            // niks3: named by the NarHash, which is not the file's hash.
            (
                "nar/1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6.nar.zst",
                Some("zstd"),
                false,
                ".zst",
                "https://up.example/cache/nar/1ri21f7h1j1dhqwlml39maab2h7m1v3fgm25d7mqbjxxda6c4ix6.nar.zst",
                NarCheck::Nar { hash: nar_hash, size: 8000, compression: NarCompression::Zstd },
            ),
            // A file-hash name whose extension is not the Compression.
            (
                "nar/0blq0zn4g9bsjc5r4c077m84cv4nr7a2rlvk245b7jid5db11vx5.nar",
                Some("xz"),
                true,
                ".xz",
                "https://up.example/cache/nar/0blq0zn4g9bsjc5r4c077m84cv4nr7a2rlvk245b7jid5db11vx5.nar",
                NarCheck::File { hash: file_hash, size: Some(4000) },
            ),
        ];
        for (url, compression, file, ext, fetch, check) in cases {
            let text = narinfo(url, compression, file);
            let l = go(&text).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(l.key, own_key(ext), "{url}");
            assert_eq!(l.text, text.replace(url, &own_key(ext)), "{url}");
            let source = l.source.unwrap();
            assert_eq!((source.upstream, source.url.as_str()), (1, fetch), "{url}");
            assert_eq!(source.check, check, "{url}");
            let served = NarInfo::parse(&l.text).unwrap();
            let original = NarInfo::parse(&text).unwrap();
            assert_eq!(served.fingerprint(), original.fingerprint());
            assert_eq!(served.sigs, original.sigs);
        }
    }

    #[test]
    fn what_cannot_be_checked_is_refused() {
        let err = go(&narinfo("nar/x.nar.lz4", Some("lz4"), false)).unwrap_err();
        assert!(err.contains("no FileHash"), "{err}");
        // With a FileHash the bytes can be checked as they are.
        assert!(go(&narinfo("nar/x.nar.lz4", Some("lz4"), true)).is_ok());
        let err = go(&narinfo("nar/x.nar.gz", Some("gzip"), true)).unwrap_err();
        assert!(err.contains("gzip"), "{err}");
    }

    #[test]
    fn urls_resolve_as_nix_reads_them() {
        assert_eq!(resolve("http://h/c", "nar/a.nar"), "http://h/c/nar/a.nar");
        assert_eq!(resolve("http://h/c/", "/nar/a.nar"), "http://h/c/nar/a.nar");
        assert_eq!(resolve("http://h", "HTTPS://x/y?z=1"), "HTTPS://x/y?z=1");
        assert_eq!(resolve("http://h", "nar/a?b=c"), "http://h/nar/a?b=c");
    }

    #[test]
    fn the_source_map_forgets_when_full() {
        let m = NarSources::default();
        let s = NarSource {
            upstream: 0,
            url: "u".into(),
            check: NarCheck::File {
                hash: Sha256::digest(b""),
                size: None,
            },
        };
        for i in 0..MAX_SOURCES {
            m.remember(&i.to_string(), s.clone());
        }
        assert!(m.get("0").is_some());
        m.remember("again", s.clone());
        assert!(m.get("0").is_none() && m.get("again").is_some());
        m.forget("again");
        assert!(m.get("again").is_none());
    }
}
