//! `narbor push` and `narbor gc` against a real `docker-registry`, read back
//! by narbor's index reader, by skopeo and by the real Nix client.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use narbor_oci::{Credentials, IndexReader, RegistryClient, StoreRef};
use narbor_proto::{NarInfo, StorePath};

use crate::registry::{Auth, CutFirstPatch, Registry, TokenServer, PASSWORD, USER};
use crate::support::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(store: &str) -> Arc<RegistryClient> {
    let creds = Credentials::new(USER, PASSWORD);
    Arc::new(RegistryClient::new(StoreRef::parse(store).unwrap(), Some(creds)).unwrap())
}

/// `narbor push` in a Nix environment with the registry's credentials.
fn push_cmd(env: &NixEnv, store: &str) -> Command {
    let mut c = env.cmd(env!("CARGO_BIN_EXE_narbor"));
    c.args(["push", "--to", store])
        .env("NARBOR_REGISTRY_USERNAME", USER)
        .env("NARBOR_REGISTRY_PASSWORD", PASSWORD)
        .env("RUST_LOG", "narbor=info,warn");
    c
}

/// `narbor push --no-skip --key-file SK PATHS...`, which must succeed.
fn push_signed(env: &NixEnv, store: &str, sk: &Path, paths: &[&Path]) -> Output {
    run_ok(
        push_cmd(env, store)
            .args(["--no-skip", "--key-file"])
            .arg(sk)
            .args(paths),
    )
}

/// Serves `store` with `narbor serve --oci` (no upstream) and has the real
/// Nix substitute `roots` from it into the chroot store `dest`, verifying
/// every NAR; returns the paths that arrived.
fn substitute_from_oci(
    env: &NixEnv,
    store: &str,
    public: &str,
    roots: &[&Path],
    dest: &Path,
) -> Vec<String> {
    let narbor = serve_oci(&env.path("serve-cache"), store, &[]);
    let entries = closure_of_all(env, roots).len() as u64;
    wait_for_entries(&narbor, entries);
    env.substitute(&narbor.url(), dest, public, roots, &[])
}

/// The union of the closures of `roots`, sorted.
fn closure_of_all(env: &NixEnv, roots: &[&Path]) -> Vec<String> {
    let mut all: Vec<String> = roots.iter().flat_map(|r| closure(env, r)).collect();
    all.sort();
    all.dedup();
    all
}

fn gc_cmd(store: &str) -> Command {
    let mut c = narbor();
    c.args(["gc", "--store", store])
        .env("NARBOR_REGISTRY_USERNAME", USER)
        .env("NARBOR_REGISTRY_PASSWORD", PASSWORD);
    c
}

fn keys(env: &NixEnv) -> (PathBuf, String) {
    keys_named(env, "push", "narbor-push-test-1")
}

/// A key pair made by `narbor keygen KEY_NAME` into `FILE.sk` and `FILE.pk`:
/// the secret key's path and the public key.
fn keys_named(env: &NixEnv, file: &str, key_name: &str) -> (PathBuf, String) {
    let (sk, pk) = (
        env.path(&format!("{file}.sk")),
        env.path(&format!("{file}.pk")),
    );
    run_ok(narbor().args(["keygen", key_name]).arg(&sk).arg(&pk));
    let public = std::fs::read_to_string(&pk).unwrap().trim().to_owned();
    (sk, public)
}

