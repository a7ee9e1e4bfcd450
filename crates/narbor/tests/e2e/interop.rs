//! narbor in front of caches that are not laid out like cache.nixos.org,
//! substituted from by the real Nix client.
//!
//! Each upstream here is a real cache that `nix copy` wrote (signed, in the
//! compression that server uses), served by [`Double`] the way that server
//! serves it: its narinfo text and `URL` scheme, its NAR routes, redirects and
//! encodings, as read from its source at the commit cited on each function.
//! The servers themselves cannot run here (cachix's is closed, the others
//! need toolchains or stores this machine does not have), so their source is
//! the judge of the layout and the real Nix client the judge of the result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use narbor_proto::NarInfo;

use crate::double::{Body, Double, Resp};
use crate::support::*;

/// One path of a cache `nix copy` wrote.
#[derive(Clone)]
pub struct Entry {
    /// The store path hash.
    pub hash: String,
    pub info: NarInfo,
    /// The NAR file as `nix copy` wrote it (compressed as `info` says).
    pub file: Vec<u8>,
}

impl Entry {
    /// The narinfo lines every server writes alike: References, Deriver, Sig.
    pub fn tail(&self, references_when_empty: bool) -> String {
        let mut s = String::new();
        if !self.info.references.is_empty() || references_when_empty {
            let refs: Vec<String> = self.info.references.iter().map(|r| r.base_name()).collect();
            s.push_str(&format!("References: {}\n", refs.join(" ")));
        }
        if let Some(d) = &self.info.deriver {
            s.push_str(&format!("Deriver: {}\n", d.base_name()));
        }
        for sig in &self.info.sigs {
            s.push_str(&format!("Sig: {sig}\n"));
        }
        s
    }

    /// The uncompressed NAR.
    fn nar(&self) -> Vec<u8> {
        decompress(&self.info.compression, &self.file)
    }

    fn nar_hash32(&self) -> String {
        self.info.nar_hash.to_nix32()
    }
}

fn decompress(compression: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match compression {
        "none" => out.extend_from_slice(data),
        "zstd" => out = zstd::decode_all(data).unwrap(),
        "xz" => {
            xz2::read::XzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "bzip2" => {
            bzip2::read::BzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        other => panic!("no decompressor for {other}"),
    }
    out
}

/// The test closure and its caches, made once per test run.
pub struct Fixture {
    pub env: NixEnv,
    /// data, lib, app (app refers to lib and to itself, lib to data).
    pub paths: Vec<PathBuf>,
    pub public_key: String,
    /// By compression name: the cache's entries, by store hash.
    pub caches: HashMap<&'static str, HashMap<String, Entry>>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let env = NixEnv::new();
        let data = env.build(
            "narbor-interop-data",
            "/bin/mkdir -p $out/share\n\
             i=0; while [ $i -lt 3000 ]; do echo \"line $i of the interop data\"; i=$((i+1)); done > $out/share/text\n\
             /usr/bin/head -c 40000 /dev/urandom > $out/share/noise\n",
            &[],
        );
        let lib = env.build(
            "narbor-interop-lib",
            &format!(
                "/bin/mkdir -p $out/bin\n\
                 printf '#!/bin/sh\\necho lib\\n' > $out/bin/tool\n\
                 /bin/chmod 0555 $out/bin/tool\n\
                 /bin/ln -s {}/share $out/data\n",
                data.display()
            ),
            &[&data],
        );
        let app = env.build(
            "narbor-interop-app",
            &format!(
                "/bin/mkdir -p $out\necho {} > $out/lib\necho $out > $out/self\n",
                lib.display()
            ),
            &[&lib],
        );
        let (sk, public_key) = env.nix_key("interop-1");
        let mut caches = HashMap::new();
        for compression in ["none", "zstd", "xz", "bzip2", "br"] {
            let params = format!("compression={compression}&secret-key={}", sk.display());
            let dir = env.file_cache(&format!("cache-{compression}"), &params, &[&app]);
            caches.insert(compression, load(&dir));
        }
        Fixture {
            env,
            paths: vec![data, lib, app],
            public_key: public_key.trim().to_owned(),
            caches,
        }
    })
}

/// The entries of a cache directory `nix copy` wrote.
fn load(dir: &Path) -> HashMap<String, Entry> {
    let mut out = HashMap::new();
    for item in std::fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        if path.extension().is_some_and(|e| e == "narinfo") {
            let text = std::fs::read_to_string(&path).unwrap();
            let info = NarInfo::parse(&text).unwrap();
            let file = std::fs::read(dir.join(&info.url)).unwrap();
            let hash = info.store_path.hash().to_string();
            out.insert(hash.clone(), Entry { hash, info, file });
        }
    }
    assert_eq!(
        out.len(),
        3,
        "the closure's three paths in {}",
        dir.display()
    );
    out
}

