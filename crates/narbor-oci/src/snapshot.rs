//! The index on disk: every fragment as last fetched, so `serve --oci`
//! serves the index at once after a restart, even with the registry down,
//! and refetches only what changed.
//!
//! Layout of the directory (`index-dir`, by default `CACHE_DIR/oci-index`):
//!
//! ```text
//! store                        the store reference the fragments are from
//! fragments/<tag>.manifest     a fragment's manifest, as the registry sent it
//! fragments/<tag>.layer        its entries layer (absent if it had none)
//! cache-index.json             nixcache-oci's index layer, raw: the file the
//!                              seed's proxy keeps in its NIXCACHE_INDEX_DIR
//! ```
//!
//! Files are written to a temporary name and renamed, so a crash leaves the
//! old file or the new one. A directory saved for another store is not read
//! (and is emptied by the first save). A `cache-index.json` without a saved
//! manifest (the seed's proxy wrote it) is read as the legacy index with an
//! unknown digest, which the first refresh replaces. Files are trusted no
//! more than the registry: entries are checked (signatures included) as they
//! are read.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::index::RawFragment;
use crate::{is_fragment_tag, Digest, OciError, LEGACY_INDEX_TAG};

/// The seed proxy's name for its saved index (proxy/main.py at 6a4b9e4,
/// line 158: `INDEX_DIR / "cache-index.json"`).
const SEED_FILE: &str = "cache-index.json";

#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    dir: PathBuf,
    store: String,
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> OciError {
    let what = format!("{what} {}", path.display());
    move |source| OciError::Io { what, source }
}

impl Snapshot {
    pub fn new(dir: PathBuf, store: String) -> Snapshot {
        Snapshot { dir, store }
    }

    fn fragments(&self) -> PathBuf {
        self.dir.join("fragments")
    }

    /// Whether the directory holds this store's fragments (or none yet).
    fn ours(&self) -> bool {
        match std::fs::read_to_string(self.dir.join("store")) {
            Ok(s) => s.trim() == self.store,
            Err(_) => true,
        }
    }

