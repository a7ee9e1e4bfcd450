//! `gc`: compaction of the index and deletion of what nothing references.
//!
//! 1. Read every fragment (and nixcache-oci's `cache-index`, which gc migrates).
//! 2. Keep the entries in the closure of the roots (through the index's own
//!    references, so roots need not be in the local store) and those pushed
//!    within the retention; the rest are removed.
//! 3. Write the kept entries as new fragments, then delete by digest exactly
//!    the manifests step 1 read: a fragment a concurrent push wrote meanwhile
//!    was not read, so it survives.
//! 4. List the manifests again *after* that, and delete only those blobs of
//!    the removed entries and deleted fragments that no listed manifest
//!    references. A push that HEADed such a blob as present just before it
//!    was deleted gets `MANIFEST_BLOB_UNKNOWN` for its fragment and uploads
//!    it again; a push whose fragment landed between the listing and the
//!    delete repairs the blob in its final check (see `push.rs`).
//!
//! `dry_run` does steps 1 and 2 and reports the plan without changing anything.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use narbor_oci::{now_unix, write_fragments, Digest, IndexReader, NewEntry, RegistryClient};
use narbor_proto::{StorePath, StorePathHash};

use crate::PublishError;

pub struct GcOptions {
    /// Store paths (`/nix/store/<hash>-<name>`, a base name, or a bare hash).
    pub roots: Vec<String>,
    /// Entries pushed more recently than this are kept regardless.
    pub retention: Duration,
    pub dry_run: bool,
}

/// What gc decided (and, unless dry-run, did).
#[derive(Debug, Default, Clone)]
pub struct GcPlan {
    pub entries: usize,
    pub keep: usize,
    /// Removed entries, sorted.
    pub remove: Vec<StorePath>,
    /// Tags of the fragments merged (and deleted).
    pub merge: Vec<String>,
    /// Blobs that lose their last reference.
    pub delete_blobs: Vec<Digest>,
}

#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub plan: GcPlan,
    pub fragments_written: Vec<String>,
    pub manifests_deleted: usize,
    pub blobs_deleted: usize,
    /// Candidate blobs kept because a manifest listed after compaction
    /// (a concurrent push) references them.
    pub blobs_still_referenced: usize,
}

fn parse_root(s: &str) -> Result<StorePathHash, PublishError> {
    let bad = |e: String| PublishError::Invalid(format!("root {s:?}: {e}"));
    let s = s.trim();
    if s.starts_with('/') {
        return StorePath::from_absolute_path(s)
            .map(|p| *p.hash())
            .map_err(|e| bad(e.to_string()));
    }
    if s.len() == 32 {
        return StorePathHash::parse(s).map_err(|e| bad(e.to_string()));
    }
    StorePath::from_base_name(s)
        .map(|p| *p.hash())
        .map_err(|e| bad(e.to_string()))
}

pub async fn gc(client: Arc<RegistryClient>, opts: &GcOptions) -> Result<GcReport, PublishError> {
    let roots = opts
        .roots
        .iter()
        .map(|r| parse_root(r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut reader = IndexReader::new(Arc::clone(&client));
    reader.refresh().await?;
    let index = reader.index();
    let now = now_unix();
    let reachable = index.closure(&roots);
    let young =
        |t: Option<u64>| t.is_some_and(|t| now.saturating_sub(t) < opts.retention.as_secs());
    let mut keep: Vec<NewEntry> = Vec::new();
    let mut kept_blobs = HashSet::new();
    let mut remove = Vec::new();
    let mut removed_blobs = HashSet::new();
    let mut entries: Vec<_> = index.entries().cloned().collect();
    entries.sort_by(|a, b| a.store_path.cmp(&b.store_path));
    for e in &entries {
        if reachable.contains(e.store_path.hash()) || young(e.pushed_at) {
            let size = match e.blob.size {
                Some(s) => s,
                None => client.blob_size(&e.blob.digest).await?.unwrap_or(0),
            };
            keep.push(NewEntry {
                narinfo: e.narinfo().to_string(),
                nar_digest: e.blob.digest,
                blob_size: size,
                // nixcache-oci entries carry no date: they are dated by their migration.
                pushed_at: e.pushed_at.unwrap_or(now),
            });
            kept_blobs.insert(e.blob.digest);
        } else {
            remove.push(e.store_path.clone());
            removed_blobs.insert(e.blob.digest);
        }
    }
    let fragments: Vec<_> = reader.fragments().cloned().collect();
    let config = narbor_oci::Descriptor::empty().digest;
    // Blobs that may lose their last reference: the removed entries' NARs
    // (also entries shadowed by a later fragment) and the merged fragments' layers.
    let mut candidates: BTreeSet<Digest> = removed_blobs.into_iter().collect();
    for f in &fragments {
        candidates.extend(f.manifest.blobs().copied());
        candidates.extend(f.entries.iter().map(|e| e.blob.digest));
    }
    candidates.retain(|d| *d != config && !kept_blobs.contains(d));
    let mut report = GcReport {
        plan: GcPlan {
            entries: entries.len(),
            keep: keep.len(),
            remove,
            merge: fragments.iter().map(|f| f.tag.clone()).collect(),
            delete_blobs: candidates.iter().copied().collect(),
        },
        ..Default::default()
    };
    let nothing_to_do = report.plan.remove.is_empty()
        && fragments.len() <= 1
        && fragments.iter().all(|f| !f.legacy);
    if nothing_to_do {
        report.plan.merge.clear();
        report.plan.delete_blobs.clear();
        return Ok(report);
    }
    if opts.dry_run {
        return Ok(report);
    }
    for w in write_fragments(&client, &keep).await? {
        report.fragments_written.push(w.tag);
    }
    for f in &fragments {
        if client.delete_manifest(&f.digest).await? {
            report.manifests_deleted += 1;
        }
    }
    // Everything referenced by a manifest that exists now.
    let mut after = IndexReader::new(Arc::clone(&client));
    after.refresh().await?;
    let mut referenced: HashSet<Digest> = HashSet::new();
    for f in after.fragments() {
        referenced.extend(f.manifest.blobs().copied());
        referenced.extend(f.entries.iter().map(|e| e.blob.digest));
    }
    for d in &candidates {
        if referenced.contains(d) {
            report.blobs_still_referenced += 1;
            continue;
        }
        if client.delete_blob(d).await? {
            report.blobs_deleted += 1;
        }
    }
    tracing::info!(
        kept = report.plan.keep,
        removed = report.plan.remove.len(),
        manifests_deleted = report.manifests_deleted,
        blobs_deleted = report.blobs_deleted,
        "gc done"
    );
    Ok(report)
}
