//! Reading the cache index: [`IndexReader`] keeps every fragment it has read
//! and refreshes incrementally into an immutable [`CacheIndex`] snapshot.
//!
//! A refresh lists the tags (one request when nothing changed: the fragment
//! tags are immutable, so a known tag needs no request; only nixcache-oci's
//! rewritable `cache-index` tag costs one HEAD more), fetches the manifests
//! and entries blobs of new tags only, forgets the tags that disappeared
//! (compacted by gc), and rebuilds the snapshot when anything changed: later
//! fragments (in tag order) win per store path, the legacy index loses to all.
//! With trusted keys, that is among the entries a trusted key signed.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures_util::StreamExt;
use narbor_proto::url::NarCompression;
use narbor_proto::{CacheUrl, NarInfo, PublicKey, StorePath, StorePathHash};

use bytes::Bytes;

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
///
/// `serve --oci` holds one per path in memory, so it is kept small: the
/// narinfo text is the only copy of the NAR URL and the references, which are
/// read back from it (the text parsed as a narinfo when the entry was made,
/// and never changes).
#[derive(Debug)]
pub struct IndexEntry {
    pub store_path: StorePath,
    /// The `.narinfo` document to serve, byte for byte as published.
    narinfo: Box<str>,
    /// Where the narinfo's `URL` is in `narinfo`, without a leading `/`.
    url: (u32, u32),
    pub blob: BlobRef,
    /// When it was pushed (Unix seconds): a narbor entry's `pushed_at`, a
    /// nixcache-oci entry's `added`; None when the entry gives no date.
    pub pushed_at: Option<u64>,
    /// True when the narinfo's URL is the blob's own name
    /// (`nar/<nix32 digest>.nar<ext>`), as narbor writes it; false for
    /// nixcache-oci's `nar/<store path hash>.nar.xz`, which Nix may ask for
    /// but which narbor serves under the blob's name (see
    /// [`served_narinfo`](Self::served_narinfo)).
    url_is_blob_name: bool,
}

impl IndexEntry {
    /// The `.narinfo` document as published, byte for byte (what gc and push
    /// write back).
    pub fn narinfo(&self) -> &str {
        &self.narinfo
    }

    /// The `.narinfo` document to serve: as published when its URL names
    /// the blob; otherwise with `URL`, `FileHash` and `FileSize` made the
    /// blob's (fields no signature covers, so every signature still holds).
    pub fn served_narinfo(&self) -> Cow<'_, str> {
        let Some(url) = self.canonical_url() else {
            return Cow::Borrowed(&self.narinfo);
        };
        let mut text = NarInfo::with_field(&self.narinfo, "URL", &url);
        text = NarInfo::with_field(&text, "FileHash", &self.blob.digest.0.to_string());
        if let Some(size) = self.blob.size {
            text = NarInfo::with_field(&text, "FileSize", &size.to_string());
        }
        Cow::Owned(text)
    }

    /// The blob's own name when the narinfo's URL is another one, and the
    /// narinfo's compression is one narbor can name.
    pub fn canonical_url(&self) -> Option<String> {
        if self.url_is_blob_name {
            return None;
        }
        let compression = NarInfo::field_in(&self.narinfo, "Compression")
            .map_or(narbor_proto::narinfo::DEFAULT_COMPRESSION, |(_, v)| v);
        let compression = NarCompression::from_name(compression)?;
        Some(
            CacheUrl::Nar {
                file_hash: self.blob.digest.0,
                compression,
            }
            .to_path(),
        )
    }

    /// The narinfo's `URL`, without a leading `/` (e.g. `nar/<hash>.nar.zst`).
    pub fn nar_url(&self) -> &str {
        let (start, end) = self.url;
        self.narinfo.get(start as usize..end as usize).unwrap_or("")
    }

    /// The hash parts of its references (for gc's closure).
    pub fn references(&self) -> impl Iterator<Item = StorePathHash> + '_ {
        NarInfo::field_in(&self.narinfo, "References")
            .map_or("", |(_, v)| v)
            .split_ascii_whitespace()
            .filter_map(|r| StorePath::from_base_name(r).ok())
            .map(|p| *p.hash())
    }
}

