//! nixcache-oci's index as a whole document, for the tools that change it
//! while a team still runs nixcache-oci's proxy: `gc` (drops what it
//! collects, as the seed's own gc does) and `push` (adds what it publishes,
//! as the seed's publisher does).
//!
//! The format is the seed's (`lib/cache-builder.sh`, `update_cache_index`,
//! and `.github/workflows/gc-cache.yml` at cmspam/nixcache-oci 6a4b9e4):
//! the tag `cache-index`, an image manifest whose config is the blob `{}\n`
//! and whose one layer, `application/vnd.nix.cache.index.v1+json`, is
//! Python's `json.dump(indent=2, sort_keys=True)` of
//! `{entries: {<store hash>: {added, name, nar_digest, nar_size, narinfo}},
//! gc_roots, generated, image, public_key, registry, repo, version}`.
//! The document is kept as JSON, so fields narbor does not know survive.
//! Reading it for serving is `index.rs`.

use std::collections::BTreeMap;

use bytes::Bytes;
use narbor_proto::StorePathHash;
use serde_json::{Map, Value};

use crate::format::MAX_ENTRIES_BLOB;
use crate::{
    Descriptor, Digest, ImageManifest, OciError, RegistryClient, LEGACY_INDEX_MEDIA_TYPE,
    LEGACY_INDEX_TAG, MANIFEST_MEDIA_TYPE,
};

/// The config blob the seed writes: `{}` and a newline (jq's output).
const SEED_CONFIG: &[u8] = b"{}\n";
const SEED_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// nixcache-oci's index as read from the registry.
#[derive(Debug, Clone)]
pub struct LegacyIndexDoc {
    /// The manifest read (its digest: what `cache-index` pointed at).
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    /// The index layer's digest.
    pub layer_digest: Digest,
    doc: Map<String, Value>,
}

/// One entry to add, in the seed's terms.
#[derive(Debug, Clone)]
pub struct LegacyEntryDoc {
    pub store_hash: StorePathHash,
    /// The store path's name (the seed's `name`).
    pub name: String,
    pub narinfo: String,
    pub nar_digest: Digest,
    /// The blob's size (the seed's `nar_size` is the compressed size).
    pub blob_size: u64,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub added: String,
}

impl LegacyIndexDoc {
    /// Reads `cache-index`; `None` when the repository has none.
    pub async fn read(client: &RegistryClient) -> Result<Option<LegacyIndexDoc>, OciError> {
        let Some((bytes, manifest_digest)) = client.get_manifest(LEGACY_INDEX_TAG).await? else {
            return Ok(None);
        };
        let what = "nixcache-oci's cache-index";
        let manifest = ImageManifest::parse(&bytes, what)?;
        let layer = manifest
            .layers
            .iter()
            .find(|l| l.media_type == LEGACY_INDEX_MEDIA_TYPE)
            .ok_or_else(|| {
                OciError::invalid(what, format!("no {LEGACY_INDEX_MEDIA_TYPE} layer"))
            })?;
        let layer_digest = layer.digest;
        let blob = match client.get_blob_bytes(&layer_digest, MAX_ENTRIES_BLOB).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        Self::from_parts(manifest_digest, manifest, &blob).map(Some)
    }

