//! `narbor serve` as a pull-through cache: the real Nix client through it, and
//! the fill's promises (one fetch, streaming, integrity, durability, bounds).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use narbor_proto::{CacheUrl, NarInfo, SecretKey, Sha256, StorePath, StorePathHash};
use narbor_store::{DiskStore, StoreConfig};

use crate::support::*;
use crate::upstream::{try_request, Fault, Upstream};

/// Deterministic pseudo-random bytes (xorshift), so fixtures need no RNG crate.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Puts a blob into an upstream directory under its Nix name
/// (`nar/<nix32 sha256>.nar`) and returns that path.
pub fn put_nar(root: &Path, bytes: &[u8]) -> String {
    let key = format!("nar/{}.nar", Sha256::digest(bytes).to_nix32());
    std::fs::create_dir_all(root.join("nar")).unwrap();
    std::fs::write(root.join(&key), bytes).unwrap();
    key
}

/// Writes `<hash>.narinfo` describing a NAR stored at `nar_key`, signed by
/// `key`. Returns the narinfo's path.
pub fn put_narinfo(root: &Path, name: &str, nar_key: &str, nar: &[u8], key: &SecretKey) -> String {
    let hash = StorePathHash(Sha256::digest(name.as_bytes()).0[..20].try_into().unwrap());
    let path = StorePath::new(hash, name).unwrap();
    let digest = Sha256::digest(nar);
    let mut info = NarInfo::new(path, nar_key.to_owned(), digest, nar.len() as u64);
    info.file_hash = Some(digest);
    info.file_size = Some(nar.len() as u64);
    info.sign(key);
    let doc = format!("{hash}.narinfo");
    std::fs::write(root.join(&doc), info.to_string()).unwrap();
    doc
}

fn test_key(name: &str) -> SecretKey {
    SecretKey::from_seed(name, Sha256::digest(name.as_bytes()).0).unwrap()
}

/// Opens a stopped narbor's store directly and checks every object: each blob's
/// bytes hash to the name it is stored under, sizes match, the accounting
/// equals the bytes on disk, and nothing is left in tmp/. Returns the blob keys.
pub fn verify_store(dir: &Path) -> Vec<String> {
    let store = DiskStore::open(StoreConfig {
        dir: dir.to_owned(),
        max_size: u64::MAX,
    })
    .expect("open store");
    store.sweep_orphans().unwrap();
    let mut total = 0u64;
    let mut blobs = Vec::new();
    for entry in store.entries().unwrap() {
        total += entry.size;
        if let Ok(CacheUrl::Nar { file_hash, .. }) = CacheUrl::parse(&entry.key) {
            let bytes = std::fs::read(store.blob_path(&entry.key).unwrap()).unwrap();
            assert_eq!(bytes.len() as u64, entry.size, "{}: size", entry.key);
            assert_eq!(Sha256::digest(&bytes), file_hash, "{}: content", entry.key);
            blobs.push(entry.key.clone());
        }
    }
    assert_eq!(
        store.stats().bytes,
        total,
        "accounting equals the sum of entries"
    );
    let on_disk: u64 = walk_files(&dir.join("blobs"))
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    let blob_total: u64 = store
        .entries()
        .unwrap()
        .iter()
        .filter(|e| blobs.contains(&e.key))
        .map(|e| e.size)
        .sum();
    assert_eq!(
        on_disk, blob_total,
        "blob bytes on disk equal the blobs in the index"
    );
    assert!(walk_files(&dir.join("tmp")).is_empty(), "tmp/ is empty");
    blobs
}

pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The store file a blob key would be committed to, if committed.
fn committed_blob_exists(cache_dir: &Path, key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap();
    walk_files(&cache_dir.join("blobs"))
        .iter()
        .any(|p| p.file_name().unwrap().to_string_lossy() == name)
}