pub fn entries(compression: &str) -> HashMap<String, Entry> {
    fixture().caches[compression].clone()
}

/// The store hash a `/<hash>.narinfo` request asks for.
pub fn narinfo_hash(path: &str) -> Option<&str> {
    path.trim_start_matches('/').strip_suffix(".narinfo")
}

pub fn cache_info(priority: u32) -> Resp {
    Resp::ok(
        "text/x-nix-cache-info",
        format!("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: {priority}\n").into_bytes(),
    )
}

/// What a test may ask a NAR route to do instead of serving the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// One byte changed, the length kept.
    WrongByte,
    /// `Content-Length` of the whole, half sent, then a close.
    CutWithLength,
    /// No length (close-delimited), half sent, then a clean close.
    CutUntilClose,
    /// Chunked, half sent, then a close before the last chunk.
    CutChunked,
}

type Faults = Arc<Mutex<Option<Fault>>>;

/// The body of a NAR route, with the fault a test set, if any.
fn nar_body(bytes: &[u8], faults: &Faults) -> Body {
    let half = bytes.len() / 2;
    match *faults.lock().unwrap() {
        None => Body::Full(bytes.to_vec()),
        Some(Fault::WrongByte) => {
            let mut b = bytes.to_vec();
            b[half] ^= 0x55;
            Body::Full(b)
        }
        Some(Fault::CutWithLength) => Body::CutAfter {
            whole: bytes.to_vec(),
            sent: half,
        },
        Some(Fault::CutUntilClose) => Body::UntilClose(bytes[..half].to_vec()),
        Some(Fault::CutChunked) => Body::ChunkedCut(vec![bytes[..half].to_vec()]),
    }
}

/// nix-serve (edolstra/nix-serve, nix-serve.psgi at e27bbf84): `URL:
/// nar/$hashPart-$narHash2.nar`, `Compression: none`, no FileHash or
/// FileSize, no References line when there are none; the NAR route checks
/// the NarHash in its name (404 "Incorrect NAR hash" otherwise) and answers
/// `Content-Type: text/plain` with `Content-Length: $narSize`.
fn nix_serve(faults: Faults) -> Double {
    let entries = entries("none");
    Double::start(move |req| {
        let path = req.path();
        if path == "/nix-cache-info" {
            return Resp::ok(
                "text/plain",
                b"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n".to_vec(),
            );
        }
        if let Some(h) = narinfo_hash(path) {
            let Some(e) = entries.get(h) else {
                return Resp::status(404, "No such path.\n");
            };
            let text = format!(
                "StorePath: {}\nURL: nar/{}-{}.nar\nCompression: none\nNarHash: {}\nNarSize: {}\n{}",
                e.info.store_path,
                e.hash,
                e.nar_hash32(),
                e.info.nar_hash,
                e.info.nar_size,
                e.tail(false)
            );
            return Resp::ok("text/x-nix-narinfo", text.into_bytes());
        }
        if let Some(name) = path
            .strip_prefix("/nar/")
            .and_then(|n| n.strip_suffix(".nar"))
        {
            let Some((h, nar_hash)) = name.split_once('-') else {
                return Resp::status(404, "File not found.\n");
            };
            let Some(e) = entries.get(h) else {
                return Resp::status(404, "No such path.\n");
            };
            if nar_hash != e.nar_hash32() {
                return Resp::status(
                    404,
                    "Incorrect NAR hash. Maybe the path has been recreated.\n",
                );
            }
            return Resp::ok("text/plain", Vec::new()).with_body(nar_body(&e.file, &faults));
        }
        Resp::status(404, "File not found.\n")
    })
}

/// attic (zhaofengli/attic at b7c90565): a cache lives under `/<cache>/`;
/// server/src/database/entity/object.rs writes `url: format!("nar/{}.nar",
/// self.store_path_hash)`, `file_hash: None, file_size: None` and the
/// compression chosen at upload (default zstd; none, xz, bzip2, br too).
/// server/src/api/binary_cache.rs `get_nar` answers a NAR of one chunk with
/// a 307 to storage (S3: a presigned URL valid 600 s, storage/s3.rs), and
/// streams a NAR of several chunks, each compressed on its own, concatenated
/// and without a length (`merge_chunks`).
struct Attic {
    server: Double,
    s3: Double,
}

