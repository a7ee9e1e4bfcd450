//! The `--oci` registry as a source: narinfos published in its index
//! (served from memory, before the store: the index is the truth of what was
//! published), NARs from its blobs, checked against their digest.
//!
//! The index itself, and its refresh, are `oci.rs`.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use narbor_proto::CacheUrl;

use super::{Fetched, Found, Source};
use crate::nar_fill::OpenedNar;
use crate::oci::OciSource;
use crate::verify::NarCheck;

pub(crate) struct Registry(pub Arc<OciSource>);

impl Source for Registry {
    fn published(&self, url: &CacheUrl) -> Option<Bytes> {
        let CacheUrl::NarInfo(hash) = url else {
            return None;
        };
        let index = self.0.index();
        let entry = index.get(hash)?;
        Some(Bytes::from(entry.served_narinfo().into_owned()))
    }

    fn rename(&self, url: &CacheUrl) -> Option<CacheUrl> {
        let CacheUrl::NarOfStoreHash { compression, .. } = url else {
            return None;
        };
        let blob = self.0.index().nar_blob(&url.to_path())?;
        Some(CacheUrl::Nar {
            file_hash: blob.digest.0,
            compression: *compression,
        })
    }

    fn may_have(&self, url: &CacheUrl, key: &str) -> bool {
        url.is_nar() && self.0.index().nar_blob(key).is_some()
    }

    fn document<'a>(&'a self, _url: &'a CacheUrl) -> BoxFuture<'a, Found<Fetched>> {
        // Its only documents are the narinfos it publishes.
        Box::pin(async { Found::No })
    }

    fn open_nar<'a>(&'a self, _url: &'a CacheUrl, key: &'a str) -> BoxFuture<'a, Found<OpenedNar>> {
        Box::pin(async move {
            let Some(blob) = self.0.index().nar_blob(key) else {
                return Found::No;
            };
            match self.0.client().get_blob(&blob.digest, None).await {
                Ok(resp) => Found::Yes {
                    value: OpenedNar {
                        upstream: None,
                        name: "the OCI registry".to_owned(),
                        resp,
                        check: NarCheck::File {
                            hash: blob.digest.0,
                            size: blob.size,
                        },
                    },
                    upstream: None,
                },
                Err(e) => {
                    // The upstreams may have it: they are asked next.
                    tracing::warn!(%key, "the OCI registry did not serve the blob, asking upstreams: {e}");
                    Found::No
                }
            }
        })
    }

    fn head_nar<'a>(
        &'a self,
        _url: &'a CacheUrl,
        key: &'a str,
    ) -> BoxFuture<'a, Found<Option<u64>>> {
        Box::pin(async move {
            match self.0.index().nar_blob(key) {
                Some(blob) => Found::Yes {
                    value: blob.size,
                    upstream: None,
                },
                None => Found::No,
            }
        })
    }
}
