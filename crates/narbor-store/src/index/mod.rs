//! The redb index: the database, its two tables, and every transaction the
//! store runs on them.
//!
//! Table `objects` maps a key to its entry (documents inline, see `record`);
//! table `meta` maps the same keys to the entry's 26-byte header alone. Open
//! and the access-time flush read and write only `meta`, never document
//! bodies. Every write changes both tables in one transaction, so a crash
//! never leaves one without the other; a store written before `meta` existed
//! gets it built at its first open.
//!
//! This module owns the database handle and every transaction: open, read,
//! put documents, index a blob, remove, flush access times, list. It does not
//! own the files (`layout`), the in-memory accounts (`accounting`), the copies
//! of hot documents (`hot`) or the store's write lock: `disk` holds that lock
//! around each write here and brings the others in step after it.

mod record;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use tracing::{info, warn};

use crate::entry::{Document, EntryInfo, EntryKind};
use crate::error::{IndexOp, IndexResult, StoreError};
use record::set_last_access;
pub(crate) use record::{from_unix_secs, unix_secs, Record, HEADER_LEN};

/// key -> encoded entry (a document's body inline).
pub(crate) const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

/// key -> the header of the key's `objects` value (no body).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The redb page cache. Documents are read through it; entry metadata is also
/// in memory, so it only needs to hold the hot documents. The OS page cache
/// serves the rest.
const CACHE_BYTES: usize = 64 << 20;

/// The open index of one store.
pub(crate) struct Index {
    db: Database,
    path: PathBuf,
}

/// What a key holds, as read from `objects`.
pub(crate) enum Stored {
    Document(Document),
    /// The bytes are in the blob's file; `size` is its recorded length.
    Blob {
        size: u64,
    },
}

/// A key that a removal took out of the index.
pub(crate) struct Removed {
    pub key: String,
    /// It was not (or not certainly) a document: a blob file may exist.
    pub may_have_file: bool,
}

