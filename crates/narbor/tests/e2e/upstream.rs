//! A test upstream: serves a directory over HTTP/1.1, counts requests per path,
//! and misbehaves on demand, per path, in the ways real upstreams do.
//!
//! This is the test double the real thing cannot be: a server that dies
//! halfway through a NAR when asked to.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the upstream misbehaves for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flip one byte in the middle of the body.
    WrongBytes,
    /// Promise the full Content-Length, send half, close cleanly.
    CutShort,
    /// Send half, then reset the connection (RST).
    Reset,
    /// Answer 500.
    ServerError,
    /// Answer with this status (429 and 503 carry `Retry-After: 1`).
    Status(u16),
    /// Redirect to the same path, forever.
    RedirectLoop,
    /// A response head with a 1 MiB header.
    HugeHeaders,
    /// Send the body one byte every 20 ms.
    Drip,
    /// Send the head and half the body, then nothing for 10 minutes.
    Stall,
}

#[derive(Default)]
struct State {
    requests: HashMap<String, usize>,
    /// The header lines of every request, in arrival order.
    heads: Vec<Vec<String>>,
    faults: HashMap<String, Fault>,
    /// Bytes per second for bodies (0: as fast as possible).
    rate: u64,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub root: PathBuf,
    state: Arc<Mutex<State>>,
    stopped: Arc<AtomicBool>,
    /// The accept loop; it ends, dropping the listener, once `stopped`.
    accept: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Upstream {
    /// Serves `root` on a free loopback port.
    pub fn start(root: PathBuf) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test upstream");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (st, stop, dir) = (Arc::clone(&state), Arc::clone(&stopped), root.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return; // dropping the listener closes the port
                }
                let Ok(conn) = conn else { continue };
                let (st, dir, stop) = (Arc::clone(&st), dir.clone(), Arc::clone(&stop));
                std::thread::spawn(move || serve_connection(conn, &dir, &st, &stop));
            }
        });
        Upstream {
            addr,
            root,
            state,
            stopped,
            accept: Mutex::new(Some(accept)),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen for `path` (e.g. `nar/xxx.nar`), any method.
    pub fn requests(&self, path: &str) -> usize {
        let st = self.state.lock().unwrap();
        st.requests
            .get(path.trim_start_matches('/'))
            .copied()
            .unwrap_or(0)
    }

    /// The header lines of every request so far.
    pub fn request_heads(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().heads.clone()
    }

    pub fn total_requests(&self) -> usize {
        self.state.lock().unwrap().requests.values().sum()
    }

    pub fn set_fault(&self, path: &str, fault: Option<Fault>) {
        let mut st = self.state.lock().unwrap();
        let key = path.trim_start_matches('/').to_owned();
        match fault {
            Some(f) => st.faults.insert(key, f),
            None => st.faults.remove(&key),
        };
    }

    /// Limits body bytes per second per connection (0: unlimited).
    pub fn set_rate(&self, bytes_per_second: u64) {
        self.state.lock().unwrap().rate = bytes_per_second;
    }

    /// Stops accepting connections and closes the port.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.join().expect("the accept loop");
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_connection(
    conn: TcpStream,
    root: &std::path::Path,
    state: &Mutex<State>,
    stopped: &AtomicBool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut conn = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        state.lock().unwrap().heads.push(head);
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts
            .next()
            .unwrap_or("/")
            .trim_start_matches('/')
            .to_owned();
        let (fault, rate) = {
            let mut st = state.lock().unwrap();
            *st.requests.entry(path.clone()).or_default() += 1;
            (st.faults.get(&path).copied(), st.rate)
        };
        let file = root.join(&path);
        let safe = !path.contains("..") && file.is_file();
        match fault {
            Some(Fault::ServerError) => {
                let _ = conn
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            Some(Fault::Status(code)) => {
                let retry = if code == 429 || code == 503 {
                    "Retry-After: 1\r\n"
                } else {
                    ""
                };
                let head = format!("HTTP/1.1 {code} Fault\r\n{retry}Content-Length: 0\r\n\r\n");
                let _ = conn.write_all(head.as_bytes());
                continue;
            }
            Some(Fault::RedirectLoop) => {
                let head =
                    format!("HTTP/1.1 302 Found\r\nLocation: /{path}\r\nContent-Length: 0\r\n\r\n");
                let _ = conn.write_all(head.as_bytes());
                continue;
            }
            Some(Fault::HugeHeaders) => {
                let big = "x".repeat(1 << 20);
                let head = format!("HTTP/1.1 200 OK\r\nX-Huge: {big}\r\nContent-Length: 0\r\n\r\n");
                let _ = conn.write_all(head.as_bytes());
                return;
            }
            _ => {}
        }
        if !safe {
            let _ =
                conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n");
            continue;
        }
        let mut body = std::fs::read(&file).expect("read upstream file");
        let len = body.len();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\n\r\n");
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method == "HEAD" {
            continue;
        }
        let send_len = match fault {
            Some(Fault::WrongBytes) => {
                body[len / 2] ^= 0xff;
                len
            }
            Some(Fault::CutShort) | Some(Fault::Reset) | Some(Fault::Stall) => len / 2,
            _ => len,
        };
        let sent = if fault == Some(Fault::Drip) {
            send_drip(&mut conn, &body[..send_len], stopped)
        } else {
            send_body(&mut conn, &body[..send_len], rate)
        };
        if sent.is_err() {
            return;
        }
        if fault == Some(Fault::Stall) {
            for _ in 0..600 {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            return;
        }
        match fault {
            Some(Fault::CutShort) => {
                let _ = conn.shutdown(std::net::Shutdown::Both);
                return;
            }
            Some(Fault::Reset) => {
                let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
                return; // dropping with linger 0 sends RST
            }
            _ => {}
        }
    }
}

fn send_drip(conn: &mut TcpStream, body: &[u8], stopped: &AtomicBool) -> std::io::Result<()> {
    for b in body {
        if stopped.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("stopped"));
        }
        conn.write_all(std::slice::from_ref(b))?;
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn send_body(conn: &mut TcpStream, body: &[u8], rate: u64) -> std::io::Result<()> {
    if rate == 0 {
        return conn.write_all(body);
    }
    // 20 slices a second.
    let slice = (rate / 20).max(1) as usize;
    for chunk in body.chunks(slice) {
        conn.write_all(chunk)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A response as a raw HTTP/1.1 client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The body arrived in full (as long as Content-Length said, and the
    /// connection was not cut).
    pub complete: bool,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn cache_status(&self) -> &str {
        self.header("x-cache-status").unwrap_or("")
    }
}

/// One request on a fresh connection; reads until the server closes it.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> Reply {
    try_request(addr, method, path, extra_headers)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Like [`request`], but a refused connection or a response cut before its
/// head is an error instead of a panic.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    let read_ok = conn.read_to_end(&mut raw).is_ok();
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(format!("no response head ({} bytes)", raw.len()));
    }
    Ok(parse_reply(&raw, method == "HEAD", read_ok))
}

fn parse_reply(raw: &[u8], head: bool, read_ok: bool) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head_text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let complete = if head {
        body.is_empty()
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().unwrap();
        read_ok && body.len() == len
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        match dechunk(&body) {
            Some(b) => {
                body = b;
                read_ok
            }
            None => false,
        }
    } else {
        read_ok
    };
    Reply {
        status,
        headers,
        body,
        complete,
    }
}

/// Decodes a chunked body; None unless it ends with the final zero chunk.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).ok()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if raw.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}
