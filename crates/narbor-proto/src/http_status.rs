//! What an HTTP status from a binary cache says about the file asked for.
//!
//! Every client of an upstream cache (the server's pull-through fill, push's
//! check of what upstream caches already have) reads a status through
//! [`Presence::of_status`], so they cannot disagree. It owns the meaning of a
//! status for a cache lookup, not HTTP itself: no requests are made here.

/// What a cache's answer to a `GET`/`HEAD` of a file means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// 200: the cache has it.
    Present,
    /// The cache does not have it: ask the next cache, or build.
    Absent,
    /// Any other answer: the cache failed to say (an error to report, not
    /// an answer).
    Failed,
}

impl Presence {
    /// As Nix 2.8 reads a binary cache's answer: `getFile` and `fileExists`
    /// in src/libstore/http-binary-cache-store.cc take
    /// `e.error == FileTransfer::NotFound || e.error == FileTransfer::Forbidden`
    /// as "no such file", and src/libstore/filetransfer.cc classifies 404 and
    /// 410 as `NotFound`, 401, 403 and 407 as `Forbidden`. S3 answers 403 for
    /// a key that does not exist in a bucket that may not be listed.
    ///
    /// One difference, on purpose: 401 and 407 (credentials missing or
    /// refused) are [`Failed`](Presence::Failed) here, not absent, so that a
    /// wrong upstream credential shows in logs and metrics instead of passing
    /// as a cache that has nothing.
    pub fn of_status(status: u16) -> Presence {
        match status {
            200 => Presence::Present,
            403 | 404 | 410 => Presence::Absent,
            _ => Presence::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_as_nix_reads_them() {
        assert_eq!(Presence::of_status(200), Presence::Present);
        for s in [403, 404, 410] {
            assert_eq!(Presence::of_status(s), Presence::Absent, "{s}");
        }
        for s in [
            201, 204, 206, 301, 304, 400, 401, 405, 407, 429, 500, 502, 503,
        ] {
            assert_eq!(Presence::of_status(s), Presence::Failed, "{s}");
        }
    }
}
