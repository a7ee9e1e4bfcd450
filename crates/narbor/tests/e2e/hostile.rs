//! A hostile world: upstreams that fail in every way, malformed documents,
//! garbage URLs, tampered signatures, repeated crashes. In every case nothing
//! corrupt is stored, every client sees a failure rather than a short success,
//! and the server keeps serving.

use std::path::Path;
use std::sync::Arc;

use narbor_proto::{NarInfo, SecretKey, Sha256};

use crate::serve::{pseudo_random, put_nar, put_narinfo, verify_store, walk_files};
use crate::support::*;
use crate::upstream::{try_request, Fault, Upstream};

fn key(name: &str) -> SecretKey {
    SecretKey::from_seed(name, Sha256::digest(name.as_bytes()).0).unwrap()
}

/// Three clients at once (one coalesced fill); returns their statuses.
fn three_clients(narbor: &Arc<NarborServer>, path: &str) -> Vec<(u16, bool, String)> {
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (narbor, path) = (Arc::clone(narbor), path.to_owned());
            std::thread::spawn(move || {
                let r = try_request(narbor.addr, "GET", &path, &[]).expect("a response head");
                (r.status, r.complete, r.cache_status().to_owned())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn upstream_errors_fail_every_client_cleanly_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    std::fs::create_dir_all(&root).unwrap();
    let upstream = Upstream::start(root.clone());
    let narbor = Arc::new(NarborServer::start(
        &dir.path().join("cache"),
        &["--upstream", &upstream.url(), "--negative-ttl", "0s"],
    ));
    let faults = [
        Fault::Status(500),
        Fault::Status(502),
        Fault::Status(503),
        Fault::Status(429),
        Fault::RedirectLoop,
        Fault::HugeHeaders,
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        // Fresh objects per fault: every case meets a cold cache.
        let nar = pseudo_random(300_000, 10 + i as u64);
        let nar_key = put_nar(&root, &nar);
        let doc = put_narinfo(&root, &format!("errors-{i}"), &nar_key, &nar, &key("up-1"));
        for path in [&doc, &nar_key] {
            upstream.set_fault(path, Some(fault));
            for (status, _, cache) in three_clients(&narbor, &format!("/{path}")) {
                assert_eq!(
                    (status, cache.as_str()),
                    (502, "ERROR"),
                    "{fault:?} on {path}"
                );
            }
            assert_eq!(
                narbor.get("/health").status,
                200,
                "healthy during {fault:?}"
            );
            upstream.set_fault(path, None);
            let r = narbor.get(&format!("/{path}"));
            assert_eq!(
                (r.status, r.complete, r.cache_status()),
                (200, true, "MISS"),
                "{fault:?}: recovered, and nothing had been stored"
            );
        }
    }
}

#[test]
fn malformed_narinfos_are_never_stored_or_served() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(5000, 2);
    let nar_key = put_nar(&root, &nar);
    let signer = key("up-1");
    let upstream = Upstream::start(root.clone());
    let narbor = Arc::new(NarborServer::start(
        &dir.path().join("cache"),
        &["--upstream", &upstream.url()],
    ));
    type Spoil = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(&str, Spoil)> = vec![
        (
            "missing NarHash",
            Box::new(|good: &str| {
                good.lines()
                    .filter(|l| !l.starts_with("NarHash"))
                    .map(|l| format!("{l}\n"))
                    .collect()
            }),
        ),
        (
            "garbage line",
            Box::new(|good: &str| format!("{good}this is not a field\n")),
        ),
        (
            "bad number",
            Box::new(|good: &str| good.replace("NarSize: ", "NarSize: x")),
        ),
        (
            "binary junk",
            Box::new(|_: &str| "\u{0}\u{1}\u{2}garbage".to_owned()),
        ),
        (
            "huge document",
            Box::new(|good: &str| format!("{good}X-Padding: {}\n", "a".repeat(9 << 20))),
        ),
    ];
    for (i, (what, spoil)) in cases.iter().enumerate() {
        let doc = put_narinfo(&root, &format!("malformed-{i}"), &nar_key, &nar, &signer);
        let good = std::fs::read_to_string(root.join(&doc)).unwrap();
        std::fs::write(root.join(&doc), spoil(&good)).unwrap();
        for (status, _, _) in three_clients(&narbor, &format!("/{doc}")) {
            assert!(
                status == 404 || status == 502,
                "{what}: served with {status}"
            );
        }
        std::fs::write(root.join(&doc), &good).unwrap();
        let r = narbor.get(&format!("/{doc}"));
        assert_eq!(
            (r.status, r.cache_status()),
            (200, "MISS"),
            "{what}: nothing was stored"
        );
        assert_eq!(r.body, good.as_bytes());
    }
    // A narinfo that describes another store path than the one asked for.
    let a = put_narinfo(&root, "mismatch-a", &nar_key, &nar, &signer);
    let b = put_narinfo(&root, "mismatch-b", &nar_key, &nar, &signer);
    std::fs::copy(root.join(&a), root.join(&b)).unwrap();
    assert_eq!(
        narbor.get(&format!("/{b}")).status,
        404,
        "wrong store path is rejected"
    );
    assert_eq!(narbor.get(&format!("/{a}")).status, 200);
}

#[test]
fn tampered_or_foreign_signatures_are_never_cached_or_served() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(5000, 3);
    let nar_key = put_nar(&root, &nar);
    let signer = key("trusted-1");
    let tampered = put_narinfo(&root, "tampered", &nar_key, &nar, &signer);
    let text = std::fs::read_to_string(root.join(&tampered)).unwrap();
    let mut info = NarInfo::parse(&text).unwrap();
    info.nar_size += 1; // the signature no longer matches the fields
    std::fs::write(root.join(&tampered), info.to_string()).unwrap();
    let foreign = put_narinfo(&root, "foreign", &nar_key, &nar, &key("trusted-1-impostor"));
    let unsigned = put_narinfo(&root, "unsigned", &nar_key, &nar, &signer);
    let mut info = NarInfo::parse(&std::fs::read_to_string(root.join(&unsigned)).unwrap()).unwrap();
    info.sigs.clear();
    std::fs::write(root.join(&unsigned), info.to_string()).unwrap();
    let good = put_narinfo(&root, "good", &nar_key, &nar, &signer);
    let upstream = Upstream::start(root);
    let cache = dir.path().join("cache");
    let mut narbor = NarborServer::start(
        &cache,
        &[
            "--upstream",
            &upstream.url(),
            "--trusted-key",
            &signer.public_key().to_string(),
        ],
    );
    for doc in [&tampered, &foreign, &unsigned] {
        assert_eq!(narbor.get(&format!("/{doc}")).status, 404, "{doc}");
        assert_eq!(
            narbor.get(&format!("/{doc}")).status,
            404,
            "{doc}: still not served"
        );
    }
    assert_eq!(narbor.get(&format!("/{good}")).status, 200);
    narbor.stop();
    let store = narbor_store::DiskStore::open(narbor_store::StoreConfig {
        dir: cache,
        max_size: u64::MAX,
    })
    .unwrap();
    let keys: Vec<String> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(
        keys,
        vec![good.clone()],
        "only the validly signed narinfo was stored"
    );
}