impl Index {
    /// Opens or creates the database at `path`, creates its tables in a new
    /// store (so reads never meet a missing table), and builds `meta` if it
    /// does not match `objects`.
    ///
    /// redb's file lock makes the caller the only process using the index
    /// until it is dropped; a second open fails here.
    pub fn open(path: PathBuf) -> Result<Index, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .ctx(IndexOp {
                path: &path,
                op: "open",
                key: None,
            })?;
        let index = Index { db, path };
        index.prepare_tables()?;
        Ok(index)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn op<'a>(&'a self, op: &'static str, key: Option<&'a str>) -> IndexOp<'a> {
        IndexOp {
            path: &self.path,
            op,
            key,
        }
    }

    fn prepare_tables(&self) -> Result<(), StoreError> {
        let op = self.op("load", None);
        let txn = self.db.begin_write().ctx(op)?;
        {
            let objects = txn.open_table(OBJECTS).ctx(op)?;
            let mut meta = txn.open_table(META).ctx(op)?;
            let (n_objects, n_meta) = (objects.len().ctx(op)?, meta.len().ctx(op)?);
            if n_objects != n_meta {
                info!(
                    objects = n_objects,
                    meta = n_meta,
                    "building the index's metadata table"
                );
                meta.retain(|_, _| false).ctx(op)?;
                for item in objects.iter().ctx(op)? {
                    let (key, value) = item.ctx(op)?;
                    let key = key.value();
                    // An entry that does not decode gets an empty header, which
                    // does not either: `for_each_header` reports it as corrupt.
                    let header = Record::decode(key, value.value())
                        .map(|r| r.encode_header().to_vec())
                        .unwrap_or_default();
                    meta.insert(key, header.as_slice()).ctx(op)?;
                }
            }
        }
        txn.commit().ctx(op)
    }

    /// How many entries the index holds.
    pub fn len(&self) -> Result<u64, StoreError> {
        let op = self.op("load", None);
        let txn = self.db.begin_read().ctx(op)?;
        let table = txn.open_table(META).ctx(op)?;
        table.len().ctx(op)
    }

    /// Calls `each(key, kind, size, last_access_secs)` for every entry whose
    /// header decodes, in key order; returns the keys of those that do not
    /// (logged here; the caller removes them).
    pub fn for_each_header(
        &self,
        mut each: impl FnMut(&str, EntryKind, u64, u64),
    ) -> Result<Vec<String>, StoreError> {
        let op = self.op("load", None);
        let txn = self.db.begin_read().ctx(op)?;
        let table = txn.open_table(META).ctx(op)?;
        let mut corrupt = Vec::new();
        for item in table.iter().ctx(op)? {
            let (key, value) = item.ctx(op)?;
            let key = key.value();
            match Record::decode_header(key, value.value()) {
                Ok(r) => each(key, r.kind, r.size, r.last_access),
                Err(e) => {
                    warn!(error = %e, "dropping an index entry that does not decode");
                    corrupt.push(key.to_owned());
                }
            }
        }
        Ok(corrupt)
    }

    /// What `key` holds. A document's body is shared with the value read, not
    /// copied.
    pub fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let op = self.op("read", Some(key));
        let txn = self.db.begin_read().ctx(op)?;
        let table = txn.open_table(OBJECTS).ctx(op)?;
        let Some(value) = table.get(key).ctx(op)?.map(|v| v.value().to_vec()) else {
            return Ok(None);
        };
        let record = Record::decode(key, &value)?;
        Ok(Some(match record.kind {
            EntryKind::Blob => Stored::Blob { size: record.size },
            EntryKind::Document => {
                let stored_at = from_unix_secs(record.stored_at);
                // The body is the value past its header: no copy.
                let body = Bytes::from(value).slice(HEADER_LEN..);
                Stored::Document(Document { body, stored_at })
            }
        }))
    }

    /// Stores the document `key` in one durable commit; returns whether it
    /// replaced an entry that may have a blob file (the caller deletes it).
    pub fn put_document(
        &self,
        key: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let replaced = self.put(self.op("put document", Some(key)), &[(key, body)], now)?;
        Ok(!replaced.is_empty())
    }

    /// Stores many documents in one durable commit; returns the keys whose
    /// replaced entry may have a blob file.
    pub fn put_documents<'k>(
        &self,
        docs: &[(&'k str, &[u8])],
        now: SystemTime,
    ) -> Result<Vec<&'k str>, StoreError> {
        self.put(self.op("put documents", None), docs, now)
    }

    fn put<'k>(
        &self,
        op: IndexOp<'_>,
        docs: &[(&'k str, &[u8])],
        now: SystemTime,
    ) -> Result<Vec<&'k str>, StoreError> {
        let txn = self.db.begin_write().ctx(op)?;
        let mut replaced_blobs = Vec::new();
        {
            let mut table = txn.open_table(OBJECTS).ctx(op)?;
            let mut meta = txn.open_table(META).ctx(op)?;
            for &(key, body) in docs {
                let record = Record::document(body, unix_secs(now));
                let old = table.insert(key, record.encode().as_slice()).ctx(op)?;
                let old_kind = old.map(|old| Record::decode(key, old.value()).map(|r| r.kind).ok());
                meta.insert(key, record.encode_header().as_slice())
                    .ctx(op)?;
                if matches!(old_kind, Some(k) if k != Some(EntryKind::Document)) {
                    replaced_blobs.push(key);
                }
            }
        }
        txn.commit().ctx(op)?;
        Ok(replaced_blobs)
    }

    /// Indexes the blob `key` of `size` bytes, whose file is in place, in one
    /// durable commit.
    pub fn put_blob(&self, key: &str, size: u64, now: SystemTime) -> Result<(), StoreError> {
        let record = Record::blob(size, unix_secs(now));
        let op = self.op("commit blob", Some(key));
        let txn = self.db.begin_write().ctx(op)?;
        txn.open_table(OBJECTS)
            .ctx(op)?
            .insert(key, record.encode().as_slice())
            .ctx(op)?;
        txn.open_table(META)
            .ctx(op)?
            .insert(key, record.encode_header().as_slice())
            .ctx(op)?;
        txn.commit().ctx(op)
    }

    /// Removes `keys` in one durable commit; returns those that were stored.
    pub fn remove(&self, keys: &[String]) -> Result<Vec<Removed>, StoreError> {
        let op = self.op("remove", keys.first().map(String::as_str));
        let txn = self.db.begin_write().ctx(op)?;
        let mut removed = Vec::with_capacity(keys.len());
        {
            let mut table = txn.open_table(OBJECTS).ctx(op)?;
            let mut meta = txn.open_table(META).ctx(op)?;
            for key in keys {
                meta.remove(key.as_str()).ctx(op)?;
                if let Some(old) = table.remove(key.as_str()).ctx(op)? {
                    let kind = Record::decode(key, old.value()).map(|r| r.kind).ok();
                    removed.push(Removed {
                        key: key.clone(),
                        may_have_file: kind != Some(EntryKind::Document),
                    });
                }
            }
        }
        txn.commit().ctx(op)?;
        Ok(removed)
    }

    /// Writes last-access times (`(key, unix seconds)`) into `meta`'s headers
    /// (never document bodies), in one transaction. Keys no longer stored are
    /// skipped.
    pub fn flush_access_times<'k>(
        &self,
        times: impl IntoIterator<Item = (&'k str, u64)>,
    ) -> Result<(), StoreError> {
        let op = self.op("flush access times", None);
        let txn = self.db.begin_write().ctx(op)?;
        {
            let mut table = txn.open_table(META).ctx(op)?;
            for (key, secs) in times {
                let Some(mut value) = table.get(key).ctx(op)?.map(|v| v.value().to_vec()) else {
                    continue;
                };
                if Record::decode_header(key, &value).is_ok() {
                    set_last_access(&mut value, secs);
                    table.insert(key, value.as_slice()).ctx(op)?;
                }
            }
        }
        txn.commit().ctx(op)
    }

    /// Every entry, in key order (read from `meta`).
    pub fn entries(&self) -> Result<Vec<EntryInfo>, StoreError> {
        let op = self.op("list entries", None);
        let txn = self.db.begin_read().ctx(op)?;
        let table = txn.open_table(META).ctx(op)?;
        let mut entries = Vec::with_capacity(usize::try_from(table.len().ctx(op)?).unwrap_or(0));
        for item in table.iter().ctx(op)? {
            let (key, value) = item.ctx(op)?;
            let key = key.value();
            let record = Record::decode_header(key, value.value())?;
            entries.push(EntryInfo {
                key: key.to_owned(),
                kind: record.kind,
                size: record.size,
                stored_at: from_unix_secs(record.stored_at),
            });
        }
        Ok(entries)
    }
}
