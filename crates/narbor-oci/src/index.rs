//! Reading the cache index: [`IndexReader`] keeps every fragment it has read
//! and refreshes incrementally into an immutable [`CacheIndex`] snapshot.
//!
//! A refresh lists the tags (one request when nothing changed: the fragment
//! tags are immutable, so a known tag needs no request; only nixcache-oci's
//! rewritable `cache-index` tag costs one HEAD more), fetches the manifests
//! and entries blobs of new tags only, forgets the tags that disappeared
//! (compacted by gc), and rebuilds the snapshot when anything changed: later
//! fragments (in tag order) win per store path, the legacy index loses to all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use narbor_proto::{NarInfo, StorePath, StorePathHash};

use crate::format::{EntriesDoc, LegacyIndex, MAX_ENTRIES_BLOB};
use crate::{
    is_fragment_tag, Digest, ImageManifest, OciError, RegistryClient, ENTRIES_MEDIA_TYPE,
    LEGACY_INDEX_MEDIA_TYPE, LEGACY_INDEX_TAG,
};

/// Where a NAR's bytes are: a blob of the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    /// Its size when the index says (narbor always does).
    pub size: Option<u64>,
}

/// One store path the cache has.
#[derive(Debug)]
pub struct IndexEntry {
    pub store_path: StorePath,
    /// The `.narinfo` document to serve, byte for byte as published.
    pub narinfo: Arc<str>,
    /// The narinfo's `URL`, without a leading `/` (e.g. `nar/<hash>.nar.zst`).
    pub nar_url: String,
    pub blob: BlobRef,
    /// When it was pushed (Unix seconds); None for nixcache-oci entries.
    pub pushed_at: Option<u64>,
    /// The hash parts of its references (for gc's closure).
    pub references: Vec<StorePathHash>,
}

/// One fragment (or the legacy index) as read.
#[derive(Debug)]
pub struct Fragment {
    pub tag: String,
    pub digest: Digest,
    pub manifest: ImageManifest,
    pub entries: Vec<Arc<IndexEntry>>,
    /// True for nixcache-oci's `cache-index`.
    pub legacy: bool,
}

/// The merged index: O(1) narinfo by store path hash, O(1) blob by NAR URL.
#[derive(Debug, Default)]
pub struct CacheIndex {
    by_hash: HashMap<StorePathHash, Arc<IndexEntry>>,
    by_url: HashMap<String, BlobRef>,
}

impl CacheIndex {
    /// Builds the index from entries in order of precedence (later wins).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a Arc<IndexEntry>>) -> Self {
        let mut by_hash = HashMap::new();
        for e in entries {
            by_hash.insert(*e.store_path.hash(), Arc::clone(e));
        }
        let by_url = by_hash
            .values()
            .map(|e: &Arc<IndexEntry>| (e.nar_url.clone(), e.blob))
            .collect();
        CacheIndex { by_hash, by_url }
    }

    /// The entry of a store path hash (what `GET /<hash>.narinfo` serves).
    pub fn get(&self, hash: &StorePathHash) -> Option<&Arc<IndexEntry>> {
        self.by_hash.get(hash)
    }

    /// The blob behind a NAR URL as a narinfo names it (`nar/<x>.nar.zst`;
    /// a leading `/` is ignored), or None.
    pub fn nar_blob(&self, url_path: &str) -> Option<BlobRef> {
        self.by_url.get(url_path.trim_start_matches('/')).copied()
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Arc<IndexEntry>> {
        self.by_hash.values()
    }

    /// The closure of `roots` through the entries' references (roots and
    /// references the index lacks are skipped).
    pub fn closure(&self, roots: &[StorePathHash]) -> HashSet<StorePathHash> {
        let mut seen = HashSet::new();
        let mut stack: Vec<StorePathHash> = roots.to_vec();
        while let Some(h) = stack.pop() {
            if !seen.insert(h) {
                continue;
            }
            if let Some(e) = self.by_hash.get(&h) {
                stack.extend(e.references.iter().filter(|r| !seen.contains(*r)).copied());
            }
        }
        seen
    }
}

/// What a refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Index tags listed (fragments and the legacy index).
    pub tags: usize,
    /// Fragments fetched this time (new tags, or a rewritten legacy index).
    pub fetched: usize,
    /// Fragments forgotten because their tag is gone.
    pub removed: usize,
    /// Entries in the index afterwards.
    pub entries: usize,
    /// True when the snapshot was rebuilt.
    pub changed: bool,
}