/// An entry keyed by its NAR URL, so the URL map needs no copy of the URL.
#[derive(Debug)]
struct ByUrl(Arc<IndexEntry>);

impl Borrow<str> for ByUrl {
    fn borrow(&self) -> &str {
        self.0.nar_url()
    }
}

impl Hash for ByUrl {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, which `Borrow<str>` requires.
        self.0.nar_url().hash(state);
    }
}

impl PartialEq for ByUrl {
    fn eq(&self, other: &Self) -> bool {
        self.0.nar_url() == other.0.nar_url()
    }
}

impl Eq for ByUrl {}

/// One fragment (or the legacy index) as read.
#[derive(Debug)]
pub struct Fragment {
    pub tag: String,
    pub digest: Digest,
    pub manifest: ImageManifest,
    pub entries: Vec<Arc<IndexEntry>>,
    /// Entries left out for want of a signature by a trusted key.
    pub untrusted: usize,
    /// True for nixcache-oci's `cache-index`.
    pub legacy: bool,
}

/// The merged index: O(1) narinfo by store path hash, O(1) blob by NAR URL
/// (the URL a narinfo names, and the blob's own name where that differs).
#[derive(Debug, Default)]
pub struct CacheIndex {
    by_hash: HashMap<StorePathHash, Arc<IndexEntry>>,
    by_url: HashSet<ByUrl>,
    /// Entries whose URL is not their blob's name, by the blob's name.
    by_blob_name: HashMap<String, Arc<IndexEntry>>,
}

impl CacheIndex {
    /// Builds the index from entries in order of precedence (later wins).
    /// A NAR URL that several current entries name maps to the latest of them.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a Arc<IndexEntry>>) -> Self {
        let entries: Vec<&Arc<IndexEntry>> = entries.into_iter().collect();
        let mut by_hash = HashMap::with_capacity(entries.len());
        for e in &entries {
            by_hash.insert(*e.store_path.hash(), Arc::clone(e));
        }
        let mut by_url = HashSet::with_capacity(by_hash.len());
        let mut by_blob_name = HashMap::new();
        for e in entries {
            if by_hash
                .get(e.store_path.hash())
                .is_some_and(|current| Arc::ptr_eq(current, e))
            {
                by_url.replace(ByUrl(Arc::clone(e)));
                if let Some(name) = e.canonical_url() {
                    by_blob_name.insert(name, Arc::clone(e));
                }
            }
        }
        CacheIndex {
            by_hash,
            by_url,
            by_blob_name,
        }
    }

    /// The entry of a store path hash (what `GET /<hash>.narinfo` serves).
    pub fn get(&self, hash: &StorePathHash) -> Option<&Arc<IndexEntry>> {
        self.by_hash.get(hash)
    }

    /// The blob behind a NAR URL as a narinfo names it (`nar/<x>.nar.zst`;
    /// a leading `/` is ignored), or None.
    pub fn nar_blob(&self, url_path: &str) -> Option<BlobRef> {
        let path = url_path.trim_start_matches('/');
        match self.by_url.get(path) {
            Some(e) => Some(e.0.blob),
            None => self.by_blob_name.get(path).map(|e| e.blob),
        }
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
                stack.extend(e.references().filter(|r| !seen.contains(r)));
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
    /// Entries of the fragments read that were left out: no valid signature
    /// by a trusted key (see [`IndexReader::with_trusted_keys`]).
    pub untrusted: usize,
    /// True when the snapshot was rebuilt.
    pub changed: bool,
}

/// Reads a cache's index and keeps it fresh.
pub struct IndexReader {
    client: Arc<RegistryClient>,
    fragments: BTreeMap<String, Arc<Fragment>>,
    index: Arc<CacheIndex>,
    trusted: Arc<[PublicKey]>,
    /// Where fetched fragments are saved for the next start.
    snapshot: Option<crate::snapshot::Snapshot>,
}

/// Fragments fetched at once.
const FETCH_CONCURRENCY: usize = 8;

