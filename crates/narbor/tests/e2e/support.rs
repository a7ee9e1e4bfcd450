//! Shared helpers: running narbor and the real Nix client in a clean environment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// A `narbor` command from this build.
pub fn narbor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_narbor"))
}

/// Runs a command, panicking with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is it installed? run scripts/test.sh)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail; returns its output.
pub fn run_fails(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout_str(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr_str(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The Nix settings every test runs with: offline, single-user, no daemon, no
/// substituters (never cache.nixos.org), and no narinfo caching between runs.
pub const NIX_CONFIG: &str = "build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
narinfo-cache-positive-ttl = 0
narinfo-cache-negative-ttl = 0
download-attempts = 1
connect-timeout = 5
";

/// A scratch directory with its own Nix narinfo cache, for one test.
pub struct NixEnv {
    pub dir: TempDir,
}

impl NixEnv {
    pub fn new() -> Self {
        NixEnv {
            dir: tempfile::Builder::new()
                .prefix("narbor-e2e-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A Nix command (`nix`, `nix-build`, `nix-store`, ...) in this environment.
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("NIX_REMOTE", "local")
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .env_remove("NIX_PATH");
        cmd
    }

    /// Builds a `/bin/sh` derivation and returns its output path. `script` runs
    /// with `$out` set and no PATH: use absolute paths for tools.
    pub fn build(&self, name: &str, script: &str, references: &[&Path]) -> PathBuf {
        let mut refs = String::new();
        for (i, r) in references.iter().enumerate() {
            // builtins.storePath makes the reference a dependency of the build.
            refs.push_str(&format!(
                "ref{i} = builtins.storePath {};\n",
                nix_string(&r.to_string_lossy())
            ));
        }
        let expr = format!(
            "derivation {{\n  name = {};\n  system = builtins.currentSystem;\n  builder = \"/bin/sh\";\n  args = [ \"-c\" {} ];\n  {refs}}}\n",
            nix_string(name),
            nix_string(script)
        );
        let file = self.path(&format!("{name}.nix"));
        std::fs::write(&file, expr).expect("write derivation");
        let out = run_ok(
            self.cmd("nix-build")
                .arg(&file)
                .arg("--no-out-link")
                .arg("--quiet"),
        );
        PathBuf::from(stdout_str(&out).trim())
    }

    /// `nix path-info --json` of one path.
    pub fn path_info(&self, path: &Path) -> serde_json::Value {
        let out = run_ok(self.cmd("nix").args(["path-info", "--json"]).arg(path));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("path-info JSON");
        v[0].clone()
    }
}

/// A Nix string literal.
pub fn nix_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The script of a store path exercising every NAR feature: executables,
/// symlinks (relative, absolute, dangling, to a directory), empty directories
/// and files, deep nesting, odd names, byte-order sorting, padding lengths, and
/// a file over 50 MB.
pub const TREE_SCRIPT: &str = r#"
set -e
/bin/mkdir -p $out/empty-dir $out/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t
echo leaf > $out/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/leaf
printf '#!/bin/sh\necho hi\n' > $out/run.sh
/bin/chmod 0555 $out/run.sh
/bin/ln -s run.sh $out/link-to-run
/bin/ln -s /nonexistent/absolute/target $out/dangling
/bin/ln -s deep/a $out/dir-link
echo x > "$out/with space"
echo x > "$out/ünïcödé ☃"
echo x > "$out/a=b?c+d_e.f-g"
echo x > $out/B
echo x > $out/_under
echo x > $out/Z
: > $out/empty-file
printf 1234567 > $out/seven
printf 12345678 > $out/eight
printf 123456789 > $out/nine
/usr/bin/head -c 52428807 /dev/urandom > $out/big
"#;

/// The NAR-feature tree, built once per machine (Nix reuses the output).
pub fn tree_fixture(env: &NixEnv) -> PathBuf {
    env.build("narbor-fixture-tree", TREE_SCRIPT, &[])
}

/// A free loopback port, bound and released: another process may take it
/// before the caller binds it. Only for programs that cannot listen on port 0
/// and say which port they got (docker-registry, and narbor's HTTPS port when
/// its redirect listener must name it); everything else listens on port 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback address where nothing listens, held for as long as it lives:
/// a bound socket that never listens, so connections to it are refused and
/// no other process can take the port meanwhile.
pub struct RefusedAddr {
    pub addr: std::net::SocketAddr,
    _socket: socket2::Socket,
}

impl RefusedAddr {
    pub fn bind() -> RefusedAddr {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        RefusedAddr {
            addr,
            _socket: socket,
        }
    }
}

/// Calls `f` every 20 ms until it returns `Some`, and returns that; after
/// `timeout`, panics with `what` and whatever `context` says then.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    context: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The URLs `narbor serve` bound, from the `bound` field of its "narbor
/// serving" log line in `log`; None until that line is there.
pub fn serving_urls(log: &str) -> Option<Vec<String>> {
    let line = log.lines().find(|l| l.contains("narbor serving"))?;
    let list = line.split_once("bound=[")?.1.split_once(']')?.0;
    Some(
        list.split(", ")
            .map(|u| u.trim_matches('"').to_owned())
            .collect(),
    )
}

/// A log file name no other server of this test run uses.
pub fn unique_log_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{n}.log")
}

/// A running `narbor serve`, killed when dropped.
pub struct NarborServer {
    /// Where it listens: port 0 asked, this port bound.
    pub addr: std::net::SocketAddr,
    pub cache_dir: PathBuf,
    pub args: Vec<String>,
    /// Extra environment for the narbor process only.
    pub env: Vec<(String, String)>,
    child: Option<std::process::Child>,
    log: PathBuf,
}

impl NarborServer {
    /// Starts `narbor serve --listen 127.0.0.1:0 --cache-dir DIR ARGS...`,
    /// reads the port it bound from its log and waits until it answers
    /// `/health`.
    pub fn start(cache_dir: &Path, args: &[&str]) -> NarborServer {
        Self::start_with_env(cache_dir, args, &[])
    }

    /// Like [`start`](Self::start), with extra environment variables for narbor.
    pub fn start_with_env(cache_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> NarborServer {
        let name = cache_dir
            .file_name()
            .map_or("cache".into(), |n| n.to_string_lossy());
        let mut server = NarborServer {
            addr: ([127, 0, 0, 1], 0).into(),
            cache_dir: cache_dir.to_owned(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            log: cache_dir.with_file_name(unique_log_name(&name)),
        };
        server.spawn();
        server
    }

    /// Starts narbor on a port of its choosing, and waits until it serves.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // This run's lines: a restart appends to the same log.
        let from = log.metadata().unwrap().len() as usize;
        let child = narbor()
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(&self.args)
            .env("RUST_LOG", "narbor=debug,info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start narbor serve");
        let log_path = self.log.clone();
        let log_text = move || std::fs::read_to_string(&log_path).unwrap_or_default();
        let child = self.child.insert(child);
        let mut running = || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("narbor serve exited with {status}:\n{}", log_text());
            }
        };
        let timeout = std::time::Duration::from_secs(20);
        let urls = wait_for("narbor to listen", timeout, &log_text, || {
            running();
            serving_urls(log_text().get(from..)?)
        });
        let url = urls.first().expect("narbor bound an address");
        let addr = url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("narbor serves {url}, not plain HTTP"));
        wait_for("narbor to answer /health", timeout, &log_text, || {
            use std::io::{Read, Write};
            running();
            let mut s = std::net::TcpStream::connect(addr).ok()?;
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            buf.starts_with("HTTP/1.1 200").then_some(())
        });
        self.addr = addr;
    }

    /// The process id of the running narbor.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "narbor exited with {status}:\n{}",
                self.log_text()
            );
        }
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        let child = self.child.as_ref().expect("running");
        run_ok(Command::new("kill").arg(child.id().to_string()));
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("running").wait().unwrap()
    }

    /// `kill -9`, then start again on a new port (the old one may have
    /// been taken meanwhile): [`addr`](Self::addr) changes.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn get(&self, path: &str) -> crate::upstream::Reply {
        crate::upstream::request(self.addr, "GET", path, &[])
    }

    pub fn head(&self, path: &str) -> crate::upstream::Reply {
        crate::upstream::request(self.addr, "HEAD", path, &[])
    }
}

