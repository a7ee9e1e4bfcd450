//! Caches nixcache-oci's own publisher wrote, as a team switching to narbor
//! has them: `../shared/fixtures/nixcache-oci/` is a docker-registry storage
//! that cmspam/nixcache-oci at 6a4b9e4, unmodified, published two
//! repositories into (one signed; see its README). Each test serves a copy
//! of it with the real docker-registry; the real Nix client substitutes its
//! closures through `narbor serve --oci`, before and after `narbor gc`, after
//! `narbor push` into it, and after a restart with the registry down.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::registry::{Auth, Registry};
use crate::support::*;

/// The fixture's directory; the tests fail, saying so, when it is missing.
fn fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/nixcache-oci");
    assert!(
        dir.join("registry/docker/registry/v2").is_dir(),
        "the nixcache-oci fixture is missing at {}: it is part of the workplace's shared/ directory",
        dir.display()
    );
    dir.canonicalize().unwrap()
}

/// One of the fixture's repositories and the closure it holds.
struct Repo {
    /// `interop/seed-unsigned/nix-cache`.
    name: &'static str,
    signed: bool,
    /// app, lib, data (as closures.txt lists them).
    paths: Vec<String>,
}

fn repo(signed: bool) -> Repo {
    let text = std::fs::read_to_string(fixture().join("closures.txt")).unwrap();
    let tag = if signed { "signed" } else { "unsigned" };
    let header = format!("== repository interop/seed-{tag} ");
    let section = text
        .split("== repository")
        .find(|s| format!("== repository{s}").starts_with(&header))
        .unwrap();
    let paths: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with("/nix/store/") && l.contains("(closure.nix attribute"))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(paths.len(), 3, "{section}");
    Repo {
        name: if signed {
            "interop/seed-signed/nix-cache"
        } else {
            "interop/seed-unsigned/nix-cache"
        },
        signed,
        paths,
    }
}

fn seed_key() -> String {
    std::fs::read_to_string(fixture().join("keys/seed-test-1.pk"))
        .unwrap()
        .trim()
        .to_owned()
}

fn registry() -> Registry {
    Registry::start_with(Auth::Open, Some(&fixture().join("registry")))
}

fn serve(cache: &Path, reg: &Registry, repo: &Repo, extra: &[&str]) -> NarborServer {
    let store = reg.store(repo.name);
    let key = seed_key();
    let mut args = vec!["--oci", &store, "--no-upstream"];
    if repo.signed {
        args.extend(["--trusted-key", &key]);
    }
    args.extend_from_slice(extra);
    NarborServer::start(cache, &args)
}

/// Waits until the served index has `n` entries.
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
            "index never reached {n} entries: {status}\n{}",
            narbor.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Nix substitutes `paths` through `url` into a fresh store at `root`: with
/// signatures required (by the fixture's key) for the signed repository,
/// without for the unsigned one. Returns the store paths that arrived.
fn substitute(env: &NixEnv, url: &str, root: &Path, signed: bool, paths: &[&str]) -> Vec<String> {
    let store = format!("local?root={}", root.display());
    let mut copy = env.cmd("nix");
    copy.args(["copy", "--from", url, "--to", &store]);
    if signed {
        copy.args(["--option", "trusted-public-keys", &seed_key()]);
    } else {
        copy.args(["--option", "require-sigs", "false"]);
    }
    run_ok(copy.args(paths));
    let mut verify = env.cmd("nix");
    verify.args(["store", "verify", "--recursive", "--store", &store]);
    if signed {
        verify.args([
            "--sigs-needed",
            "1",
            "--option",
            "trusted-public-keys",
            &seed_key(),
        ]);
    } else {
        verify.arg("--no-trust");
    }
    run_ok(verify.args(paths));
    let out = run_ok(
        env.cmd("nix")
            .args(["path-info", "--recursive", "--store", &store])
            .args(paths),
    );
    let mut got: Vec<String> = stdout_str(&out).lines().map(str::to_owned).collect();
    got.sort();
    got
}

fn sorted(paths: &[String]) -> Vec<String> {
    let mut v = paths.to_vec();
    v.sort();
    v
}