impl IndexReader {
    pub fn new(client: Arc<RegistryClient>) -> Self {
        IndexReader {
            client,
            fragments: BTreeMap::new(),
            index: Arc::new(CacheIndex::default()),
            trusted: Arc::from(Vec::new()),
            snapshot: None,
        }
    }

    /// Saves every fragment it fetches in `dir` (see [`crate::snapshot`]), so
    /// that [`load_snapshot`](Self::load_snapshot) can serve them after a
    /// restart with the registry down.
    pub fn with_snapshot(mut self, dir: std::path::PathBuf) -> Self {
        let store = self.client.store().to_string();
        self.snapshot = Some(crate::snapshot::Snapshot::new(dir, store));
        self
    }

    /// Reads the fragments the snapshot directory holds into the index (the
    /// index as of the last refresh before a restart). Returns the entries
    /// loaded; the next [`refresh`](Self::refresh) fetches only what changed
    /// since (tags are immutable; the legacy tag is compared by digest).
    pub async fn load_snapshot(&mut self) -> Result<usize, OciError> {
        let Some(snapshot) = self.snapshot.clone() else {
            return Ok(0);
        };
        let keys = Arc::clone(&self.trusted);
        let (fragments, index) = off_runtime("loading the saved index", move || {
            let raws = snapshot.load()?;
            let fragments: BTreeMap<String, Arc<Fragment>> = raws
                .iter()
                .map(|raw| (raw.tag.clone(), Arc::new(parse_fragment(raw, &keys))))
                .collect();
            let index = CacheIndex::from_entries(fragments.values().flat_map(|f| f.entries.iter()));
            Ok::<_, OciError>((fragments, index))
        })
        .await??;
        self.fragments = fragments;
        self.index = Arc::new(index);
        Ok(self.index.len())
    }

    /// Leaves out every entry whose narinfo has no valid signature by one of
    /// `keys` (none: every entry is kept). Each entry is checked once, when
    /// its fragment is read. A left-out entry does not hide an earlier entry
    /// of the same path that a trusted key signed: that one is served. For
    /// serving only: `gc` and `push` must see every entry (gc keeps only the
    /// latest entry of a path, trusted or not).
    pub fn with_trusted_keys(mut self, keys: Vec<PublicKey>) -> Self {
        self.trusted = Arc::from(keys);
        self
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
        let fetched: Vec<(String, Result<Option<RawFragment>, OciError>)> =
            futures_util::stream::iter(to_fetch.into_iter().map(|tag| async move {
                let r = fetch_fragment(client, &tag).await;
                (tag, r)
            }))
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut raws = Vec::new();
        let mut vanished = gone.clone();
        for (tag, r) in fetched {
            match r? {
                Some(raw) => raws.push(raw),
                // Deleted between the listing and the fetch.
                None => {
                    stats.removed += usize::from(self.fragments.contains_key(&tag));
                    vanished.push(tag);
                }
            }
        }
        if let Some(snapshot) = self.snapshot.clone() {
            if !raws.is_empty() || !vanished.is_empty() {
                let (back, saved) = off_runtime("saving the index", move || {
                    let saved = snapshot.save(&raws, &vanished);
                    (raws, saved)
                })
                .await?;
                raws = back;
                if let Err(e) = saved {
                    tracing::warn!("cannot save the index for the next start: {e}");
                }
            }
        }
        let keys = Arc::clone(&self.trusted);
        let new: Vec<(String, Fragment)> = off_runtime("reading index fragments", move || {
            raws.iter()
                .map(|raw| (raw.tag.clone(), parse_fragment(raw, &keys)))
                .collect()
        })
        .await?;
        stats.removed += gone.len();
        stats.fetched = new.len();
        if stats.fetched > 0 || stats.removed > 0 {
            // Nothing failed: the next fragments, applied to `self` only with
            // the snapshot merged from them (so that a merge that fails, or a
            // refresh dropped at the await, leaves both as they were).
            let mut next = self.fragments.clone();
            for t in &gone {
                next.remove(t);
            }
            for (tag, f) in new {
                next.insert(tag, Arc::new(f));
            }
            // A million entries take most of a second to merge: off the
            // runtime's threads, which a server's requests run on.
            let (index, next) = off_runtime("merging the index", move || {
                let index = CacheIndex::from_entries(next.values().flat_map(|f| f.entries.iter()));
                (index, next)
            })
            .await?;
            // Fragments a gc compacted away may hold many entries: freed
            // off the runtime's threads too.
            let old = std::mem::replace(&mut self.fragments, next);
            tokio::task::spawn_blocking(move || drop(old));
            self.index = Arc::new(index);
            stats.changed = true;
        }
        stats.entries = self.index.len();
        stats.untrusted = self.fragments.values().map(|f| f.untrusted).sum();
        tracing::debug!(?stats, "index refreshed");
        Ok(stats)
    }
}

