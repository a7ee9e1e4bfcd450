//! Upstream credentials: each request gets the right one (a URL's
//! `user:password@` for that URL's origin, a netrc entry, a bearer-token file
//! for a host), none goes to another host, and none is ever shown: not on a
//! page, in JSON, in a metric, a log line or an error.

use std::collections::HashMap;

use crate::double::{Double, Req, Resp};
use crate::interop::{cache_info, entries, fixture, narinfo_hash, Entry};
use crate::support::*;

const URL_PASSWORD: &str = "url-pa55-7f3c1d";
const NETRC_PASSWORD: &str = "netrc-s3cret-9a41e0";
const TOKEN: &str = "bearer-t0ken-52be6a";
const DEAD_PASSWORD: &str = "dead-pa55-c0ffee";

/// Every spelling of a secret a leak could take.
fn spellings() -> Vec<String> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut out: Vec<String> = [URL_PASSWORD, NETRC_PASSWORD, TOKEN, DEAD_PASSWORD]
        .iter()
        .map(|s| s.to_string())
        .collect();
    out.push(b64(&format!("alice:{URL_PASSWORD}")));
    out.push(b64(&format!("bob:{NETRC_PASSWORD}")));
    out.push(b64(&format!("carol:{DEAD_PASSWORD}")));
    out.push(URL_PASSWORD.replace('-', "%2D"));
    out
}

/// A cache holding `entries` (laid out as `nix copy` writes it), answering
/// 401 unless the request carries `want` as its Authorization.
fn guarded(ip: &str, prefix: &'static str, entries: Vec<Entry>, want: String) -> Double {
    let by_hash: HashMap<String, Entry> =
        entries.into_iter().map(|e| (e.hash.clone(), e)).collect();
    Double::start_on(ip, move |req: &Req| {
        if req.header("authorization") != Some(want.as_str()) {
            return Resp::status(401, "credentials required\n")
                .with_header("WWW-Authenticate", "Basic realm=\"cache\"");
        }
        let Some(path) = req.path().strip_prefix(prefix) else {
            return Resp::status(404, "");
        };
        if path == "/nix-cache-info" {
            return cache_info(40);
        }
        if let Some(e) = narinfo_hash(path).and_then(|h| by_hash.get(h)) {
            let text = format!(
                "StorePath: {}\nURL: nar/{}.nar.zst\nCompression: zstd\nFileHash: {}\nFileSize: {}\nNarHash: {}\nNarSize: {}\n{}",
                e.info.store_path,
                e.info.file_hash.unwrap().to_nix32(),
                e.info.file_hash.unwrap(),
                e.file.len(),
                e.info.nar_hash,
                e.info.nar_size,
                e.tail(true)
            );
            return Resp::ok("text/x-nix-narinfo", text.into_bytes());
        }
        for e in by_hash.values() {
            if path == format!("/nar/{}.nar.zst", e.info.file_hash.unwrap().to_nix32()) {
                return Resp::ok("application/x-nix-nar", e.file.clone());
            }
        }
        Resp::status(404, "")
    })
}

