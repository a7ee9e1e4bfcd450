//! `narbor serve --tls-cert --tls-key`: HTTPS with certificates from a test CA
//! made by the `openssl` CLI; the real Nix client substituting over it; HTTP/2
//! by ALPN; certificate reload (file change, SIGHUP, broken files) while a
//! download runs; the plain-HTTP redirect listener.

pub(crate) mod helpers;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use narbor_proto::Sha256;

use crate::serve::{pseudo_random, put_nar};
use crate::support::*;
use crate::upstream::Upstream;
use helpers::*;

#[test]
fn nix_substitutes_over_https_with_the_test_ca() {
    let env = NixEnv::new();
    let leaf = env.build(
        "narbor-tls-leaf",
        "/usr/bin/head -c 3145728 /dev/urandom > $out",
        &[],
    );
    let top = env.build(
        "narbor-tls-top",
        "/bin/mkdir $out; echo $ref0 > $out/ref; /bin/ln -s $ref0 $out/leaf",
        &[&leaf],
    );
    let (cache, public) = env.signed_cache("upstream-cache", &[&top]);
    let upstream = Upstream::start(cache);
    let pki = env.path("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let ca = make_ca(&pki, "nix");
    let (cert, key) = issue(&pki, &ca, "narbor-nix", KeyKind::Sec1);
    let narbor = TlsNarbor::start(&pki, &cert, &key, &["--upstream", &upstream.url()]);

    let got = env.substitute(
        &narbor.url(),
        &env.path("fresh"),
        &public,
        &[&top],
        &[("NIX_SSL_CERT_FILE", ca.cert.to_str().unwrap())],
    );
    assert_eq!(
        got,
        sorted_paths(&[&leaf, &top]),
        "the whole closure arrived over HTTPS"
    );
    assert!(
        upstream.total_requests() >= 4,
        "narbor fetched from upstream"
    );

    // Without the test CA, Nix refuses the certificate: the check is real.
    let other = env.path("untrusted");
    let out = run_fails(
        env.cmd("nix")
            .env("NIX_SSL_CERT_FILE", &make_ca(&pki, "stranger").cert)
            .args(["copy", "--from", &narbor.url(), "--to"])
            .arg(format!("local?root={}", other.display()))
            .args(["--option", "trusted-public-keys", &public])
            .arg(&top),
    );
    let err = stderr_str(&out);
    assert!(
        err.contains("SSL") || err.contains("certificate"),
        "Nix failed for the certificate: {err}"
    );
}

#[test]
fn http2_is_negotiated_by_alpn_and_http1_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "alpn");
    let (cert, key) = issue(dir.path(), &ca, "narbor-alpn", KeyKind::Pkcs8);
    let narbor = TlsNarbor::start(dir.path(), &cert, &key, &["--no-upstream"]);
    let fmt = "%{http_version} %{http_code}";
    let url = format!("{}/nix-cache-info", narbor.url());
    let out = run_ok(curl(&ca.cert).args(["--http2", "-o", "/dev/null", "-w", fmt, &url]));
    assert_eq!(stdout_str(&out), "2 200");
    let out = run_ok(curl(&ca.cert).args(["--http1.1", "-o", "/dev/null", "-w", fmt, &url]));
    assert_eq!(stdout_str(&out), "1.1 200");
    let host_url = format!("https://localhost:{}/health", narbor.addr.port());
    let out = run_ok(curl(&ca.cert).arg(&host_url));
    assert_eq!(stdout_str(&out), "ok\n", "the DNS name in the certificate");
    // Plain HTTP on the HTTPS port gets no answer, and a stranger CA fails.
    let out = run_fails(
        Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://{}/health", narbor.addr)),
    );
    assert!(!stdout_str(&out).contains("ok"));
    let stranger = make_ca(dir.path(), "stranger");
    let out = run_fails(curl(&stranger.cert).arg(&url));
    assert_eq!(out.status.code(), Some(60), "curl's certificate error");
}