/// Reads a cache's index and keeps it fresh.
pub struct IndexReader {
    client: Arc<RegistryClient>,
    fragments: BTreeMap<String, Arc<Fragment>>,
    index: Arc<CacheIndex>,
}

/// Fragments fetched at once.
const FETCH_CONCURRENCY: usize = 8;

impl IndexReader {
    pub fn new(client: Arc<RegistryClient>) -> Self {
        IndexReader {
            client,
            fragments: BTreeMap::new(),
            index: Arc::new(CacheIndex::default()),
        }
    }

    pub fn client(&self) -> &Arc<RegistryClient> {
        &self.client
    }

    /// The current snapshot: cheap to clone, never changes under the holder.
    pub fn index(&self) -> Arc<CacheIndex> {
        Arc::clone(&self.index)
    }

    /// The fragments read, in precedence order (legacy first, then by tag).
    pub fn fragments(&self) -> impl Iterator<Item = &Arc<Fragment>> {
        self.fragments.values()
    }

    /// Brings the snapshot up to date. On error the previous snapshot stays.
    pub async fn refresh(&mut self) -> Result<RefreshStats, OciError> {
        let tags: Vec<String> = self
            .client
            .list_tags()
            .await?
            .into_iter()
            .filter(|t| is_fragment_tag(t) || t == LEGACY_INDEX_TAG)
            .collect();
        let mut stats = RefreshStats {
            tags: tags.len(),
            ..Default::default()
        };
        let mut to_fetch = Vec::new();
        for tag in &tags {
            match self.fragments.get(tag) {
                Some(f) if f.legacy => {
                    // The legacy tag is rewritten in place: compare digests.
                    if self.client.head_manifest(tag).await? != Some(f.digest) {
                        to_fetch.push(tag.clone());
                    }
                }
                Some(_) => {}
                None => to_fetch.push(tag.clone()),
            }
        }
        let wanted: HashSet<&String> = tags.iter().collect();
        let gone: Vec<String> = self
            .fragments
            .keys()
            .filter(|t| !wanted.contains(t))
            .cloned()
            .collect();
        let client = &self.client;
        let fetched: Vec<(String, Result<Option<Fragment>, OciError>)> =
            futures_util::stream::iter(to_fetch.into_iter().map(|tag| async move {
                let r = read_fragment(client, &tag).await;
                (tag, r)
            }))
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut new = Vec::new();
        for (tag, r) in fetched {
            match r? {
                Some(f) => new.push((tag, f)),
                // Deleted between the listing and the fetch.
                None => stats.removed += usize::from(self.fragments.contains_key(&tag)),
            }
        }
        // Nothing failed: apply.
        for t in &gone {
            self.fragments.remove(t);
        }
        stats.removed += gone.len();
        stats.fetched = new.len();
        for (tag, f) in new {
            self.fragments.insert(tag, Arc::new(f));
        }
        if stats.fetched > 0 || stats.removed > 0 {
            self.index = Arc::new(CacheIndex::from_entries(
                self.fragments.values().flat_map(|f| f.entries.iter()),
            ));
            stats.changed = true;
        }
        stats.entries = self.index.len();
        tracing::debug!(?stats, "index refreshed");
        Ok(stats)
    }
}

/// Reads one fragment (or the legacy index). None when the tag or its
/// entries blob is gone (a fragment being compacted away). A fragment that
/// is not valid is logged and read as empty, so one bad document cannot take
/// the cache down.
async fn read_fragment(client: &RegistryClient, tag: &str) -> Result<Option<Fragment>, OciError> {
    let Some((bytes, digest)) = client.get_manifest(tag).await? else {
        return Ok(None);
    };
    let what = format!("index tag {tag}");
    let manifest = match ImageManifest::parse(&bytes, &what) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an unreadable index manifest");
            return Ok(Some(empty_fragment(tag, digest, None)));
        }
    };
    let legacy = tag == LEGACY_INDEX_TAG;
    let want = if legacy {
        LEGACY_INDEX_MEDIA_TYPE
    } else {
        ENTRIES_MEDIA_TYPE
    };
    let Some(layer) = manifest
        .layers
        .iter()
        .find(|l| l.media_type == want)
        .cloned()
    else {
        tracing::warn!(tag, "ignoring an index manifest without a {want} layer");
        return Ok(Some(empty_fragment(tag, digest, Some(manifest))));
    };
    let blob = match client.get_blob_bytes(&layer.digest, MAX_ENTRIES_BLOB).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e @ OciError::Invalid { .. }) => {
            tracing::warn!(tag, error = %e, "ignoring an index fragment");
            return Ok(Some(empty_fragment(tag, digest, Some(manifest))));
        }
        Err(e) => return Err(e),
    };
    let entries = if legacy {
        parse_legacy(&blob, &what)
    } else {
        parse_entries(&blob, &what)
    };
    let entries = match entries {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an index fragment");
            Vec::new()
        }
    };
    Ok(Some(Fragment {
        tag: tag.to_owned(),
        digest,
        manifest,
        entries,
        legacy,
    }))
}