    /// The document of a manifest and its index layer's bytes.
    pub fn from_parts(
        manifest_digest: Digest,
        manifest: ImageManifest,
        layer: &[u8],
    ) -> Result<LegacyIndexDoc, OciError> {
        let what = "nixcache-oci's cache-index";
        let doc = match serde_json::from_slice::<Value>(layer) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(OciError::invalid(what, "not a JSON object".to_owned())),
            Err(e) => return Err(OciError::invalid(what, e.to_string())),
        };
        Ok(LegacyIndexDoc {
            manifest_digest,
            manifest,
            layer_digest: Digest::of(layer),
            doc,
        })
    }

    fn entries(&self) -> Option<&Map<String, Value>> {
        self.doc.get("entries")?.as_object()
    }

    /// The store path hashes the index has entries for.
    pub fn entry_hashes(&self) -> Vec<String> {
        self.entries()
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The blob of the entry filed under `hash`.
    pub fn entry_digest(&self, hash: &str) -> Option<Digest> {
        let d = self.entries()?.get(hash)?.get("nar_digest")?.as_str()?;
        d.parse().ok()
    }

    /// `gc_roots`: the top-level outputs its publishers built (those that
    /// parse as store path hashes).
    pub fn gc_roots(&self) -> Vec<StorePathHash> {
        self.doc
            .get("gc_roots")
            .and_then(Value::as_array)
            .map(|roots| {
                roots
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|r| StorePathHash::parse(r).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keeps the entries `keep` says to, and the `gc_roots` among them (what
    /// the seed's gc does); every other field is left as it is. Returns how
    /// many entries were dropped.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let Some(Value::Object(entries)) = self.doc.get_mut("entries") else {
            return 0;
        };
        let before = entries.len();
        entries.retain(|k, _| keep(k));
        let dropped = before - entries.len();
        let kept: Vec<String> = entries.keys().cloned().collect();
        if let Some(Value::Array(roots)) = self.doc.get_mut("gc_roots") {
            roots.retain(|r| r.as_str().is_some_and(|r| kept.iter().any(|k| k == r)));
        }
        dropped
    }

    /// Adds entries (replacing any under the same hash), their roots to
    /// `gc_roots`, and sets `generated`, as the seed's publisher does.
    pub fn add(&mut self, entries: &[LegacyEntryDoc], roots: &[StorePathHash], generated: &str) {
        let map = self
            .doc
            .entry("entries")
            .or_insert_with(|| Value::Object(Map::new()));
        if !map.is_object() {
            *map = Value::Object(Map::new());
        }
        if let Value::Object(map) = map {
            for e in entries {
                let mut entry = Map::new();
                entry.insert("added".into(), Value::from(e.added.clone()));
                entry.insert("name".into(), Value::from(e.name.clone()));
                entry.insert("nar_digest".into(), Value::from(e.nar_digest.to_string()));
                entry.insert("nar_size".into(), Value::from(e.blob_size));
                entry.insert("narinfo".into(), Value::from(e.narinfo.clone()));
                map.insert(e.store_hash.to_string(), Value::Object(entry));
            }
        }
        let mut all: Vec<String> = self
            .doc
            .get("gc_roots")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        all.extend(roots.iter().map(ToString::to_string));
        all.sort();
        all.dedup();
        self.doc.insert(
            "gc_roots".into(),
            Value::Array(all.into_iter().map(Value::from).collect()),
        );
        self.doc.insert("generated".into(), Value::from(generated));
    }

    /// The layer as the seed writes it: Python's `json.dump(indent=2,
    /// sort_keys=True)` (no trailing newline; non-ASCII escaped as `\uXXXX`).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = String::new();
        write_python_json(&Value::Object(self.doc.clone()), 0, &mut out);
        Bytes::from(out)
    }

    /// Writes the document as the new `cache-index`: its layer, the seed's
    /// config blob, and the manifest in the seed's shape. Returns the new
    /// manifest's digest (and updates this document's digests).
    pub async fn write(&mut self, client: &RegistryClient) -> Result<Digest, OciError> {
        let body = self.to_bytes();
        let layer_digest = Digest::of(&body);
        if !client.blob_exists(&layer_digest).await? {
            client
                .upload_blob_bytes(&layer_digest, body.clone())
                .await?;
        }
        let config = match self.manifest.config.digest {
            d if d == Digest::of(SEED_CONFIG) || d == Descriptor::empty().digest => {
                self.manifest.config.clone()
            }
            _ => Descriptor {
                media_type: SEED_CONFIG_MEDIA_TYPE.into(),
                digest: Digest::of(SEED_CONFIG),
                size: SEED_CONFIG.len() as u64,
                data: None,
                annotations: BTreeMap::new(),
            },
        };
        if !client.blob_exists(&config.digest).await? {
            let bytes = if config.digest == Digest::of(SEED_CONFIG) {
                Bytes::from_static(SEED_CONFIG)
            } else {
                Bytes::from_static(crate::EMPTY_CONFIG_JSON)
            };
            client.upload_blob_bytes(&config.digest, bytes).await?;
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.into()),
            artifact_type: None,
            config,
            layers: vec![Descriptor {
                media_type: LEGACY_INDEX_MEDIA_TYPE.into(),
                digest: layer_digest,
                size: body.len() as u64,
                data: None,
                annotations: BTreeMap::new(),
            }],
            annotations: BTreeMap::new(),
        };
        let manifest_body = manifest_bytes(&manifest)?;
        let digest = client.put_manifest(LEGACY_INDEX_TAG, manifest_body).await?;
        self.manifest = manifest;
        self.manifest_digest = digest;
        self.layer_digest = layer_digest;
        Ok(digest)
    }
}