fn attic(compression: &str, chunks: usize, faults: Faults) -> Attic {
    let entries = entries(compression);
    let compression = compression.to_owned();
    // The S3 side: chunks by object name, served only with a signature.
    let objects: HashMap<String, Vec<u8>> = entries
        .values()
        .map(|e| (format!("/bucket/{}.chunk", e.hash), e.file.clone()))
        .collect();
    let s3_faults = Arc::clone(&faults);
    let s3 = Double::start(move |req| match objects.get(req.path()) {
        Some(bytes) if req.query().is_some_and(|q| q.contains("X-Amz-Signature=")) => {
            Resp::ok("application/octet-stream", Vec::new()).with_body(nar_body(bytes, &s3_faults))
        }
        Some(_) => Resp::status(403, "AccessDenied"),
        None => Resp::status(404, "NoSuchKey"),
    });
    let s3_url = s3.url();
    let server = Double::start(move |req| {
        let Some(path) = req.path().strip_prefix("/mycache") else {
            return Resp::status(404, "NoSuchCache");
        };
        if path == "/nix-cache-info" {
            return cache_info(41);
        }
        if let Some(h) = narinfo_hash(path) {
            let Some(e) = entries.get(h) else {
                return Resp::status(404, "NoSuchObject");
            };
            let text = format!(
                "StorePath: {}\nURL: nar/{}.nar\nCompression: {compression}\nNarHash: {}\nNarSize: {}\n{}",
                e.info.store_path,
                e.hash,
                e.info.nar_hash,
                e.info.nar_size,
                e.tail(true)
            );
            return Resp::ok("text/x-nix-narinfo", text.into_bytes());
        }
        let Some(h) = path
            .strip_prefix("/nar/")
            .and_then(|n| n.strip_suffix(".nar"))
        else {
            return Resp::status(404, "NoSuchObject");
        };
        let Some(e) = entries.get(h) else {
            return Resp::status(404, "NoSuchObject");
        };
        if chunks <= 1 {
            let location = format!(
                "{s3_url}/bucket/{}.chunk?X-Amz-Expires=600&X-Amz-Signature=0123abcd",
                e.hash
            );
            return Resp::redirect(307, &location);
        }
        // Several chunks: the NAR cut in pieces, each compressed alone.
        let nar = e.nar();
        let piece = nar.len().div_ceil(chunks);
        let frames: Vec<Vec<u8>> = nar
            .chunks(piece)
            .map(|c| zstd::bulk::compress(c, 3).unwrap())
            .collect();
        let body = match *faults.lock().unwrap() {
            None => Body::Chunked(frames),
            Some(_) => Body::ChunkedCut(frames[..1].to_vec()),
        };
        Resp::ok("application/x-nix-nar", Vec::new()).with_body(body)
    });
    Attic { server, s3 }
}

/// harmonia (nix-community/harmonia at b4381725):
/// harmonia-store-nar-info/src/lib.rs writes `URL: nar/{nar_hash}.nar?hash=
/// {store hash}`, `Compression: none`, and `FileHash`/`FileSize` equal to
/// NarHash/NarSize; the NAR route needs the `hash` query (404 "missing
/// outhash" without it); harmonia-cache/src/zstd_body.rs sends bodies of 256
/// bytes and more with `Content-Encoding: zstd` (chunked) to a client whose
/// `Accept-Encoding` has zstd: NARs and narinfos alike.
fn harmonia() -> Double {
    let entries = entries("none");
    Double::start(move |req| {
        let path = req.path();
        let zstd_ok = req
            .header("accept-encoding")
            .is_some_and(|a| a.contains("zstd"));
        let encode = |resp: Resp, body: Vec<u8>| {
            if zstd_ok && body.len() >= 256 && req.method != "HEAD" {
                resp.with_header("Content-Encoding", "zstd")
                    .with_header("Vary", "accept-encoding")
                    .with_body(Body::Chunked(vec![zstd::bulk::compress(&body, 1).unwrap()]))
            } else {
                resp.with_body(Body::Full(body))
            }
        };
        if path == "/nix-cache-info" {
            return cache_info(30);
        }
        if let Some(h) = narinfo_hash(path) {
            let Some(e) = entries.get(h) else {
                return Resp::status(404, "missed hash");
            };
            let text = format!(
                "StorePath: {}\nURL: nar/{}.nar?hash={}\nCompression: none\nFileHash: {}\nFileSize: {}\nNarHash: {}\nNarSize: {}\n{}",
                e.info.store_path,
                e.nar_hash32(),
                e.hash,
                e.info.nar_hash,
                e.info.nar_size,
                e.info.nar_hash,
                e.info.nar_size,
                e.tail(false)
            );
            return encode(
                Resp::ok("text/x-nix-narinfo", Vec::new()),
                text.into_bytes(),
            );
        }
        if let Some(nar_hash) = path
            .strip_prefix("/nar/")
            .and_then(|n| n.strip_suffix(".nar"))
        {
            let Some(h) = req.query().and_then(|q| q.strip_prefix("hash=")) else {
                return Resp::status(404, "missing outhash");
            };
            let Some(e) = entries.get(h) else {
                return Resp::status(404, "missed hash");
            };
            if e.nar_hash32() != nar_hash {
                return Resp::status(404, "hash mismatch detected");
            }
            return encode(
                Resp::ok("application/x-nix-archive", Vec::new()),
                e.file.clone(),
            );
        }
        Resp::status(404, "not found")
    })
}