    /// The fragments saved, in no particular order.
    pub fn load(&self) -> Result<Vec<RawFragment>, OciError> {
        if !self.ours() {
            tracing::info!(dir = %self.dir.display(), "the saved index is another store's: not read");
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let dir = self.fragments();
        let listing = match std::fs::read_dir(&dir) {
            Ok(l) => Some(l),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("reading", &dir)(e)),
        };
        for item in listing.into_iter().flatten() {
            let item = item.map_err(io("reading", &dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let Some(tag) = name.strip_suffix(".manifest") else {
                continue;
            };
            if !is_fragment_tag(tag) && tag != LEGACY_INDEX_TAG {
                continue;
            }
            let manifest = std::fs::read(item.path()).map_err(io("reading", &item.path()))?;
            let layer_path = dir.join(format!("{tag}.layer"));
            let layer = match std::fs::read(&layer_path) {
                Ok(b) => Some(Bytes::from(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io("reading", &layer_path)(e)),
            };
            out.push(RawFragment {
                tag: tag.to_owned(),
                digest: Digest::of(&manifest),
                manifest: Bytes::from(manifest),
                layer,
            });
        }
        if !out.iter().any(|r| r.tag == LEGACY_INDEX_TAG) {
            let seed = self.dir.join(SEED_FILE);
            if let Ok(layer) = std::fs::read(&seed) {
                tracing::info!(file = %seed.display(), "reading the index nixcache-oci's proxy saved");
                out.push(RawFragment {
                    tag: LEGACY_INDEX_TAG.to_owned(),
                    // Unknown: the first refresh fetches the tag again.
                    digest: Digest::of(b""),
                    manifest: Bytes::from(seed_manifest(&layer)),
                    layer: Some(Bytes::from(layer)),
                });
            }
        }
        Ok(out)
    }

    /// Saves fetched fragments and forgets the `gone` tags.
    pub fn save(&self, raws: &[RawFragment], gone: &[String]) -> Result<(), OciError> {
        let dir = self.fragments();
        if !self.ours() {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(self.dir.join(SEED_FILE));
        }
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        write_atomic(&self.dir.join("store"), self.store.as_bytes())?;
        for raw in raws {
            if !is_fragment_tag(&raw.tag) && raw.tag != LEGACY_INDEX_TAG {
                continue;
            }
            match &raw.layer {
                Some(layer) => write_atomic(&dir.join(format!("{}.layer", raw.tag)), layer)?,
                None => remove(&dir.join(format!("{}.layer", raw.tag)))?,
            }
            write_atomic(&dir.join(format!("{}.manifest", raw.tag)), &raw.manifest)?;
            if raw.tag == LEGACY_INDEX_TAG {
                if let Some(layer) = &raw.layer {
                    write_atomic(&self.dir.join(SEED_FILE), layer)?;
                }
            }
        }
        for tag in gone {
            if !is_fragment_tag(tag) && tag != LEGACY_INDEX_TAG {
                continue;
            }
            remove(&dir.join(format!("{tag}.manifest")))?;
            remove(&dir.join(format!("{tag}.layer")))?;
            if tag == LEGACY_INDEX_TAG {
                remove(&self.dir.join(SEED_FILE))?;
            }
        }
        Ok(())
    }
}

/// A manifest for a legacy layer known only from the seed proxy's file.
fn seed_manifest(layer: &[u8]) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::MANIFEST_MEDIA_TYPE,
        "config": crate::Descriptor::empty(),
        "layers": [{
            "mediaType": crate::LEGACY_INDEX_MEDIA_TYPE,
            "digest": Digest::of(layer).to_string(),
            "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes()
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), OciError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", &tmp))
}

fn remove(path: &Path) -> Result<(), OciError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(tag: &str, layer: Option<&[u8]>) -> RawFragment {
        RawFragment {
            tag: tag.into(),
            digest: Digest::of(tag.as_bytes()),
            manifest: Bytes::from(format!("manifest of {tag}")),
            layer: layer.map(Bytes::copy_from_slice),
        }
    }

    #[test]
    fn saved_fragments_load_back_and_gone_ones_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshot::new(dir.path().join("idx"), "oci://r/a".into());
        assert!(s.load().unwrap().is_empty(), "nothing saved yet");
        let a = "narbor-20240101000000-aa";
        let b = "narbor-20240101000001-bb";
        s.save(
            &[
                raw(a, Some(b"layer a")),
                raw(b, None),
                raw("latest", Some(b"x")),
                raw(LEGACY_INDEX_TAG, Some(b"{}")),
            ],
            &[],
        )
        .unwrap();
        let mut got = s.load().unwrap();
        got.sort_by(|x, y| x.tag.cmp(&y.tag));
        let tags: Vec<&str> = got.iter().map(|r| r.tag.as_str()).collect();
        assert_eq!(tags, [LEGACY_INDEX_TAG, a, b], "other tags are not saved");
        assert_eq!(got[1].layer.as_deref(), Some(&b"layer a"[..]));
        assert_eq!(
            got[1].digest,
            Digest::of(b"manifest of narbor-20240101000000-aa")
        );
        assert_eq!(got[2].layer, None);
        // The seed proxy's file is written too.
        assert_eq!(
            std::fs::read(dir.path().join("idx/cache-index.json")).unwrap(),
            b"{}"
        );
        s.save(&[], &[a.to_owned(), LEGACY_INDEX_TAG.to_owned()])
            .unwrap();
        let tags: Vec<String> = s.load().unwrap().into_iter().map(|r| r.tag).collect();
        assert_eq!(tags, [b]);
        assert!(!dir.path().join("idx/cache-index.json").exists());
    }

    #[test]
    fn another_stores_snapshot_is_not_read_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let a = Snapshot::new(dir.path().to_owned(), "oci://r/a".into());
        a.save(&[raw("narbor-20240101000000-aa", Some(b"l"))], &[])
            .unwrap();
        let b = Snapshot::new(dir.path().to_owned(), "oci://r/b".into());
        assert!(b.load().unwrap().is_empty());
        b.save(&[raw("narbor-20240101000001-bb", Some(b"l"))], &[])
            .unwrap();
        let tags: Vec<String> = b.load().unwrap().into_iter().map(|r| r.tag).collect();
        assert_eq!(tags, ["narbor-20240101000001-bb"]);
        assert!(a.load().unwrap().is_empty());
    }

    #[test]
    fn the_seed_proxys_file_alone_is_read_as_the_legacy_index() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SEED_FILE), br#"{"entries": {}}"#).unwrap();
        let s = Snapshot::new(dir.path().to_owned(), "oci://ghcr.io/o/r/nix-cache".into());
        let got = s.load().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].tag, LEGACY_INDEX_TAG);
        let m = crate::ImageManifest::parse(&got[0].manifest, "test").unwrap();
        assert_eq!(m.layers[0].digest, Digest::of(br#"{"entries": {}}"#));
    }
}