/// The closure of `path` as Nix sees it, sorted.
fn closure(env: &NixEnv, path: &Path) -> Vec<String> {
    let out = run_ok(
        env.cmd("nix-store")
            .args(["--query", "--requisites"])
            .arg(path),
    );
    let mut v: Vec<String> = stdout_str(&out).lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// The store paths the index lists, sorted.
fn indexed_paths(store: &str) -> Vec<String> {
    let mut reader = IndexReader::new(client(store));
    rt().block_on(reader.refresh()).unwrap();
    let mut v: Vec<String> = reader
        .index()
        .entries()
        .map(|e| e.store_path.to_absolute_path())
        .collect();
    v.sort();
    v
}

/// The "uploaded N NAR(s)" figure of push's summary.
fn uploaded(out: &Output) -> usize {
    let s = stdout_str(out);
    let after = s
        .split("uploaded ")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in {s}"));
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// Writes the index as a `file://` binary cache (narinfos from the index,
/// NARs fetched as blobs): what a substituter would see.
///
/// LEAD: once `narbor serve --oci` exists, point `nix copy --from` at it
/// instead of this directory; everything else in the test stays.
fn materialize(store: &str, dir: &Path) -> usize {
    let client = client(store);
    let mut reader = IndexReader::new(Arc::clone(&client));
    rt().block_on(async {
        reader.refresh().await.unwrap();
        let index = reader.index();
        std::fs::create_dir_all(dir.join("nar")).unwrap();
        std::fs::write(dir.join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
        for e in index.entries() {
            std::fs::write(
                dir.join(format!("{}.narinfo", e.store_path.hash())),
                e.narinfo().as_bytes(),
            )
            .unwrap();
            let blob = index.nar_blob(e.nar_url()).expect("NAR URL maps to a blob");
            let bytes = client.get_blob_bytes(&blob.digest, 1 << 30).await.unwrap();
            std::fs::write(dir.join(e.nar_url()), bytes).unwrap();
        }
        index.len()
    })
}

/// `narbor serve --oci STORE --no-upstream` with the registry's credentials.
fn serve_oci(cache: &Path, store: &str, extra: &[&str]) -> NarborServer {
    let mut args = vec!["--oci", store, "--no-upstream"];
    args.extend_from_slice(extra);
    NarborServer::start_with_env(
        cache,
        &args,
        &[
            ("NARBOR_REGISTRY_USERNAME", USER),
            ("NARBOR_REGISTRY_PASSWORD", PASSWORD),
        ],
    )
}

/// `/<hash>.narinfo` for a store path.
fn narinfo_path(path: &Path) -> String {
    format!(
        "/{}.narinfo",
        &path.file_name().unwrap().to_string_lossy()[..32]
    )
}

/// `POST /_refresh`, which must succeed: its JSON answer.
fn refresh(narbor: &NarborServer) -> serde_json::Value {
    let r = crate::upstream::request(narbor.addr, "POST", "/_refresh", &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

/// Waits until the served index has `n` entries (the first refresh runs in
/// the background after start).
fn wait_for_entries(narbor: &NarborServer, n: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status: serde_json::Value =
            serde_json::from_slice(&narbor.get("/_status").body).unwrap();
        if status["oci"]["entries"].as_u64() == Some(n) {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "index never reached {n} entries: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A closure over 50 MB: the NAR-feature tree (symlinks, a 50 MB file) and
/// an app referencing it through a file and a symlink.
fn big_closure(env: &NixEnv) -> PathBuf {
    let tree = tree_fixture(env);
    env.build(
        "narbor-oci-app",
        "/bin/mkdir $out; echo $ref0 > $out/uses; /bin/ln -s $ref0/run.sh $out/run",
        &[&tree],
    )
}

fn small_closure(env: &NixEnv, tag: &str) -> PathBuf {
    let leaf = env.build(
        &format!("narbor-oci-{tag}-leaf"),
        &format!("echo {tag} leaf > $out"),
        &[],
    );
    env.build(
        &format!("narbor-oci-{tag}-top"),
        &format!("/bin/mkdir $out; echo {tag} > $out/x; /bin/ln -s $ref0 $out/leaf"),
        &[&leaf],
    )
}

#[test]
fn push_a_closure_substitute_it_into_a_fresh_store_and_push_again_for_nothing() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let store = registry.store("team/nix-cache");
    let (sk, public) = keys(&env);
    let app = big_closure(&env);
    let want = closure(&env, &app);
    assert_eq!(want.len(), 2);

    let out = push_signed(&env, &store, &sk, &[&app]);
    assert_eq!(uploaded(&out), 2, "{}", stdout_str(&out));
    assert_eq!(indexed_paths(&store), want);

    // narbor serve --oci, with no upstream: narinfos from the in-memory index,
    // NARs from the registry; the real Nix substitutes and verifies.
    let root = env.path("fresh");
    let got = substitute_from_oci(&env, &store, &public, &[&app], &root);
    assert_eq!(got, want, "the whole closure arrived");
    let fresh_link = root.join(app.strip_prefix("/").unwrap()).join("run");
    assert!(std::fs::symlink_metadata(&fresh_link)
        .unwrap()
        .file_type()
        .is_symlink());

    // A second push of the same closure uploads nothing and writes no fragment.
    let blob_puts = registry.count_requests("PUT /v2/team/nix-cache/blobs/uploads");
    let patches = registry.count_requests("PATCH /v2/team/nix-cache/blobs/uploads");
    let manifests = registry.count_requests("PUT /v2/team/nix-cache/manifests");
    assert!(
        blob_puts >= 2 && patches >= 3,
        "the first push's uploads are in the log ({blob_puts} PUTs, {patches} PATCHes)"
    );
    let out = push_signed(&env, &store, &sk, &[&app]);
    assert_eq!(uploaded(&out), 0, "{}", stdout_str(&out));
    assert!(
        stdout_str(&out).contains("2 skipped as present"),
        "{}",
        stdout_str(&out)
    );
    assert_eq!(
        registry.count_requests("PUT /v2/team/nix-cache/blobs/uploads"),
        blob_puts
    );
    assert_eq!(
        registry.count_requests("PATCH /v2/team/nix-cache/blobs/uploads"),
        patches
    );
    assert_eq!(
        registry.count_requests("PUT /v2/team/nix-cache/manifests"),
        manifests
    );

    // skopeo reads what narbor wrote.
    let creds = format!("{USER}:{PASSWORD}");
    let tags = run_ok(
        Command::new("skopeo")
            .args(["list-tags", "--tls-verify=false", "--creds", &creds])
            .arg(format!("docker://{}/team/nix-cache", registry.addr)),
    );
    let tags: serde_json::Value = serde_json::from_slice(&tags.stdout).unwrap();
    let tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert!(tags[0].starts_with("narbor-"), "{tags:?}");
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--creds", &creds])
            .arg(format!(
                "docker://{}/team/nix-cache:{}",
                registry.addr, tags[0]
            )),
    );
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["artifactType"],
        "application/vnd.narbor.cache.fragment.v1"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.narbor.cache.entries.v1+json"
    );
    assert_eq!(layers.len(), 3, "the entries blob and both NARs");
    for l in &layers[1..] {
        assert_eq!(l["mediaType"], "application/vnd.narbor.nar.v1+zstd");
        let digest = l["digest"].as_str().unwrap();
        assert_eq!(
            registry.head_status(&format!("/v2/team/nix-cache/blobs/{digest}")),
            200
        );
    }
}

/// NARs are uploaded while they are compressed; when the registry fails that
/// upload midway, push prepares the path again through a temporary file (whose
/// upload can be restarted) and publishes it whole.
#[test]
fn an_upload_cut_midway_is_done_again_from_a_file() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let proxy = CutFirstPatch::start(registry.addr);
    let (sk, public) = keys(&env);
    let app = big_closure(&env);
    let want = closure(&env, &app);

    let through_proxy = format!("oci+http://{}/team/cut", proxy.addr);
    let out = push_signed(&env, &through_proxy, &sk, &[&app]);
    assert_eq!(proxy.cuts(), 1, "the proxy cut the first PATCH");
    assert!(
        stderr_str(&out).contains("uploading again from a temporary file"),
        "{}",
        stderr_str(&out)
    );
    assert_eq!(uploaded(&out), 2, "{}", stdout_str(&out));
    let store = registry.store("team/cut");
    assert_eq!(indexed_paths(&store), want);

    // Straight from the registry, the real Nix substitutes and verifies it.
    let got = substitute_from_oci(&env, &store, &public, &[&app], &env.path("fresh"));
    assert_eq!(got, want);
}

/// Uncompressed, a NAR's blob is named by its NarHash: the real Nix
/// substitutes what such a push uploaded, and a path whose NAR the registry
/// already has (another name, the same bytes) is published without sending
/// it again.
#[test]
fn an_uncompressed_push_is_substituted_and_a_blob_already_there_is_not_sent_again() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let store = registry.store("team/plain");
    let (sk, public) = keys(&env);
    // Over 8 MiB (an upload session), twice under two names, same bytes.
    let script = "/usr/bin/head -c 12000000 /dev/zero > $out; echo plain >> $out";
    let first = env.build("narbor-oci-plain-a", script, &[]);
    let second = env.build("narbor-oci-plain-b", script, &[]);
    let push = |p: &Path| {
        run_ok(
            push_cmd(&env, &store)
                .args(["--no-skip", "--compression", "none", "--key-file"])
                .arg(&sk)
                .arg(p),
        )
    };
    assert_eq!(uploaded(&push(&first)), 1);
    let patches = registry.count_requests("PATCH /v2/team/plain/blobs/uploads");
    let out = push(&second);
    assert_eq!(uploaded(&out), 0, "{}", stdout_str(&out));
    assert!(
        stdout_str(&out).contains("1 already in the registry"),
        "{}",
        stdout_str(&out)
    );
    assert_eq!(
        registry.count_requests("PATCH /v2/team/plain/blobs/uploads"),
        patches,
        "nothing of the second path was sent"
    );

    let want = sorted_paths(&[&first, &second]);
    let got = substitute_from_oci(
        &env,
        &store,
        &public,
        &[&first, &second],
        &env.path("fresh"),
    );
    assert_eq!(got, want);
}

/// A store path whose files no longer match the NarHash Nix recorded (one
/// byte changed, the size kept) is refused with or without compression, as a
/// single request and as an upload session, and nothing of it is published.
/// Uncompressed, the registry is the one that hashes the upload (its digest
/// is the NarHash); compressed, narbor does.
#[test]
fn a_store_path_changed_on_disk_is_refused_and_nothing_of_it_is_published() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let (sk, _) = keys(&env);
    // Unique to this run: the paths are damaged below, then deleted.
    let nonce = env
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let small = env.build(
        "narbor-oci-changed-small",
        &format!("echo {nonce} > $out"),
        &[],
    );
    let big = env.build(
        "narbor-oci-changed-big",
        &format!("/usr/bin/head -c 12000000 /dev/zero > $out; echo {nonce} >> $out"),
        &[],
    );
    let nar_hash = |p: &Path| {
        let h = env.path_info(p)["narHash"].as_str().unwrap().to_owned();
        narbor_proto::Sha256::parse(&h).unwrap()
    };
    let recorded = [nar_hash(&small), nar_hash(&big)];
    let _cleanup = DeleteOnDrop(&env, vec![small.clone(), big.clone()]);
    for p in [&small, &big] {
        let mut bytes = std::fs::read(p).unwrap();
        bytes[0] ^= 1;
        std::fs::write(p, bytes).unwrap();
    }
    for compression in ["none", "zstd"] {
        let store = registry.store(&format!("team/changed-{compression}"));
        for (p, recorded) in [&small, &big].into_iter().zip(recorded) {
            let out = push_cmd(&env, &store)
                .args(["--no-skip", "--compression", compression, "--key-file"])
                .arg(&sk)
                .arg(p)
                .output()
                .unwrap();
            let err = stderr_str(&out);
            assert!(
                !out.status.success(),
                "{compression} {}: {err}",
                p.display()
            );
            assert!(
                err.contains("NarHash") && err.contains(&p.to_string_lossy().into_owned()),
                "{compression}: {err}"
            );
            if compression == "none" && p == &big {
                // The upload session's digest was the NarHash: the registry refused it.
                assert!(err.contains("DIGEST_INVALID"), "{err}");
            }
            assert!(indexed_paths(&store).is_empty(), "{compression}");
            let c = client(&store);
            assert!(
                !rt()
                    .block_on(c.blob_exists(&narbor_oci::Digest(recorded)))
                    .unwrap(),
                "{compression}: no blob claims the recorded NarHash"
            );
        }
    }
}

/// Deletes store paths when dropped: at the end of a test, passed or failed.
struct DeleteOnDrop<'a>(&'a NixEnv, Vec<PathBuf>);

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        for p in &self.1 {
            let _ = self.0.cmd("nix-store").arg("--delete").arg(p).output();
        }
    }
}