#[test]
fn the_nix_client_reports_a_corrupt_or_cut_nar_and_imports_nothing() {
    let env = NixEnv::new();
    let path = env.build(
        "narbor-fixture-corrupt",
        "/bin/mkdir $out; /usr/bin/head -c 3000000 /dev/urandom > $out/data",
        &[],
    );
    let (sk, pk) = (env.path("k.sk"), env.path("k.pk"));
    run_ok(narbor().args(["keygen", "hostile-1"]).arg(&sk).arg(&pk));
    let public = std::fs::read_to_string(&pk).unwrap();
    let cache = env.path("cache");
    run_ok(
        env.cmd("nix")
            .args(["copy", "--to"])
            .arg(format!(
                "file://{}?compression=none&secret-key={}",
                cache.display(),
                sk.display()
            ))
            .arg(&path),
    );
    let nar_file = walk_files(&cache.join("nar")).pop().unwrap();
    let nar_key = format!("nar/{}", nar_file.file_name().unwrap().to_string_lossy());
    let upstream = Upstream::start(cache.clone());
    let narbor = NarborServer::start(
        &env.path("narbor"),
        &["--upstream", &upstream.url(), "--negative-ttl", "0s"],
    );
    let copy = |root: &Path| {
        env.cmd("nix")
            .args(["copy", "--from", &narbor.url(), "--to"])
            .arg(format!("local?root={}", root.display()))
            .args(["--option", "trusted-public-keys", &public])
            .arg(&path)
            .output()
            .unwrap()
    };
    for fault in [Fault::WrongBytes, Fault::CutShort, Fault::Reset] {
        upstream.set_fault(&nar_key, Some(fault));
        let root = env.path(&format!("fresh-{fault:?}"));
        let out = copy(&root);
        assert!(!out.status.success(), "{fault:?}: nix copy succeeded");
        let info = env
            .cmd("nix")
            .args(["path-info", "--store"])
            .arg(format!("local?root={}", root.display()))
            .arg(&path)
            .output()
            .unwrap();
        assert!(!info.status.success(), "{fault:?}: the path was imported");
    }
    upstream.set_fault(&nar_key, None);
    let out = copy(&env.path("fresh-ok"));
    assert!(
        out.status.success(),
        "after recovery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_dripping_upstream_holds_up_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let slow = put_nar(&root, &pseudo_random(200, 4)); // 200 bytes, 4 seconds
    let fast = put_nar(&root, &pseudo_random(100_000, 5));
    let upstream = Upstream::start(root);
    upstream.set_fault(&slow, Some(Fault::Drip));
    let narbor = Arc::new(NarborServer::start(
        &dir.path().join("cache"),
        &["--upstream", &upstream.url()],
    ));
    let dripping = {
        let (narbor, slow) = (Arc::clone(&narbor), slow.clone());
        std::thread::spawn(move || narbor.get(&format!("/{slow}")))
    };
    wait_for(
        "the dripping fill to start",
        std::time::Duration::from_secs(10),
        || narbor.log_text(),
        || (upstream.requests(&slow) == 1).then_some(()),
    );
    for _ in 0..5 {
        assert_eq!(narbor.get(&format!("/{fast}")).status, 200);
        assert_eq!(narbor.get("/nix-cache-info").status, 200);
    }
    assert!(
        !dripping.is_finished(),
        "the drip is still going while others were served"
    );
    let r = dripping.join().unwrap();
    assert_eq!(
        (r.status, r.complete),
        (200, true),
        "and it completes in the end"
    );
}

/// A deterministic generator of hostile request targets.
fn hostile_paths(n: usize) -> Vec<String> {
    let pieces = [
        "..",
        "%2e%2e",
        "%2E",
        "%2f",
        "%252e",
        "/",
        "//",
        "nar",
        "nar/",
        ".nar",
        ".narinfo",
        ".ls",
        "log/",
        "realisations/",
        "etc/passwd",
        "%00",
        "%0a",
        "~",
        "sha256:",
        "!",
        "out",
        ".doi",
        "%",
        "%zz",
        "\\",
        "?x=1",
        "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
        "0a3yijp35sygmy51cnrrz11vimwapz7c",
        "EEEE",
        "é",
        ";",
        "*",
        "xz",
        ".xz",
        "-",
        "a".repeat(300).leak(),
    ];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let len = 1 + next() % 8;
            let mut p = String::from("/");
            for _ in 0..len {
                p.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            // Request targets carry no raw spaces or control characters.
            p.replace(|c: char| c.is_whitespace() || c.is_control(), "")
        })
        // narbor's own pages are not hostile: `/?x=1` is the landing page.
        .filter(|p| {
            !matches!(
                p.split('?').next(),
                Some("/" | "/health" | "/nix-cache-info")
            )
        })
        .collect()
}

