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
//!
//! A repository nixcache-oci published (tag `cache-index`) may still have the
//! seed's proxy and publisher reading it. gc treats its entries as the seed's
//! own gc would, and more carefully: an entry's `added` counts toward the
//! retention, and `gc_roots` are roots. Unless asked to finish the migration
//! (`migrate`), gc leaves `cache-index` in place in the seed's format, with
//! only the entries it removed taken out (as the seed's gc rewrites it), so
//! a proxy still reading it serves every NAR it lists. With `migrate`, the
//! kept entries move into a narbor fragment (their narinfo and date as they
//! were) and `cache-index` is deleted like any merged fragment.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use narbor_oci::{
    now_unix, write_fragments, Digest, IndexReader, LegacyIndexDoc, NewEntry, RegistryClient,
};
use narbor_proto::{StorePath, StorePathHash};

use crate::PublishError;

pub struct GcOptions {
    /// Store paths (`/nix/store/<hash>-<name>`, a base name, or a bare hash).
    pub roots: Vec<String>,
    /// Entries pushed more recently than this are kept regardless.
    pub retention: Duration,
    pub dry_run: bool,
    /// Finish a migration from nixcache-oci: fold its `cache-index` into
    /// narbor fragments and delete it (its proxy then sees an empty cache).
    pub migrate: bool,
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
    /// nixcache-oci's `cache-index`: entries it keeps after gc (None: the
    /// repository has none, or it is being migrated).
    pub legacy_kept: Option<usize>,
    /// Whether `cache-index` is rewritten (it loses entries).
    pub legacy_rewritten: bool,
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
    let mut roots = opts
        .roots
        .iter()
        .map(|r| parse_root(r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut reader = IndexReader::new(Arc::clone(&client));
    reader.refresh().await?;
    let index = reader.index();
    let mut legacy = match reader.fragments().any(|f| f.legacy) {
        true => LegacyIndexDoc::read(&client).await?,
        false => None,
    };
    if let Some(doc) = &legacy {
        roots.extend(doc.gc_roots());
    }
    let now = now_unix();
    let reachable = index.closure(&roots);
    let young =
        |t: Option<u64>| t.is_some_and(|t| now.saturating_sub(t) < opts.retention.as_secs());
    let fragments: Vec<_> = reader.fragments().cloned().collect();
    // The entries that stay in nixcache-oci's index unless migrating.
    let legacy_fragment = fragments.iter().find(|f| f.legacy);
    let in_legacy = |e: &Arc<narbor_oci::IndexEntry>| {
        !opts.migrate
            && legacy_fragment.is_some_and(|f| f.entries.iter().any(|l| Arc::ptr_eq(l, e)))
    };
    let mut keep: Vec<NewEntry> = Vec::new();
    let mut kept_hashes = HashSet::new();
    let mut kept_blobs = HashSet::new();
    let mut remove = Vec::new();
    let mut removed_blobs = HashSet::new();
    let mut entries: Vec<_> = index.entries().cloned().collect();
    entries.sort_by(|a, b| a.store_path.cmp(&b.store_path));
    for e in &entries {
        if reachable.contains(e.store_path.hash()) || young(e.pushed_at) {
            kept_hashes.insert(e.store_path.hash().to_string());
            kept_blobs.insert(e.blob.digest);
            if in_legacy(e) {
                continue;
            }
            let size = match e.blob.size {
                Some(s) => s,
                None => client.blob_size(&e.blob.digest).await?.unwrap_or(0),
            };
            keep.push(NewEntry {
                narinfo: e.narinfo().to_string(),
                nar_digest: e.blob.digest,
                blob_size: size,
                // An entry that carries no date is dated by its migration.
                pushed_at: e.pushed_at.unwrap_or(now),
            });
        } else {
            remove.push(e.store_path.clone());
            removed_blobs.insert(e.blob.digest);
        }
    }
    // nixcache-oci's index keeps what gc keeps (an entry a narbor fragment
    // shadows goes with the path's fate), and is rewritten only if it loses
    // entries.
    let mut legacy_rewritten = false;
    if let (Some(doc), false) = (&mut legacy, opts.migrate) {
        let all = doc.entry_hashes();
        for h in &all {
            if !kept_hashes.contains(h) {
                if let Some(d) = doc.entry_digest(h) {
                    removed_blobs.insert(d);
                }
            } else if let Some(d) = doc.entry_digest(h) {
                kept_blobs.insert(d);
            }
        }
        legacy_rewritten = doc.retain(|h| kept_hashes.contains(h)) > 0;
    }
    let merged: Vec<_> = fragments
        .iter()
        .filter(|f| opts.migrate || !f.legacy)
        .collect();
    let config = narbor_oci::Descriptor::empty().digest;
    // Blobs that may lose their last reference: the removed entries' NARs
    // (also entries shadowed by a later fragment), the merged fragments'
    // layers, and a rewritten cache-index's old layer.
    let mut candidates: BTreeSet<Digest> = removed_blobs.into_iter().collect();
    for f in &merged {
        candidates.extend(f.manifest.blobs().copied());
        candidates.extend(f.entries.iter().map(|e| e.blob.digest));
    }
    if let (Some(doc), true) = (&legacy, legacy_rewritten) {
        candidates.insert(doc.layer_digest);
    }
    candidates.retain(|d| *d != config && !kept_blobs.contains(d));
    let mut report = GcReport {
        plan: GcPlan {
            entries: entries.len(),
            keep: kept_hashes.len(),
            remove,
            merge: merged.iter().map(|f| f.tag.clone()).collect(),
            delete_blobs: candidates.iter().copied().collect(),
            legacy_kept: legacy
                .as_ref()
                .filter(|_| !opts.migrate)
                .map(|d| d.entry_hashes().len()),
            legacy_rewritten,
        },
        ..Default::default()
    };
    let nothing_to_do =
        report.plan.remove.is_empty() && merged.len() <= 1 && !merged.iter().any(|f| f.legacy);
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
    if let (Some(doc), true) = (&mut legacy, legacy_rewritten) {
        let old = doc.manifest_digest;
        doc.write(&client).await?;
        // The tag moved: the manifest it pointed at is one gc read, merged.
        if client.delete_manifest(&old).await? {
            report.manifests_deleted += 1;
        }
    }
    for f in &merged {
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