/// `cache-index` as the seed's own tools read it (proxy/main.py and
/// cache-builder.sh: GET the manifest with the OCI Accept header, then its
/// first layer): `None` when the tag is gone.
fn seed_index(reg: &Registry, repo: &Repo) -> Option<serde_json::Value> {
    let manifest = run_ok(
        Command::new("curl")
            .args([
                "-sS",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
                "-w",
                "\n%{http_code}",
            ])
            .arg(format!(
                "http://{}/v2/{}/manifests/cache-index",
                reg.addr, repo.name
            )),
    );
    let text = stdout_str(&manifest);
    let (body, code) = text.rsplit_once('\n').unwrap();
    if code == "404" {
        return None;
    }
    assert_eq!(code, "200", "{body}");
    let m: serde_json::Value = serde_json::from_str(body).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let blob = run_ok(Command::new("curl").args(["-sS", "-f"]).arg(format!(
        "http://{}/v2/{}/blobs/{layer}",
        reg.addr, repo.name
    )));
    Some(serde_json::from_slice(&blob.stdout).unwrap())
}

fn blob_status(reg: &Registry, repo: &Repo, digest: &str) -> String {
    let out = run_ok(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
            .arg(format!(
                "http://{}/v2/{}/blobs/{digest}",
                reg.addr, repo.name
            )),
    );
    stdout_str(&out)
}

fn gc(reg: &Registry, repo: &Repo, args: &[&str]) -> String {
    let out = run_ok(
        narbor()
            .args(["gc", "--store", &reg.store(repo.name)])
            .args(args),
    );
    stdout_str(&out)
}

/// The closure of the repository, substituted through a fresh narbor.
fn substitutes(env: &NixEnv, reg: &Registry, repo: &Repo) {
    let dir = tempfile::tempdir().unwrap();
    let narbor = serve(&dir.path().join("cache"), reg, repo, &[]);
    wait_for_entries(&narbor, 3);
    let got = substitute(
        env,
        &narbor.url(),
        &dir.path().join("root"),
        repo.signed,
        &[&repo.paths[0]],
    );
    assert_eq!(got, sorted(&repo.paths), "{}", narbor.log_text());
}

#[test]
fn both_seed_repositories_are_substituted_by_nix_through_serve_oci() {
    let env = NixEnv::new();
    let reg = registry();
    for signed in [false, true] {
        let repo = repo(signed);
        let dir = tempfile::tempdir().unwrap();
        let narbor = serve(&dir.path().join("cache"), &reg, &repo, &[]);
        wait_for_entries(&narbor, 3);
        let got = substitute(
            &env,
            &narbor.url(),
            &dir.path().join("root"),
            signed,
            &[&repo.paths[0]],
        );
        assert_eq!(got, sorted(&repo.paths), "{}", narbor.log_text());
        // The seed's own NAR URL (what a client that read its narinfos from
        // the seed's proxy asks for) is served too, as the blob it names.
        let index = seed_index(&reg, &repo).unwrap();
        let hash = &repo.paths[2][11..43];
        let entry = &index["entries"][hash];
        let digest = entry["nar_digest"].as_str().unwrap();
        let blob = std::fs::read(fixture().join(format!(
            "registry/docker/registry/v2/blobs/sha256/{}/{}/data",
            &digest[7..9],
            &digest[7..]
        )))
        .unwrap();
        let reply = narbor.get(&format!("/nar/{hash}.nar.xz"));
        assert_eq!((reply.status, reply.body.len()), (200, blob.len()));
        assert!(reply.body == blob, "the blob's bytes");
    }
}

#[test]
fn gc_with_defaults_keeps_what_the_seeds_gc_keeps_and_its_index_stays_readable() {
    let env = NixEnv::new();
    let reg = registry();
    let repo = repo(false);
    let before = seed_index(&reg, &repo).unwrap();
    // Defaults: 30 days' retention; the seed's gc_roots are roots.
    let out = gc(&reg, &repo, &[]);
    assert!(out.contains("keep 3, remove 0"), "{out}");
    assert_eq!(seed_index(&reg, &repo).unwrap(), before, "left as it is");
    substitutes(&env, &reg, &repo);
    // No retention at all: gc_roots alone keep the whole closure.
    let out = gc(&reg, &repo, &["--retention", "0s"]);
    assert!(out.contains("keep 3, remove 0"), "{out}");
    // With explicit roots too.
    let out = gc(
        &reg,
        &repo,
        &["--retention", "0s", "--root", &repo.paths[0]],
    );
    assert!(out.contains("keep 3, remove 0"), "{out}");
    assert_eq!(seed_index(&reg, &repo).unwrap(), before);
    substitutes(&env, &reg, &repo);
}