#[test]
fn certificates_reload_on_change_and_sighup_without_dropping_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca_a, ca_b, ca_c) = (make_ca(d, "a"), make_ca(d, "b"), make_ca(d, "c"));
    let (cert_a, key_a) = issue(d, &ca_a, "narbor-a", KeyKind::Pkcs8);
    let (cert_b, key_b) = issue(d, &ca_b, "narbor-b", KeyKind::Rsa);
    let (cert_c, key_c) = issue(d, &ca_c, "narbor-c", KeyKind::Sec1);
    let (cert, key) = (d.join("live.pem"), d.join("live.key"));
    replace(&cert_a, &cert);
    replace(&key_a, &key);

    let root = d.join("up");
    let nar = pseudo_random(12 * 1024 * 1024, 77);
    let nar_key = put_nar(&root, &nar);
    let last = pseudo_random(3 * 1024 * 1024, 78);
    let last_key = put_nar(&root, &last);
    let upstream = Upstream::start(root);
    upstream.set_rate(1024 * 1024);
    let mut narbor = TlsNarbor::start(d, &cert, &key, &["--upstream", &upstream.url()]);
    assert_eq!(served_subject(narbor.addr), "CN = narbor-a");

    // A slow download on a connection made with certificate A.
    let got = d.join("download.nar");
    let mut download = curl(&ca_a.cert)
        .arg("-o")
        .arg(&got)
        .arg(format!("{}/{nar_key}", narbor.url()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&got).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The files change (an RSA key this time): new connections see B.
    let (reloaded, failed) = (
        "certificate files changed: reloaded",
        "certificate files changed: TLS reload failed",
    );
    let n = narbor.log_count(reloaded);
    replace(&cert_b, &cert);
    replace(&key_b, &key);
    wait_for_subject(narbor.addr, "narbor-b");
    narbor.wait_for_log(reloaded, n + 1);
    let out = run_ok(curl(&ca_b.cert).arg(format!("{}/health", narbor.url())));
    assert_eq!(stdout_str(&out), "ok\n");
    assert!(
        download.try_wait().unwrap().is_none(),
        "the download was still running when certificate B was in use"
    );
    let status = download.wait().unwrap();
    assert!(
        status.success(),
        "the download on the old connection failed"
    );
    let bytes = std::fs::read(&got).unwrap();
    assert!(
        bytes.len() == nar.len() && Sha256::digest(&bytes) == Sha256::digest(&nar),
        "the download arrived intact"
    );
    upstream.set_rate(0);

    // A broken replacement (C's certificate with B's key, then garbage) keeps B.
    let n = narbor.log_count(failed);
    replace(&cert_c, &cert);
    narbor.wait_for_log(failed, n + 1);
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot base64\n").unwrap();
    narbor.wait_for_log(failed, n + 2);
    narbor.sighup();
    narbor.wait_for_log("SIGHUP: TLS reload failed", 1);
    narbor.assert_running();
    assert_eq!(served_subject(narbor.addr), "CN = narbor-b");
    let out = run_ok(curl(&ca_b.cert).arg(format!("{}/health", narbor.url())));
    assert_eq!(stdout_str(&out), "ok\n", "still serving with B");

    // The right key arrives: C is served. SIGHUP reloads too (and does not
    // stop narbor, SIGHUP's default).
    replace(&key_c, &key);
    wait_for_subject(narbor.addr, "narbor-c");
    replace(&cert_a, &cert);
    replace(&key_a, &key);
    narbor.sighup();
    narbor.wait_for_log("SIGHUP: reloaded the TLS certificate", 1);
    narbor.assert_running();
    wait_for_subject(narbor.addr, "narbor-a");
    let out = run_ok(curl(&ca_a.cert).arg(format!("{}/health", narbor.url())));
    assert_eq!(stdout_str(&out), "ok\n");

    // SIGTERM drains HTTPS connections too: a slow download finishes.
    upstream.set_rate(1024 * 1024);
    let got = d.join("last.nar");
    let mut download = curl(&ca_a.cert)
        .arg("-o")
        .arg(&got)
        .arg(format!("{}/{last_key}", narbor.url()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&got).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = narbor.sigterm_and_wait();
    assert!(status.success(), "narbor exited with {status}");
    assert!(download.wait().unwrap().success(), "the download was cut");
    assert_eq!(
        std::fs::read(&got).unwrap(),
        last,
        "the download arrived intact"
    );
}

#[test]
fn the_redirect_listener_sends_every_request_to_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "redirect");
    let (cert, key) = issue(dir.path(), &ca, "narbor-redirect", KeyKind::Pkcs8);
    // narbor redirects to the HTTPS port it was told (not the one it bound),
    // so that one is chosen here; the redirect listener takes any port.
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let narbor = TlsNarbor::start_on(
        https,
        dir.path(),
        &cert,
        &key,
        &["--no-upstream", "--http-redirect-listen", "127.0.0.1:0"],
    );
    let port = narbor.addr.port();
    let plain: SocketAddr = narbor
        .bound
        .iter()
        .find_map(|u| u.strip_prefix("http://")?.parse().ok())
        .expect("the redirect listener");
    let ask = |host: &str, path: &str| {
        let out = run_ok(
            Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{redirect_url}",
                ])
                .args(["-H", &format!("Host: {host}")])
                .arg(format!("http://{plain}{path}")),
        );
        stdout_str(&out)
    };
    assert_eq!(
        ask(&plain.to_string(), "/nix-cache-info?x=1"),
        format!("308 https://127.0.0.1:{port}/nix-cache-info?x=1")
    );
    assert_eq!(
        ask("localhost", "/nar/abc.nar"),
        format!("308 https://localhost:{port}/nar/abc.nar")
    );
    for evil in ["evil.example/x", "a@b", "a b", "x:1:2", "[zz]", "é"] {
        assert_eq!(ask(evil, "/"), "400 ", "Host: {evil}");
    }
    // curl follows the redirect to HTTPS and gets the cache.
    let out = run_ok(
        curl(&ca.cert)
            .args(["-L", "-w", "%{url_effective}"])
            .arg(format!("http://localhost:{}/nix-cache-info", plain.port())),
    );
    let text = stdout_str(&out);
    assert!(text.starts_with("StoreDir: /nix/store"), "{text}");
    assert!(
        text.ends_with(&format!("https://localhost:{port}/nix-cache-info")),
        "{text}"
    );
}

