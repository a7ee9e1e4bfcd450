//! Publishing Nix store paths into an OCI-registry-backed cache.
//!
//! [`push`] takes the closure of some store paths (asking the Nix CLI),
//! drops what upstream caches or the store already have, dumps each NAR with
//! narbor's own writer, checks it against Nix's record, compresses it to a
//! temporary file, uploads it with bounded concurrency and publishes signed
//! narinfos as index fragments. [`gc`] compacts the index and deletes what
//! nothing needs any more.
//!
//! This crate talks to registries only through `narbor-oci`, and to Nix only
//! through its command-line tools. It does not serve HTTP and parses no
//! command lines; progress goes to a [`Reporter`] the caller supplies.

mod compress;
mod error;
mod gc;
mod nix;
mod push;
mod upstream;

pub use compress::Compression;
pub use error::PublishError;
pub use gc::{gc, GcOptions, GcPlan, GcReport};
pub use nix::{closure_infos, root_paths, PathInfo};
pub use push::{push, Event, PushOptions, PushSummary, Reporter};
pub use upstream::UpstreamCheck;