#[test]
fn gc_counts_added_toward_retention_and_rewrites_the_seed_index_as_the_seeds_gc_does() {
    let reg = registry();
    let repo = repo(false);
    let mut index = seed_index(&reg, &repo).unwrap();
    // As the seed's gc-cache.yml leaves it once the config no longer
    // builds the app: the root gone, the entries still there.
    index["gc_roots"] = serde_json::json!([]);
    let layer = serde_json::to_vec_pretty(&index).unwrap();
    let digest = reg.put_blob(repo.name, &layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356", "size": 3},
        "layers": [{"mediaType": "application/vnd.nix.cache.index.v1+json", "digest": digest, "size": layer.len()}],
    });
    reg.put_manifest(
        repo.name,
        "cache-index",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest.to_string(),
    );
    let added = index["entries"][&repo.paths[0][11..43]]["added"]
        .as_str()
        .unwrap()
        .to_owned();
    let added = narbor_oci::parse_utc_timestamp(&added).unwrap();
    let age = narbor_oci::now_unix() - added;
    // A retention longer than the entries' age keeps them...
    let out = gc(&reg, &repo, &["--retention", &format!("{}s", age + 3600)]);
    assert!(out.contains("keep 3, remove 0"), "{out}");
    // ... a shorter one removes them: from the seed's index too, in its format.
    let out = gc(
        &reg,
        &repo,
        &[
            "--retention",
            &format!("{}s", age.saturating_sub(60).max(1)),
        ],
    );
    assert!(out.contains("keep 0, remove 3"), "{out}");
    let after = seed_index(&reg, &repo).expect("cache-index stays");
    assert_eq!(after["entries"], serde_json::json!({}));
    assert_eq!(after["repo"], index["repo"], "other fields kept");
    assert_eq!(
        after["generated"], index["generated"],
        "as the seed's gc leaves it"
    );
    for e in index["entries"].as_object().unwrap().values() {
        let d = e["nar_digest"].as_str().unwrap();
        assert_eq!(blob_status(&reg, &repo, d), "404", "{d} deleted");
    }
}

#[test]
fn gc_migrate_moves_the_entries_into_narbors_index_and_deletes_the_seeds() {
    let env = NixEnv::new();
    let reg = registry();
    let repo = repo(true);
    let out = gc(&reg, &repo, &["--migrate"]);
    assert!(out.contains("keep 3, remove 0"), "{out}");
    assert!(seed_index(&reg, &repo).is_none(), "cache-index deleted");
    substitutes(&env, &reg, &repo);
    // The entries keep their date: a retention shorter than their age and
    // no roots remove them now.
    let out = gc(&reg, &repo, &["--retention", "1s", "--dry-run"]);
    assert!(out.contains("keep 0, remove 3"), "{out}");
}

