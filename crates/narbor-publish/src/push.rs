//! `push`: the closure of some store paths into an OCI store.
//!
//! Order of work: ask Nix for the closure; drop what upstreams have
//! (concurrent narinfo HEADs) and what the index already has; then, `jobs` at
//! a time, dump + check + compress each NAR, uploading it in chunks while it
//! is compressed (the upload is closed only once the NAR's hash matched Nix's
//! and the registry lacks the blob), and sign its narinfo; then write the
//! entries as fragments. A fragment the registry refuses because a blob
//! vanished (a gc ran at the same moment) makes push upload that blob again
//! and retry. Last, push re-reads the index and checks that every path it
//! published is listed and every blob is there, repairing what a concurrent
//! gc removed.
//!
//! A repository nixcache-oci published keeps being one: its entries count as
//! present (narbor serves them; an entry whose blob is gone is pushed again),
//! and while its `cache-index` tag exists, push adds what it publishes to it
//! in the seed's own format (with `added`, and the pushed paths as
//! `gc_roots`), as the seed's publisher does, so its proxy, publisher and gc
//! keep seeing everything until `narbor gc --migrate` ends it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use narbor_oci::{
    now_unix, utc_timestamp, write_fragments, Digest, IndexReader, LegacyEntryDoc, LegacyIndexDoc,
    NewEntry, OciError, RegistryClient, MAX_ENTRIES_PER_FRAGMENT,
};
use narbor_proto::{NarInfo, SecretKey, StorePathHash};

use crate::compress::{
    dump_compressed, dump_into, dump_unhashed, Chunk, ChunkPool, ChunkSender, Dumped, Sums,
};
use crate::{Compression, PathInfo, PublishError, UpstreamCheck};

/// What to push and how.
pub struct PushOptions {
    pub key: Option<SecretKey>,
    pub compression: Compression,
    /// Upstream caches whose paths are not pushed (empty: push everything).
    pub skip_upstreams: Vec<String>,
    /// NARs prepared and uploaded at once.
    pub jobs: usize,
    /// Where a compressed NAR waits for its upload when a streamed upload
    /// failed and it is prepared again.
    pub tmp_dir: PathBuf,
    /// The paths asked for (not their closure): what nixcache-oci's index
    /// records as `gc_roots`.
    pub roots: Vec<StorePathHash>,
}

/// What happened, for the caller's progress display.
#[derive(Debug)]
pub enum Event<'a> {
    /// The closure is known: `to_push` paths of `closure` remain after the checks.
    Planned {
        closure: usize,
        skipped_upstream: usize,
        skipped_present: usize,
        to_push: usize,
        nar_bytes: u64,
    },
    /// One path's NAR is in the registry.
    PathDone {
        path: &'a str,
        nar_size: u64,
        file_size: u64,
        uploaded: bool,
    },
    /// A fragment was written.
    Fragment { tag: &'a str, entries: usize },
}

/// Receives [`Event`]s (from several tasks: implementations synchronise).
pub trait Reporter: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// The outcome of a push.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushSummary {
    pub closure: usize,
    pub skipped_upstream: usize,
    pub skipped_present: usize,
    /// Paths published by this push.
    pub pushed: usize,
    /// NAR blobs uploaded, and the bytes they held.
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    /// NAR blobs the registry already had (same compressed bytes).
    pub blobs_present: usize,
    /// Uncompressed NAR bytes of the pushed paths.
    pub nar_bytes: u64,
    pub fragments: Vec<String>,
}

