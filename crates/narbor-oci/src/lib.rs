//! An OCI registry as a Nix binary cache.
//!
//! This crate owns two things: the OCI distribution client ([`RegistryClient`]:
//! blobs, uploads, manifests, tags, the bearer/basic auth flow, retries) and
//! narbor's cache index format on top of it (immutable *fragments*, see
//! `docs/oci-format.md`): [`IndexReader`] builds an in-memory [`CacheIndex`]
//! incrementally, [`write_fragments`] publishes entries.
//!
//! It does not dump, compress or sign NARs (that is `narbor-publish`) and does
//! not serve HTTP (that is `narbor-server`). It reads no configuration files
//! except the docker `config.json` that [`Credentials::discover`] is asked to.

mod auth;
mod client;
mod digest;
mod error;
mod format;
mod index;
mod legacy;
mod ops;
mod reference;
mod retry;
mod snapshot;
mod time;
mod upload;
mod writer;

#[cfg(test)]
mod tests;

pub use auth::Credentials;
pub use client::{ClientStats, RegistryClient};
pub use digest::Digest;
pub use error::OciError;
pub use format::{
    fragment_tag, is_fragment_tag, Descriptor, EntriesDoc, EntryDoc, ImageManifest,
    EMPTY_CONFIG_JSON, ENTRIES_MEDIA_TYPE, FRAGMENT_ARTIFACT_TYPE, LEGACY_INDEX_MEDIA_TYPE,
    LEGACY_INDEX_TAG, MANIFEST_MEDIA_TYPE, MAX_ENTRIES_PER_FRAGMENT,
};
pub use index::{BlobRef, CacheIndex, Fragment, IndexEntry, IndexReader, RefreshStats};
pub use legacy::{LegacyEntryDoc, LegacyIndexDoc};
pub use reference::StoreRef;
pub use retry::RetryPolicy;
pub use time::{now_unix, parse_utc_timestamp, utc_timestamp};
pub use upload::BlobUpload;
pub use writer::{nar_media_type, write_fragments, NewEntry, WrittenFragment};