#[test]
fn two_pushes_started_at_the_same_moment_lose_nothing() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let store = registry.store("shared");
    let a = small_closure(&env, "concurrent-a");
    let b = small_closure(&env, "concurrent-b");
    let mut children: Vec<_> = [&a, &b]
        .iter()
        .map(|p| {
            push_cmd(&env, &store)
                .arg("--no-skip")
                .arg(p)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children.drain(..) {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr_str(&out));
    }
    let mut want = closure(&env, &a);
    want.extend(closure(&env, &b));
    want.sort();
    assert_eq!(indexed_paths(&store), want);
    let mut reader = IndexReader::new(client(&store));
    rt().block_on(reader.refresh()).unwrap();
    assert_eq!(
        reader.fragments().count(),
        2,
        "one immutable fragment per push"
    );
}

#[test]
fn gc_dry_run_changes_nothing_and_a_real_run_keeps_the_reachable_and_deletes_the_rest() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let store = registry.store("gc");
    let keep = small_closure(&env, "gc-keep");
    let drop = small_closure(&env, "gc-drop");
    run_ok(push_cmd(&env, &store).arg("--no-skip").arg(&keep));
    run_ok(push_cmd(&env, &store).arg("--no-skip").arg(&drop));
    let before = indexed_paths(&store);
    assert_eq!(before.len(), 4);
    let blob_status = |path: &str| {
        let mut reader = IndexReader::new(client(&store));
        rt().block_on(reader.refresh()).unwrap();
        let hash = StorePath::from_absolute_path(path).unwrap();
        reader
            .index()
            .get(hash.hash())
            .map(|e| e.blob.digest.to_string())
    };
    let digests: Vec<(String, String)> = before
        .iter()
        .map(|p| (p.clone(), blob_status(p).unwrap()))
        .collect();

    let plan =
        run_ok(
            gc_cmd(&store)
                .arg("--root")
                .arg(&keep)
                .args(["--retention", "0s", "--dry-run"]),
        );
    let text = stdout_str(&plan);
    assert!(text.contains("keep 2, remove 2"), "{text}");
    assert!(text.contains("dry run: nothing changed"), "{text}");
    assert_eq!(indexed_paths(&store), before);
    for (_, d) in &digests {
        assert_eq!(registry.head_status(&format!("/v2/gc/blobs/{d}")), 200);
    }

    // Young entries survive whatever the roots.
    let out = run_ok(
        gc_cmd(&store)
            .arg("--root")
            .arg(&keep)
            .args(["--retention", "1h"]),
    );
    assert!(
        stdout_str(&out).contains("remove 0"),
        "{}",
        stdout_str(&out)
    );
    assert_eq!(indexed_paths(&store), before);

    let out = run_ok(
        gc_cmd(&store)
            .arg("--root")
            .arg(&keep)
            .args(["--retention", "0s"]),
    );
    assert!(
        stdout_str(&out).contains("keep 2, remove 2"),
        "{}",
        stdout_str(&out)
    );
    let kept = closure(&env, &keep);
    assert_eq!(indexed_paths(&store), kept);
    for (p, d) in &digests {
        let status = registry.head_status(&format!("/v2/gc/blobs/{d}"));
        if kept.contains(p) {
            assert_eq!(status, 200, "{p} is reachable: its blob stays");
        } else {
            assert_eq!(status, 404, "{p} was removed: its blob is gone");
        }
    }
    // One fragment holds what is left.
    let mut reader = IndexReader::new(client(&store));
    rt().block_on(reader.refresh()).unwrap();
    assert_eq!(reader.fragments().count(), 1);
    // And what is left still substitutes: the kept NARs are all there.
    assert_eq!(materialize(&store, &env.path("after-gc")), 2);
}

