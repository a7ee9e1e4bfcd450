//! The client's behaviour where a real registry cannot misbehave on demand:
//! 503/429 with `Retry-After`, tag pagination, basic auth on a challenge,
//! and redirects to another host that must not receive the credentials.
//! (Everything else is tested against a real docker-registry in the e2e suite.)

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Credentials, Digest, RegistryClient, RetryPolicy, StoreRef};

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;
type Handler =
    dyn Fn(usize, &str, Option<&str>) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync;

/// A one-request-per-connection HTTP server; records (request line, Authorization).
fn serve(handler: Arc<Handler>) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut auth = None;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = Some(v.trim().to_owned());
                    }
                }
            }
            let n = {
                let mut s = s.lock().unwrap();
                s.push((line.trim().to_owned(), auth.clone()));
                s.len()
            };
            let (status, headers, body) = handler(n, line.trim(), auth.as_deref());
            let mut resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("\r\n");
            let _ = conn.write_all(resp.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    (addr, seen)
}

fn fast_client(addr: SocketAddr, creds: Option<Credentials>) -> RegistryClient {
    let store = StoreRef::parse(&format!("oci+http://{addr}/r")).unwrap();
    RegistryClient::new(store, creds)
        .unwrap()
        .with_retry(RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(50),
        })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn retries_503_and_429_then_follows_tag_pages() {
    let (addr, seen) = serve(Arc::new(|n, line, _| match n {
        1 => (503, vec![("Retry-After".into(), "0".into())], vec![]),
        2 => (429, vec![("Retry-After".into(), "0".into())], vec![]),
        _ if line.contains("last=a") => (200, vec![], br#"{"name":"r","tags":["b"]}"#.to_vec()),
        _ => (
            200,
            vec![(
                "Link".into(),
                r#"</v2/r/tags/list?last=a&n=1000>; rel="next""#.into(),
            )],
            br#"{"name":"r","tags":["a"]}"#.to_vec(),
        ),
    }));
    let c = fast_client(addr, None);
    let tags = rt().block_on(c.list_tags()).unwrap();
    assert_eq!(tags, vec!["a", "b"]);
    assert_eq!(seen.lock().unwrap().len(), 4);
    assert_eq!(
        c.stats().retries.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[test]
fn gives_up_after_the_attempts_with_a_clear_error() {
    let (addr, seen) = serve(Arc::new(|_, _, _| (502, vec![], vec![])));
    let c = fast_client(addr, None);
    let err = rt().block_on(c.list_tags()).unwrap_err().to_string();
    assert!(err.contains("502"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[test]
fn redirects_to_another_host_never_carry_the_credentials() {
    let data = b"nar bytes".to_vec();
    let digest = Digest::of(&data);
    let d2 = data.clone();
    let (storage, storage_seen) = serve(Arc::new(move |_, _, _| (200, vec![], d2.clone())));
    let storage_seen_after = {
        let s = Arc::clone(&storage_seen);
        move || s.lock().unwrap().len()
    };
    let (addr, seen) = serve(Arc::new(move |_, _, auth| match auth {
        None => (
            401,
            vec![("WWW-Authenticate".into(), r#"Basic realm="test""#.into())],
            vec![],
        ),
        Some(_) => (
            307,
            vec![(
                "Location".into(),
                format!("http://{storage}/bucket/blob?sig=x"),
            )],
            vec![],
        ),
    }));
    let c = fast_client(addr, Some(Credentials::new("alice", "s3cret")));
    let got = rt().block_on(c.get_blob_bytes(&digest, 1024)).unwrap();
    assert_eq!(&got[..], &data[..]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1]
        .1
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic ")));
    let storage_seen = storage_seen.lock().unwrap();
    assert_eq!(storage_seen.len(), 1);
    assert_eq!(
        storage_seen[0].1, None,
        "the storage host got no Authorization header"
    );
    drop((seen, storage_seen));
    // And a HEAD says present without following the redirect.
    assert!(rt().block_on(c.blob_exists(&digest)).unwrap());
    assert_eq!(storage_seen_after(), 1);
}

#[test]
fn basic_auth_without_credentials_names_the_variables() {
    let (addr, _) = serve(Arc::new(|_, _, _| {
        (
            401,
            vec![("WWW-Authenticate".into(), r#"Basic realm="x""#.into())],
            vec![],
        )
    }));
    let c = fast_client(addr, None);
    let err = rt().block_on(c.list_tags()).unwrap_err().to_string();
    assert!(err.contains("NARBOR_REGISTRY_USERNAME"), "{err}");
}

/// `serve --oci` refreshes in a spawned task and streams blobs from handlers:
/// the futures must be `Send` and the reader and index shareable.
#[test]
fn reader_and_client_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<crate::IndexReader>();
    send_sync::<crate::CacheIndex>();
    send_sync::<RegistryClient>();
    let c = Arc::new(fast_client("127.0.0.1:9".parse().unwrap(), None));
    let mut reader = crate::IndexReader::new(Arc::clone(&c));
    send(&reader.refresh());
    let d = Digest::of(b"");
    send(&c.get_blob(&d, Some("bytes=0-")));
}
