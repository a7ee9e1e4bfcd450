//! A sick upstream never breaks a build: with narbor first in `substituters`
//! and narbor's only upstream refusing connections, black-holing them,
//! answering 500, or 503 with `Retry-After`, the real Nix 2.8 client still
//! gets every path (from the second substituter), and builds locally when
//! nothing else has them. Nix 2.8 stops the whole build at a narinfo answer
//! other than 200, 404, 403 or 410 unless `--fallback` is set
//! (src/libstore/build/substitution-goal.cc at 2.8.0, `tryNext`), so narbor
//! answers 404 when no source answered in time (docs/reliability.md).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::double::{Double, Resp};
use crate::support::*;

/// A closure of 20 paths (a root and the 19 leaves it refers to), and a
/// signed cache (written by `nix copy`) holding it: the second substituter.
struct Closure {
    env: NixEnv,
    root: PathBuf,
    paths: Vec<PathBuf>,
    cache: PathBuf,
    public_key: String,
}

fn closure() -> &'static Closure {
    static CLOSURE: OnceLock<Closure> = OnceLock::new();
    CLOSURE.get_or_init(|| {
        let env = NixEnv::new();
        let leaves: Vec<PathBuf> = (0..19)
            .map(|i| {
                env.build(
                    &format!("narbor-outage-leaf-{i}"),
                    &format!("/bin/mkdir -p $out\necho leaf {i} > $out/leaf\n"),
                    &[],
                )
            })
            .collect();
        let script = leaves
            .iter()
            .map(|l| format!("echo {} >> $out/leaves\n", l.display()))
            .collect::<String>();
        let refs: Vec<&Path> = leaves.iter().map(PathBuf::as_path).collect();
        let root = env.build(
            "narbor-outage-root",
            &format!("/bin/mkdir -p $out\n{script}"),
            &refs,
        );
        let (sk, public_key) = env.nix_key("outage-1");
        let cache = env.file_cache(
            "second",
            &format!("compression=zstd&secret-key={}", sk.display()),
            &[&root],
        );
        let mut paths = leaves;
        paths.push(root.clone());
        Closure {
            env,
            root,
            paths,
            cache,
            public_key: public_key.trim().to_owned(),
        }
    })
}

/// `nix-store --realise` of the closure's root into a fresh store, with
/// `substituters` as given and a fresh narinfo cache. Returns how long it
/// took, and the output.
fn realise(substituters: &str, extra: &[&str]) -> (Duration, std::process::Output, PathBuf) {
    let c = closure();
    let root = tempfile::Builder::new()
        .prefix("narbor-outage-")
        .tempdir()
        .unwrap()
        .keep();
    let started = Instant::now();
    let out = c
        .env
        .cmd("nix-store")
        .env("XDG_CACHE_HOME", root.join("xdg"))
        .args(["--store", &format!("local?root={}", root.display())])
        .args(["--option", "substituters", substituters])
        .args(["--option", "trusted-public-keys", &c.public_key])
        .args(extra)
        .arg("--realise")
        .arg(&c.root)
        .output()
        .unwrap();
    (started.elapsed(), out, root)
}

/// Every path of the closure is valid in the store at `root`.
fn all_arrived(root: &Path) {
    let c = closure();
    let out = run_ok(
        c.env
            .cmd("nix-store")
            .args(["--store", &format!("local?root={}", root.display())])
            .args(["--query", "--requisites"])
            .arg(&c.root),
    );
    assert_eq!(stdout_str(&out).lines().count(), c.paths.len());
}

/// An upstream whose every answer is `status` (with `Retry-After` for 503
/// and 429).
fn failing(status: u16) -> Double {
    Double::start(move |_| {
        let resp = Resp::status(status, "failing on purpose\n");
        if status == 503 || status == 429 {
            resp.with_header("Retry-After", "30")
        } else {
            resp
        }
    })
}

/// An upstream that accepts connections and never answers.
struct BlackHole {
    url: String,
    _held: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

fn black_hole() -> BlackHole {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
    let h = Arc::clone(&held);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            h.lock().unwrap().push(conn);
        }
    });
    BlackHole { url, _held: held }
}