/// A manifest as the seed writes it (jq's pretty output: two-space indent,
/// fields in the order it builds them, which is also serde's here, no final
/// newline).
fn manifest_bytes(manifest: &ImageManifest) -> Result<Bytes, OciError> {
    serde_json::to_vec_pretty(manifest)
        .map(Bytes::from)
        .map_err(|e| OciError::invalid("manifest", e.to_string()))
}

/// Python's `json.dumps(v, indent=2, sort_keys=True)`.
fn write_python_json(v: &Value, depth: usize, out: &mut String) {
    let pad = |out: &mut String, d: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(d));
    };
    match v {
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                write_python_string(k, out);
                out.push_str(": ");
                write_python_json(&map[*k], depth + 1, out);
            }
            pad(out, depth);
            out.push('}');
        }
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                write_python_json(item, depth + 1, out);
            }
            pad(out, depth);
            out.push(']');
        }
        Value::String(s) => write_python_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string as Python's `json` writes it with `ensure_ascii=True`.
fn write_python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blobs of the registry storage that nixcache-oci's own publisher
    /// wrote (../shared/fixtures/nixcache-oci, cmspam/nixcache-oci at
    /// 6a4b9e4, Python 3.11 and jq 1.6), by what they start with.
    fn fixture_blobs(start: &str) -> Vec<Vec<u8>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/nixcache-oci/registry/docker/registry/v2/blobs/sha256");
        let dirs = std::fs::read_dir(&root).unwrap_or_else(|e| {
            panic!(
                "the nixcache-oci fixture is missing at {} ({e}): it is part of the workplace's shared/ directory",
                root.display()
            )
        });
        let mut out = Vec::new();
        for d in dirs {
            for blob in std::fs::read_dir(d.unwrap().path()).unwrap() {
                let data = std::fs::read(blob.unwrap().path().join("data")).unwrap();
                if data.starts_with(start.as_bytes()) {
                    out.push(data);
                }
            }
        }
        out
    }

    #[test]
    fn the_seeds_own_index_and_manifest_are_written_back_byte_for_byte() {
        let layers = fixture_blobs("{\n  \"entries\"");
        let manifests = fixture_blobs("{\n  \"schemaVersion\"");
        assert_eq!((layers.len(), manifests.len()), (2, 2), "two repositories");
        for layer in &layers {
            let manifest_bytes = manifests
                .iter()
                .find(|m| {
                    let s = String::from_utf8_lossy(m);
                    s.contains(&Digest::of(layer).to_string())
                })
                .expect("a manifest names the layer");
            let manifest = ImageManifest::parse(manifest_bytes, "fixture").unwrap();
            let d =
                LegacyIndexDoc::from_parts(Digest::of(manifest_bytes), manifest, layer).unwrap();
            assert_eq!(d.entry_hashes().len(), 3);
            assert_eq!(d.gc_roots().len(), 1);
            assert_eq!(
                String::from_utf8_lossy(&d.to_bytes()),
                String::from_utf8_lossy(layer),
                "the layer, rewritten unchanged"
            );
            assert_eq!(
                String::from_utf8_lossy(&super::manifest_bytes(&d.manifest).unwrap()),
                String::from_utf8_lossy(manifest_bytes),
                "the manifest, rewritten unchanged"
            );
        }
    }

    #[test]
    fn json_is_written_in_the_shape_of_pythons_json_dump() {
        // indent=2, sort_keys=True, ensure_ascii=True: what the fixture test
        // above checks on real output, here on the cases it lacks.
        let v: Value = serde_json::from_str(
            r#"{"version": 1, "gc_roots": ["b", "a"], "entries": {"z": {"nar_size": 3, "narinfo": "A: b\n"}, "a": {}}, "public_key": "", "x": [], "u": "é☃\"\\"}"#,
        )
        .unwrap();
        let mut out = String::new();
        write_python_json(&v, 0, &mut out);
        assert_eq!(
            out,
            "{\n  \"entries\": {\n    \"a\": {},\n    \"z\": {\n      \"nar_size\": 3,\n      \"narinfo\": \"A: b\\n\"\n    }\n  },\n  \"gc_roots\": [\n    \"b\",\n    \"a\"\n  ],\n  \"public_key\": \"\",\n  \"u\": \"\\u00e9\\u2603\\\"\\\\\",\n  \"version\": 1,\n  \"x\": []\n}"
        );
    }

    fn doc(json: &str) -> LegacyIndexDoc {
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            config: Descriptor::empty(),
            layers: vec![],
            annotations: BTreeMap::new(),
        };
        LegacyIndexDoc::from_parts(Digest::of(b"m"), manifest, json.as_bytes()).unwrap()
    }

    const A: &str = "1f9v52vw3jia9scaia67wl40qwq91g5g";
    const B: &str = "v9rs1ip9qv58yl8jplj00zfcdwjxd1r9";

    #[test]
    fn retain_drops_entries_and_their_roots_and_keeps_the_rest() {
        let mut d = doc(&format!(
            r#"{{"entries": {{"{A}": {{"x": 1}}, "{B}": {{"y": 2}}}}, "gc_roots": ["{A}", "{B}", "not-a-store-hash"], "generated": "g", "mine": true}}"#
        ));
        assert_eq!(d.gc_roots().len(), 2, "only hashes count as roots");
        assert_eq!(d.retain(|h| h == A), 1);
        assert_eq!(d.entry_hashes(), [A]);
        assert_eq!(d.doc["gc_roots"], serde_json::json!([A]));
        assert_eq!(d.doc["generated"], "g", "the seed's gc leaves generated");
        assert_eq!(d.doc["mine"], true, "unknown fields survive");
    }

    #[test]
    fn add_writes_the_seeds_entry_shape_and_unions_roots() {
        let mut d = doc(&format!(r#"{{"entries": {{}}, "gc_roots": ["{A}"]}}"#));
        let e = LegacyEntryDoc {
            store_hash: StorePathHash::parse(B).unwrap(),
            name: "hello".into(),
            narinfo: "StorePath: x\n".into(),
            nar_digest: Digest::of(b"nar"),
            blob_size: 7,
            added: "2026-12-06T01:52:28Z".into(),
        };
        d.add(
            &[e],
            &[
                StorePathHash::parse(B).unwrap(),
                StorePathHash::parse(A).unwrap(),
            ],
            "2026-12-07T00:00:00Z",
        );
        assert_eq!(d.doc["gc_roots"], serde_json::json!([A, B]));
        assert_eq!(d.doc["generated"], "2026-12-07T00:00:00Z");
        let entry = &d.doc["entries"][B];
        assert_eq!(entry["name"], "hello");
        assert_eq!(entry["nar_size"], 7);
        assert_eq!(entry["added"], "2026-12-06T01:52:28Z");
        assert_eq!(d.entry_digest(B), Some(Digest::of(b"nar")));
        assert_eq!(
            entry.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["added", "name", "nar_digest", "nar_size", "narinfo"]
        );
    }
}