#[test]
fn nix_copies_a_closure_through_narbor_then_from_its_store_alone() {
    let env = NixEnv::new();
    let leaf = env.build(
        "narbor-closure-leaf",
        "/usr/bin/head -c 31457280 /dev/urandom > $out",
        &[],
    );
    let mid = env.build(
        "narbor-closure-mid",
        "/bin/mkdir $out; /bin/ln -s $ref0 $out/leaf-link; echo $ref0 > $out/ref; /usr/bin/head -c 26214400 /dev/urandom > $out/blob",
        &[&leaf],
    );
    let top = env.build(
        "narbor-closure-top",
        "/bin/mkdir $out; echo $ref0 > $out/ref; /bin/ln -s $ref0/ref $out/link",
        &[&mid],
    );
    let (cache, public) = env.signed_cache("upstream-cache", &[&top]);
    let upstream = Upstream::start(cache.clone());
    let narbor = NarborServer::start(&env.path("narbor"), &["--upstream", &upstream.url()]);

    let copy_into = |root: &Path| {
        let got = env.substitute(&narbor.url(), root, &public, &[&top], &[]);
        assert_eq!(
            got,
            sorted_paths(&[&leaf, &mid, &top]),
            "the whole closure arrived"
        );
    };
    copy_into(&env.path("fresh-1"));
    let fetched = upstream.total_requests();
    assert!(
        fetched >= 6,
        "narbor fetched narinfos and NARs from upstream ({fetched})"
    );

    upstream.stop();
    copy_into(&env.path("fresh-2"));
    // Everything Nix asked for the second time was a HIT.
    for path in [&leaf, &mid, &top] {
        let hash = path.file_name().unwrap().to_string_lossy()[..32].to_owned();
        let reply = narbor.get(&format!("/{hash}.narinfo"));
        assert_eq!((reply.status, reply.cache_status()), (200, "HIT"));
        let info = NarInfo::parse(std::str::from_utf8(&reply.body).unwrap()).unwrap();
        let nar = narbor.head(&format!("/{}", info.url));
        assert_eq!(
            (nar.status, nar.cache_status()),
            (200, "HIT"),
            "{}",
            info.url
        );
    }
}