#[test]
fn hostile_urls_get_4xx_never_5xx_and_never_a_file_outside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    std::fs::create_dir_all(&root).unwrap();
    let upstream = Upstream::start(root);
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &upstream.url()]);
    let mut statuses = std::collections::BTreeMap::new();
    for path in hostile_paths(1500) {
        for method in ["GET", "HEAD"] {
            let r = crate::upstream::request(narbor.addr, method, &path, &[]);
            assert!(
                (400..500).contains(&r.status),
                "{method} {path}: {}",
                r.status
            );
            assert!(
                !String::from_utf8_lossy(&r.body).contains("root:"),
                "{path} leaked a file"
            );
            *statuses.entry(r.status).or_insert(0) += 1;
        }
    }
    println!("hostile URL statuses: {statuses:?}");
    assert_eq!(narbor.get("/health").status, 200);
}

#[test]
fn repeated_kill9_during_mixed_fills_never_leaves_a_partial_object() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let signer = key("up-1");
    let mut paths = Vec::new();
    for i in 0..8u64 {
        let nar = pseudo_random(1024 * 1024 + i as usize * 999, 700 + i);
        let nar_key = put_nar(&root, &nar);
        paths.push(put_narinfo(
            &root,
            &format!("crash-{i}"),
            &nar_key,
            &nar,
            &signer,
        ));
        paths.push(nar_key);
    }
    let upstream = Upstream::start(root);
    upstream.set_rate(4 * 1024 * 1024);
    let cache = dir.path().join("cache");
    let mut narbor = NarborServer::start(&cache, &["--upstream", &upstream.url()]);
    let mut x: u64 = 42;
    for _round in 0..12 {
        let threads: Vec<_> = paths
            .iter()
            .map(|p| {
                let (addr, p) = (narbor.addr, p.clone());
                std::thread::spawn(move || try_request(addr, "GET", &format!("/{p}"), &[]))
            })
            .collect();
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_millis(20 + (x >> 33) % 400));
        narbor.restart();
        for t in threads {
            if let Ok(r) = t.join().unwrap() {
                assert!(
                    r.status != 200 || r.complete || r.body.len() < 2 * 1024 * 1024,
                    "no clean short 200"
                );
            }
        }
    }
    for p in &paths {
        let r = narbor.get(&format!("/{p}"));
        assert_eq!((r.status, r.complete), (200, true), "{p}");
    }
    narbor.stop();
    verify_store(&cache);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        run_ok(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
        );
        Tmpfs(dir.to_owned())
    }

    fn resize(&self, size: &str) {
        run_ok(
            std::process::Command::new("mount")
                .args(["-o", &format!("remount,size={size}")])
                .arg(&self.0),
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_passes_nars_through_verified_and_storing_resumes_with_space() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let big_nar = pseudo_random(20 * 1024 * 1024, 91);
    let big = put_nar(&root, &big_nar);
    let small = put_nar(&root, &pseudo_random(100_000, 92));
    let bad = put_nar(&root, &pseudo_random(3 * 1024 * 1024, 93));
    let upstream = Upstream::start(root);
    upstream.set_fault(&bad, Some(Fault::WrongBytes));
    let cache = dir.path().join("cache");
    let disk = Tmpfs::mount(&cache, "16m");
    let narbor = NarborServer::start(&cache, &["--upstream", &upstream.url()]);

    // 20 MB cannot fit on a 16 MB disk: served whole, checked, not stored.
    let r = narbor.get(&format!("/{big}"));
    assert_eq!(
        (r.status, r.complete, r.cache_status()),
        (200, true, "BYPASS")
    );
    assert_eq!(Sha256::digest(&r.body), Sha256::digest(&big_nar));
    // While the store refuses, corrupt bytes still never make a clean response.
    let r = narbor.get(&format!("/{bad}"));
    assert!(
        r.status != 200 || !r.complete,
        "a corrupt pass-through completed"
    );
    assert_eq!(narbor.get(&format!("/{small}")).cache_status(), "BYPASS");
    assert!(narbor
        .log_text()
        .contains("passing NARs through without storing"));
    let metrics = String::from_utf8(narbor.get("/metrics").body).unwrap();
    let bypassed = metrics
        .lines()
        .find(|l| l.contains("outcome=\"bypassed\"") && l.contains("kind=\"nar\""))
        .unwrap_or_else(|| panic!("no bypass metric:\n{metrics}"));
    assert!(!bypassed.ends_with(" 0"), "{bypassed}");
    assert!(
        walk_files(&cache.join("blobs")).is_empty(),
        "nothing stored"
    );

    // Space returns: once the back-off has passed (5 s; the in-process test
    // `after_the_store_refused_a_nar_it_is_asked_again_once_the_back_off_passed`
    // checks its length on a manual clock), narbor stores again. Waited
    // for by asking until the small NAR is stored.
    disk.resize("64m");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if narbor.get(&format!("/{small}")).cache_status() == "MISS" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "storing never resumed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(narbor.get(&format!("/{small}")).cache_status(), "HIT");
    let r = narbor.get(&format!("/{big}"));
    assert_eq!(
        (r.status, r.complete, r.cache_status()),
        (200, true, "MISS")
    );
    assert_eq!(narbor.get(&format!("/{big}")).cache_status(), "HIT");
    assert_eq!(narbor.get("/health").status, 200);
}

#[test]
fn a_stalled_upstream_fails_every_client_after_the_timeout_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(2 * 1024 * 1024, 81);
    let key = put_nar(&root, &nar);
    let upstream = Upstream::start(root);
    upstream.set_fault(&key, Some(Fault::Stall)); // half the body, then ten minutes of nothing
    let cache = dir.path().join("cache");
    let narbor = Arc::new(NarborServer::start(
        &cache,
        &["--upstream", &upstream.url(), "--upstream-timeout", "2s"],
    ));
    let started = std::time::Instant::now();
    for (status, complete, _) in three_clients(&narbor, &format!("/{key}")) {
        assert!(status != 200 || !complete, "a stalled fill completed");
    }
    // The clients were released by narbor's timeout, not by the upstream.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(!walk_files(&cache.join("blobs"))
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".nar")));
    upstream.set_fault(&key, None);
    let r = narbor.get(&format!("/{key}"));
    assert_eq!(
        (r.status, r.complete, r.cache_status()),
        (200, true, "MISS")
    );
}