#[test]
fn token_auth_push_and_token_refresh() {
    let env = NixEnv::new();
    // The client is told every token is good for 300 s. Its cached token is
    // made bad below by a new signing key (the registry restarted on it),
    // so only a refresh on the registry's 401 gets it past that.
    let tokens = TokenServer::start(300, 300);
    let mut registry = Registry::start(Auth::Token {
        realm: tokens.realm(),
        cert: tokens.cert.clone(),
    });
    let store = registry.store("tokens/cache");
    let path = small_closure(&env, "token");
    let out = run_ok(push_cmd(&env, &store).arg("--no-skip").arg(&path));
    assert_eq!(uploaded(&out), 2, "{}", stdout_str(&out));
    assert!(tokens.issued() >= 1);
    assert_eq!(indexed_paths(&store).len(), 2);

    let c = client(&store);
    rt().block_on(async {
        assert_eq!(c.list_tags().await.unwrap().len(), 1);
        let before = c
            .stats()
            .tokens_fetched
            .load(std::sync::atomic::Ordering::SeqCst);
        tokens.rotate();
        registry.stop();
        registry.spawn();
        assert_eq!(
            c.list_tags().await.unwrap().len(),
            1,
            "a 401 with an expired token fetches a new one"
        );
        assert_eq!(
            c.stats()
                .tokens_fetched
                .load(std::sync::atomic::Ordering::SeqCst),
            before + 1
        );
    });

    // Wrong credentials: a clear error, and the password is nowhere in it.
    let out = run_fails(
        env.cmd(env!("CARGO_BIN_EXE_narbor"))
            .args(["push", "--no-skip", "--to", &store])
            .arg(&path)
            .env("NARBOR_REGISTRY_USERNAME", USER)
            .env("NARBOR_REGISTRY_PASSWORD", "wrong-password-xyz"),
    );
    let err = stderr_str(&out);
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(!err.contains("wrong-password-xyz"), "{err}");
}