#[test]
fn sixteen_clients_one_upstream_fetch_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(50 * 1024 * 1024, 16);
    let key = put_nar(&root, &nar);
    let upstream = Upstream::start(root);
    upstream.set_rate(40 * 1024 * 1024);
    let narbor = Arc::new(NarborServer::start(
        &dir.path().join("cache"),
        &["--upstream", &upstream.url()],
    ));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (narbor, key) = (Arc::clone(&narbor), key.clone());
            std::thread::spawn(move || {
                let r = narbor.get(&format!("/{key}"));
                (
                    r.status,
                    r.complete,
                    r.cache_status().to_owned(),
                    Sha256::digest(&r.body),
                )
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let expected = Sha256::digest(&nar);
    for (status, complete, _, digest) in &results {
        assert_eq!((*status, *complete, *digest), (200, true, expected));
    }
    let misses = results.iter().filter(|r| r.2 == "MISS").count();
    assert!(misses <= 1, "one client led the fill: {results:?}");
    assert_eq!(upstream.requests(&key), 1, "exactly one upstream request");
}

#[test]
fn clients_receive_bytes_while_the_fill_is_still_running() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(8 * 1024 * 1024, 3);
    let key = put_nar(&root, &nar);
    let upstream = Upstream::start(root);
    upstream.set_rate(2 * 1024 * 1024); // four seconds for the whole object
    let cache = dir.path().join("cache");
    let narbor = NarborServer::start(&cache, &["--upstream", &upstream.url()]);
    let mut conn = std::net::TcpStream::connect(narbor.addr).unwrap();
    write!(
        conn,
        "GET /{key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = conn.read(&mut first).unwrap();
    assert!(n > 0);
    // The client holds bytes while the object is not yet complete upstream.
    assert!(
        !committed_blob_exists(&cache, &key),
        "bytes arrived only after the fill"
    );
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    assert!(committed_blob_exists(&cache, &key));
}

#[test]
fn upstream_faults_store_nothing_and_fail_every_client() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let upstream = Upstream::start(root.clone());
    upstream.set_rate(8 * 1024 * 1024);
    let cache = dir.path().join("cache");
    let narbor = Arc::new(NarborServer::start(
        &cache,
        &["--upstream", &upstream.url(), "--negative-ttl", "0s"],
    ));
    for (i, fault) in [Fault::WrongBytes, Fault::CutShort, Fault::Reset]
        .into_iter()
        .enumerate()
    {
        let nar = pseudo_random(4 * 1024 * 1024, 100 + i as u64);
        let key = put_nar(&root, &nar);
        upstream.set_fault(&key, Some(fault));
        // Three clients on one coalesced fill.
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (narbor, key) = (Arc::clone(&narbor), key.clone());
                std::thread::spawn(move || try_request(narbor.addr, "GET", &format!("/{key}"), &[]))
            })
            .collect();
        for t in threads {
            if let Ok(reply) = t.join().unwrap() {
                assert!(
                    reply.status != 200 || !reply.complete,
                    "{fault:?}: a client saw a clean 200 of {} bytes",
                    reply.body.len()
                );
                if reply.status == 200 {
                    assert!(
                        reply.body.len() < nar.len(),
                        "{fault:?}: never all the bytes"
                    );
                }
            }
        }
        assert!(
            !committed_blob_exists(&cache, &key),
            "{fault:?}: nothing stored"
        );
        assert!(
            walk_files(&cache.join("tmp")).is_empty(),
            "{fault:?}: no temp file left"
        );
        let after = narbor.head(&format!("/{key}"));
        assert_eq!(
            after.cache_status(),
            "MISS",
            "{fault:?}: not served from the store"
        );

        // The upstream recovers: the next request fills and verifies.
        upstream.set_fault(&key, None);
        let good = narbor.get(&format!("/{key}"));
        assert_eq!(
            (good.status, good.complete),
            (200, true),
            "{fault:?}: recovered"
        );
        assert_eq!(Sha256::digest(&good.body), Sha256::digest(&nar));
        assert_eq!(narbor.get(&format!("/{key}")).cache_status(), "HIT");
    }
    // The server stayed healthy throughout.
    assert_eq!(narbor.get("/health").status, 200);
}

#[test]
fn kill9_during_fills_leaves_only_complete_verified_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nars: Vec<Vec<u8>> = (0..6)
        .map(|i| pseudo_random(3 * 1024 * 1024 + i * 4097, 500 + i as u64))
        .collect();
    let keys: Vec<String> = nars.iter().map(|n| put_nar(&root, n)).collect();
    let upstream = Upstream::start(root);
    upstream.set_rate(3 * 1024 * 1024);
    let cache = dir.path().join("cache");
    let mut narbor = NarborServer::start(&cache, &["--upstream", &upstream.url()]);
    // One object completes before the crashes.
    assert_eq!(narbor.get(&format!("/{}", keys[0])).status, 200);
    for round in 0..4u64 {
        let threads: Vec<_> = keys
            .iter()
            .map(|key| {
                let (addr, key) = (narbor.addr, key.clone());
                std::thread::spawn(move || try_request(addr, "GET", &format!("/{key}"), &[]))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(150 + round * 230));
        narbor.restart(); // kill -9, then start again
        for t in threads {
            let _ = t.join().unwrap();
        }
    }
    // After the crashes, every object is served whole and correct.
    for (key, nar) in keys.iter().zip(&nars) {
        let r = narbor.get(&format!("/{key}"));
        assert_eq!((r.status, r.complete), (200, true), "{key}");
        assert_eq!(Sha256::digest(&r.body), Sha256::digest(nar), "{key}");
    }
    narbor.stop();
    let stored = verify_store(&cache);
    assert_eq!(stored.len(), keys.len());
}