/// snix nar-bridge (cachix/snix at 50b41ae7, snix/nar-bridge/src/narinfo.rs):
/// `URL: nar/snix-castore/<base64url castore node>?narsize=<NarSize>`,
/// `Compression: none`, no FileHash, `FileSize` = NarSize ("as otherwise
/// progress reporting in Nix looks very broken"); the NAR route answers 400
/// without `narsize` (nar.rs).
fn snix() -> Double {
    let entries = entries("none");
    // The node is opaque to clients; here, the store hash in base64url.
    let node = |h: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("node-{h}"))
    };
    let by_node: HashMap<String, Entry> = entries
        .values()
        .map(|e| (node(&e.hash), e.clone()))
        .collect();
    Double::start(move |req| {
        let path = req.path();
        if path == "/nix-cache-info" {
            return cache_info(40);
        }
        if let Some(h) = narinfo_hash(path) {
            let Some(e) = entries.get(h) else {
                return Resp::status(404, "");
            };
            let text = format!(
                "StorePath: {}\nURL: nar/snix-castore/{}?narsize={}\nCompression: none\nFileSize: {}\nNarHash: {}\nNarSize: {}\n{}",
                e.info.store_path,
                node(h),
                e.info.nar_size,
                e.info.nar_size,
                e.info.nar_hash,
                e.info.nar_size,
                e.tail(true)
            );
            return Resp::ok("text/x-nix-narinfo", text.into_bytes());
        }
        if let Some(n) = path.strip_prefix("/nar/snix-castore/") {
            if !req.query().is_some_and(|q| q.starts_with("narsize=")) {
                return Resp::status(400, "narsize missing");
            }
            return match by_node.get(n) {
                Some(e) => Resp::ok("application/x-nix-nar", e.file.clone()),
                None => Resp::status(404, ""),
            };
        }
        Resp::status(404, "")
    })
}

/// niks3 (Mic92/niks3 at 780939ad): client/upload.go names NARs by their
/// NarHash, `nar/<nix32 NarHash>.nar.zst`; client/narinfo.go writes
/// `Compression: zstd`, no FileHash or FileSize, and `References:` always
/// (with a space when empty); narinfos are stored zstd-compressed with
/// `Content-Encoding: zstd` (upload.go), which S3 sends back on every GET,
/// whatever the client accepts.
fn niks3() -> Double {
    let entries = entries("zstd");
    let by_nar: HashMap<String, Entry> = entries
        .values()
        .map(|e| (e.nar_hash32(), e.clone()))
        .collect();
    Double::start(move |req| {
        let path = req.path();
        if path == "/nix-cache-info" {
            return Resp::ok(
                "text/plain",
                b"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n".to_vec(),
            );
        }
        if let Some(h) = narinfo_hash(path) {
            let Some(e) = entries.get(h) else {
                return Resp::status(404, "NoSuchKey");
            };
            let mut refs: Vec<String> = e.info.references.iter().map(|r| r.base_name()).collect();
            refs.sort();
            let mut text = format!(
                "StorePath: {}\nURL: nar/{}.nar.zst\nCompression: zstd\nNarHash: {}\nNarSize: {}\nReferences: {}\n",
                e.info.store_path,
                e.nar_hash32(),
                e.info.nar_hash,
                e.info.nar_size,
                refs.join(" ")
            );
            if let Some(d) = &e.info.deriver {
                text.push_str(&format!("Deriver: {}\n", d.base_name()));
            }
            for s in &e.info.sigs {
                text.push_str(&format!("Sig: {s}\n"));
            }
            let body = zstd::bulk::compress(text.as_bytes(), 3).unwrap();
            return Resp::ok("text/x-nix-narinfo", body).with_header("Content-Encoding", "zstd");
        }
        if let Some(n) = path
            .strip_prefix("/nar/")
            .and_then(|n| n.strip_suffix(".nar.zst"))
        {
            return match by_nar.get(n) {
                Some(e) => Resp::ok("application/zstd", e.file.clone()),
                None => Resp::status(404, "NoSuchKey"),
            };
        }
        Resp::status(404, "NoSuchKey")
    })
}

