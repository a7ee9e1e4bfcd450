//! A real CNCF `docker-registry` on 127.0.0.1 for the OCI tests: temporary
//! storage with deletes enabled, and either htpasswd (bcrypt) auth or token
//! auth against [`TokenServer`], a tiny token endpoint that signs RS256 JWTs
//! with a key and self-signed certificate made by the openssl CLI.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use tempfile::TempDir;

use crate::support::*;

pub const USER: &str = "narbor-test";
pub const PASSWORD: &str = "correct-horse-battery-staple";

pub enum Auth {
    /// None at all (as the nixcache-oci fixture's README serves it).
    Open,
    Htpasswd,
    /// Token auth: the registry trusts `cert`; tokens come from `realm`.
    Token {
        realm: String,
        cert: PathBuf,
    },
}

pub struct Registry {
    pub addr: SocketAddr,
    pub dir: TempDir,
    child: Option<Child>,
}

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        Self::start_with(auth, None)
    }

    /// A registry whose storage starts as a copy of `storage` (a registry's
    /// `rootdirectory`, with `docker/registry/v2` in it).
    pub fn start_with(auth: Auth, storage: Option<&Path>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("narbor-registry-")
            .tempdir()
            .unwrap();
        if let Some(from) = storage {
            run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(from)
                    .arg(dir.path().join("storage")),
            );
            // The fixture's files are read-only; the registry writes.
            run_ok(
                Command::new("chmod")
                    .args(["-R", "u+w"])
                    .arg(dir.path().join("storage")),
            );
        }
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let auth_yaml = match auth {
            Auth::Open => String::new(),
            Auth::Htpasswd => {
                let out = run_ok(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, &out.stdout).unwrap();
                format!("  htpasswd:\n    realm: narbor-test\n    path: {}\n", htpasswd.display())
            }
            Auth::Token { realm, cert } => format!(
                "  token:\n    realm: {realm}\n    service: narbor-test-registry\n    issuer: narbor-test-issuer\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let auth_yaml = if auth_yaml.is_empty() {
            String::new()
        } else {
            format!("auth:\n{auth_yaml}")
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\n  secret: narbor-test-secret\n{auth_yaml}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut reg = Registry {
            addr,
            dir,
            child: None,
        };
        reg.spawn();
        reg
    }

    /// Starts the registry process (again) on its config and storage.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (run scripts/test.sh to install it)");
        self.child = Some(child);
        let (addr, reg) = (self.addr, self);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = crate::upstream::try_request(addr, "GET", "/v2/", &[]) {
                assert!(
                    matches!(r.status, 200 | 401),
                    "registry answered {}",
                    r.status
                );
                break;
            }
            if let Some(status) = reg.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("docker-registry exited with {status}:\n{}", reg.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start:\n{}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the registry process; its storage stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `oci+http://127.0.0.1:PORT/NAME`.
    pub fn store(&self, name: &str) -> String {
        format!("oci+http://{}/{name}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Requests in the registry's access log whose line contains `needle`
    /// (e.g. `"PUT /v2/cache/blobs/uploads`).
    pub fn count_requests(&self, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("response completed") || l.contains("HTTP/1.1\""))
            .filter(|l| l.contains(needle))
            .count()
    }

    /// `curl` with the test credentials against this registry.
    pub fn curl(&self) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "-u", &format!("{USER}:{PASSWORD}")]);
        c
    }

    /// `<status>` of `curl -I` (HEAD) on a registry path.
    pub fn head_status(&self, path: &str) -> u16 {
        let out = run_ok(
            self.curl()
                .args(["-o", "/dev/null", "-w", "%{http_code}", "-I"])
                .arg(format!("http://{}{path}", self.addr)),
        );
        stdout_str(&out).trim().parse().unwrap()
    }

    /// Uploads a blob through the registry API with curl (not narbor's client).
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", narbor_proto::Sha256::digest(data).to_hex());
        let out = run_ok(
            self.curl()
                .args(["-D", "-", "-o", "/dev/null", "-X", "POST"])
                .arg(format!("http://{}/v2/{repo}/blobs/uploads/", self.addr)),
        );
        let head = stdout_str(&out);
        let location = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("Location: ")
                    .or_else(|| l.strip_prefix("location: "))
            })
            .expect("Location")
            .trim()
            .to_owned();
        let url = if location.starts_with('/') {
            format!("http://{}{location}", self.addr)
        } else {
            location
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let file = self.dir.path().join("upload.tmp");
        std::fs::write(&file, data).unwrap();
        let out = run_ok(
            self.curl()
                .args([
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-X",
                    "PUT",
                    "-H",
                    "Content-Type: application/octet-stream",
                    "--data-binary",
                ])
                .arg(format!("@{}", file.display()))
                .arg(format!("{url}{sep}digest={digest}")),
        );
        assert_eq!(stdout_str(&out).trim(), "201", "blob upload");
        digest
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &str) {
        let out = run_ok(
            self.curl()
                .args(["-w", "%{http_code}", "-X", "PUT", "-H"])
                .arg(format!("Content-Type: {media_type}"))
                .args(["--data-binary", body])
                .arg(format!(
                    "http://{}/v2/{repo}/manifests/{reference}",
                    self.addr
                )),
        );
        assert!(
            stdout_str(&out).trim().ends_with("201"),
            "manifest PUT: {}",
            stdout_str(&out)
        );
    }

    /// Files under the storage's blob directory (content the registry holds).
    pub fn blob_files(&self) -> usize {
        let root = self.dir.path().join("storage/docker/registry/v2/blobs");
        crate::serve::walk_files(&root).len()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A token endpoint: `GET /token?service=...&scope=repository:NAME:ACTIONS`
/// with basic auth answers a JWT granting exactly the actions asked for.
pub struct TokenServer {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    issued: Arc<AtomicUsize>,
    /// The signing certificate (DER, base64) tokens carry; replaced by
    /// [`rotate`](Self::rotate).
    x5c: Arc<std::sync::Mutex<String>>,
    key: PathBuf,
    _dir: TempDir,
}

impl TokenServer {
    /// `lifetime`: the JWT's real `exp`; `advertised`: the `expires_in` told
    /// to the client (a lie when shorter than the truth, to force a 401).
    pub fn start(lifetime: i64, advertised: u64) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("narbor-token-")
            .tempdir()
            .unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        new_key_and_cert(&key, &cert);
        let x5c = Arc::new(std::sync::Mutex::new(cert_x5c(&cert)));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let issued = Arc::new(AtomicUsize::new(0));
        let (iss, x, keyp) = (Arc::clone(&issued), Arc::clone(&x5c), key.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (iss, keyp) = (Arc::clone(&iss), keyp.clone());
                let x5c = x.lock().unwrap().clone();
                std::thread::spawn(move || {
                    token_connection(conn, &keyp, &x5c, &iss, lifetime, advertised)
                });
            }
        });
        TokenServer {
            addr,
            cert,
            issued,
            x5c,
            key,
            _dir: dir,
        }
    }

    /// A new signing key and certificate, written over the old files: a
    /// registry restarted on them refuses every token signed before, so a
    /// client's cached token (which it believes good) meets a 401.
    pub fn rotate(&self) {
        new_key_and_cert(&self.key, &self.cert);
        *self.x5c.lock().unwrap() = cert_x5c(&self.cert);
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

/// A token signing key and its self-signed certificate, made by openssl.
fn new_key_and_cert(key: &Path, cert: &Path) {
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=narbor-test-token",
            ])
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(cert),
    );
}

