//! A scriptable HTTP/1.1 server for the interop tests: each test gives it a
//! function from request to response that lays a real Nix-made cache out
//! the way another cache server does (its URL scheme, headers, redirects,
//! encodings), as read from that server's source, cited where the function
//! is written. It records every request it gets.
//!
//! Bodies can be whole (with `Content-Length`), chunked, or close-delimited
//! (HTTP/1.0 style: no length, the end is the connection's close), and can be
//! cut short on purpose: the faults a test asks for.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the double saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// The request target: path and query, as sent.
    pub target: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a body goes out.
#[derive(Debug, Clone)]
pub enum Body {
    /// With `Content-Length`.
    Full(Vec<u8>),
    /// `Transfer-Encoding: chunked`, one chunk each.
    Chunked(Vec<Vec<u8>>),
    /// No length: the end of the body is the close of the connection.
    UntilClose(Vec<u8>),
    /// `Content-Length` of the whole, then only `sent` bytes and a close.
    CutAfter { whole: Vec<u8>, sent: usize },
    /// Chunked, then the connection closes before the last (zero) chunk.
    ChunkedCut(Vec<Vec<u8>>),
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Resp {
    pub fn ok(content_type: &str, body: Vec<u8>) -> Resp {
        Resp {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Full(body),
        }
    }

    pub fn status(status: u16, text: &str) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: Body::Full(text.as_bytes().to_vec()),
        }
    }

    pub fn redirect(status: u16, location: &str) -> Resp {
        Resp {
            status,
            headers: vec![("Location".into(), location.into())],
            body: Body::Full(Vec::new()),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Resp {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: Body) -> Resp {
        self.body = body;
        self
    }
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// A running double; stops accepting when dropped.
pub struct Double {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Req>>>,
    stopped: Arc<AtomicBool>,
}

impl Double {
    /// Serves `handler` on a free port of `ip` (127.0.0.1 unless a test
    /// needs another loopback address, as a different host).
    pub fn start_on(ip: &str, handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Double {
        let listener = TcpListener::bind((ip, 0)).expect("bind the test double");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (l, s) = (Arc::clone(&log), Arc::clone(&stopped));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (h, l) = (Arc::clone(&handler), Arc::clone(&l));
                std::thread::spawn(move || serve(conn, &*h, &l));
            }
        });
        Double { addr, log, stopped }
    }

    pub fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Double {
        Self::start_on("127.0.0.1", handler)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    /// Requests whose target starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| r.target.starts_with(prefix))
            .collect()
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<Req>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("/").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let req = Req {
            method,
            target,
            headers,
        };
        log.lock().unwrap().push(req.clone());
        let client_closes = req
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let resp = handler(&req);
        let head_only = req.method == "HEAD";
        let mut head = format!("HTTP/1.1 {} X\r\n", resp.status);
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let framed_to_stay_open = match &resp.body {
            Body::Full(b) => {
                head.push_str(&format!("Content-Length: {}\r\n", b.len()));
                true
            }
            Body::CutAfter { whole, .. } => {
                head.push_str(&format!("Content-Length: {}\r\n", whole.len()));
                false
            }
            Body::Chunked(_) => {
                head.push_str("Transfer-Encoding: chunked\r\n");
                true
            }
            Body::ChunkedCut(_) => {
                head.push_str("Transfer-Encoding: chunked\r\n");
                false
            }
            Body::UntilClose(_) => {
                head.push_str("Connection: close\r\n");
                false
            }
        };
        let keep_open = framed_to_stay_open && !client_closes;
        head.push_str("\r\n");
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        if head_only {
            if keep_open {
                continue;
            }
            return;
        }
        let sent = match resp.body {
            Body::Full(b) | Body::UntilClose(b) => conn.write_all(&b),
            Body::CutAfter { whole, sent } => conn.write_all(&whole[..sent.min(whole.len())]),
            Body::Chunked(chunks) => write_chunks(&mut conn, &chunks, true),
            Body::ChunkedCut(chunks) => write_chunks(&mut conn, &chunks, false),
        };
        if sent.is_err() || !keep_open {
            let _ = conn.flush();
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

fn write_chunks(conn: &mut TcpStream, chunks: &[Vec<u8>], finish: bool) -> std::io::Result<()> {
    for c in chunks {
        if c.is_empty() {
            continue;
        }
        conn.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
        conn.write_all(c)?;
        conn.write_all(b"\r\n")?;
    }
    if finish {
        conn.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}