/// cachix (cachix/cachix at e1d8f8cd; the server is closed source): its
/// client uploads `FileHash` in base16 (cachix/src/Cachix/Client/Push.hs,
/// `passthroughHashSinkB16`), and real narinfos from
/// `<name>.cachix.org` name the NAR by it: `URL: nar/<64 hex>.nar.zst`
/// (quoted in kalbasit/ncps#171); since 2026 by a UUID, `nar/<uuid>.nar.zst`
/// (kalbasit/ncps PR #1331); the API's NAR route is a 302 to storage
/// (cachix-api/src/Cachix/API.hs, `Get302`). With `uuid`, the UUID form.
fn cachix(uuid: bool) -> Double {
    let entries = entries("zstd");
    let name = move |e: &Entry| -> String {
        let hex = e.info.file_hash.unwrap().to_hex();
        if uuid {
            format!(
                "{}-{}-4{}-8{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[13..16],
                &hex[17..20],
                &hex[20..32]
            )
        } else {
            hex
        }
    };
    let by_name: HashMap<String, Entry> = entries.values().map(|e| (name(e), e.clone())).collect();
    Double::start(move |req| {
        let path = req.path();
        if path == "/nix-cache-info" {
            return cache_info(41);
        }
        if let Some(h) = narinfo_hash(path) {
            let Some(e) = entries.get(h) else {
                return Resp::status(404, "");
            };
            let file_hash = e.info.file_hash.unwrap();
            let text = format!(
                "StorePath: {}\nURL: nar/{}.nar.zst\nCompression: zstd\nFileHash: sha256:{}\nFileSize: {}\nNarHash: {}\nNarSize: {}\n{}",
                e.info.store_path,
                name(e),
                file_hash.to_hex(),
                e.file.len(),
                e.info.nar_hash,
                e.info.nar_size,
                e.tail(true)
            );
            return Resp::ok("text/x-nix-narinfo", text.into_bytes());
        }
        if let Some(n) = path
            .strip_prefix("/nar/")
            .and_then(|n| n.strip_suffix(".nar.zst"))
        {
            return match by_name.get(n) {
                Some(_) => Resp::redirect(302, &format!("/storage/{n}")),
                None => Resp::status(404, ""),
            };
        }
        if let Some(n) = path.strip_prefix("/storage/") {
            return match by_name.get(n) {
                Some(e) => Resp::ok("application/octet-stream", e.file.clone()),
                None => Resp::status(404, ""),
            };
        }
        Resp::status(404, "")
    })
}

/// narbor between the real Nix client and `upstream`: Nix substitutes the
/// whole closure through it into a fresh store, with signatures required.
fn substitute_through(upstream: &str, extra: &[&str]) -> (NarborServer, tempfile::TempDir) {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--upstream", upstream, "--trusted-key", &f.public_key];
    args.extend_from_slice(extra);
    let narbor = NarborServer::start(&dir.path().join("cache"), &args);
    let root = dir.path().join("root");
    let app = f.paths[2].as_path();
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f.env
            .substitute(&narbor.url(), &root, &f.public_key, &[app], &[])
    }))
    .unwrap_or_else(|e| {
        eprintln!("narbor's log:\n{}", narbor.log_text());
        std::panic::resume_unwind(e)
    });
    let want: Vec<&Path> = f.paths.iter().map(PathBuf::as_path).collect();
    assert_eq!(got, sorted_paths(&want), "{}", narbor.log_text());
    (narbor, dir)
}

/// The narinfo narbor serves for `path`, parsed.
fn served_narinfo(narbor: &NarborServer, path: &Path) -> NarInfo {
    let base = path.file_name().unwrap().to_string_lossy();
    let reply = narbor.get(&format!("/{}.narinfo", &base[..32]));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    NarInfo::parse(std::str::from_utf8(&reply.body).unwrap()).unwrap()
}

/// The name narbor gives NARs of other layouts.
fn own_name(path: &Path, ext: &str) -> String {
    let e = fixture().caches["none"]
        .values()
        .find(|e| e.info.store_path.to_absolute_path() == path.to_string_lossy())
        .unwrap()
        .clone();
    format!("nar/{}-{}.nar{ext}", e.hash, e.nar_hash32())
}

#[test]
fn nix_serve_layout() {
    let faults = Faults::default();
    let up = nix_serve(faults);
    let (narbor, _dir) = substitute_through(&up.url(), &[]);
    let app = &fixture().paths[2];
    let info = served_narinfo(&narbor, app);
    assert_eq!(info.url, own_name(app, ""));
    assert_eq!(info.compression, "none");
    assert_eq!(up.requests_to("/nar/").len(), 3, "each NAR fetched once");
}