#[test]
fn a_cache_in_nixcache_oci_format_is_read() {
    let registry = Registry::start(Auth::Htpasswd);
    let repo = "legacy/nix-cache";
    let nar = crate::serve::pseudo_random(100_000, 7);
    let nar_digest = registry.put_blob(repo, &nar);
    let key = narbor_proto::SecretKey::from_seed("legacy-1", [7; 32]).unwrap();
    let path = StorePath::from_base_name("0123456789abcdfghijklmnpqrsvwxyz-legacy-thing").unwrap();
    let nar_hash = narbor_proto::Sha256::digest(&nar);
    let mut info = NarInfo::new(
        path.clone(),
        format!("nar/{}.nar", nar_hash.to_nix32()),
        nar_hash,
        nar.len() as u64,
    );
    info.sign(&key);
    let index = serde_json::json!({
        "version": 1,
        "entries": { path.hash().to_string(): { "narinfo": info.to_string(), "nar_digest": nar_digest, "nar_size": nar.len() } }
    })
    .to_string();
    let index_digest = registry.put_blob(repo, index.as_bytes());
    let config_digest = registry.put_blob(repo, b"{}");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2 },
        "layers": [ { "mediaType": "application/vnd.nix.cache.index.v1+json", "digest": index_digest, "size": index.len() } ]
    })
    .to_string();
    registry.put_manifest(
        repo,
        "cache-index",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );

    let store = registry.store(repo);
    let c = client(&store);
    let mut reader = IndexReader::new(Arc::clone(&c));
    rt().block_on(async {
        let stats = reader.refresh().await.unwrap();
        assert_eq!((stats.fetched, stats.entries), (1, 1));
        let index = reader.index();
        let e = index.get(path.hash()).expect("legacy entry");
        assert_eq!(e.narinfo(), info.to_string());
        let blob = index
            .nar_blob(&format!("/{}", info.url))
            .expect("the legacy URL maps to its blob");
        assert_eq!(blob.digest.to_string(), nar_digest);
        assert_eq!(
            &c.get_blob_bytes(&blob.digest, 1 << 20).await.unwrap()[..],
            &nar[..]
        );
        // Unchanged: the refresh costs the tag list and one HEAD, fetches nothing.
        let stats = reader.refresh().await.unwrap();
        assert_eq!((stats.fetched, stats.changed), (0, false));
    });

    // narbor serve --oci serves it as it is: users switch without republishing.
    let dir = tempfile::tempdir().unwrap();
    let narbor = serve_oci(&dir.path().join("cache"), &store, &[]);
    wait_for_entries(&narbor, 1);
    let r = narbor.get(&format!("/{}.narinfo", path.hash()));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, info.to_string().as_bytes())
    );
    let r = narbor.get(&format!("/{}", info.url));
    assert_eq!((r.status, r.complete), (200, true));
    assert_eq!(r.body, nar, "the NAR blob, hash-checked against its URL");
    drop(narbor);

    // gc --migrate moves it: the entry goes into a narbor fragment that
    // references its NAR blob, and the cache-index manifest is gone. (Plain
    // gc keeps cache-index for the seed's own tools: seed.rs.)
    let out = run_ok(
        gc_cmd(&store)
            .arg("--root")
            .arg(path.to_absolute_path())
            .args(["--retention", "0s", "--migrate"]),
    );
    assert!(
        stdout_str(&out).contains("keep 1, remove 0"),
        "{}",
        stdout_str(&out)
    );
    let mut reader = IndexReader::new(Arc::clone(&c));
    rt().block_on(async {
        reader.refresh().await.unwrap();
        let fragments: Vec<_> = reader.fragments().collect();
        assert_eq!(fragments.len(), 1);
        assert!(!fragments[0].legacy);
        assert!(fragments[0]
            .manifest
            .layers
            .iter()
            .any(|l| l.digest.to_string() == nar_digest));
        assert_eq!(
            reader.index().get(path.hash()).unwrap().narinfo(),
            info.to_string()
        );
        assert!(c.get_manifest("cache-index").await.unwrap().is_none());
    });
    assert_eq!(
        registry.head_status(&format!("/v2/{repo}/blobs/{nar_digest}")),
        200
    );
}

