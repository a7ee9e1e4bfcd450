//! The protocol core against real Nix 2.8: NAR bytes, hashes, listings, keys
//! and signatures, each judged by Nix itself.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use narbor_proto::hash::HashingCounter;
use narbor_proto::{nar, Sha256};

use crate::support::*;

/// sha256 and length of a command's standard output, streamed.
fn digest_of_stdout(cmd: &mut std::process::Command) -> (Sha256, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut counter = HashingCounter::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        counter.update(&buf[..n]);
    }
    assert!(child.wait().unwrap().success(), "{cmd:?} failed");
    counter.finish()
}

fn tree_paths(env: &NixEnv) -> Vec<PathBuf> {
    let tree = tree_fixture(env);
    let single_file = env.build(
        "narbor-fixture-file",
        "printf 'a single regular file' > $out",
        &[],
    );
    let exec_file = env.build(
        "narbor-fixture-exec",
        "printf '#!/bin/sh\\n' > $out; /bin/chmod +x $out",
        &[],
    );
    let symlink = env.build(
        "narbor-fixture-symlink",
        "/bin/ln -s /nix/store/somewhere $out",
        &[],
    );
    vec![tree, single_file, exec_file, symlink]
}

#[test]
fn nar_dump_is_byte_identical_to_nix_store_dump() {
    let env = NixEnv::new();
    for path in tree_paths(&env) {
        let ours = digest_of_stdout(narbor().args(["nar", "dump"]).arg(&path));
        let nix = digest_of_stdout(env.cmd("nix-store").arg("--dump").arg(&path));
        assert_eq!(ours, nix, "NAR of {} differs", path.display());
    }
}

#[test]
fn nar_check_agrees_with_nix_path_info() {
    let env = NixEnv::new();
    for path in tree_paths(&env) {
        let info = env.path_info(&path);
        let nar = env.path("dump.nar");
        let file = std::fs::File::create(&nar).unwrap();
        run_ok(
            env.cmd("nix-store")
                .arg("--dump")
                .arg(&path)
                .stdout(Stdio::from(file)),
        );
        let out = run_ok(narbor().args(["nar", "check"]).arg(&nar));
        let text = stdout_str(&out);
        let expected_hash = Sha256::parse(info["narHash"].as_str().unwrap()).unwrap();
        let expected = format!(
            "NarHash: {expected_hash}\nNarSize: {}\n",
            info["narSize"].as_u64().unwrap()
        );
        assert_eq!(text, expected, "for {}", path.display());
    }
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn nar_listing_equals_what_nix_copy_writes() {
    let env = NixEnv::new();
    let paths = tree_paths(&env);
    let cache = env.file_cache(
        "listing-cache",
        "compression=none&write-nar-listing=true",
        &paths,
    );
    let narinfos = files_with_suffix(&cache, ".narinfo");
    assert_eq!(narinfos.len(), paths.len());
    for narinfo in narinfos {
        let text = std::fs::read_to_string(&narinfo).unwrap();
        let info = narbor_proto::NarInfo::parse(&text).unwrap();
        let nar = cache.join(&info.url);
        let listing = cache.join(format!("{}.ls", info.store_path.hash()));
        let expected = std::fs::read(&listing).unwrap();
        let out = run_ok(narbor().args(["nar", "ls"]).arg(&nar));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&expected),
            "listing of {}",
            info.store_path
        );
        // And Nix's listing reads back as the tree narbor finds in the NAR.
        let summary = nar::validate(std::fs::File::open(&nar).unwrap(), true).unwrap();
        assert_eq!(
            nar::listing::parse_json(&expected),
            Ok(summary.listing.unwrap()),
            "Nix's listing of {}",
            info.store_path
        );
    }
}

