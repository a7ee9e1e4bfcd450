//! Which paths upstream caches already have: concurrent `HEAD <hash>.narinfo`.
//!
//! An upstream that cannot be reached or answers anything but 200 or 404 is
//! treated as not having the path (with one warning per upstream): pushing a
//! path too many is harmless, skipping one the cache needs is not.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
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
                    match self.http.head(&url).send().await {
                        Ok(r) if r.status().as_u16() == 200 => return Some(*h),
                        Ok(r) if r.status().as_u16() == 404 => {}
                        other => {
                            if warned.lock().map(|mut w| w.insert(u.clone())).unwrap_or(false) {
                                let why = match other {
                                    Ok(r) => format!("answered {}", r.status()),
                                    Err(e) => format!("unreachable: {}", e.without_url()),
                                };
                                tracing::warn!(upstream = %u, "upstream {why}; its paths are pushed too");
                            }
                        }
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