#[test]
fn upstream_paths_are_skipped_and_an_unreachable_upstream_only_warns() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let store = registry.store("skips");
    let top = small_closure(&env, "skip");
    let all = closure(&env, &top);
    let leaf = all.iter().find(|p| p.ends_with("-leaf")).unwrap().clone();
    // A local upstream that has the leaf's narinfo.
    let dir = env.path("upstream");
    std::fs::create_dir_all(&dir).unwrap();
    let hash = &Path::new(&leaf).file_name().unwrap().to_string_lossy()[..32];
    std::fs::write(dir.join(format!("{hash}.narinfo")), "StorePath: x\n").unwrap();
    let upstream = crate::upstream::Upstream::start(dir);
    let refused = RefusedAddr::bind();
    let dead = format!("http://{}", refused.addr);

    // Paths come from standard input.
    let mut cmd = push_cmd(&env, &store);
    cmd.args([
        "--skip-upstream",
        &dead,
        "--skip-upstream",
        &upstream.url(),
        "-",
    ]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{}", top.display()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_str(&out));
    assert!(
        stdout_str(&out).contains("1 skipped as upstream"),
        "{}",
        stdout_str(&out)
    );
    assert!(
        stderr_str(&out).contains("unreachable"),
        "the dead upstream is named: {}",
        stderr_str(&out)
    );
    assert_eq!(indexed_paths(&store), vec![top.display().to_string()]);
    assert!(upstream.requests(&format!("{hash}.narinfo")) >= 1);
}