/// Pushes `infos` (a closure, as [`crate::closure_infos`] gives it) to the store.
pub async fn push(
    client: Arc<RegistryClient>,
    infos: Vec<PathInfo>,
    opts: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<PushSummary, PublishError> {
    let mut summary = PushSummary {
        closure: infos.len(),
        ..Default::default()
    };
    let hashes: Vec<StorePathHash> = infos.iter().map(|i| *i.path.hash()).collect();
    let upstream = UpstreamCheck::new(opts.skip_upstreams.clone())
        .present(&hashes)
        .await;
    let mut reader = IndexReader::new(Arc::clone(&client));
    reader.refresh().await?;
    let index = reader.index();
    let legacy: Vec<Arc<narbor_oci::IndexEntry>> = reader
        .fragments()
        .filter(|f| f.legacy)
        .flat_map(|f| f.entries.iter().cloned())
        .collect();
    let mut todo = Vec::new();
    for info in infos {
        if upstream.contains(info.path.hash()) {
            summary.skipped_upstream += 1;
            continue;
        }
        let present = match index.get(info.path.hash()) {
            None => false,
            // nixcache-oci's gc never deletes blobs, but its publisher
            // writes the index last: check the blob is really there.
            Some(e) if legacy.iter().any(|l| Arc::ptr_eq(l, e)) => {
                client.blob_exists(&e.blob.digest).await?
            }
            Some(_) => true,
        };
        if present {
            summary.skipped_present += 1;
        } else {
            todo.push(info);
        }
    }
    reporter.event(Event::Planned {
        closure: summary.closure,
        skipped_upstream: summary.skipped_upstream,
        skipped_present: summary.skipped_present,
        to_push: todo.len(),
        nar_bytes: todo.iter().map(|i| i.nar_size).sum(),
    });
    let by_hash: HashMap<StorePathHash, PathInfo> =
        todo.iter().map(|i| (*i.path.hash(), i.clone())).collect();
    let mut entries = prepare_all(&client, &todo, opts, reporter, &mut summary).await?;

    // Fragments, repairing blobs a concurrent gc deleted under us.
    for chunk in entries.chunks_mut(MAX_ENTRIES_PER_FRAGMENT) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match write_fragments(&client, chunk).await {
                Ok(written) => {
                    for w in written {
                        reporter.event(Event::Fragment {
                            tag: &w.tag,
                            entries: w.entries,
                        });
                        summary.fragments.push(w.tag);
                    }
                    break;
                }
                Err(OciError::ManifestBlobUnknown { digests, .. }) if attempt < 4 => {
                    tracing::warn!(?digests, "the registry lost blobs before the fragment was written (a concurrent gc?); uploading them again");
                    repair(&client, chunk, &by_hash, opts, &mut summary).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    // Verify: every published path is listed and its blob is there.
    for round in 0..3 {
        let stats = reader.refresh().await?;
        let index = reader.index();
        let missing_entries: Vec<NewEntry> = entries
            .iter()
            .filter(|e| {
                NarInfo::parse(&e.narinfo).is_ok_and(|i| index.get(i.store_path.hash()).is_none())
            })
            .cloned()
            .collect();
        let mut lost_blobs = entries.clone();
        repair(&client, &mut lost_blobs, &by_hash, opts, &mut summary).await?;
        if missing_entries.is_empty() {
            break;
        }
        tracing::warn!(
            round,
            missing = missing_entries.len(),
            ?stats,
            "published paths vanished from the index (a concurrent gc?); publishing them again"
        );
        for w in write_fragments(&client, &missing_entries).await? {
            summary.fragments.push(w.tag);
        }
    }
    if !entries.is_empty() && reader.fragments().any(|f| f.legacy) {
        update_legacy_index(&client, &entries, &opts.roots).await?;
    }
    summary.pushed = entries.len();
    entries.clear();
    Ok(summary)
}

/// Adds `entries` to nixcache-oci's `cache-index` (when the repository still
/// has one) in the seed's format. The tag is rewritten in place, as the
/// seed's publisher does; a concurrent rewrite can drop what this one added,
/// so it is read back and done again until its entries are there.
async fn update_legacy_index(
    client: &RegistryClient,
    entries: &[NewEntry],
    roots: &[StorePathHash],
) -> Result<(), PublishError> {
    let added = utc_timestamp(now_unix());
    let docs: Vec<LegacyEntryDoc> = entries
        .iter()
        .filter_map(|e| {
            let info = NarInfo::parse(&e.narinfo).ok()?;
            Some(LegacyEntryDoc {
                store_hash: *info.store_path.hash(),
                name: info.store_path.name().to_owned(),
                narinfo: e.narinfo.clone(),
                nar_digest: e.nar_digest,
                blob_size: e.blob_size,
                added: added.clone(),
            })
        })
        .collect();
    for attempt in 1..=3 {
        let Some(mut doc) = LegacyIndexDoc::read(client).await? else {
            // Migrated away meanwhile: nothing to keep current.
            return Ok(());
        };
        let listed: HashSet<String> = doc.entry_hashes().into_iter().collect();
        if attempt > 1
            && docs
                .iter()
                .all(|d| listed.contains(&d.store_hash.to_string()))
        {
            return Ok(());
        }
        doc.add(&docs, roots, &added);
        doc.write(client).await?;
        tracing::info!(
            entries = docs.len(),
            "added the pushed paths to nixcache-oci's cache-index"
        );
        let check = LegacyIndexDoc::read(client).await?;
        let listed: HashSet<String> = check
            .map(|d| d.entry_hashes())
            .unwrap_or_default()
            .into_iter()
            .collect();
        if docs
            .iter()
            .all(|d| listed.contains(&d.store_hash.to_string()))
        {
            return Ok(());
        }
        tracing::warn!(
            attempt,
            "cache-index was rewritten by someone else meanwhile; adding the entries again"
        );
    }
    Err(PublishError::Invalid(
        "nixcache-oci's cache-index kept being rewritten by another publisher; the paths are in narbor's index, but not in cache-index".to_owned(),
    ))
}

/// Prepares and uploads every path, `jobs` at a time.
async fn prepare_all(
    client: &Arc<RegistryClient>,
    todo: &[PathInfo],
    opts: &PushOptions,
    reporter: &dyn Reporter,
    summary: &mut PushSummary,
) -> Result<Vec<NewEntry>, PublishError> {
    // Three chunks per job at most are in memory (see STREAM_CHUNK).
    let pool = ChunkPool::new(STREAM_CHUNK, 3 * opts.jobs.max(1));
    let results: Vec<Result<(NewEntry, bool, u64), PublishError>> =
        futures_util::stream::iter(todo.iter().map(|info| {
            let client = Arc::clone(client);
            let pool = pool.clone();
            async move {
                let (entry, uploaded) = prepare_one(&client, info, opts, pool).await?;
                reporter.event(Event::PathDone {
                    path: &info.path.to_absolute_path(),
                    nar_size: info.nar_size,
                    file_size: entry.blob_size,
                    uploaded,
                });
                Ok((entry, uploaded, info.nar_size))
            }
        }))
        .buffer_unordered(opts.jobs.max(1))
        .collect()
        .await;
    let mut entries = Vec::with_capacity(results.len());
    for r in results {
        let (entry, uploaded, nar_size) = r?;
        if uploaded {
            summary.blobs_uploaded += 1;
            summary.bytes_uploaded += entry.blob_size;
        } else {
            summary.blobs_present += 1;
        }
        summary.nar_bytes += nar_size;
        entries.push(entry);
    }
    Ok(entries)
}

/// How much of a compressed NAR is sent per PATCH while it is produced;
/// with one chunk queued and one being filled, a job holds three at most.
const STREAM_CHUNK: usize = 8 << 20;

/// Dumps, checks, compresses, uploads (unless present) and signs one path.
/// The upload streams; if the registry fails it midway, the path is prepared
/// again through a temporary file, whose upload can be restarted.
async fn prepare_one(
    client: &RegistryClient,
    info: &PathInfo,
    opts: &PushOptions,
    pool: ChunkPool,
) -> Result<(NewEntry, bool), PublishError> {
    match stream_one(client, info, opts, pool).await {
        // Only what another attempt may cure (as `upload_blob_file` retries).
        Err(Streaming::UploadFailed(e)) if e.may_pass_on_restart() => {
            tracing::warn!(
                path = %info.path.to_absolute_path(),
                error = %e,
                "the streamed upload failed; uploading again from a temporary file"
            );
            prepare_from_file(client, info, opts).await
        }
        Err(Streaming::UploadFailed(e)) => Err(e.into()),
        Err(Streaming::Failed(e)) => Err(e),
        Ok(done) => Ok(done),
    }
}

/// Why a streamed upload ended early.
enum Streaming {
    /// The registry failed a request of the session: worth another way.
    UploadFailed(OciError),
    /// The NAR itself, or anything else: final.
    Failed(PublishError),
}

impl From<PublishError> for Streaming {
    fn from(e: PublishError) -> Self {
        Streaming::Failed(e)
    }
}

impl From<OciError> for Streaming {
    fn from(e: OciError) -> Self {
        Streaming::Failed(e.into())
    }
}

async fn stream_one(
    client: &RegistryClient,
    info: &PathInfo,
    opts: &PushOptions,
    pool: ChunkPool,
) -> Result<(NewEntry, bool), Streaming> {
    let path = PathBuf::from(info.path.to_absolute_path());
    let compression = opts.compression;
    // Uncompressed, the blob is the NAR and its digest is the NarHash Nix
    // recorded: the registry hashes what it receives and accepts the blob
    // only if they match, so narbor leaves that hash to it (it was half of
    // narbor's CPU in such a push) and checks the size; a blob already there
    // is that NAR, with no need to read the path.
    let nar_hash = info.nar_hash;
    let unhashed = move |size| Sums {
        nar_hash,
        nar_size: size,
        file_hash: nar_hash,
        file_size: size,
    };
    if compression == Compression::None {
        let digest = Digest(nar_hash);
        match client
            .blob_size(&digest)
            .await
            .map_err(Streaming::UploadFailed)?
        {
            // 0: a redirect hid the size.
            Some(size) if size == info.nar_size || size == 0 => {
                return Ok((sign_entry(info, &unhashed(info.nar_size), opts), false));
            }
            Some(size) => {
                return Err(Streaming::Failed(PublishError::Invalid(format!(
                    "{}: the registry has a blob {digest} of {size} bytes, but this NAR (whose sha256 that is) has {}: the registry does not check what it stores against its digest; push with --compression zstd, which narbor checks itself",
                    info.path.to_absolute_path(),
                    info.nar_size
                ))))
            }
            None => {}
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(1);
    let dump = tokio::task::spawn_blocking(move || -> Result<Sums, PublishError> {
        let sender = ChunkSender::new(pool, tx);
        let (sender, sums) = if compression == Compression::None {
            let (sender, size) = dump_unhashed(&path, sender)?;
            (sender, unhashed(size))
        } else {
            dump_into(&path, compression, sender)?
        };
        sender
            .close()
            .map_err(PublishError::io("handing the NAR to the upload"))?;
        Ok(sums)
    });
    // A NAR that fits in one chunk goes up in one request after a HEAD, as
    // before; a larger one opens a session with its first chunk.
    let mut session = None;
    let mut whole = None;
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        if session.is_none() && chunk.last {
            whole = Some(chunk.bytes);
            break;
        }
        if session.is_none() {
            match client.begin_upload().await {
                Ok(s) => session = Some(s),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(s) = session.as_mut() {
            if let Err(e) = s.append(chunk.bytes).await {
                failed = Some(e);
                break;
            }
        }
    }
    // A dump still running stops at its next chunk.
    drop(rx);
    let dumped = dump
        .await
        .map_err(|e| PublishError::Invalid(format!("the NAR task failed: {e}")));
    let checked = dumped.and_then(|r| r).and_then(|sums| {
        check_sums(info, &sums)?;
        Ok(sums)
    });
    let checked = match (checked, failed) {
        (_, Some(e)) => Err(Streaming::UploadFailed(e)),
        (Err(e), None) => Err(Streaming::Failed(e)),
        (Ok(sums), None) => Ok(sums),
    };
    let outcome = match checked {
        Ok(sums) => match client.blob_exists(&Digest(sums.file_hash)).await {
            Ok(present) => Ok((sums, present)),
            Err(e) => Err(Streaming::UploadFailed(e)),
        },
        Err(e) => Err(e),
    };
    let (sums, present) = match outcome {
        Ok(done) => done,
        Err(e) => {
            // Nothing of this NAR may become a blob.
            if let Some(s) = session {
                s.cancel().await;
            }
            return Err(e);
        }
    };
    let digest = Digest(sums.file_hash);
    let uploaded = match (session, whole) {
        (Some(s), _) if present => {
            s.cancel().await;
            false
        }
        (Some(s), _) => {
            s.finish(&digest).await.map_err(Streaming::UploadFailed)?;
            true
        }
        (None, _) if present => false,
        (None, Some(bytes)) => {
            if let Err(e) = client.upload_blob_bytes(&digest, bytes.clone()).await {
                // It checks the bytes against the digest before sending;
                // uncompressed, that digest is the NarHash: say so clearly.
                let nar_hash = Digest::of(&bytes).0;
                if compression == Compression::None && nar_hash != sums.nar_hash {
                    check_sums(info, &Sums { nar_hash, ..sums })?;
                }
                return Err(e.into());
            }
            true
        }
        (None, None) => {
            return Err(Streaming::Failed(PublishError::Invalid(
                "the NAR ended without its last chunk".to_owned(),
            )))
        }
    };
    Ok((sign_entry(info, &sums, opts), uploaded))
}

/// [`prepare_one`] through a temporary file.
async fn prepare_from_file(
    client: &RegistryClient,
    info: &PathInfo,
    opts: &PushOptions,
) -> Result<(NewEntry, bool), PublishError> {
    let dumped = dump_checked(info, opts).await?;
    let digest = Digest(dumped.file_hash);
    let uploaded = if client.blob_exists(&digest).await? {
        false
    } else {
        client
            .upload_blob_file(&digest, dumped.file.path(), dumped.file_size)
            .await?;
        true
    };
    let entry = sign_entry(info, &dumped.sums(), opts);
    Ok((entry, uploaded))
}

async fn dump_checked(info: &PathInfo, opts: &PushOptions) -> Result<Dumped, PublishError> {
    let path = PathBuf::from(info.path.to_absolute_path());
    let tmp = opts.tmp_dir.clone();
    let compression = opts.compression;
    let dumped = tokio::task::spawn_blocking(move || dump_compressed(&path, compression, &tmp))
        .await
        .map_err(|e| PublishError::Invalid(format!("the NAR task failed: {e}")))??;
    check_sums(info, &dumped.sums())?;
    Ok(dumped)
}

/// The NAR narbor dumped must be the one Nix recorded.
fn check_sums(info: &PathInfo, sums: &Sums) -> Result<(), PublishError> {
    let p = info.path.to_absolute_path();
    if sums.nar_size != info.nar_size {
        return Err(PublishError::NarMismatch {
            path: p,
            what: "NarSize",
            ours: sums.nar_size.to_string(),
            nix: info.nar_size.to_string(),
        });
    }
    if sums.nar_hash != info.nar_hash {
        return Err(PublishError::NarMismatch {
            path: p,
            what: "NarHash",
            ours: sums.nar_hash.to_string(),
            nix: info.nar_hash.to_string(),
        });
    }
    Ok(())
}

fn sign_entry(info: &PathInfo, d: &Sums, opts: &PushOptions) -> NewEntry {
    let c = opts.compression.nar_compression();
    let url = format!("nar/{}.nar{}", d.file_hash.to_nix32(), c.extension());
    let mut n = NarInfo::new(info.path.clone(), url, d.nar_hash, d.nar_size);
    n.compression = c.name().to_owned();
    n.file_hash = Some(d.file_hash);
    n.file_size = Some(d.file_size);
    n.references = info.references.clone();
    n.references.sort();
    n.deriver = info.deriver.clone();
    n.ca = info.ca.clone();
    n.sigs = info.sigs.clone();
    if let Some(k) = &opts.key {
        n.sign(k);
    }
    NewEntry {
        narinfo: n.to_string(),
        nar_digest: Digest(d.file_hash),
        blob_size: d.file_size,
        pushed_at: now_unix(),
    }
}

/// Uploads again every blob of `entries` the registry lacks. Compression
/// is deterministic for one narbor build, so the bytes hash the same; if not
/// (another zstd), the entry is re-signed with the new blob.
async fn repair(
    client: &RegistryClient,
    entries: &mut [NewEntry],
    by_hash: &HashMap<StorePathHash, PathInfo>,
    opts: &PushOptions,
    summary: &mut PushSummary,
) -> Result<(), PublishError> {
    let mut done = HashSet::new();
    for e in entries.iter_mut() {
        if done.contains(&e.nar_digest) || client.blob_exists(&e.nar_digest).await? {
            continue;
        }
        let info =
            NarInfo::parse(&e.narinfo).map_err(|err| PublishError::Invalid(err.to_string()))?;
        let Some(pinfo) = by_hash.get(info.store_path.hash()) else {
            continue;
        };
        let dumped = dump_checked(pinfo, opts).await?;
        let digest = Digest(dumped.file_hash);
        client
            .upload_blob_file(&digest, dumped.file.path(), dumped.file_size)
            .await?;
        summary.blobs_uploaded += 1;
        summary.bytes_uploaded += dumped.file_size;
        if digest != e.nar_digest {
            *e = sign_entry(pinfo, &dumped.sums(), opts);
        }
        done.insert(e.nar_digest);
    }
    Ok(())
}
