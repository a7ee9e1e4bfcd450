//! Where narbor's cached bytes live: the local disk store.
//!
//! [`DiskStore`] keeps two kinds of objects under one key space of cache URL
//! paths (`<hash>.narinfo`, `nar/<nix32>.nar.xz`, `<hash>.ls`, `log/<drv>`,
//! `realisations/<id>.doi`):
//!
//! - **documents**, small objects (narinfo, listing, log, realisation) stored
//!   inline in the index;
//! - **blobs**, NAR files, written through a [`BlobWriter`] and stored as files.
//!
//! It bounds the bytes it holds ([`StoreConfig::max_size`]) by evicting the
//! least recently used objects. It is synchronous: the async server calls it
//! from `spawn_blocking`. It knows nothing of HTTP, upstreams or Nix formats
//! beyond "a key is a cache URL path"; the server validates what it stores.
//!
//! Before it writes a blob, a caller asks [`DiskStore::admit`] whether the
//! disk has room for it; while it writes, [`BlobWriter::reader`] hands out
//! readers of the bytes written so far, so clients can be served before the
//! blob is complete. Callers get open files ([`DiskStore::open_blob`],
//! [`BlobWriter::reader`]), never a path of a file being written.
//!
//! # Layout
//!
//! ```text
//! <dir>/index.redb                tables "objects" (key -> entry, documents inline) and
//!                                 "meta" (key -> entry header), see `index`
//! <dir>/blobs/<2 chars>/<name>    blob files; blob keys are `nar/<name>`,
//!                                 <2 chars> are the first two characters of <name>
//! <dir>/tmp/                      blobs being written; emptied at open
//! ```
//!
//! # Modules
//!
//! Each owns one thing; the arrows only point down this list (no cycles):
//!
//! ```text
//! disk        DiskStore: composes the parts below under one write lock, in the
//!             order this doc describes; eviction as a whole; admission
//! blob        BlobWriter: bytes, running hash, checks; commits through the
//!             narrow `Publish` trait that `disk` implements
//! index       the redb database and every transaction on it (record: the
//!             encoding of its values)
//! layout      the files: paths, temp files, rename and fsync, free space, sweep
//! accounting  sizes, the total, last accesses, which keys to evict
//! hot         copies of recently read documents
//! key, error, entry    leaves: key rules, the error type, plain values
//! ```
//!
//! # Why redb
//!
//! The index is [redb](https://docs.rs/redb): pure Rust (no C toolchain, unlike
//! SQLite or RocksDB bindings), ACID copy-on-write B-trees whose commits survive
//! `kill -9` and power loss (a commit is either whole or absent), a fast open
//! (no log to replay), and a single file. Its file lock also makes a store
//! directory single-owner: a second `open` of the same directory fails instead
//! of emptying the first owner's `tmp/`.
//!
//! # What survives a crash
//!
//! A blob becomes visible in this order: written to `tmp/`, hashed while
//! written, fsynced, renamed into `blobs/`, its directory fsynced, then one
//! durable index commit. So the index only ever names complete, fsynced files,
//! and the size total, rebuilt from the index at every open, is exact after any
//! crash. A crash between the rename and the commit leaves a file without an
//! entry: it is never served, and [`DiskStore::sweep_orphans`] deletes it.
//! Removal goes the other way: index commit first, then unlink, so a reader that
//! already holds the file keeps reading it. An entry's `objects` value and its
//! `meta` header are written and removed in the same transaction, so a crash
//! never leaves one without the other.
//!
//! Last-access times are kept in memory and written by
//! [`DiskStore::flush_access_times`]; a crash loses only the accesses since the
//! last flush, which only makes eviction slightly less fair.
//!
//! After a `kill -9`, redb's open verifies its checksums and rebuilds its
//! allocator state. redb's "quick repair" would make that instant but costs an
//! extra fsync and an allocator write on every commit, and we commit on every
//! put; a slower open after a crash is the better trade.
//!
//! # Costs
//!
//! Measured 2026-11-21 on the project's 2-core AMD EPYC machine, release build,
//! 100k narinfo-sized (1 KiB) documents, a 257 MiB `index.redb`
//! (`tests/open_speed.rs`):
//!
//! | operation | time |
//! |---|---|
//! | `open`, clean | 0.17–0.24 s |
//! | `open` after `kill -9` (redb repair) | 0.49–0.58 s |
//! | `get_document`, each of the 100k once | 0.31–0.36 s in all |
//! | `flush_access_times` with all 100k accessed | 1.7–1.9 s |
//!
//! Open and the flush read and write only the `meta` table (26-byte headers),
//! never document bodies; the flush blocks other writers while it runs, and
//! flushed every minute it only writes the keys read in that minute. With a
//! million narinfo-sized documents (`bench/`, row 6), open went from 2.4–2.9 s
//! of CPU to 0.8 s once it read `meta` into a presized FxHash map. Memory for the accounts, estimated:
//! 100 to 150 bytes per entry (a 40-byte map slot plus the key's allocation).
//!
//! # Concurrency
//!
//! One mutex serialises every change to the index and the blob directory
//! (commits, removals, evictions, flushes), so the index, the files and the
//! in-memory accounts change together; redb serialises write transactions
//! anyway. The slow part of a blob commit, fsyncing its data, happens before
//! that lock. Reads take a redb read transaction and a short lock on the
//! accounts to record the access. Documents read recently (up to 8 MiB of
//! them) are kept in memory too, so a hot narinfo skips the read transaction
//! and the copy; every change to a document drops its copy (`hot`).

mod accounting;
mod blob;
mod disk;
mod entry;
mod error;
mod hot;
mod index;
pub mod key;
mod layout;

#[cfg(test)]
mod tests;

pub use blob::BlobWriter;
pub use disk::{Clock, DiskStore, StoreConfig, StoreStats, ADMISSION_HEADROOM};
pub use entry::{Document, EntryInfo, EntryKind};
pub use error::{IntegrityCheck, StoreError};
