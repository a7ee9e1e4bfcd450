//! The last few fills, newest first, for `/status`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::labels::{FailReason, FillKind, FillOutcome};

/// How many fills the ring keeps.
pub const CAPACITY: usize = 25;

/// One finished fill.
#[derive(Debug, Clone, PartialEq)]
pub struct FillRecord {
    /// The cache key (`nar/….nar`, `….narinfo`).
    pub key: String,
    pub kind: FillKind,
    /// The upstream (redacted URL) that answered, when one did.
    pub upstream: Option<String>,
    /// Body bytes received from the upstream.
    pub bytes: u64,
    pub duration: Duration,
    pub outcome: FillOutcome,
    /// Set when `outcome` is `Failed`.
    pub reason: Option<FailReason>,
    /// What went wrong, for people.
    pub message: Option<String>,
    pub finished: SystemTime,
}

pub struct RecentFills {
    ring: Mutex<VecDeque<FillRecord>>,
}

impl Default for RecentFills {
    fn default() -> Self {
        Self::new()
    }
}

impl RecentFills {
    pub fn new() -> RecentFills {
        RecentFills {
            ring: Mutex::new(VecDeque::with_capacity(CAPACITY)),
        }
    }

    pub fn push(&self, record: FillRecord) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == CAPACITY {
            ring.pop_back();
        }
        ring.push_front(record);
    }

    /// Newest first.
    pub fn list(&self) -> Vec<FillRecord> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }
}