#[test]
fn max_size_bounds_the_store_by_evicting_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nars: Vec<Vec<u8>> = (0..5)
        .map(|i| pseudo_random(1024 * 1024, 900 + i))
        .collect();
    let keys: Vec<String> = nars.iter().map(|n| put_nar(&root, n)).collect();
    let upstream = Upstream::start(root);
    let cache = dir.path().join("cache");
    let mut narbor =
        NarborServer::start(&cache, &["--upstream", &upstream.url(), "--max-size", "3M"]);
    for key in &keys[..3] {
        assert_eq!(narbor.get(&format!("/{key}")).status, 200);
    }
    // Touch the first so the second is now the least recently used.
    assert_eq!(narbor.get(&format!("/{}", keys[0])).cache_status(), "HIT");
    for key in &keys[3..] {
        assert_eq!(narbor.get(&format!("/{key}")).status, 200);
    }
    narbor.stop();
    let stored = verify_store(&cache);
    let total: usize = stored.len() * 1024 * 1024;
    assert!(total <= 3 * 1024 * 1024, "{} objects stored", stored.len());
    assert!(
        !stored.contains(&keys[1]),
        "the least recently used went first"
    );
    assert!(stored.contains(&keys[4]), "the newest stays");
    let narbor = NarborServer::start(&cache, &["--upstream", &upstream.url(), "--max-size", "3M"]);
    assert_eq!(narbor.get(&format!("/{}", keys[1])).cache_status(), "MISS");
    assert_eq!(upstream.requests(&keys[1]), 2);
}

#[test]
fn range_and_head_requests() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(1024 * 1024, 7);
    let key = put_nar(&root, &nar);
    let cold = put_nar(&root, &pseudo_random(4096, 8));
    let upstream = Upstream::start(root);
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &upstream.url()]);
    let path = format!("/{key}");

    // HEAD on a cold NAR asks upstream, stores nothing.
    let h = narbor.head(&format!("/{cold}"));
    assert_eq!(
        (h.status, h.header("content-length"), h.cache_status()),
        (200, Some("4096"), "MISS")
    );
    assert!(h.body.is_empty());
    assert_eq!(
        narbor.head(&format!("/{cold}")).cache_status(),
        "MISS",
        "HEAD did not fill"
    );

    assert_eq!(narbor.get(&path).status, 200);
    let h = narbor.head(&path);
    assert_eq!((h.status, h.cache_status()), (200, "HIT"));
    assert_eq!(h.header("content-length"), Some("1048576"));
    assert_eq!(h.header("accept-ranges"), Some("bytes"));
    assert!(h.body.is_empty());

    let r = crate::upstream::request(narbor.addr, "GET", &path, &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/1048576"));
    assert_eq!(r.body, &nar[100..200]);
    let r = crate::upstream::request(narbor.addr, "GET", &path, &[("Range", "bytes=-10")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &nar[nar.len() - 10..]));
    let r = crate::upstream::request(narbor.addr, "GET", &path, &[("Range", "bytes=1048570-")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &nar[1048570..]));
    let r = crate::upstream::request(narbor.addr, "GET", &path, &[("Range", "bytes=2000000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1048576"));
}

#[test]
fn malformed_requests_get_4xx_never_5xx_and_are_never_proxied() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(dir.path().join("up"));
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &upstream.url()]);
    let long = "a".repeat(5000);
    let paths = [
        "/nar/../../etc/passwd".to_owned(),
        "/nar/%2e%2e/%2e%2e/etc/passwd".to_owned(),
        "/..%2f..%2fetc%2fpasswd".to_owned(),
        "/abc.narinfo".to_owned(),
        "/EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE.narinfo".to_owned(),
        "/nar/xyz.nar".to_owned(),
        "/nar/0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.nar.gz".to_owned(),
        "/nar//0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.nar".to_owned(),
        "/log/../../x.drv".to_owned(),
        "/realisations/garbage.doi".to_owned(),
        "/favicon.ico".to_owned(),
        "/etc/passwd".to_owned(),
        format!("/{long}.narinfo"),
        "/%00.narinfo".to_owned(),
    ];
    for path in &paths {
        let r = narbor.get(path);
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
    }
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = crate::upstream::request(narbor.addr, method, "/nix-cache-info", &[]);
        assert_eq!(r.status, 405, "{method}");
    }
    assert_eq!(
        upstream.total_requests(),
        0,
        "nothing malformed reached the upstream"
    );
    assert_eq!(narbor.get("/health").status, 200);
}