/// Regression: narbor checked a `.ls` from upstream with serde_json, which
/// refuses the raw bytes Nix writes for a name that is not UTF-8 and stops
/// at 62 directories deep, so such listings were refused. Now the listing
/// parser checks them.
#[test]
fn listings_of_odd_trees_that_nix_writes_are_served() {
    let env = NixEnv::new();
    let deep = "d/".repeat(70);
    let path = env.build(
        "narbor-fixture-odd-listing",
        &format!(
            "set -e\n/bin/mkdir -p $out/{deep}\necho x > $out/{deep}leaf\necho x > \"$out/caf$(printf '\\351')\"\n"
        ),
        &[],
    );
    let cache = env.file_cache(
        "odd-listing",
        "compression=none&write-nar-listing=true",
        &[&path],
    );
    let hash = &path.file_name().unwrap().to_string_lossy()[..32];
    let listing = std::fs::read(cache.join(format!("{hash}.ls"))).unwrap();
    assert!(
        std::str::from_utf8(&listing).is_err(),
        "Nix wrote the name's raw bytes"
    );
    let nar_file = cache.join(format!("{hash}.narinfo"));
    let info = narbor_proto::NarInfo::parse(&std::fs::read_to_string(nar_file).unwrap()).unwrap();
    let summary = nar::validate(std::fs::File::open(cache.join(&info.url)).unwrap(), true).unwrap();
    assert_eq!(
        nar::listing::parse_json(&listing),
        Ok(summary.listing.unwrap())
    );

    let upstream = crate::upstream::Upstream::start(cache);
    let dir = tempfile::tempdir().unwrap();
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &upstream.url()]);
    let got = narbor.get(&format!("/{hash}.ls"));
    assert_eq!(
        (got.status, got.body == listing),
        (200, true),
        "{}",
        narbor.log_text()
    );
    assert_eq!(narbor.get(&format!("/{hash}.ls")).cache_status(), "HIT");
}

#[test]
fn narbor_keys_sign_for_nix_and_nix_keys_sign_for_narbor() {
    let env = NixEnv::new();
    let path = env.build(
        "narbor-fixture-signed",
        "/bin/mkdir $out; echo signed > $out/file",
        &[],
    );

    // A narbor key, used by Nix to sign: narbor verifies what Nix signed.
    let (sk, pk) = (env.path("narbor.sk"), env.path("narbor.pk"));
    run_ok(narbor().args(["keygen", "narbor-test-1"]).arg(&sk).arg(&pk));
    let narbor_pub = std::fs::read_to_string(&pk).unwrap();
    assert!(narbor_pub.starts_with("narbor-test-1:"));
    let cache = env.file_cache(
        "signed-by-nix",
        &format!("compression=zstd&secret-key={}", sk.display()),
        std::slice::from_ref(&path),
    );
    let narinfos = files_with_suffix(&cache, ".narinfo");
    assert_eq!(narinfos.len(), 1);
    run_ok(
        narbor()
            .args(["narinfo", "check", "--trusted-key", &narbor_pub])
            .args(&narinfos),
    );
    // ... and Nix verifies its own signature, made with narbor's key.
    run_ok(
        env.cmd("nix")
            .args(["store", "verify", "--sigs-needed", "1", "--store"])
            .arg(format!("file://{}", cache.display()))
            .args(["--option", "trusted-public-keys", &narbor_pub])
            .arg(&path),
    );
    // The same documents fail against a key of the same name with other bytes.
    let (sk2, pk2) = (env.path("other.sk"), env.path("other.pk"));
    run_ok(
        narbor()
            .args(["keygen", "narbor-test-1"])
            .arg(&sk2)
            .arg(&pk2),
    );
    let other_pub = std::fs::read_to_string(&pk2).unwrap();
    let out = run_fails(
        narbor()
            .args(["narinfo", "check", "--trusted-key", &other_pub])
            .args(&narinfos),
    );
    assert!(stderr_str(&out).contains("0 passed, 1 failed"));

    // A Nix key, used by narbor to sign: Nix accepts what narbor signed.
    let (nix_sk, nix_pk) = (env.path("nix.sk"), env.path("nix.pk"));
    run_ok(
        env.cmd("nix-store")
            .args(["--generate-binary-cache-key", "nix-test-1"])
            .arg(&nix_sk)
            .arg(&nix_pk),
    );
    let nix_pub = std::fs::read_to_string(&nix_pk).unwrap();
    let unsigned = env.file_cache(
        "signed-by-narbor",
        "compression=zstd",
        std::slice::from_ref(&path),
    );
    let narinfos = files_with_suffix(&unsigned, ".narinfo");
    let store_url = format!("file://{}", unsigned.display());
    let verify = |env: &NixEnv| {
        env.cmd("nix")
            .args(["store", "verify", "--store", &store_url])
            .args(["--option", "trusted-public-keys", &nix_pub])
            .args(["--sigs-needed", "1"])
            .arg(&path)
            .output()
            .unwrap()
    };
    assert!(
        !verify(&env).status.success(),
        "nix accepted an unsigned cache"
    );
    run_ok(
        narbor()
            .args(["narinfo", "sign", "--in-place", "--key-file"])
            .arg(&nix_sk)
            .args(&narinfos),
    );
    let out = verify(&env);
    assert!(
        out.status.success(),
        "nix store verify rejected narbor's signature: {}",
        stderr_str(&out)
    );
    // And a fresh store substitutes from it with signatures required.
    let root = env.path("fresh-store");
    run_ok(
        env.cmd("nix")
            .args(["copy", "--from", &store_url, "--to"])
            .arg(format!("local?root={}", root.display()))
            .args(["--option", "trusted-public-keys", &nix_pub])
            .arg(&path),
    );
}