impl Drop for NarborServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl NixEnv {
    /// Substitutes `paths` from the binary cache at `url` into a fresh store
    /// at `root`, with `public` the only trusted key (signatures required),
    /// then runs `nix store verify` on it. Returns the store paths of the
    /// closure that arrived, sorted. `extra_env` goes to `nix copy` (e.g.
    /// `NIX_SSL_CERT_FILE`).
    pub fn substitute(
        &self,
        url: &str,
        root: &Path,
        public: &str,
        paths: &[&Path],
        extra_env: &[(&str, &str)],
    ) -> Vec<String> {
        let store = format!("local?root={}", root.display());
        run_ok(
            self.cmd("nix")
                .envs(extra_env.iter().copied())
                .args(["copy", "--from", url, "--to", &store])
                .args(["--option", "trusted-public-keys", public])
                .args(paths),
        );
        run_ok(
            self.cmd("nix")
                .args(["store", "verify", "--recursive", "--sigs-needed", "1"])
                .args(["--store", &store])
                .args(["--option", "trusted-public-keys", public])
                .args(paths),
        );
        let out = run_ok(
            self.cmd("nix")
                .args(["path-info", "--recursive", "--store", &store])
                .args(paths),
        );
        let mut got: Vec<String> = stdout_str(&out).lines().map(str::to_owned).collect();
        got.sort();
        got
    }
}

/// Paths as sorted strings, to compare with [`NixEnv::substitute`]'s result.
pub fn sorted_paths(paths: &[&Path]) -> Vec<String> {
    let mut v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    v.sort();
    v
}

impl NixEnv {
    /// A new binary cache `dir/<name>` written by `nix copy --to file://...?PARAMS`.
    pub fn file_cache<P: AsRef<std::ffi::OsStr>>(
        &self,
        name: &str,
        params: &str,
        paths: &[P],
    ) -> PathBuf {
        let dir = self.path(name);
        run_ok(
            self.cmd("nix")
                .args(["copy", "--to"])
                .arg(format!("file://{}?{params}", dir.display()))
                .args(paths),
        );
        dir
    }

    /// A signing key pair made by `nix-store --generate-binary-cache-key`:
    /// the secret key's file and the public key's text.
    pub fn nix_key(&self, name: &str) -> (PathBuf, String) {
        let (sk, pk) = (
            self.path(&format!("{name}.sk")),
            self.path(&format!("{name}.pk")),
        );
        run_ok(
            self.cmd("nix-store")
                .args(["--generate-binary-cache-key", name])
                .arg(&sk)
                .arg(&pk),
        );
        (sk, std::fs::read_to_string(&pk).unwrap())
    }

    /// `paths` in a new zstd binary cache signed by a new Nix key: the cache's
    /// directory and the public key.
    pub fn signed_cache(&self, name: &str, paths: &[&Path]) -> (PathBuf, String) {
        let (sk, public) = self.nix_key(&format!("{name}-1"));
        let params = format!("compression=zstd&secret-key={}", sk.display());
        (self.file_cache(name, &params, paths), public)
    }
}