#[test]
fn trusted_keys_reject_foreign_signatures_and_sign_key_adds_ours() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(2000, 2);
    let nar_key = put_nar(&root, &nar);
    let signer = test_key("real-upstream-1");
    let doc = put_narinfo(&root, "signed-test", &nar_key, &nar, &signer);
    let upstream = Upstream::start(root);

    let impostor = test_key("real-upstream-1-other").public_key();
    let cache = dir.path().join("strict");
    let mut narbor = NarborServer::start(
        &cache,
        &[
            "--upstream",
            &upstream.url(),
            "--trusted-key",
            &impostor.to_string(),
        ],
    );
    let r = narbor.get(&format!("/{doc}"));
    assert_eq!(
        r.status, 404,
        "a narinfo not signed by a trusted key is not served"
    );
    narbor.stop();
    let store = DiskStore::open(StoreConfig {
        dir: cache,
        max_size: u64::MAX,
    })
    .unwrap();
    assert!(store.entries().unwrap().is_empty(), "and not stored");
    drop(store);

    let ours = dir.path().join("ours.sk");
    let our_key = test_key("narbor-own-1");
    std::fs::write(&ours, our_key.to_string()).unwrap();
    let narbor = NarborServer::start(
        &dir.path().join("trusting"),
        &[
            "--upstream",
            &upstream.url(),
            "--trusted-key",
            &signer.public_key().to_string(),
            "--sign-key-file",
            ours.to_str().unwrap(),
        ],
    );
    let r = narbor.get(&format!("/{doc}"));
    assert_eq!((r.status, r.cache_status()), (200, "MISS"));
    let info = NarInfo::parse(std::str::from_utf8(&r.body).unwrap()).unwrap();
    assert!(
        info.verify(&[signer.public_key()]),
        "the upstream signature is kept"
    );
    assert!(info.verify(&[our_key.public_key()]), "narbor added its own");
}

#[test]
fn cache_info_and_landing_page() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(dir.path().join("up"));
    let narbor = NarborServer::start(
        &dir.path().join("cache"),
        &["--upstream", &upstream.url(), "--priority", "25"],
    );
    let info = narbor.get("/nix-cache-info");
    assert_eq!(info.header("content-type"), Some("text/x-nix-cache-info"));
    assert_eq!(
        String::from_utf8(info.body).unwrap(),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 25\n"
    );
    let page = narbor.get("/");
    let html = String::from_utf8(page.body).unwrap();
    assert_eq!(page.status, 200);
    assert!(html.contains(&upstream.url()), "names its upstream");
    assert!(html.contains("nix.settings.extra-substituters"));
    assert!(html.contains("extra-substituters = "));
    assert!(html.contains("/health"));
}

#[test]
fn a_client_that_disconnects_does_not_break_the_fill_for_the_others() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(6 * 1024 * 1024, 41);
    let key = put_nar(&root, &nar);
    let upstream = Upstream::start(root);
    upstream.set_rate(4 * 1024 * 1024);
    let cache = dir.path().join("cache");
    let narbor = Arc::new(NarborServer::start(
        &cache,
        &["--upstream", &upstream.url()],
    ));
    // The first client starts the fill, reads a little, and hangs up.
    let mut quitter = std::net::TcpStream::connect(narbor.addr).unwrap();
    write!(quitter, "GET /{key} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut some = vec![0u8; 4096];
    assert!(quitter.read(&mut some).unwrap() > 0);
    let others: Vec<_> = (0..2)
        .map(|_| {
            let (narbor, key) = (Arc::clone(&narbor), key.clone());
            std::thread::spawn(move || narbor.get(&format!("/{key}")))
        })
        .collect();
    drop(quitter);
    for t in others {
        let r = t.join().unwrap();
        assert_eq!((r.status, r.complete), (200, true));
        assert_eq!(Sha256::digest(&r.body), Sha256::digest(&nar));
    }
    assert_eq!(upstream.requests(&key), 1);
    assert_eq!(narbor.get(&format!("/{key}")).cache_status(), "HIT");
}