#[test]
fn bad_tls_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "bad");
    let (cert, _) = issue(d, &ca, "narbor-one", KeyKind::Pkcs8);
    let (_, other_key) = issue(d, &ca, "narbor-two", KeyKind::Pkcs8);
    let serve = |args: &[&std::ffi::OsStr]| {
        let out = run_fails(
            narbor()
                .args(["serve", "--no-upstream", "--cache-dir"])
                .arg(d.join("cache"))
                .args(["--listen", "127.0.0.1:0"])
                .args(args),
        );
        assert_eq!(out.status.code(), Some(2));
        stderr_str(&out)
    };
    let err = serve(&["--tls-cert".as_ref(), cert.as_os_str()]);
    assert!(err.contains("give both or neither"), "{err}");
    let err = serve(&[
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        other_key.as_os_str(),
    ]);
    assert!(err.contains("do not go together"), "{err}");
    let err = serve(&[
        "--tls-cert".as_ref(),
        other_key.as_os_str(),
        "--tls-key".as_ref(),
        other_key.as_os_str(),
    ]);
    assert!(err.contains("no certificate"), "{err}");
    let err = serve(&[
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(err.contains("no private key"), "{err}");
    let err = serve(&["--http-redirect-listen".as_ref(), "127.0.0.1:1".as_ref()]);
    assert!(err.contains("needs tls-cert"), "{err}");

    // check-config loads the files too.
    let key = d.join("narbor-one.key");
    let config = d.join("narbor.toml");
    let write = |key: &Path| {
        std::fs::write(
            &config,
            format!(
                "tls-cert = {:?}\ntls-key = {:?}\nhttp-redirect-listen = [\"127.0.0.1:8080\"]\n",
                cert.display().to_string(),
                key.display().to_string()
            ),
        )
        .unwrap();
    };
    write(&key);
    let out = run_ok(narbor().arg("check-config").arg(&config));
    let text = stdout_str(&out);
    assert!(
        text.contains("https") && text.contains("127.0.0.1:8080"),
        "{text}"
    );
    write(&other_key);
    let out = run_fails(narbor().arg("check-config").arg(&config));
    assert!(
        stderr_str(&out).contains("do not go together"),
        "{}",
        stderr_str(&out)
    );
}

#[test]
fn sighup_without_tls_is_logged_and_does_not_stop_narbor() {
    let dir = tempfile::tempdir().unwrap();
    let narbor = NarborServer::start(&dir.path().join("cache"), &["--no-upstream"]);
    let pid = narbor.pid().to_string();
    run_ok(Command::new("kill").args(["-HUP", &pid]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !narbor.log_text().contains("SIGHUP: nothing to reload") {
        assert!(Instant::now() < deadline, "{}", narbor.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(narbor.get("/health").status, 200, "still serving");
}