#[test]
fn gc_racing_a_push_loses_nothing_the_push_published() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let store = registry.store("race");
    // Two leaves with the same bytes under different names: one NAR blob.
    // gc removes the old one's entry and deletes that blob while the push
    // of the new one finds it present (HEAD) and does not upload it.
    let closure_with = |tag: &str| {
        let leaf = env.build(
            &format!("narbor-race-{tag}-leaf"),
            "echo the same bytes > $out",
            &[],
        );
        env.build(
            &format!("narbor-race-{tag}"),
            "/bin/mkdir $out; /bin/ln -s $ref0 $out/leaf",
            &[&leaf],
        )
    };
    let old = closure_with("old");
    let new = closure_with("new");
    for round in 0..3 {
        let store = format!("{store}{round}");
        run_ok(push_cmd(&env, &store).arg("--no-skip").arg(&old));
        let push = push_cmd(&env, &store)
            .arg("--no-skip")
            .arg(&new)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let gc = gc_cmd(&store)
            .arg("--root")
            .arg(&new)
            .args(["--retention", "0s"])
            .output()
            .unwrap();
        let push = push.wait_with_output().unwrap();
        assert!(gc.status.success(), "{}", stderr_str(&gc));
        assert!(push.status.success(), "{}", stderr_str(&push));
        let listed = indexed_paths(&store);
        for p in closure(&env, &new) {
            assert!(
                listed.contains(&p),
                "{p} was pushed and must be listed: {listed:?}"
            );
        }
        // Every listed path's blob is there.
        assert_eq!(
            materialize(&store, &env.path(&format!("after-race-{round}"))),
            listed.len()
        );
    }
}

