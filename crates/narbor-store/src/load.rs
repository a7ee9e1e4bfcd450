//! Opening the index: loading the accounts from the `meta` table, and building
//! that table for a store written before it existed.

use redb::{ReadableTable, ReadableTableMetadata};
use tracing::{info, warn};

use crate::disk::Inner;
use crate::error::IndexResult;
use crate::index::{Record, META, OBJECTS};
use crate::StoreError;

impl Inner {
    /// Reads the index's `meta` table into the accounts (building it first
    /// if the store predates it); drops entries that do not decode.
    pub(crate) fn load(&self) -> Result<(), StoreError> {
        let op = self.index_op("load", None);
        // Creates the tables in a new store, so reads never meet a missing
        // table, and builds `meta` if it does not match `objects`.
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
                    // does not either: it is dropped below like any corrupt entry.
                    let header = Record::decode(key, value.value())
                        .map(|r| r.encode_header().to_vec())
                        .unwrap_or_default();
                    meta.insert(key, header.as_slice()).ctx(op)?;
                }
            }
        }
        txn.commit().ctx(op)?;

        let mut corrupt = Vec::new();
        {
            let mut accounts = self.accounts();
            let txn = self.db.begin_read().ctx(op)?;
            let table = txn.open_table(META).ctx(op)?;
            accounts.reserve(usize::try_from(table.len().ctx(op)?).unwrap_or(0));
            for item in table.iter().ctx(op)? {
                let (key, value) = item.ctx(op)?;
                let key = key.value();
                match Record::decode_header(key, value.value()) {
                    Ok(r) => accounts.load(key, r.kind, r.size, r.last_access),
                    Err(e) => {
                        warn!(error = %e, "dropping an index entry that does not decode");
                        corrupt.push(key.to_owned());
                    }
                }
            }
        }
        if !corrupt.is_empty() {
            let guard = self.lock_mutate();
            self.remove_locked(&guard, &corrupt)?;
        }
        Ok(())
    }
}