#[test]
fn attic_layout_redirected_to_s3_without_credentials_leaking() {
    let attic = attic("zstd", 1, Faults::default());
    let base = format!("{}/mycache", attic.server.url());
    let (narbor, _dir) = substitute_through(&base, &[]);
    let app = &fixture().paths[2];
    assert_eq!(served_narinfo(&narbor, app).url, own_name(app, ".zst"));
    assert_eq!(attic.s3.requests_to("/bucket/").len(), 3);
    for r in attic.server.requests_to("/mycache/nar/") {
        assert_eq!(
            r.header("accept-encoding"),
            Some("identity"),
            "NARs asked for as stored"
        );
    }
    // No Referer naming the cache is sent to the storage host.
    assert!(attic
        .s3
        .requests()
        .iter()
        .all(|r| r.header("referer").is_none()));
}

#[test]
fn attic_nars_of_several_chunks_stream_without_a_length() {
    let attic = attic("zstd", 3, Faults::default());
    let base = format!("{}/mycache", attic.server.url());
    let (_narbor, _dir) = substitute_through(&base, &[]);
    assert!(attic.s3.requests().is_empty(), "streamed, not redirected");
}

#[test]
fn attic_xz_bzip2_and_br_nars_are_checked_against_their_nar_hash() {
    for compression in ["xz", "bzip2", "br"] {
        let attic = attic(compression, 1, Faults::default());
        let base = format!("{}/mycache", attic.server.url());
        let (narbor, _dir) = substitute_through(&base, &[]);
        let ext = match compression {
            "xz" => ".xz",
            "bzip2" => ".bz2",
            _ => ".br",
        };
        let app = &fixture().paths[2];
        assert_eq!(served_narinfo(&narbor, app).url, own_name(app, ext));
    }
}

#[test]
fn harmonia_layout_with_query_strings_and_zstd_encoding() {
    let up = harmonia();
    let (narbor, _dir) = substitute_through(&up.url(), &[]);
    let nar_requests = up.requests_to("/nar/");
    assert_eq!(nar_requests.len(), 3);
    assert!(
        nar_requests
            .iter()
            .all(|r| r.query().is_some_and(|q| q.starts_with("hash="))),
        "the query string reaches harmonia"
    );
    let app = &fixture().paths[2];
    let info = served_narinfo(&narbor, app);
    assert_eq!(info.url, own_name(app, ""));
    assert_eq!(
        info.file_hash,
        Some(info.nar_hash),
        "FileHash passes through"
    );
    // harmonia encodes for clients that accept zstd: narbor decodes a
    // narinfo sent so, and the NAR it fetched is the plain file.
    let h = &info.store_path.hash().to_string();
    let zstd_reply = crate::upstream::request(
        up.addr,
        "GET",
        &format!("/{h}.narinfo"),
        &[("Accept-Encoding", "zstd")],
    );
    assert_eq!(
        zstd_reply.header("content-encoding"),
        Some("zstd"),
        "the double encodes"
    );
}

#[test]
fn a_narinfo_harmonia_sends_zstd_encoded_is_decoded() {
    // The same server with every response encoded, as it answers a client
    // that accepts zstd (narbor asks without Accept-Encoding; this makes
    // the upstream encode anyway, as a proxy in front of it may).
    let inner = harmonia();
    let inner_addr = inner.addr;
    let up = Double::start(move |req| {
        let mut headers = vec![("Accept-Encoding", "zstd")];
        if let Some(r) = req.header("range") {
            headers.push(("Range", r));
        }
        let reply = crate::upstream::request(inner_addr, &req.method, &req.target, &headers);
        let content_type = reply
            .header("content-type")
            .unwrap_or("application/octet-stream")
            .to_owned();
        let mut resp = Resp::ok(&content_type, reply.body);
        resp.status = reply.status;
        match reply.headers.get("content-encoding") {
            Some(e) => resp.with_header("Content-Encoding", e),
            None => resp,
        }
    });
    let (narbor, _dir) = substitute_through(&up.url(), &[]);
    let app = &fixture().paths[2];
    assert_eq!(served_narinfo(&narbor, app).url, own_name(app, ""));
    drop(inner);
}

#[test]
fn snix_castore_layout() {
    let up = snix();
    let (narbor, _dir) = substitute_through(&up.url(), &[]);
    let app = &fixture().paths[2];
    let info = served_narinfo(&narbor, app);
    assert_eq!(info.url, own_name(app, ""));
    assert_eq!(info.file_size, Some(info.nar_size));
    assert_eq!(up.requests_to("/nar/snix-castore/").len(), 3);
}

#[test]
fn niks3_layout_with_zstd_encoded_narinfos() {
    let up = niks3();
    let (narbor, _dir) = substitute_through(&up.url(), &[]);
    let app = &fixture().paths[2];
    let info = served_narinfo(&narbor, app);
    assert_eq!(info.url, own_name(app, ".zst"));
    assert_eq!(info.file_hash, None);
}

