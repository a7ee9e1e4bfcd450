//! The TLS tests' tools: a test CA and server certificates made with the
//! `openssl` CLI, a narbor serving HTTPS, and what a client sees of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A certificate authority: its certificate and key files.
pub struct Ca {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How a server key file is written.
#[derive(Clone, Copy)]
pub enum KeyKind {
    /// EC P-256, `BEGIN PRIVATE KEY` (PKCS#8).
    Pkcs8,
    /// EC P-256, `BEGIN EC PRIVATE KEY` (SEC1).
    Sec1,
    /// RSA 2048, `BEGIN RSA PRIVATE KEY` (PKCS#1).
    Rsa,
}

pub fn openssl(dir: &Path, args: &[&str]) {
    run_ok(Command::new("openssl").current_dir(dir).args(args));
}

pub fn make_ca(dir: &Path, name: &str) -> Ca {
    let (cert, key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    Ca {
        cert: dir.join(cert),
        key: dir.join(key),
    }
}

/// A server certificate for 127.0.0.1 and localhost with subject `CN=cn`,
/// signed by `ca`. Returns (certificate, key) paths.
pub fn issue(dir: &Path, ca: &Ca, cn: &str, kind: KeyKind) -> (PathBuf, PathBuf) {
    let (cert, key, csr, ext) = (
        format!("{cn}.pem"),
        format!("{cn}.key"),
        format!("{cn}.csr"),
        format!("{cn}.ext"),
    );
    let newkey: &[&str] = match kind {
        KeyKind::Rsa => &["-newkey", "rsa:2048"],
        _ => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let subj = format!("/CN={cn}");
    let mut args = vec!["req"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&["-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &args);
    let converted = format!("{cn}.converted");
    match kind {
        KeyKind::Pkcs8 => {}
        KeyKind::Sec1 => openssl(dir, &["ec", "-in", &key, "-out", &converted]),
        KeyKind::Rsa => openssl(
            dir,
            &["rsa", "-traditional", "-in", &key, "-out", &converted],
        ),
    }
    if !matches!(kind, KeyKind::Pkcs8) {
        std::fs::rename(dir.join(&converted), dir.join(&key)).unwrap();
    }
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let (ca_cert, ca_key) = (
        ca.cert.to_string_lossy().into_owned(),
        ca.key.to_string_lossy().into_owned(),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-set_serial",
            "1",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
    let key_text = std::fs::read_to_string(dir.join(&key)).unwrap();
    let want = match kind {
        KeyKind::Pkcs8 => "-----BEGIN PRIVATE KEY-----",
        KeyKind::Sec1 => "-----BEGIN EC PRIVATE KEY-----",
        KeyKind::Rsa => "-----BEGIN RSA PRIVATE KEY-----",
    };
    assert!(key_text.starts_with(want), "{key} is not {want}");
    (dir.join(cert), dir.join(key))
}

/// A running `narbor serve` with HTTPS on 127.0.0.1, killed when dropped.
pub struct TlsNarbor {
    /// The HTTPS address.
    pub addr: SocketAddr,
    /// Every URL narbor bound (the HTTPS one, and any redirect listener's).
    pub bound: Vec<String>,
    child: Child,
    log: PathBuf,
}

impl TlsNarbor {
    /// Starts narbor with `--listen 127.0.0.1:0 --tls-cert cert --tls-key
    /// key ARGS...`, reads the addresses it bound from its log and waits
    /// until it accepts connections.
    pub fn start(dir: &Path, cert: &Path, key: &Path, args: &[&str]) -> TlsNarbor {
        Self::start_on("127.0.0.1:0".parse().unwrap(), dir, cert, key, args)
    }

    /// Like [`start`](Self::start), with HTTPS on `listen`.
    pub fn start_on(
        listen: SocketAddr,
        dir: &Path,
        cert: &Path,
        key: &Path,
        args: &[&str],
    ) -> TlsNarbor {
        let log = dir.join(unique_log_name("narbor"));
        let out = std::fs::File::create(&log).unwrap();
        let child = narbor()
            .arg("serve")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(args)
            .env("RUST_LOG", "narbor=debug,info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start narbor serve");
        let mut server = TlsNarbor {
            addr: listen,
            bound: Vec::new(),
            child,
            log,
        };
        let log_path = server.log.clone();
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let timeout = Duration::from_secs(20);
        let bound = wait_for("narbor to listen", timeout, log_text, || {
            server.assert_running();
            serving_urls(&log_text())
        });
        server.addr = bound
            .iter()
            .find_map(|u| u.strip_prefix("https://")?.parse().ok())
            .unwrap_or_else(|| panic!("no HTTPS address in {bound:?}"));
        server.bound = bound;
        wait_for("narbor to accept connections", timeout, log_text, || {
            server.assert_running();
            std::net::TcpStream::connect(server.addr).ok()
        });
        server
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sighup(&self) {
        run_ok(Command::new("kill").args(["-HUP", &self.child.id().to_string()]));
    }

    /// Sends SIGTERM and waits for narbor to exit.
    pub fn sigterm_and_wait(&mut self) -> std::process::ExitStatus {
        run_ok(Command::new("kill").arg(self.child.id().to_string()));
        self.child.wait().unwrap()
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("narbor exited with {status}:\n{}", self.log_text());
        }
    }

    pub fn log_count(&self, text: &str) -> usize {
        self.log_text().matches(text).count()
    }

    /// Waits until the log has `n` lines containing `text`.
    pub fn wait_for_log(&self, text: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log_text().matches(text).count() < n {
            assert!(
                Instant::now() < deadline,
                "no {n}x {text:?} in the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TlsNarbor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// curl over HTTPS trusting only `ca`.
pub fn curl(ca: &Path) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "120", "--cacert"]).arg(ca);
    cmd
}

/// The subject of the certificate a new connection to `addr` is shown.
pub fn served_subject(addr: SocketAddr) -> String {
    let out = run_ok(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                "localhost",
            ])
            .stdin(Stdio::null()),
    );
    stdout_str(&out)
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_else(|| panic!("no subject in s_client's output:\n{}", stdout_str(&out)))
        .trim()
        .to_owned()
}

/// Waits until new connections are shown a certificate with subject `CN = cn`.
pub fn wait_for_subject(addr: SocketAddr, cn: &str) {
    let want = format!("CN = {cn}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = served_subject(addr);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still served {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Replaces `dst` by `src`'s bytes the way deployment tools do: write a new
/// file beside it, rename it over.
pub fn replace(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("new");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}
