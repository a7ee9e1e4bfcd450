//! A request's cache life before any source is asked: what the store (and
//! a source's published copy, and the negative cache) say about the object.
//! After this, a fill (documents.rs, nar_fill.rs) decides the rest.
//!
//! | life | means | answered |
//! |---|---|---|
//! | `Published` | a source holds it, authoritative (`--oci` index narinfos) | `HIT` |
//! | `Fresh` | stored, younger than `narinfo-ttl` | `HIT` |
//! | `Expired` | stored, older: asked for again, served `STALE` if that fails | fill |
//! | `Negative` | every source said 404 within `negative-ttl` | `404 NEGATIVE` |
//! | `Miss` | not stored | fill, or `404 MISS` when no source may have it |

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use narbor_proto::CacheUrl;
use narbor_store::Document;

use crate::app::Server;

/// What the cache knows of a document.
pub(crate) enum DocLife {
    Published(Bytes),
    Fresh(Document),
    Expired(Document),
    Negative,
    Miss,
}

/// Keys every source answered 404 for, until when.
pub(crate) struct NegativeCache {
    map: Mutex<HashMap<String, SystemTime>>,
    ttl: Duration,
}

/// The most keys remembered before the expired ones are dropped.
const NEGATIVE_ENTRIES: usize = 100_000;

impl NegativeCache {
    pub fn new(ttl: Duration) -> NegativeCache {
        NegativeCache {
            map: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Whether `key` was not found less than the TTL before `now`.
    pub fn contains(&self, key: &str, now: SystemTime) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some(expiry) if *expiry > now => true,
            Some(_) => {
                map.remove(key);
                false
            }
            None => false,
        }
    }

    pub fn remember(&self, key: &str, now: SystemTime) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= NEGATIVE_ENTRIES {
            map.retain(|_, expiry| *expiry > now);
        }
        map.insert(key.to_owned(), now + self.ttl);
    }
}

impl Server {
    /// One round of the store's upkeep: write the access times held in
    /// memory, and evict what nobody asked for in `inactive` (by this
    /// server's clock). Returns how many objects were evicted.
    pub async fn upkeep(&self) -> Result<usize, String> {
        let store = std::sync::Arc::clone(&self.store);
        let cutoff = self.clock.now().checked_sub(self.config.inactive);
        let result = tokio::task::spawn_blocking(move || {
            store.flush_access_times()?;
            match cutoff {
                Some(cutoff) => store.evict_inactive(cutoff).map(|e| e.len()),
                None => Ok(0),
            }
        })
        .await;
        match result {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the upkeep task failed: {e}")),
        }
    }

    /// The cache life of document `url` (stored under `key`). A store that
    /// cannot be read is logged and counts as a miss: the sources still have
    /// the document.
    pub(crate) fn document_life(&self, url: &CacheUrl, key: &str) -> DocLife {
        if let Some(body) = self.chain.published(url) {
            return DocLife::Published(body);
        }
        let stored = self.store.get_document(key).unwrap_or_else(|e| {
            tracing::error!(%key, "store read failed: {e}");
            None
        });
        match stored {
            Some(doc) if self.is_fresh(doc.stored_at) => DocLife::Fresh(doc),
            _ if self.is_negative(key) => DocLife::Negative,
            Some(doc) => DocLife::Expired(doc),
            None => DocLife::Miss,
        }
    }

    /// Is a stored document young enough to serve without asking again?
    /// Always, when no source could be asked.
    pub(crate) fn is_fresh(&self, stored_at: SystemTime) -> bool {
        self.upstreams.is_empty() || self.clock.since(stored_at) < self.config.narinfo_ttl
    }

    pub(crate) fn is_negative(&self, key: &str) -> bool {
        self.negative.contains(key, self.clock.now())
    }

    pub(crate) fn remember_not_found(&self, key: &str) {
        self.negative.remember(key, self.clock.now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_negative_cache_forgets_after_its_ttl_and_not_at_all_with_zero() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let n = NegativeCache::new(Duration::from_secs(60));
        n.remember("a", t0);
        assert!(n.contains("a", t0 + Duration::from_secs(59)));
        assert!(!n.contains("a", t0 + Duration::from_secs(60)));
        assert!(!n.contains("a", t0), "forgotten once expired");
        let off = NegativeCache::new(Duration::ZERO);
        off.remember("a", t0);
        assert!(!off.contains("a", t0));
    }
}