/// The certificate as a JWT's `x5c` carries it.
fn cert_x5c(cert: &Path) -> String {
    let der = run_ok(
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(cert),
    )
    .stdout;
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn token_connection(
    mut conn: TcpStream,
    key: &Path,
    x5c: &str,
    issued: &AtomicUsize,
    lifetime: i64,
    advertised: u64,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut authorized = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        if h.to_ascii_lowercase().starts_with("authorization:")
            && h.trim().ends_with(&format!("Basic {expected}"))
        {
            authorized = true;
        }
    }
    let reply = |conn: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    };
    if !authorized {
        reply(&mut conn, "401 Unauthorized", "{}");
        return;
    }
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for pair in query.split('&') {
        if let Some(scope) = pair.strip_prefix("scope=") {
            let scope = percent_decode(scope);
            let parts: Vec<&str> = scope.splitn(3, ':').collect();
            if parts.len() == 3 && parts[0] == "repository" {
                let actions: Vec<String> =
                    parts[2].split(',').map(|a| format!("\"{a}\"")).collect();
                access.push(format!(
                    r#"{{"type":"repository","name":"{}","actions":[{}]}}"#,
                    parts[1],
                    actions.join(",")
                ));
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let n = issued.fetch_add(1, Ordering::SeqCst);
    let header = format!(r#"{{"typ":"JWT","alg":"RS256","x5c":["{x5c}"]}}"#);
    let claims = format!(
        r#"{{"iss":"narbor-test-issuer","sub":"{USER}","aud":"narbor-test-registry","exp":{},"nbf":{},"iat":{},"jti":"t{n}-{now}","access":[{}]}}"#,
        now + lifetime,
        now - 120,
        now - 120,
        access.join(",")
    );
    let signing_input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let mut sig = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut sig).unwrap();
    assert!(child.wait().unwrap().success());
    let jwt = format!("{signing_input}.{}", b64url(&sig));
    reply(
        &mut conn,
        "200 OK",
        &format!(r#"{{"token":"{jwt}","expires_in":{advertised}}}"#),
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP proxy in front of a registry that cuts the connection carrying the
/// first `PATCH` (once): a registry or network failing midway through an
/// upload. Everything else passes through byte for byte.
pub struct CutFirstPatch {
    pub addr: SocketAddr,
    cuts: Arc<AtomicUsize>,
}

impl CutFirstPatch {
    pub fn start(target: SocketAddr) -> CutFirstPatch {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cuts = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let counted = Arc::clone(&cuts);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (armed, cuts) = (Arc::clone(&armed), Arc::clone(&counted));
                std::thread::spawn(move || pipe(client, target, &armed, &cuts));
            }
        });
        CutFirstPatch { addr, cuts }
    }

    /// How many connections were cut.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

fn pipe(
    mut client: TcpStream,
    target: SocketAddr,
    armed: &std::sync::atomic::AtomicBool,
    cuts: &AtomicUsize,
) {
    let Ok(mut server) = TcpStream::connect(target) else {
        return;
    };
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let patch = buf[..n].windows(6).any(|w| w == b"PATCH ");
        if patch && armed.swap(false, Ordering::SeqCst) {
            cuts.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = server.shutdown(std::net::Shutdown::Both);
            return;
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Write);
}
