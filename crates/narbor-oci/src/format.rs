//! The index format's documents and media types (see `docs/oci-format.md`).
//!
//! A *fragment* is an OCI image manifest (`artifactType`
//! [`FRAGMENT_ARTIFACT_TYPE`], config the empty descriptor) whose first layer
//! is an entries blob ([`EntriesDoc`]) and whose other layers are the NAR blobs
//! its entries name. This module owns the JSON shapes and the tag grammar;
//! reading and writing them against a registry is `index.rs` and `writer.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::compact_stamp;
use crate::{Digest, OciError};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const FRAGMENT_ARTIFACT_TYPE: &str = "application/vnd.narbor.cache.fragment.v1";
pub const ENTRIES_MEDIA_TYPE: &str = "application/vnd.narbor.cache.entries.v1+json";
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The OCI empty descriptor's content.
pub const EMPTY_CONFIG_JSON: &[u8] = b"{}";
/// nixcache-oci's single index tag, read for compatibility.
pub const LEGACY_INDEX_TAG: &str = "cache-index";
pub const LEGACY_INDEX_MEDIA_TYPE: &str = "application/vnd.nix.cache.index.v1+json";
/// Entries per fragment: one NAR layer each, so manifests stay far below the
/// 4 MiB registries accept (about 200 bytes a layer).
pub const MAX_ENTRIES_PER_FRAGMENT: usize = 1000;
/// The largest entries blob or legacy index narbor reads.
pub const MAX_ENTRIES_BLOB: usize = 256 << 20;

const TAG_PREFIX: &str = "narbor-";

/// `narbor-<UTC yyyymmddHHMMSS>-<16 hex random>`: unique, and sorting the
/// tags as text sorts fragments by time of writing.
pub fn fragment_tag(now_unix: u64) -> String {
    let mut r = [0u8; 8];
    // A failed random source still gives a unique-enough tag with the clock.
    let _ = getrandom::getrandom(&mut r);
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TAG_PREFIX}{}-{hex}", compact_stamp(now_unix))
}

/// True for tags [`fragment_tag`] makes.
pub fn is_fragment_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix(TAG_PREFIX) else {
        return false;
    };
    let Some((stamp, hex)) = rest.split_once('-') else {
        return false;
    };
    stamp.len() == 14
        && stamp.bytes().all(|b| b.is_ascii_digit())
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The OCI empty descriptor (`{}`), narbor's config.
    pub fn empty() -> Self {
        Descriptor {
            media_type: EMPTY_MEDIA_TYPE.into(),
            digest: Digest::of(EMPTY_CONFIG_JSON),
            size: EMPTY_CONFIG_JSON.len() as u64,
            data: Some("e30=".into()),
            annotations: BTreeMap::new(),
        }
    }
}

/// An OCI image manifest (only the fields narbor reads or writes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, OciError> {
        let m: ImageManifest = serde_json::from_slice(bytes)
            .map_err(|e| OciError::invalid(what, format!("not an image manifest: {e}")))?;
        if m.schema_version != 2 {
            return Err(OciError::invalid(
                what,
                format!("schemaVersion {}", m.schema_version),
            ));
        }
        Ok(m)
    }

    /// Every blob this manifest keeps alive: config and layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.config.digest).chain(self.layers.iter().map(|l| &l.digest))
    }
}

/// The first layer of a fragment: the entries it publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntriesDoc {
    /// 1 for this layout; readers refuse a higher one.
    pub version: u32,
    /// When the fragment was written, RFC 3339 UTC.
    pub created: String,
    pub entries: Vec<EntryDoc>,
}

/// One published store path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryDoc {
    /// The signed `.narinfo` document, exactly as served.
    pub narinfo: String,
    /// The blob holding the (compressed) NAR the narinfo's `URL` names.
    pub nar_digest: Digest,
    /// Its size in bytes (the narinfo's `FileSize`).
    pub blob_size: u64,
    /// When the path was first pushed (Unix seconds): gc's retention clock.
    pub pushed_at: u64,
}

/// nixcache-oci's index layer (`lib/cache-builder.sh`, `update_cache_index`,
/// at 6a4b9e4), as far as serving reads it. gc and push keep the whole
/// document as JSON, so fields they do not know survive a rewrite.
#[derive(Debug, Deserialize)]
pub(crate) struct LegacyIndex {
    pub entries: BTreeMap<String, LegacyEntry>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LegacyEntry {
    pub narinfo: String,
    pub nar_digest: Digest,
    /// The blob's (compressed) size.
    #[serde(default)]
    pub nar_size: Option<u64>,
    /// When the path was first published, `YYYY-MM-DDTHH:MM:SSZ`: the seed's
    /// gc keeps an entry at least its retention after this.
    #[serde(default)]
    pub added: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_unique_sortable_and_recognised() {
        let a = fragment_tag(1_700_000_000);
        let b = fragment_tag(1_700_000_000);
        let c = fragment_tag(1_700_000_001);
        assert_ne!(a, b);
        assert!(a < c && b < c);
        assert!(a.starts_with("narbor-20231114221320-"));
        assert!(is_fragment_tag(&a));
        for t in [
            "cache-index",
            "latest",
            "narbor-2023-x",
            "narbor-20231114221320-",
            "narbor-20231114221320-zz",
        ] {
            assert!(!is_fragment_tag(t), "{t}");
        }
        // Tags are at most 128 characters of [A-Za-z0-9_.-].
        assert!(a.len() <= 128);
    }

    #[test]
    fn empty_descriptor() {
        let d = Descriptor::empty();
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(
            j,
            r#"{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="}"#
        );
    }
}