#[test]
fn push_into_a_seed_repository_counts_its_entries_and_keeps_its_index_current() {
    let env = NixEnv::new();
    let reg = registry();
    let repo = repo(false);
    // The seed's app in this machine's store (substituted from narbor), and
    // a new path of the team's that refers to it.
    {
        let dir = tempfile::tempdir().unwrap();
        let narbor = serve(&dir.path().join("cache"), &reg, &repo, &[]);
        wait_for_entries(&narbor, 3);
        run_ok(
            env.cmd("nix")
                .args([
                    "copy",
                    "--from",
                    &narbor.url(),
                    "--option",
                    "require-sigs",
                    "false",
                ])
                .arg(&repo.paths[0]),
        );
    }
    let app = PathBuf::from(&repo.paths[0]);
    let new = env.build(
        "narbor-seed-next",
        &format!("/bin/mkdir -p $out\necho {} > $out/uses\n", app.display()),
        &[&app],
    );
    let (sk, pk) = env.nix_key("team-1");
    let out = run_ok(
        narbor()
            .args([
                "push",
                "--to",
                &reg.store(repo.name),
                "--no-skip",
                "--key-file",
            ])
            .arg(&sk)
            .arg(&new),
    );
    let text = stdout_str(&out);
    assert!(text.contains("pushed 1 of 4 paths"), "{text}");
    assert!(text.contains("3 skipped as present"), "{text}");
    // The seed's index has it, in the seed's format, as a root.
    let index = seed_index(&reg, &repo).unwrap();
    let hash = &new.file_name().unwrap().to_string_lossy()[..32];
    let entry = &index["entries"][hash];
    assert_eq!(entry["name"], "narbor-seed-next");
    assert!(entry["narinfo"]
        .as_str()
        .unwrap()
        .contains(&format!("Sig: {}", pk.split(':').next().unwrap())));
    assert!(narbor_oci::parse_utc_timestamp(entry["added"].as_str().unwrap()).is_some());
    assert!(index["gc_roots"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == hash));
    assert_eq!(index["entries"].as_object().unwrap().len(), 4);
    // And Nix substitutes the whole closure through serve --oci.
    let dir = tempfile::tempdir().unwrap();
    let narbor = serve(&dir.path().join("cache"), &reg, &repo, &[]);
    wait_for_entries(&narbor, 4);
    let new_path = new.to_string_lossy().into_owned();
    let got = substitute(
        &env,
        &narbor.url(),
        &dir.path().join("root"),
        false,
        &[&new_path],
    );
    let mut want = repo.paths.clone();
    want.push(new_path);
    assert_eq!(got, sorted(&want));
}

#[test]
fn a_restart_with_the_registry_down_serves_the_saved_index() {
    let env = NixEnv::new();
    let mut reg = registry();
    let repo = repo(true);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut narbor = serve(&cache, &reg, &repo, &[]);
    wait_for_entries(&narbor, 3);
    let got = substitute(
        &env,
        &narbor.url(),
        &dir.path().join("root1"),
        true,
        &[&repo.paths[0]],
    );
    assert_eq!(got, sorted(&repo.paths));
    narbor.stop();
    reg.stop();
    let narbor = serve(&cache, &reg, &repo, &[]);
    let status = wait_for_entries(&narbor, 3);
    assert_eq!(status["oci"]["loaded_from_disk"], 3, "{status}");
    // Narinfos from the saved index, NARs from the disk store.
    let got = substitute(
        &env,
        &narbor.url(),
        &dir.path().join("root2"),
        true,
        &[&repo.paths[0]],
    );
    assert_eq!(got, sorted(&repo.paths), "{}", narbor.log_text());
    drop(narbor);
    // A team coming from the seed's proxy: only the index file it saved
    // (proxy/main.py: NIXCACHE_INDEX_DIR/cache-index.json, the raw layer).
    let seed_dir = dir.path().join("nixcache-proxy");
    std::fs::create_dir_all(&seed_dir).unwrap();
    let index = seed_index_bytes(&repo);
    std::fs::write(seed_dir.join("cache-index.json"), &index).unwrap();
    let narbor = NarborServer::start_with_env(
        &dir.path().join("fresh-cache"),
        &[
            "--oci",
            &reg.store(repo.name),
            "--no-upstream",
            "--trusted-key",
            &seed_key(),
        ],
        &[("NIXCACHE_INDEX_DIR", &seed_dir.to_string_lossy())],
    );
    wait_for_entries(&narbor, 3);
    for p in &repo.paths {
        let reply = narbor.get(&format!("/{}.narinfo", &p[11..43]));
        assert_eq!(reply.status, 200, "{p}");
    }
}

/// The fixture's index layer of `repo`, byte for byte.
fn seed_index_bytes(repo: &Repo) -> Vec<u8> {
    let blobs = fixture().join("registry/docker/registry/v2/blobs/sha256");
    for d in std::fs::read_dir(blobs).unwrap() {
        for b in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let data = std::fs::read(b.unwrap().path().join("data")).unwrap();
            if data.starts_with(b"{\n  \"entries\"")
                && String::from_utf8_lossy(&data).contains(&repo.paths[0][11..43])
            {
                return data;
            }
        }
    }
    panic!("no index layer for {}", repo.name)
}