/// A real HTTPS upstream: `openssl s_server -WWW` serving `root`, with a
/// certificate for 127.0.0.1 signed by a fresh test CA. Returns the server
/// process (killed on drop), its URL and the CA certificate file.
struct TlsUpstream {
    child: std::process::Child,
    url: String,
    ca: std::path::PathBuf,
}

impl TlsUpstream {
    fn start(root: &Path, work: &Path) -> TlsUpstream {
        use crate::tls::helpers::{issue, make_ca, KeyKind};
        let ca = make_ca(work, "upstream");
        let (cert, key) = issue(work, &ca, "upstream-server", KeyKind::Rsa);
        // Without -quiet, s_server says the port it bound: `ACCEPT 127.0.0.1:PORT`.
        let out = work.join("s_server.out");
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-WWW", "-accept", "127.0.0.1:0"])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(root)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let text = || std::fs::read_to_string(&out).unwrap_or_default();
        let port: u16 = wait_for(
            "s_server to listen",
            std::time::Duration::from_secs(10),
            text,
            || {
                text()
                    .lines()
                    .find_map(|l| l.strip_prefix("ACCEPT 127.0.0.1:")?.trim().parse().ok())
            },
        );
        TlsUpstream {
            child,
            url: format!("https://127.0.0.1:{port}"),
            ca: ca.cert,
        }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_upstream_with_an_untrusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(50_000, 71);
    let key = put_nar(&root, &nar);
    let work = dir.path().join("tls");
    std::fs::create_dir_all(&work).unwrap();
    let upstream = TlsUpstream::start(&root, &work);

    // The test CA is in no trust store narbor uses: the upstream is refused.
    let untrusting = NarborServer::start(&dir.path().join("c1"), &["--upstream", &upstream.url]);
    let r = untrusting.get(&format!("/{key}"));
    assert_eq!((r.status, r.cache_status()), (502, "ERROR"));
    assert!(
        untrusting.log_text().contains("upstream"),
        "the failure is logged"
    );

    // Control: the same upstream, with its CA trusted, works, so it was the
    // certificate that was refused.
    let trusting = NarborServer::start_with_env(
        &dir.path().join("c2"),
        &["--upstream", &upstream.url],
        &[("SSL_CERT_FILE", upstream.ca.to_str().unwrap())],
    );
    let r = trusting.get(&format!("/{key}"));
    assert_eq!(
        (r.status, r.complete),
        (200, true),
        "{}",
        trusting.log_text()
    );
    assert_eq!(Sha256::digest(&r.body), Sha256::digest(&nar));
}

#[test]
fn slowloris_connections_are_cut_and_do_not_stop_service() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let key = put_nar(&root, &pseudo_random(10_000, 51));
    let upstream = Upstream::start(root);
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &upstream.url()]);
    // 300 connections that send half a request head and then nothing.
    let mut lingering: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(narbor.addr).unwrap();
            c.write_all(b"GET /nix-cache-info HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            c
        })
        .collect();
    // Meanwhile everybody else is served.
    for _ in 0..5 {
        assert_eq!(narbor.get(&format!("/{key}")).status, 200);
        assert_eq!(narbor.get("/health").status, 200);
    }
    // The server closes them after the header timeout (10 s; its length is
    // checked in process, on paused time): each read waits for that close.
    let mut closed = 0;
    for c in &mut lingering {
        c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 256];
        // Cut: the server ends the connection (EOF or reset), perhaps after
        // an error response. Still open: the read times out.
        loop {
            match c.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    assert_eq!(closed, lingering.len(), "every half-sent request was cut");
    assert_eq!(narbor.get("/health").status, 200);
}