#[test]
fn cachix_layouts_hex_file_hash_and_uuid_names_behind_a_302() {
    for uuid in [false, true] {
        let up = cachix(uuid);
        let (narbor, _dir) = substitute_through(&up.url(), &[]);
        let app = &fixture().paths[2];
        let info = served_narinfo(&narbor, app);
        assert_eq!(info.url, own_name(app, ".zst"), "uuid={uuid}");
        assert!(info.file_hash.is_some());
        assert_eq!(up.requests_to("/storage/").len(), 3, "uuid={uuid}");
    }
}

#[test]
fn absolute_urls_and_the_old_bzip2_nix_serve_with_no_compression_line() {
    // nix-serve before 2018 (nix-serve.psgi before 06f6a956): `URL:
    // nar/$hashPart.nar.bz2`, `Compression: bzip2`, bzip2 made on the fly.
    // Here the `Compression:` line is left out, which Nix reads as bzip2
    // (src/libstore/nar-info.cc at 2.8.0), and the URL is absolute, on
    // another host (Nix uses such URLs as they are:
    // http-binary-cache-store.cc at 2.8.0, `makeRequest`).
    let entries = entries("bzip2");
    let files: HashMap<String, Vec<u8>> = entries
        .values()
        .map(|e| (format!("/files/{}.nar.bz2", e.hash), e.file.clone()))
        .collect();
    let cdn = Double::start(move |req| match files.get(req.path()) {
        Some(b) => Resp::ok("application/x-bzip2", b.clone()),
        None => Resp::status(404, ""),
    });
    let cdn_url = cdn.url();
    let up = Double::start(move |req| {
        let Some(e) = narinfo_hash(req.path()).and_then(|h| entries.get(h)) else {
            return Resp::status(404, "");
        };
        let text = format!(
            "StorePath: {}\nURL: {cdn_url}/files/{}.nar.bz2\nNarHash: {}\nNarSize: {}\n{}",
            e.info.store_path,
            e.hash,
            e.info.nar_hash,
            e.info.nar_size,
            e.tail(false)
        );
        Resp::ok("text/x-nix-narinfo", text.into_bytes())
    });
    let (narbor, _dir) = substitute_through(&up.url(), &[]);
    let app = &fixture().paths[2];
    let info = served_narinfo(&narbor, app);
    assert_eq!(info.url, own_name(app, ".bz2"));
    assert!(info.quirks.compression_missing, "the line stays missing");
    assert_eq!(cdn.requests_to("/files/").len(), 3);
}

/// A blob committed under `key` in narbor's store directory.
fn stored(cache_dir: &Path, key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap();
    crate::serve::walk_files(&cache_dir.join("blobs"))
        .iter()
        .any(|p| p.file_name().unwrap().to_string_lossy() == name)
}

#[test]
fn without_a_file_hash_wrong_bytes_and_cut_streams_fail_the_client_and_store_nothing() {
    let f = fixture();
    let data = f.paths[0].as_path();
    for fault in [
        Fault::WrongByte,
        Fault::CutWithLength,
        Fault::CutUntilClose,
        Fault::CutChunked,
    ] {
        for layout in ["nix-serve", "attic"] {
            let faults = Faults::new(Mutex::new(Some(fault)));
            let (up, base, ext, _keep) = match layout {
                "nix-serve" => {
                    let d = nix_serve(Arc::clone(&faults));
                    let u = d.url();
                    (d, u, "", None)
                }
                _ => {
                    let a = attic("zstd", 1, Arc::clone(&faults));
                    let u = format!("{}/mycache", a.server.url());
                    (a.server, u, ".zst", Some(a.s3))
                }
            };
            let dir = tempfile::tempdir().unwrap();
            let cache = dir.path().join("cache");
            let narbor = NarborServer::start(
                &cache,
                &["--upstream", &base, "--trusted-key", &f.public_key],
            );
            let root = dir.path().join("root");
            let out = run_fails(
                f.env
                    .cmd("nix")
                    .args(["copy", "--from", &narbor.url()])
                    .arg("--to")
                    .arg(format!("local?root={}", root.display()))
                    .args(["--option", "trusted-public-keys", &f.public_key])
                    .arg(data),
            );
            let context = format!("{layout} {fault:?}: {}", stderr_str(&out));
            let key = own_name(data, ext);
            // A direct download fails too: never a clean, short or wrong 200
            // (a connection cut before the response head is a failure too).
            if let Ok(reply) =
                crate::upstream::try_request(narbor.addr, "GET", &format!("/{key}"), &[])
            {
                assert!(
                    !(reply.status == 200 && reply.complete),
                    "{context}: a failed fill answered a complete 200"
                );
            }
            assert!(!stored(&cache, &key), "{context}: the NAR was stored");
            let valid = f
                .env
                .cmd("nix")
                .args(["path-info", "--store"])
                .arg(format!("local?root={}", root.display()))
                .arg(data)
                .output()
                .unwrap();
            assert!(!valid.status.success(), "{context}: the path arrived");
            drop(up);
        }
    }
}