#[test]
fn failover_to_the_next_upstream_on_errors_and_404s() {
    let dir = tempfile::tempdir().unwrap();
    let (root1, root2) = (dir.path().join("up1"), dir.path().join("up2"));
    std::fs::create_dir_all(&root1).unwrap();
    let only_second = put_nar(&root2, &pseudo_random(5000, 1));
    let broken_on_first = put_nar(&root2, &pseudo_random(5000, 2));
    put_nar(&root1, &pseudo_random(5000, 2));
    let (first, second) = (Upstream::start(root1), Upstream::start(root2));
    first.set_fault(&broken_on_first, Some(Fault::ServerError));
    let narbor = NarborServer::start(
        &dir.path().join("cache"),
        &["--upstream", &first.url(), "--upstream", &second.url()],
    );
    let r = narbor.get(&format!("/{only_second}"));
    assert_eq!(
        (r.status, r.cache_status()),
        (200, "MISS"),
        "404 on the first: asks the second"
    );
    assert_eq!(
        (first.requests(&only_second), second.requests(&only_second)),
        (1, 1)
    );
    let r = narbor.get(&format!("/{broken_on_first}"));
    assert_eq!(r.status, 200, "500 on the first: asks the second");
    assert_eq!(second.requests(&broken_on_first), 1);
    first.stop();
    let third = put_nar(&second.root, &pseudo_random(5000, 3));
    assert_eq!(
        narbor.get(&format!("/{third}")).status,
        200,
        "the first is down: the second serves"
    );
    // Every upstream failing with nothing stored is a 502, not a 404.
    let missing = format!("nar/{}.nar", Sha256::digest(b"nowhere").to_nix32());
    second.set_fault(&missing, Some(Fault::ServerError));
    let r = narbor.get(&format!("/{missing}"));
    assert_eq!((r.status, r.cache_status()), (502, "ERROR"));
}

#[test]
fn http2_when_the_client_asks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--no-upstream"]);
    let out = run_ok(
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .arg(format!("{}/nix-cache-info", narbor.url())),
    );
    assert_eq!(stdout_str(&out), "2 200");
    let out = run_ok(
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--http1.1",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .arg(format!("{}/nix-cache-info", narbor.url())),
    );
    assert_eq!(stdout_str(&out), "1.1 200");
}

#[test]
fn nothing_about_the_client_is_forwarded_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(10_000, 31);
    let nar_key = put_nar(&root, &nar);
    let doc = put_narinfo(&root, "forwarding-test", &nar_key, &nar, &test_key("up-1"));
    let upstream = Upstream::start(root);
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &upstream.url()]);
    let client_headers = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Real-IP", "203.0.113.7"),
        ("Authorization", "Bearer client-secret"),
        ("Cookie", "session=client-secret"),
        ("User-Agent", "client-agent/1.0"),
        ("X-Client-Marker", "client-marker"),
    ];
    for path in [&doc, &nar_key] {
        let r = crate::upstream::request(narbor.addr, "GET", &format!("/{path}"), &client_headers);
        assert_eq!(r.status, 200);
    }
    let heads = upstream.request_heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        let text = head.join("\n").to_ascii_lowercase();
        // A client address could only travel in a header: these cover them all.
        for needle in [
            "forwarded",
            "x-real-ip",
            "authorization",
            "cookie",
            "client-",
            "203.0.113.7",
        ] {
            assert!(
                !text.contains(needle),
                "{needle:?} reached the upstream: {head:?}"
            );
        }
        assert!(
            text.contains("user-agent: narbor/"),
            "narbor's own agent: {head:?}"
        );
    }
}