#[test]
fn a_slow_reader_never_holds_a_fill_hostage() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(8 * 1024 * 1024, 52);
    let key = put_nar(&root, &nar);
    let upstream = Upstream::start(root);
    upstream.set_rate(16 * 1024 * 1024);
    let narbor = Arc::new(NarborServer::start(
        &dir.path().join("cache"),
        &["--upstream", &upstream.url()],
    ));
    // The slow client starts the fill and reads 4 KiB a second.
    let slow = std::net::TcpStream::connect(narbor.addr).unwrap();
    socket2::SockRef::from(&slow)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut slow = slow;
    write!(slow, "GET /{key} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let slow_reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        for _ in 0..8 {
            total += slow.read(&mut buf).unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        total
    });
    wait_for(
        "the slow client's fill to start",
        std::time::Duration::from_secs(10),
        || narbor.log_text(),
        || (upstream.requests(&key) == 1).then_some(()),
    );
    // A fast client of the same fill gets everything while the slow one crawls.
    let fast = narbor.get(&format!("/{key}"));
    assert_eq!((fast.status, fast.complete), (200, true));
    assert_eq!(Sha256::digest(&fast.body), Sha256::digest(&nar));
    assert!(
        !slow_reader.is_finished(),
        "the slow reader is still reading"
    );
    assert_eq!(upstream.requests(&key), 1, "one fill served both");
    assert!(slow_reader.join().unwrap() < nar.len());
}
