//! `narbor serve --config`, `narbor check-config`, and a graceful stop.

use std::io::{Read, Write};

use narbor_proto::Sha256;

use crate::serve::{pseudo_random, put_nar};
use crate::support::*;
use crate::upstream::Upstream;

#[test]
fn check_config_accepts_good_files_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = [\"127.0.0.1:9999\"]\nmax-size = \"10G\"\nupstreams = [\"https://cache.nixos.org\"]\npriority = 20\n",
    )
    .unwrap();
    let out = run_ok(narbor().arg("check-config").arg(&good));
    let text = stdout_str(&out);
    assert!(text.contains("ok"), "{text}");
    assert!(text.contains("127.0.0.1:9999"), "{text}");
    assert!(text.contains(&(10u64 << 30).to_string()), "{text}");

    for (body, must_name) in [
        ("max-size = \"10G\"\ncache-size = \"1G\"\n", "cache-size"),
        ("max-size = \"ten gigabytes\"\n", "max-size"),
        ("negative-ttl = \"5 weeks\"\n", "negative-ttl"),
        ("upstreams = \"https://cache.nixos.org\"\n", "upstreams"),
        ("trusted-keys = [\"nope\"]\n", "trusted-key"),
        ("sign-key-file = \"/nonexistent/key\"\n", "sign-key-file"),
        ("priority = 30\npriority = 31\n", "priority"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, body).unwrap();
        let out = run_fails(narbor().arg("check-config").arg(&bad));
        let err = stderr_str(&out);
        assert!(err.contains(must_name), "{body:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn serve_reads_the_config_file_and_flags_and_environment_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(dir.path().join("up"));
    let file = dir.path().join("narbor.toml");
    std::fs::write(
        &file,
        format!(
            "upstreams = [\"{}\"]\npriority = 20\nnegative-ttl = \"1h\"\n",
            upstream.url()
        ),
    )
    .unwrap();
    let cache_info =
        |narbor: &NarborServer| String::from_utf8(narbor.get("/nix-cache-info").body).unwrap();

    let from_file = NarborServer::start(
        &dir.path().join("c1"),
        &["--config", file.to_str().unwrap()],
    );
    assert!(cache_info(&from_file).contains("Priority: 20"));
    assert!(from_file
        .get("/")
        .body
        .windows(upstream.url().len())
        .any(|w| w == upstream.url().as_bytes()));

    let flag = NarborServer::start(
        &dir.path().join("c2"),
        &["--config", file.to_str().unwrap(), "--priority", "33"],
    );
    assert!(
        cache_info(&flag).contains("Priority: 33"),
        "the flag beats the file"
    );

    std::env::set_var("NARBOR_PRIORITY", "44");
    let env = NarborServer::start(
        &dir.path().join("c3"),
        &["--config", file.to_str().unwrap()],
    );
    std::env::remove_var("NARBOR_PRIORITY");
    assert!(
        cache_info(&env).contains("Priority: 44"),
        "the environment beats the file"
    );

    let out = run_fails(
        narbor()
            .args(["serve", "--config"])
            .arg(dir.path().join("missing.toml")),
    );
    assert!(stderr_str(&out).contains("missing.toml"));
}

#[test]
fn sigterm_stops_accepting_finishes_transfers_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("up");
    let nar = pseudo_random(6 * 1024 * 1024, 61);
    let key = put_nar(&root, &nar);
    let upstream = Upstream::start(root);
    upstream.set_rate(3 * 1024 * 1024);
    let mut narbor =
        NarborServer::start(&dir.path().join("cache"), &["--upstream", &upstream.url()]);
    let mut conn = std::net::TcpStream::connect(narbor.addr).unwrap();
    write!(
        conn,
        "GET /{key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = vec![0u8; 1024];
    let n = conn.read(&mut first).unwrap();
    assert!(n > 0);
    narbor.sigterm();
    wait_for(
        "no new connections once stopping",
        std::time::Duration::from_secs(10),
        || narbor.log_text(),
        || {
            std::net::TcpStream::connect(narbor.addr)
                .is_err()
                .then_some(())
        },
    );
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    let mut raw = first[..n].to_vec();
    raw.extend_from_slice(&rest);
    let body_start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        Sha256::digest(&raw[body_start..]),
        Sha256::digest(&nar),
        "the transfer finished whole"
    );
    let status = narbor.wait_exit();
    assert!(status.success(), "exit status {status}");
}