/// A fragment (or the legacy index) as fetched: the bytes that
/// [`parse_fragment`] reads and a snapshot saves.
#[derive(Debug, Clone)]
pub(crate) struct RawFragment {
    pub tag: String,
    pub digest: Digest,
    pub manifest: Bytes,
    /// The entries layer (None: the manifest is unreadable or has none).
    pub layer: Option<Bytes>,
}

/// Fetches one fragment. None when the tag or its entries blob is gone (a
/// fragment being compacted away).
async fn fetch_fragment(
    client: &RegistryClient,
    tag: &str,
) -> Result<Option<RawFragment>, OciError> {
    let Some((bytes, digest)) = client.get_manifest(tag).await? else {
        return Ok(None);
    };
    let mut raw = RawFragment {
        tag: tag.to_owned(),
        digest,
        manifest: bytes,
        layer: None,
    };
    let Ok(manifest) = ImageManifest::parse(&raw.manifest, tag) else {
        return Ok(Some(raw));
    };
    let Some(layer) = manifest
        .layers
        .iter()
        .find(|l| l.media_type == layer_type(tag))
    else {
        return Ok(Some(raw));
    };
    match client.get_blob_bytes(&layer.digest, MAX_ENTRIES_BLOB).await {
        Ok(b) => raw.layer = Some(b),
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e @ OciError::Invalid { .. }) => {
            tracing::warn!(tag, error = %e, "ignoring an index fragment");
        }
        Err(e) => return Err(e),
    }
    Ok(Some(raw))
}

/// The media type of the entries layer of the fragment tagged `tag`.
fn layer_type(tag: &str) -> &'static str {
    if tag == LEGACY_INDEX_TAG {
        LEGACY_INDEX_MEDIA_TYPE
    } else {
        ENTRIES_MEDIA_TYPE
    }
}

/// Reads a fetched (or saved) fragment. One that is not valid is logged and
/// read as empty, so one bad document cannot take the cache down. CPU work
/// (a thousand narinfos parsed and their signatures checked): callers run it
/// off the runtime's threads.
pub(crate) fn parse_fragment(raw: &RawFragment, trusted: &[PublicKey]) -> Fragment {
    let tag = raw.tag.as_str();
    let what = format!("index tag {tag}");
    let legacy = tag == LEGACY_INDEX_TAG;
    let manifest = match ImageManifest::parse(&raw.manifest, &what) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an unreadable index manifest");
            return empty_fragment(tag, raw.digest, None);
        }
    };
    let Some(blob) = &raw.layer else {
        tracing::warn!(
            tag,
            "ignoring an index manifest without a {} layer",
            layer_type(tag)
        );
        return empty_fragment(tag, raw.digest, Some(manifest));
    };
    let parsed = if legacy {
        parse_legacy(blob, &what, trusted)
    } else {
        parse_entries(blob, &what, trusted)
    };
    let (entries, untrusted) = match parsed {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an index fragment");
            (Vec::new(), 0)
        }
    };
    if untrusted > 0 {
        tracing::warn!(
            tag,
            untrusted,
            "leaving out entries without a valid signature by a trusted key"
        );
    }
    Fragment {
        tag: tag.to_owned(),
        digest: raw.digest,
        manifest,
        entries,
        untrusted,
        legacy,
    }
}

