//! Where a missing object can come from: an ordered [`Chain`] of sources,
//! each a small type behind the one [`Source`] interface.
//!
//! The local store is in front of the chain (the cache itself, `cache.rs`);
//! after it come, in order, the `--oci` registry ([`registry`]) and the
//! upstream caches ([`upstream`]); a shared tier or peers go between the two
//! as sources of their own. A fill asks the chain, and the chain asks each
//! source in turn until one has the object: a source that answers "not
//! here" passes the question on, one that fails is remembered, and the
//! chain's answer is the first object found, else the failure (if any
//! source failed), else "not found".
//!
//! A source fetches and names; it does not store, coalesce or verify: the
//! fills do (`documents.rs`, `nar_fill.rs`, `verify.rs`).

pub(crate) mod registry;
pub(crate) mod upstream;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use narbor_proto::{CacheUrl, NarInfo};

use crate::nar_fill::OpenedNar;
use crate::upstream::UpstreamError;

/// A source's answer.
pub(crate) enum Found<T> {
    /// Here it is; `upstream` is the upstream it came from, when it did (for
    /// the metrics).
    Yes { value: T, upstream: Option<usize> },
    /// Not in this source.
    No,
    /// The source failed to say.
    Failed(UpstreamError),
}

/// A document as a source fetched it, before the fill checks it.
pub(crate) struct Fetched {
    pub body: Bytes,
    pub upstream: Option<usize>,
}

/// One place objects may come from.
pub(crate) trait Source: Send + Sync {
    /// A document the source publishes and holds in memory, authoritative
    /// for its path: served before the store (the `--oci` index's narinfos).
    fn published(&self, _url: &CacheUrl) -> Option<Bytes> {
        None
    }

    /// The name narbor serves a NAR under, for a NAR name only this source
    /// can read (nixcache-oci's `nar/<store hash>.nar.xz`).
    fn rename(&self, _url: &CacheUrl) -> Option<CacheUrl> {
        None
    }

    /// Whether asking the source for `url` (store key `key`) may find it:
    /// false when it surely cannot (no upstreams; a registry whose index
    /// does not name the NAR), so a miss is answered without a fill.
    fn may_have(&self, url: &CacheUrl, key: &str) -> bool;

    /// A document (narinfo, listing, log, realisation, build trace, debug
    /// info), fetched whole.
    fn document<'a>(&'a self, url: &'a CacheUrl) -> BoxFuture<'a, Found<Fetched>>;

    /// The narinfo to serve for one this source returned (checked already):
    /// its NAR named as narbor serves it.
    fn serve_narinfo(
        &self,
        _upstream: Option<usize>,
        _info: &NarInfo,
        text: &str,
    ) -> Result<String, String> {
        Ok(text.to_owned())
    }

    /// A NAR's response, with how to check it.
    fn open_nar<'a>(&'a self, url: &'a CacheUrl, key: &'a str) -> BoxFuture<'a, Found<OpenedNar>>;

    /// Whether the source has a NAR, and its length when known (HEAD).
    fn head_nar<'a>(&'a self, url: &'a CacheUrl, key: &'a str)
        -> BoxFuture<'a, Found<Option<u64>>>;
}

/// The sources behind the store, in the order they are asked.
pub(crate) struct Chain {
    sources: Vec<Box<dyn Source>>,
}

impl Chain {
    pub fn new(sources: Vec<Box<dyn Source>>) -> Chain {
        Chain { sources }
    }

    /// The first published copy of `url`.
    pub fn published(&self, url: &CacheUrl) -> Option<Bytes> {
        self.sources.iter().find_map(|s| s.published(url))
    }

    /// The name narbor serves `url` under, if a source renames it.
    pub fn rename(&self, url: &CacheUrl) -> Option<CacheUrl> {
        self.sources.iter().find_map(|s| s.rename(url))
    }

    /// Whether any source may have `url`.
    pub fn may_have(&self, url: &CacheUrl, key: &str) -> bool {
        self.sources.iter().any(|s| s.may_have(url, key))
    }

    /// The first source that has the document, and which one it was.
    pub async fn document(&self, url: &CacheUrl) -> (Found<Fetched>, Option<&dyn Source>) {
        let mut failure = None;
        for s in &self.sources {
            match s.document(url).await {
                Found::Yes { value, upstream } => {
                    return (Found::Yes { value, upstream }, Some(s.as_ref()))
                }
                Found::No => {}
                Found::Failed(e) => failure = Some(e),
            }
        }
        (failure.map_or(Found::No, Found::Failed), None)
    }

    /// The first source that has the NAR.
    pub async fn open_nar(&self, url: &CacheUrl, key: &str) -> Found<OpenedNar> {
        self.first(|s| s.open_nar(url, key)).await
    }

    /// The first source that has the NAR, and its length (HEAD).
    pub async fn head_nar(&self, url: &CacheUrl, key: &str) -> Found<Option<u64>> {
        self.first(|s| s.head_nar(url, key)).await
    }

    async fn first<'a, T>(
        &'a self,
        ask: impl Fn(&'a dyn Source) -> BoxFuture<'a, Found<T>>,
    ) -> Found<T> {
        let mut failure = None;
        for s in &self.sources {
            match ask(s.as_ref()).await {
                Found::No => {}
                Found::Failed(e) => failure = Some(e),
                yes => return yes,
            }
        }
        failure.map_or(Found::No, Found::Failed)
    }
}
