//! Every outcome's status: client mistakes are 4xx with a reason, failures
//! of an upstream 502, of the store 500, and a 5xx body says nothing more
//! than its kind.

use reqwest::Method;

use super::{config, nar, Answer, Harness, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_are_4xx_with_a_reason() {
    let up = Upstream::start().await;
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    let cases = [
        ("/NOTAHASH0000000000000000000000000.narinfo", 400),
        ("/nar/short.nar", 400),
        ("/build-trace-v2/x/out.doi", 400),
        ("/debuginfo/NOT-HEX", 404),
        ("/etc/passwd", 404),
        ("/favicon.ico", 404),
    ];
    for (path, status) in cases {
        let r = h.get(path).await;
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.cache, "LOCAL", "{path}");
    }
    assert_eq!(up.requests(""), 0);
    let r = h.request(Method::POST, "/nix-cache-info", &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, HEAD");
    let r = h.request(Method::GET, "/_refresh", &[]).await;
    assert_eq!(
        (r.status, &r.headers["allow"]),
        (405, &"POST".parse().unwrap())
    );
    let r = h.request(Method::POST, "/_refresh", &[]).await;
    assert_eq!(r.status, 404, "no --oci");
    assert_eq!(h.get("/public-key").await.status, 404, "no key configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_outside_a_stored_nar_is_416_with_its_length() {
    let up = Upstream::start().await;
    let (path, bytes) = nar(30, 1000);
    up.set(&path, Answer::Ok(bytes.clone()));
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    assert_eq!(h.get(&format!("/{path}")).await.status, 200);
    let r = h
        .request(
            Method::GET,
            &format!("/{path}"),
            &[("Range", "bytes=5000-")],
        )
        .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.headers["content-range"], "bytes */1000");
    let r = h
        .request(
            Method::GET,
            &format!("/{path}"),
            &[("Range", "bytes=10-19")],
        )
        .await;
    assert_eq!((r.status, r.body.as_deref()), (206, Some(&bytes[10..20])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failure_is_a_502_whose_body_names_nobody() {
    let up = Upstream::start().await;
    let (path, _) = nar(31, 10);
    up.set(&path, Answer::Status(500));
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    let r = h.get(&format!("/{path}")).await;
    assert_eq!((r.status, r.cache.as_str()), (502, "ERROR"));
    let body = String::from_utf8(r.body.unwrap().to_vec()).unwrap();
    assert_eq!(body, "upstream failed\n");
    let info = "0123456789abcdfghijklmnpqrsvwxyz.narinfo";
    up.set(info, Answer::Status(500));
    assert_eq!(h.get(&format!("/{info}")).await.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_nar_the_store_cannot_open_is_the_stores_500_not_an_upstreams_502() {
    let up = Upstream::start().await;
    let (path, bytes) = nar(32, 1000);
    up.set(&path, Answer::Ok(bytes));
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    assert_eq!(h.get(&format!("/{path}")).await.status, 200);
    // The file cannot be opened (here a symlink loop, ELOOP: as root no
    // permission stops an open; EMFILE and EACCES are the same kind of
    // failure): narbor's own, said as such, with no path in the body. (A
    // file simply gone is a miss: the store drops its entry and the NAR is
    // fetched again.)
    let name = path.rsplit('/').next().unwrap();
    let file = h.dir.path().join("cache/blobs").join(&name[..2]).join(name);
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(name, &file).unwrap();
    let r = h.get(&format!("/{path}")).await;
    assert_eq!((r.status, r.cache.as_str()), (500, "ERROR"));
    assert_eq!(r.body.as_deref(), Some(&b"the cache's store failed\n"[..]));
}

/// A client that never finishes its request head is cut after
/// `HEADER_TIMEOUT` (slowloris), while the others are served. On paused
/// time: the timeout elapses as soon as everything else waits.
#[tokio::test(start_paused = true)]
async fn a_request_head_that_never_ends_is_cut_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start().await;
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    let mut slow = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    slow.write_all(b"GET /nix-cache-info HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    assert_eq!(h.get("/health").await.status, 200, "the others are served");
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 512];
    // EOF, or an error response and then EOF: either way the server ends it.
    loop {
        match slow.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= crate::HEADER_TIMEOUT - std::time::Duration::from_secs(1)
            && waited <= crate::HEADER_TIMEOUT + std::time::Duration::from_secs(1),
        "cut after {waited:?}"
    );
}