/// Runs `f` on tokio's blocking threads.
async fn off_runtime<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OciError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OciError::invalid(what, format!("the task failed: {e}")))
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
        untrusted: 0,
        legacy: tag == LEGACY_INDEX_TAG,
    }
}

/// A fragment's entries, and how many were left out as untrusted.
type Parsed = (Vec<Arc<IndexEntry>>, usize);

/// A narbor entries blob. Entries whose narinfo does not parse or whose
/// `FileHash`/`FileSize` (when given) are not the blob's are skipped with a
/// warning: serving them would hand Nix bytes it must reject. With `trusted`
/// keys, so are (and are counted) those no trusted key signed.
pub(crate) fn parse_entries(
    blob: &[u8],
    what: &str,
    trusted: &[PublicKey],
) -> Result<Parsed, OciError> {
    let doc: EntriesDoc =
        serde_json::from_slice(blob).map_err(|e| OciError::invalid(what, e.to_string()))?;
    if doc.version != 1 {
        return Err(OciError::invalid(
            what,
            format!("entries version {} is newer than this narbor", doc.version),
        ));
    }
    let (mut out, mut untrusted) = (Vec::with_capacity(doc.entries.len()), 0);
    for e in doc.entries {
        let made = entry(
            e.narinfo,
            e.nar_digest,
            Some(e.blob_size),
            Some(e.pushed_at),
            trusted,
        );
        match made {
            Ok((entry, Check::Good)) => out.push(Arc::new(entry)),
            Ok((_, Check::Untrusted)) => untrusted += 1,
            Ok((entry, Check::OtherBlob)) => {
                tracing::warn!(what, path = %entry.store_path, "skipping an entry whose FileHash/FileSize do not match its blob")
            }
            Err(err) => tracing::warn!(what, error = %err, "skipping an entry"),
        }
    }
    Ok((out, untrusted))
}

/// nixcache-oci's index: entries filed under their store path hash.
fn parse_legacy(blob: &[u8], what: &str, trusted: &[PublicKey]) -> Result<Parsed, OciError> {
    let doc: LegacyIndex =
        serde_json::from_slice(blob).map_err(|e| OciError::invalid(what, e.to_string()))?;
    let (mut out, mut untrusted) = (Vec::with_capacity(doc.entries.len()), 0);
    for (key, e) in doc.entries {
        let added = e.added.as_deref().and_then(crate::parse_utc_timestamp);
        match entry(e.narinfo, e.nar_digest, e.nar_size, added, trusted) {
            Ok((_, Check::Untrusted)) => untrusted += 1,
            Ok((entry, _)) if entry.store_path.hash().to_string() == key => {
                out.push(Arc::new(entry))
            }
            Ok(_) => tracing::warn!(
                what,
                key,
                "skipping a legacy entry filed under another hash"
            ),
            Err(err) => tracing::warn!(what, key, error = %err, "skipping a legacy entry"),
        }
    }
    Ok((out, untrusted))
}

/// What [`entry`] found about an entry besides its being well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Good,
    /// The narinfo's `FileHash` or `FileSize` is not the blob's.
    OtherBlob,
    /// Trusted keys were given and none signed the narinfo.
    Untrusted,
}