#[test]
fn build_traces_and_debug_info_are_fetched_cached_and_served() {
    let f = fixture();
    let env = &f.env;
    // A path with separate debug info where Nix's `index-debug-info` looks
    // for it (src/libstore/binary-cache-store.cc at 2.8.0: the regexes
    // `^[0-9a-f]{2}$` and `^[0-9a-f]{38}\.debug$` under lib/debug/.build-id).
    let id = "3f0d6a4b5c6d7e8f90a1b2c3d4e5f60718293a4b";
    let dbg = env.build(
        "narbor-interop-debug",
        &format!(
            "/bin/mkdir -p $out/lib/debug/.build-id/{}\necho debug > $out/lib/debug/.build-id/{}/{}.debug\n",
            &id[..2],
            &id[..2],
            &id[2..]
        ),
        &[],
    );
    let cache = env.file_cache(
        "cache-debuginfo",
        "compression=zstd&index-debug-info=true",
        &[&dbg],
    );
    // Nix wrote `debuginfo/<id>.debug`; Hydra writes the same without the
    // suffix; Nix 2.35 reads `build-trace-v2/<drv>/<out>.doi`
    // (binary-cache-store.cc at 88b09c64), a JSON object like
    // src/libstore-tests/data/realisation/unkeyed-simple.json there.
    let written = std::fs::read(cache.join(format!("debuginfo/{id}.debug")))
        .expect("Nix wrote the debug info index entry");
    std::fs::write(cache.join(format!("debuginfo/{id}")), &written).unwrap();
    let drv = "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar.drv";
    let trace = format!(
        "{{\"outPath\":\"{}\",\"signatures\":[{{\"keyName\":\"k-1\",\"sig\":\"AAAA\"}}]}}",
        dbg.file_name().unwrap().to_string_lossy()
    );
    std::fs::create_dir_all(cache.join(format!("build-trace-v2/{drv}"))).unwrap();
    std::fs::write(cache.join(format!("build-trace-v2/{drv}/out.doi")), &trace).unwrap();
    std::fs::write(
        cache.join(format!("build-trace-v2/{drv}/dev.doi")),
        "not json",
    )
    .unwrap();
    let up = crate::upstream::Upstream::start(cache.clone());
    let dir = tempfile::tempdir().unwrap();
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &up.url()]);
    for path in [format!("/debuginfo/{id}.debug"), format!("/debuginfo/{id}")] {
        let first = narbor.get(&path);
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, written.as_slice()),
            "{path}"
        );
        assert_eq!(first.header("content-type"), Some("application/json"));
        assert_eq!(first.cache_status(), "MISS");
        let again = narbor.get(&path);
        assert_eq!((again.status, again.cache_status()), (200, "HIT"), "{path}");
        assert_eq!(narbor.head(&path).status, 200);
        assert_eq!(up.requests(path.trim_start_matches('/')), 1, "fetched once");
    }
    // The entry's archive, relative to it, is a NAR narbor serves.
    let v: serde_json::Value = serde_json::from_slice(&written).unwrap();
    let archive = v["archive"].as_str().unwrap().trim_start_matches("../");
    let nar = narbor.get(&format!("/{archive}"));
    assert_eq!(nar.status, 200);
    assert_eq!(nar.body, std::fs::read(cache.join(archive)).unwrap());
    // Misses are 404 (what debuggers read as a miss), malformed ids too.
    for miss in [
        "/debuginfo/0000000000000000000000000000000000000000".to_owned(),
        format!("/debuginfo/{}", id.to_uppercase()),
        "/debuginfo/xyz".to_owned(),
        format!("/build-trace-v2/{drv}/lib.doi"),
    ] {
        assert_eq!(narbor.get(&miss).status, 404, "{miss}");
    }
    let trace_path = format!("/build-trace-v2/{drv}/out.doi");
    let got = narbor.get(&trace_path);
    assert_eq!((got.status, got.body.as_slice()), (200, trace.as_bytes()));
    assert_eq!(narbor.get(&trace_path).cache_status(), "HIT");
    assert_eq!(narbor.head(&trace_path).status, 200);
    // What is not JSON is neither served nor stored.
    let bad = format!("/build-trace-v2/{drv}/dev.doi");
    assert_eq!(narbor.get(&bad).status, 404);
    assert_eq!(narbor.get(&bad).status, 404);
    assert_eq!(
        up.requests(bad.trim_start_matches('/')),
        2,
        "not stored: asked again"
    );
}
