//! The Nix binary-cache protocol as pure types.
//!
//! This crate owns the formats a binary cache speaks: nixbase32, sha256 hashes in
//! Nix's three spellings, store paths, `.narinfo` documents, ed25519 signatures in
//! Nix's key format, the NAR archive (writer, streaming validator, `.ls` listing),
//! `nix-cache-info`, the URL grammar of a cache, and what a cache's HTTP status
//! says about a file.
//!
//! It does no networking, no async and reads no clock. The only I/O is through
//! `std::io` traits handed in by the caller, and [`nar::dump`], which reads the
//! filesystem path it is asked to archive. Every parser returns `Result` and never
//! panics on input.

pub mod cache_info;
pub mod hash;
pub mod http_status;
pub mod nar;
pub mod narinfo;
pub mod netrc;
pub mod nixbase32;
pub mod signing;
pub mod store_path;
pub mod text;
pub mod url;

pub use cache_info::CacheInfo;
pub use hash::Sha256;
pub use narinfo::NarInfo;
pub use signing::{PublicKey, SecretKey, Signature};
pub use store_path::{StorePath, StorePathHash, STORE_DIR};
pub use url::CacheUrl;