/// The entry of a narinfo whose NAR is the blob `digest`, and whether the
/// narinfo's `FileHash` and `FileSize` (when it gives them) are that blob's
/// and one of the `trusted` keys (when there are any) signed it.
fn entry(
    narinfo: String,
    digest: Digest,
    size: Option<u64>,
    pushed_at: Option<u64>,
    trusted: &[PublicKey],
) -> Result<(IndexEntry, Check), OciError> {
    let invalid = |detail: String| OciError::invalid("narinfo", detail);
    let info = NarInfo::parse(&narinfo).map_err(|e| invalid(e.to_string()))?;
    // The signature first: callers that accept an entry naming another blob
    // (the legacy index) must still never accept an untrusted one.
    let check = if !trusted.is_empty() && !info.verify(trusted) {
        Check::Untrusted
    } else if info.file_hash.is_some_and(|h| h != digest.0)
        || (info.file_size.is_some() && size.is_some() && info.file_size != size)
    {
        Check::OtherBlob
    } else {
        Check::Good
    };
    let url = match NarInfo::field_in(&narinfo, "URL") {
        Some((start, value)) if value == info.url => {
            let trimmed = value.trim_start_matches('/');
            if trimmed.is_empty() {
                return Err(invalid("its URL names no file".into()));
            }
            let start = start + (value.len() - trimmed.len());
            let at = |n: usize| u32::try_from(n).map_err(|_| invalid("too large".into()));
            (at(start)?, at(start + trimmed.len())?)
        }
        _ => return Err(invalid("its URL field could not be located".into())),
    };
    let url_is_blob_name = matches!(
        CacheUrl::parse(info.url.trim_start_matches('/')),
        Ok(CacheUrl::Nar { file_hash, compression })
            if file_hash == digest.0 && Some(compression) == info.nar_compression()
    );
    let entry = IndexEntry {
        store_path: info.store_path,
        narinfo: narinfo.into_boxed_str(),
        url,
        blob: BlobRef {
            digest,
            size: size.or(info.file_size),
        },
        pushed_at,
        url_is_blob_name,
    };
    Ok((entry, check))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real cache.nixos.org narinfo, its URL given with a leading `/` as
    /// some tools write it.
    const NARINFO: &str = "StorePath: /nix/store/0dihxb929w72zfz7wwi50rgc3w9060kf-gifsicle-1.92
URL: /nar/0j0wgbf3hqf14v560k7w6lxmzhl6k8ngnar0nb44lpmarvkrr50d.nar.xz
Compression: xz
FileHash: sha256:0j0wgbf3hqf14v560k7w6lxmzhl6k8ngnar0nb44lpmarvkrr50d
FileSize: 124572
NarHash: sha256:0wya019jfgy4bn26xiksk8qkdabmazxns575aj6il5y74bvn5d0q
NarSize: 313392
References: h4dy3knvmjq1k9wvxx3whba5hgff00ij-swift-corefoundation yjy1ix56rvqgk1526zlrfb6mk9b3x0p5-Libsystem-osx-10.12.6
Deriver: 61ssz9pgr9cllavxdg04w8g7bd3hxn5r-gifsicle-1.92.drv
Sig: cache.nixos.org-1:6cQ8ux1d9M6jbC7gwoHqTRZIxIHz1R65LcHIEPHozFxz4ZhYuDi2In0q8QyhlzQIJEpr2G5FKclzMUbkm30sCA==
";

    fn file_digest() -> Digest {
        Digest(NarInfo::parse(NARINFO).unwrap().file_hash.unwrap())
    }

    #[test]
    fn an_entry_reads_its_url_and_references_back_from_its_narinfo() {
        let (e, check) = entry(NARINFO.into(), file_digest(), Some(124572), Some(7), &[]).unwrap();
        assert_eq!(check, Check::Good);
        let info = NarInfo::parse(NARINFO).unwrap();
        assert_eq!(e.narinfo(), NARINFO);
        assert_eq!(e.store_path, info.store_path);
        assert_eq!(
            e.nar_url(),
            "nar/0j0wgbf3hqf14v560k7w6lxmzhl6k8ngnar0nb44lpmarvkrr50d.nar.xz"
        );
        let refs: Vec<StorePathHash> = info.references.iter().map(|r| *r.hash()).collect();
        assert_eq!(refs.len(), 2);
        assert_eq!(e.references().collect::<Vec<_>>(), refs);
    }

    #[test]
    fn the_index_finds_a_blob_by_url_with_or_without_the_slash() {
        let (e, _) = entry(NARINFO.into(), file_digest(), Some(124572), None, &[]).unwrap();
        let e = Arc::new(e);
        let index = CacheIndex::from_entries([&e]);
        let blob = BlobRef {
            digest: file_digest(),
            size: Some(124572),
        };
        assert_eq!(index.nar_blob(e.nar_url()), Some(blob));
        assert_eq!(index.nar_blob(&format!("/{}", e.nar_url())), Some(blob));
        assert_eq!(index.nar_blob("nar/elsewhere.nar.xz"), None);
        assert_eq!(
            index.get(e.store_path.hash()).map(|x| x.narinfo()),
            Some(NARINFO)
        );
        // The closure follows references read back from the text; the two
        // references are not in this index, but are reached.
        let closure = index.closure(&[*e.store_path.hash()]);
        assert_eq!(closure.len(), 3);
    }

    #[test]
    fn a_blob_that_is_not_the_file_the_narinfo_names_is_flagged() {
        let other = Digest(narbor_proto::Sha256::digest(b"other"));
        let (_, check) = entry(NARINFO.into(), other, Some(124572), None, &[]).unwrap();
        assert_eq!(check, Check::OtherBlob, "FileHash differs");
        let (_, check) = entry(NARINFO.into(), file_digest(), Some(1), None, &[]).unwrap();
        assert_eq!(check, Check::OtherBlob, "FileSize differs");
    }

    #[test]
    fn the_url_is_the_url_line_not_text_that_looks_like_one() {
        // Before the real line: a search for "URL: " would find this first.
        let decoy = NARINFO.replace("\nURL: ", "\nX-Note: URL: nar/decoy\nURL: ");
        let (e, _) = entry(decoy, file_digest(), None, None, &[]).unwrap();
        assert_eq!(
            e.nar_url(),
            "nar/0j0wgbf3hqf14v560k7w6lxmzhl6k8ngnar0nb44lpmarvkrr50d.nar.xz"
        );
        let slashes = NARINFO.replace(
            "URL: /nar/0j0wgbf3hqf14v560k7w6lxmzhl6k8ngnar0nb44lpmarvkrr50d.nar.xz",
            "URL: //",
        );
        let err = entry(slashes, file_digest(), None, None, &[]).unwrap_err();
        assert!(err.to_string().contains("names no file"), "{err}");
    }

    #[test]
    fn a_url_two_entries_name_maps_to_the_later_one() {
        let older = Arc::new(
            entry(NARINFO.into(), file_digest(), Some(1), None, &[])
                .unwrap()
                .0,
        );
        let other = NARINFO.replace(
            "0dihxb929w72zfz7wwi50rgc3w9060kf-gifsicle",
            "1dihxb929w72zfz7wwi50rgc3w9060kf-gifsicle",
        );
        let newer = Arc::new(entry(other, file_digest(), Some(2), None, &[]).unwrap().0);
        let url = older.nar_url().to_owned();
        let size = |i: &CacheIndex| i.nar_blob(&url).and_then(|b| b.size);
        assert_eq!(size(&CacheIndex::from_entries([&older, &newer])), Some(2));
        assert_eq!(size(&CacheIndex::from_entries([&newer, &older])), Some(1));
    }

    #[test]
    fn with_trusted_keys_an_entry_needs_a_signature_by_one() {
        let check = |keys: &[PublicKey]| {
            entry(NARINFO.into(), file_digest(), Some(124572), None, keys)
                .unwrap()
                .1
        };
        let nixos =
            PublicKey::parse("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")
                .unwrap();
        let other = narbor_proto::SecretKey::from_seed("other-1", [7; 32])
            .unwrap()
            .public_key();
        assert_eq!(check(&[]), Check::Good, "no keys: every entry");
        assert_eq!(check(std::slice::from_ref(&nixos)), Check::Good);
        assert_eq!(check(std::slice::from_ref(&other)), Check::Untrusted);
        assert_eq!(check(&[other.clone(), nixos]), Check::Good, "any one key");
        // Untrusted wins over a blob mismatch, which the legacy index accepts.
        let (_, mismatched) = entry(
            NARINFO.into(),
            Digest(narbor_proto::Sha256::digest(b"other")),
            None,
            None,
            std::slice::from_ref(&other),
        )
        .unwrap();
        assert_eq!(mismatched, Check::Untrusted);
    }
}
