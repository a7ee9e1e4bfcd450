//! Writing fragments: the only way narbor adds to an index.
//!
//! A fragment is written once under a fresh tag and never changed, so two
//! writers never touch the same document: concurrent pushes cannot lose each
//! other's entries. Its manifest names every NAR blob its entries use, so the
//! registry's own GC keeps them and registry UIs list them.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use narbor_proto::NarInfo;

use crate::format::EMPTY_CONFIG_JSON;
use crate::{
    fragment_tag, now_unix, utc_timestamp, Descriptor, Digest, EntriesDoc, EntryDoc, ImageManifest,
    OciError, RegistryClient, ENTRIES_MEDIA_TYPE, FRAGMENT_ARTIFACT_TYPE, MANIFEST_MEDIA_TYPE,
    MAX_ENTRIES_PER_FRAGMENT,
};

/// One entry to publish: a signed narinfo and its NAR blob (already uploaded).
pub type NewEntry = EntryDoc;

/// A fragment as written.
#[derive(Debug, Clone)]
pub struct WrittenFragment {
    pub tag: String,
    pub digest: Digest,
    pub entries: usize,
}

/// The media type of a NAR layer compressed with `compression` (Nix's name).
pub fn nar_media_type(compression: &str) -> String {
    match compression {
        "none" | "" => "application/vnd.narbor.nar.v1".to_owned(),
        c => format!("application/vnd.narbor.nar.v1+{c}"),
    }
}

/// Writes `entries` as fragments of at most [`MAX_ENTRIES_PER_FRAGMENT`]
/// entries each, in order. Every NAR blob must be in the registry already: a
/// missing one fails with [`OciError::ManifestBlobUnknown`] (the fragments
/// before it stay written; the caller uploads and calls again with the rest).
pub async fn write_fragments(
    client: &RegistryClient,
    entries: &[NewEntry],
) -> Result<Vec<WrittenFragment>, OciError> {
    let mut out = Vec::new();
    for chunk in entries.chunks(MAX_ENTRIES_PER_FRAGMENT) {
        out.push(write_fragment(client, chunk).await?);
    }
    Ok(out)
}

async fn write_fragment(
    client: &RegistryClient,
    entries: &[NewEntry],
) -> Result<WrittenFragment, OciError> {
    let now = now_unix();
    let doc = EntriesDoc {
        version: 1,
        created: utc_timestamp(now),
        entries: entries.to_vec(),
    };
    let doc_bytes = Bytes::from(
        serde_json::to_vec(&doc).map_err(|e| OciError::invalid("entries", e.to_string()))?,
    );
    let doc_digest = Digest::of(&doc_bytes);
    if !client.blob_exists(&doc_digest).await? {
        client
            .upload_blob_bytes(&doc_digest, doc_bytes.clone())
            .await?;
    }
    let empty = Descriptor::empty();
    if !client.blob_exists(&empty.digest).await? {
        client
            .upload_blob_bytes(&empty.digest, Bytes::from_static(EMPTY_CONFIG_JSON))
            .await?;
    }
    let mut layers = vec![Descriptor {
        media_type: ENTRIES_MEDIA_TYPE.into(),
        digest: doc_digest,
        size: doc_bytes.len() as u64,
        data: None,
        annotations: BTreeMap::new(),
    }];
    let mut seen = HashSet::new();
    for e in entries {
        if !seen.insert(e.nar_digest) {
            continue;
        }
        let info = NarInfo::parse(&e.narinfo)
            .map_err(|err| OciError::invalid("narinfo to publish", err.to_string()))?;
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "org.opencontainers.image.title".to_owned(),
            info.url.clone(),
        );
        layers.push(Descriptor {
            media_type: nar_media_type(&info.compression),
            digest: e.nar_digest,
            size: e.blob_size,
            data: None,
            annotations,
        });
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.created".to_owned(),
        utc_timestamp(now),
    );
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        artifact_type: Some(FRAGMENT_ARTIFACT_TYPE.into()),
        config: empty,
        layers,
        annotations,
    };
    let body = Bytes::from(
        serde_json::to_vec(&manifest).map_err(|e| OciError::invalid("manifest", e.to_string()))?,
    );
    let tag = fragment_tag(now);
    let digest = client.put_manifest(&tag, body).await?;
    tracing::info!(%tag, entries = entries.len(), "wrote index fragment");
    Ok(WrittenFragment {
        tag,
        digest,
        entries: entries.len(),
    })
}