#[test]
fn credentials_reach_only_their_host_and_are_never_shown() {
    use base64::Engine;
    let f = fixture();
    let all = entries("zstd");
    let of = |i: usize| -> Vec<Entry> {
        let p = f.paths[i].to_string_lossy().into_owned();
        all.values()
            .filter(|e| e.info.store_path.to_absolute_path() == p)
            .cloned()
            .collect()
    };
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    // data: its URL's credentials; lib: netrc (host "localhost"); app: a
    // bearer-token file (host "127.0.0.2", another loopback address).
    let a = guarded("127.0.0.1", "/mycache", of(0), basic("alice", URL_PASSWORD));
    let b = guarded("127.0.0.1", "", of(1), basic("bob", NETRC_PASSWORD));
    let c = guarded("127.0.0.2", "", of(2), format!("Bearer {TOKEN}"));
    let dead = RefusedAddr::bind();
    let dead_port = dead.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let netrc = dir.path().join("netrc");
    std::fs::write(
        &netrc,
        format!(
            "# narbor's upstreams\nmachine localhost\n  login bob\n  password \"{NETRC_PASSWORD}\"\n\
             machine 127.0.0.1 login mallory password not-for-a\n"
        ),
    )
    .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let upstreams = [
        format!("http://carol:{DEAD_PASSWORD}@127.0.0.1:{dead_port}"),
        format!(
            "http://alice:{}@{}/mycache",
            URL_PASSWORD.replace('-', "%2D"),
            a.addr
        ),
        format!("http://localhost:{}", b.addr.port()),
        format!("http://{}", c.addr),
    ];
    let mut args = vec![
        "--netrc-file".to_owned(),
        netrc.to_string_lossy().into_owned(),
    ];
    args.push("--upstream-token-file".into());
    args.push(format!("127.0.0.2={}", token.display()));
    for u in &upstreams {
        args.push("--upstream".into());
        args.push(u.clone());
    }
    args.extend(["--trusted-key".into(), f.public_key.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let narbor = NarborServer::start(&dir.path().join("cache"), &args);

    // The real Nix client gets the closure, each path from its own upstream.
    let app = f.paths[2].as_path();
    let got = f.env.substitute(
        &narbor.url(),
        &dir.path().join("root"),
        &f.public_key,
        &[app],
        &[],
    );
    assert_eq!(got.len(), 3, "{}", narbor.log_text());
    // Each upstream saw only its own credential (b: the netrc's, though the
    // netrc also names 127.0.0.1, whose URL's own credentials win for a).
    let auths = |d: &Double| -> Vec<String> {
        d.requests()
            .iter()
            .filter_map(|r| r.header("authorization").map(str::to_owned))
            .collect()
    };
    assert!(
        auths(&a).iter().all(|h| *h == basic("alice", URL_PASSWORD)),
        "{:?}",
        auths(&a)
    );
    assert!(
        auths(&b).iter().all(|h| *h == basic("bob", NETRC_PASSWORD)),
        "{:?}",
        auths(&b)
    );
    assert!(
        auths(&c).iter().all(|h| *h == format!("Bearer {TOKEN}")),
        "{:?}",
        auths(&c)
    );
    assert!(!auths(&a).is_empty() && !auths(&b).is_empty() && !auths(&c).is_empty());

    // Errors, each of which logs and answers something: a path no upstream
    // has (the dead one refuses, the others 404), a wrong credential (a new
    // narbor with a wrong password in a's URL), an unreachable upstream.
    let mut answers = Vec::new();
    let missing = "/0000000000000000000000000000000a.narinfo";
    let r = narbor.get(missing);
    answers.push(String::from_utf8_lossy(&r.body).into_owned());
    for page in [
        "/",
        "/status",
        "/status.json",
        "/_status",
        "/metrics",
        "/health",
        "/nix-cache-info",
    ] {
        let r = narbor.get(page);
        assert_eq!(r.status, 200, "{page}");
        answers.push(String::from_utf8_lossy(&r.body).into_owned());
    }
    let status = narbor.get("/status.json");
    let shown = String::from_utf8_lossy(&status.body).into_owned();
    assert!(
        shown.contains(&format!("http://{}/mycache", a.addr)),
        "the upstreams are shown, without credentials: {shown}"
    );
    let wrong = NarborServer::start(
        &dir.path().join("cache-wrong"),
        &[
            "--upstream",
            &format!("http://alice:{DEAD_PASSWORD}@{}/mycache", a.addr),
            "--upstream",
            &format!("http://carol:{DEAD_PASSWORD}@127.0.0.1:{dead_port}"),
        ],
    );
    for p in [
        format!(
            "/{}.narinfo",
            &f.paths[0].file_name().unwrap().to_string_lossy()[..32]
        ),
        missing.to_owned(),
    ] {
        let r = wrong.get(&p);
        assert!(r.status >= 400, "{p}: {}", r.status);
        answers.push(String::from_utf8_lossy(&r.body).into_owned());
    }
    answers.push(String::from_utf8_lossy(&wrong.get("/status.json").body).into_owned());
    answers.push(String::from_utf8_lossy(&wrong.get("/metrics").body).into_owned());
    // Config errors and check-config name files and hosts, not secrets.
    let config = dir.path().join("narbor.toml");
    std::fs::write(
        &config,
        format!(
            "upstreams = [\"{}\"]\nnetrc-file = \"{}\"\nupstream-token-files = [\"127.0.0.2={}\"]\n",
            upstreams[1],
            netrc.display(),
            token.display()
        ),
    )
    .unwrap();
    let out = run_ok(crate::support::narbor().arg("check-config").arg(&config));
    answers.push(stdout_str(&out));
    for bad in [
        vec![
            "--upstream".to_owned(),
            format!("ftp://alice:{URL_PASSWORD}@x"),
        ],
        vec!["--netrc-file".to_owned(), "/nonexistent/netrc".to_owned()],
        vec![
            "--upstream-token-file".to_owned(),
            format!("127.0.0.2={}", dir.path().join("none").display()),
        ],
    ] {
        let out = run_fails(
            crate::support::narbor()
                .args(["serve", "--cache-dir"])
                .arg(dir.path().join("x"))
                .args(&bad),
        );
        answers.push(stderr_str(&out));
    }
    answers.push(narbor.log_text());
    answers.push(wrong.log_text());
    assert!(
        wrong.log_text().contains("401") || wrong.log_text().contains("answered 401"),
        "the wrong credential was refused: {}",
        wrong.log_text()
    );
    for text in &answers {
        for secret in spellings() {
            assert!(!text.contains(&secret), "{secret:?} shown in:\n{text}");
        }
    }
}