#[test]
fn narinfo_check_reports_malformed_documents_with_line_numbers() {
    let env = NixEnv::new();
    let good = "StorePath: /nix/store/0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf\n\
URL: nar/0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c.nar.xz\n\
Compression: xz\n\
NarHash: sha256:1bb3srw3x77mnck1gk0cbnf1a9915fdrqdjb27y7rxmmlrb3dzjw\n\
NarSize: 11408\n\
References: \n";
    let bad = good.replace("NarSize: 11408", "NarSize: 11x08");
    let file = env.path("two.narinfo");
    std::fs::write(&file, format!("{good}\n{bad}")).unwrap();
    let out = run_fails(
        narbor()
            .args(["narinfo", "check", "--canonical"])
            .arg(&file),
    );
    let err = stderr_str(&out);
    assert!(err.contains("two.narinfo:8:"), "{err}");
    assert!(err.contains("NarSize"), "{err}");
    assert!(err.contains("1 passed, 1 failed"), "{err}");
    assert_eq!(stdout_str(&out), good, "the good document, canonical");

    // Standard input works too.
    let mut child = narbor()
        .args(["narinfo", "check", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(good.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(stderr_str(&out).contains("1 passed, 0 failed"));
}

#[test]
fn nar_check_rejects_truncated_and_corrupt_archives() {
    let env = NixEnv::new();
    let path = env.build(
        "narbor-fixture-small-tree",
        "/bin/mkdir -p $out/d; echo a > $out/d/a; echo b > $out/b",
        &[],
    );
    let out = run_ok(narbor().args(["nar", "dump"]).arg(&path));
    let nar = out.stdout;
    for (name, bytes) in [
        ("truncated", nar[..nar.len() - 9].to_vec()),
        ("trailing", [nar.clone(), vec![0u8; 8]].concat()),
        ("bad-magic", {
            let mut b = nar.clone();
            b[10] = b'X';
            b
        }),
        ("empty", Vec::new()),
    ] {
        let file = env.path(&format!("{name}.nar"));
        std::fs::write(&file, &bytes).unwrap();
        let out = run_fails(narbor().args(["nar", "check"]).arg(&file));
        let err = stderr_str(&out);
        assert!(err.contains("invalid NAR"), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn keygen_never_overwrites_and_protects_the_secret() {
    use std::os::unix::fs::PermissionsExt;
    let env = NixEnv::new();
    let (sk, pk) = (env.path("k.sk"), env.path("k.pk"));
    run_ok(narbor().args(["keygen", "k-1"]).arg(&sk).arg(&pk));
    let mode = std::fs::metadata(&sk).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&sk).unwrap();
    let out = run_fails(narbor().args(["keygen", "k-1"]).arg(&sk).arg(&pk));
    assert!(stderr_str(&out).contains("already exists"));
    assert_eq!(std::fs::read(&sk).unwrap(), before);
    // Nix itself loads the key narbor made: it signs a path with it.
    let path = env.build("narbor-fixture-keyload", "echo k > $out", &[]);
    run_ok(
        env.cmd("nix")
            .args(["store", "sign", "--key-file"])
            .arg(&sk)
            .arg(&path),
    );
}