#[test]
fn a_sick_upstream_costs_a_build_a_few_seconds_not_the_build() {
    let c = closure();
    let second = format!("file://{}", c.cache.display());
    // The baseline: the second substituter alone.
    let (baseline, out, root) = realise(&second, &[]);
    assert!(out.status.success(), "{}", stderr_str(&out));
    all_arrived(&root);
    let refused = format!("http://127.0.0.1:{}", free_port());
    let hole = black_hole();
    let (e500, e503) = (failing(500), failing(503));
    let faults: [(&str, String); 4] = [
        ("refused", refused),
        ("black hole", hole.url.clone()),
        ("500", e500.url()),
        ("503 Retry-After", e503.url()),
    ];
    for (fault, upstream) in faults {
        let dir = tempfile::tempdir().unwrap();
        let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &upstream]);
        let (took, out, root) = realise(&format!("{} {second}", narbor.url()), &[]);
        assert!(
            out.status.success(),
            "{fault}: {}\n{}",
            stderr_str(&out),
            narbor.log_text()
        );
        all_arrived(&root);
        eprintln!(
            "outage: upstream {fault}: {} paths in {:.2} s, {:.2} s more than the second substituter alone ({:.2} s)",
            c.paths.len(),
            took.as_secs_f64(),
            took.as_secs_f64() - baseline.as_secs_f64(),
            baseline.as_secs_f64()
        );
    }
}

#[test]
fn with_nothing_else_to_ask_nix_builds_the_path_itself() {
    let c = closure();
    let hole = black_hole();
    let dir = tempfile::tempdir().unwrap();
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &hole.url]);
    // A derivation no cache has (its name is new each run): Nix asks narbor,
    // is told "not here", and builds it, with and without --fallback.
    for fallback in [true, false] {
        let name = format!(
            "narbor-outage-local-{}-{}",
            std::process::id(),
            u8::from(fallback)
        );
        let file = dir.path().join(format!("{name}.nix"));
        std::fs::write(
            &file,
            format!(
                "derivation {{ name = \"{name}\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = [ \"-c\" \"echo built > $out\" ]; }}"
            ),
        )
        .unwrap();
        let mut cmd = c.env.cmd("nix-build");
        cmd.arg(&file)
            .arg("--no-out-link")
            .args(["--option", "substituters", &narbor.url()])
            .args(["--option", "trusted-public-keys", &c.public_key]);
        if fallback {
            cmd.arg("--fallback");
        }
        let out = run_ok(&mut cmd);
        let built = PathBuf::from(stdout_str(&out).trim());
        assert_eq!(std::fs::read_to_string(built).unwrap(), "built\n");
    }
}

#[test]
fn once_the_upstream_is_back_narbor_serves_again() {
    let c = closure();
    // The upstream fails, then recovers: the second cache behind a switch.
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cache = c.cache.clone();
    let h = Arc::clone(&healthy);
    let up = Double::start(move |req| {
        if !h.load(std::sync::atomic::Ordering::SeqCst) {
            return Resp::status(502, "down\n");
        }
        match std::fs::read(cache.join(req.path().trim_start_matches('/'))) {
            Ok(body) => Resp::ok("application/octet-stream", body),
            Err(_) => Resp::status(404, ""),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--upstream", &up.url()]);
    let hash = &c.root.file_name().unwrap().to_string_lossy()[..32];
    let info = format!("/{hash}.narinfo");
    let r = narbor.get(&info);
    assert_eq!((r.status, r.cache_status()), (404, "ERROR"), "down: not found");
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    // Within the back-off (2 s after a first failure) narbor asks again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while narbor.get(&info).status != 200 {
        assert!(Instant::now() < deadline, "narbor never asked again");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And a client substitutes the whole closure through narbor.
    let (_, out, root) = realise(&narbor.url(), &[]);
    assert!(out.status.success(), "{}", stderr_str(&out));
    all_arrived(&root);
}