#[test]
fn serve_oci_leaves_out_what_no_trusted_key_signed() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let store = registry.store("team/trusted");
    let (sk, public) = keys(&env);
    let path = small_closure(&env, "trusted-a");
    push_signed(&env, &store, &sk, &[&path]);
    let (_, other) = keys_named(&env, "other", "someone-else-1");
    let narinfo = narinfo_path(&path);

    // Signed by a key narbor was not told to trust: not served.
    let strict = serve_oci(
        &env.path("cache-strict"),
        &store,
        &["--index-ttl", "1h", "--trusted-key", &other],
    );
    let body = refresh(&strict);
    assert_eq!(
        (body["entries"].as_u64(), body["untrusted_entries"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(strict.get(&narinfo).status, 404);
    let metrics = String::from_utf8(strict.get("/metrics").body).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "narbor_oci_index_untrusted_entries 2"),
        "{metrics}"
    );

    // Trusting the push key too: served.
    let both = serve_oci(
        &env.path("cache-both"),
        &store,
        &[
            "--index-ttl",
            "1h",
            "--trusted-key",
            &other,
            "--trusted-key",
            &public,
        ],
    );
    let body = refresh(&both);
    assert_eq!(
        (body["entries"].as_u64(), body["untrusted_entries"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(both.get(&narinfo).status, 200);
}

#[test]
fn serve_oci_serves_from_memory_refreshes_on_request_and_reports_status() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let store = registry.store("team/served");
    let (sk, public) = keys(&env);
    let first = small_closure(&env, "served-a");
    push_signed(&env, &store, &sk, &[&first]);
    let narbor = serve_oci(
        &env.path("cache"),
        &store,
        &["--index-ttl", "1h", "--trusted-key", &public],
    );
    let status = wait_for_entries(&narbor, 2);
    assert_eq!(status["oci"]["store"], store.as_str());
    assert!(
        !status.to_string().contains(PASSWORD),
        "no secrets in /_status"
    );

    // narinfo from memory, NAR from the registry (then from the local store).
    let r = narbor.get(&narinfo_path(&first));
    assert_eq!((r.status, r.cache_status()), (200, "HIT"));
    let info = NarInfo::parse(std::str::from_utf8(&r.body).unwrap()).unwrap();
    let head = narbor.head(&format!("/{}", info.url));
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(info.file_size.unwrap().to_string().as_str())
    );
    let nar = narbor.get(&format!("/{}", info.url));
    assert_eq!(
        (nar.status, nar.complete, nar.cache_status()),
        (200, true, "MISS")
    );
    assert_eq!(narbor.get(&format!("/{}", info.url)).cache_status(), "HIT");

    // A second push is not visible until the index refreshes; POST /_refresh
    // refreshes now (the TTL is an hour).
    let second = small_closure(&env, "served-b");
    push_signed(&env, &store, &sk, &[&second]);
    assert_eq!(narbor.get(&narinfo_path(&second)).status, 404);
    assert_eq!(refresh(&narbor)["entries"], 4);
    assert_eq!(narbor.get(&narinfo_path(&second)).status, 200);
    assert_eq!(
        crate::upstream::request(narbor.addr, "GET", "/_refresh", &[]).status,
        405
    );

    // The push key, and the index in the metrics.
    let key = String::from_utf8(narbor.get("/public-key").body).unwrap();
    assert_eq!(key.trim(), public);
    let metrics = String::from_utf8(narbor.get("/metrics").body).unwrap();
    assert!(
        metrics.lines().any(|l| l == "narbor_oci_index_entries 4"),
        "{metrics}"
    );

    // And the real Nix client substitutes both closures from it.
    let got = env.substitute(
        &narbor.url(),
        &env.path("fresh"),
        &public,
        &[&first, &second],
        &[],
    );
    assert_eq!(got.len(), 4, "both closures: {got:?}");
}

/// Every entry the index lists has its NAR blob in the registry.
fn assert_index_consistent(store: &str) -> usize {
    let c = client(store);
    let mut reader = IndexReader::new(Arc::clone(&c));
    rt().block_on(async {
        reader.refresh().await.unwrap();
        let index = reader.index();
        for e in index.entries() {
            let blob = index
                .nar_blob(e.nar_url())
                .expect("every entry's URL maps to a blob");
            assert!(
                c.blob_exists(&blob.digest).await.unwrap(),
                "{} is listed but its blob {} is missing",
                e.store_path,
                blob.digest
            );
        }
        index.len()
    })
}

#[test]
fn a_push_killed_at_any_moment_leaves_the_cache_consistent() {
    let env = NixEnv::new();
    let registry = Registry::start(Auth::Htpasswd);
    let store = registry.store("team/interrupted");
    let (sk, public) = keys(&env);
    // Several paths with NARs of a few MB, so a push takes a moment.
    let mut paths = Vec::new();
    for i in 0..6 {
        paths.push(env.build(
            &format!("narbor-interrupt-{i}"),
            &format!(
                "/bin/mkdir $out; /usr/bin/head -c {} /dev/urandom > $out/data",
                3_000_000 + i * 1000
            ),
            &[],
        ));
    }
    for delay_ms in [50u64, 150, 300, 500, 800, 1200] {
        let mut child = push_cmd(&env, &store)
            .args([
                "--no-skip",
                "--compression",
                "none",
                "--jobs",
                "1",
                "--key-file",
            ])
            .arg(&sk)
            .args(&paths)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        assert_index_consistent(&store);
    }
    // A push that is let finish completes the cache, whatever came before.
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    push_signed(&env, &store, &sk, &refs);
    assert_eq!(assert_index_consistent(&store), paths.len());
    let got = substitute_from_oci(&env, &store, &public, &refs, &env.path("fresh"));
    assert_eq!(got, sorted_paths(&refs));
}