fn empty_fragment(tag: &str, digest: Digest, manifest: Option<ImageManifest>) -> Fragment {
    Fragment {
        tag: tag.to_owned(),
        digest,
        manifest: manifest.unwrap_or_else(|| ImageManifest {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            config: crate::Descriptor::empty(),
            layers: Vec::new(),
            annotations: Default::default(),
        }),
        entries: Vec::new(),
        legacy: tag == LEGACY_INDEX_TAG,
    }
}

/// A narbor entries blob. Entries whose narinfo does not parse or whose
/// `FileHash`/`FileSize` (when given) are not the blob's are skipped with a
/// warning: serving them would hand Nix bytes it must reject.
pub(crate) fn parse_entries(blob: &[u8], what: &str) -> Result<Vec<Arc<IndexEntry>>, OciError> {
    let doc: EntriesDoc =
        serde_json::from_slice(blob).map_err(|e| OciError::invalid(what, e.to_string()))?;
    if doc.version != 1 {
        return Err(OciError::invalid(
            what,
            format!("entries version {} is newer than this narbor", doc.version),
        ));
    }
    let mut out = Vec::with_capacity(doc.entries.len());
    for e in doc.entries {
        match entry(
            &e.narinfo,
            e.nar_digest,
            Some(e.blob_size),
            Some(e.pushed_at),
        ) {
            Ok(entry) if entry_consistent(&entry) => out.push(Arc::new(entry)),
            Ok(entry) => {
                tracing::warn!(what, path = %entry.store_path, "skipping an entry whose FileHash/FileSize do not match its blob")
            }
            Err(err) => tracing::warn!(what, error = %err, "skipping an entry"),
        }
    }
    Ok(out)
}

fn entry_consistent(e: &IndexEntry) -> bool {
    let Ok(info) = NarInfo::parse(&e.narinfo) else {
        return false;
    };
    info.file_hash.is_none_or(|h| h == e.blob.digest.0)
        && (info.file_size.is_none() || e.blob.size.is_none() || info.file_size == e.blob.size)
}

fn parse_legacy(blob: &[u8], what: &str) -> Result<Vec<Arc<IndexEntry>>, OciError> {
    let doc: LegacyIndex =
        serde_json::from_slice(blob).map_err(|e| OciError::invalid(what, e.to_string()))?;
    let mut out = Vec::with_capacity(doc.entries.len());
    for (key, e) in doc.entries {
        match entry(&e.narinfo, e.nar_digest, e.nar_size, None) {
            Ok(entry) if entry.store_path.hash().to_string() == key => out.push(Arc::new(entry)),
            Ok(_) => tracing::warn!(
                what,
                key,
                "skipping a legacy entry filed under another hash"
            ),
            Err(err) => tracing::warn!(what, key, error = %err, "skipping a legacy entry"),
        }
    }
    Ok(out)
}

fn entry(
    narinfo: &str,
    digest: Digest,
    size: Option<u64>,
    pushed_at: Option<u64>,
) -> Result<IndexEntry, OciError> {
    let info = NarInfo::parse(narinfo).map_err(|e| OciError::invalid("narinfo", e.to_string()))?;
    let size = size.or(info.file_size);
    Ok(IndexEntry {
        references: info.references.iter().map(|r| *r.hash()).collect(),
        nar_url: info.url.trim_start_matches('/').to_owned(),
        store_path: info.store_path,
        narinfo: Arc::from(narinfo),
        blob: BlobRef { digest, size },
        pushed_at,
    })
}
