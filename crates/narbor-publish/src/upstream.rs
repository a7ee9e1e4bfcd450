//! Which paths upstream caches already have: concurrent `HEAD <hash>.narinfo`.
//!
//! A status means what it means to Nix and to narbor's own upstream client
//! ([`Presence::of_status`]: 404, 410 and S3's 403 are "not there"). An
//! upstream that cannot be reached or answers anything else is treated as
//! not having the path (with one warning per upstream): pushing a path too
//! many is harmless, skipping one the cache needs is not.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use narbor_proto::http_status::Presence;
use narbor_proto::StorePathHash;

/// Asks upstream caches for narinfos.
pub struct UpstreamCheck {
    http: reqwest::Client,
    upstreams: Vec<String>,
}

const CONCURRENCY: usize = 32;

impl UpstreamCheck {
    pub fn new(upstreams: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        UpstreamCheck {
            http,
            upstreams: upstreams
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
        }
    }

    /// The hashes some upstream has.
    pub async fn present(&self, hashes: &[StorePathHash]) -> HashSet<StorePathHash> {
        if self.upstreams.is_empty() {
            return HashSet::new();
        }
        let warned = Mutex::new(HashSet::new());
        let found: Vec<Option<StorePathHash>> = futures_util::stream::iter(hashes.iter().map(|h| {
            let warned = &warned;
            async move {
                for u in &self.upstreams {
                    let url = format!("{u}/{h}.narinfo");
                    let why = match self.http.head(&url).send().await {
                        Ok(r) => match Presence::of_status(r.status().as_u16()) {
                            Presence::Present => return Some(*h),
                            Presence::Absent => continue,
                            Presence::Failed => format!("answered {}", r.status()),
                        },
                        Err(e) => format!("unreachable: {}", e.without_url()),
                    };
                    if warned.lock().map(|mut w| w.insert(u.clone())).unwrap_or(false) {
                        tracing::warn!(upstream = %u, "upstream {why}; its paths are pushed too");
                    }
                }
                None
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
        found.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    use super::*;

    /// An HTTP server answering `HEAD /<hash>.narinfo` with `status(hash)`.
    fn serve(status: impl Fn(&str) -> u16 + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = line.split(' ').nth(1).unwrap_or("");
                let hash = path.trim_start_matches('/').trim_end_matches(".narinfo");
                let _ = write!(
                    conn,
                    "HTTP/1.1 {} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    status(hash)
                );
            }
        });
        format!("http://{addr}")
    }

    /// A tracing writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The hashes `check` finds among `hashes`, and what it logged.
    fn present(check: &UpstreamCheck, hashes: &[StorePathHash]) -> (Vec<StorePathHash>, String) {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let found =
            tracing::subscriber::with_default(subscriber, || rt.block_on(check.present(hashes)));
        let mut found: Vec<_> = found.into_iter().collect();
        found.sort();
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        (found, text)
    }

    /// The regression: push's check warned that an upstream answering 403
    /// failed, where the server's upstream client (and Nix) read 403 as
    /// "not there". Both now read a status through `Presence::of_status`.
    #[test]
    fn absent_as_nix_reads_it_asks_the_next_upstream_without_a_warning() {
        let hashes: Vec<StorePathHash> = (1u8..=4).map(|i| StorePathHash([i; 20])).collect();
        let statuses: Vec<(String, u16)> = hashes
            .iter()
            .map(ToString::to_string)
            .zip([403, 404, 410, 500])
            .collect();
        let first = serve(move |h| statuses.iter().find(|(s, _)| s == h).unwrap().1);
        let second = serve(|_| 200);
        let check = UpstreamCheck::new(vec![first.clone(), second]);

        let (found, log) = present(&check, &hashes[..3]);
        assert_eq!(found, hashes[..3]);
        assert!(log.is_empty(), "warned: {log}");

        // Anything else is a failure, warned about; the next upstream is still asked.
        let (found, log) = present(&check, &hashes[3..]);
        assert_eq!(found, hashes[3..]);
        assert!(
            log.contains("answered 500") && log.contains(&first),
            "{log}"
        );
    }
}
