//! The fixed label values: each a small enum with a stable string, so a metric
//! is an array index, and a dashboard built on these names keeps working.

macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in the order [`Self::index`] numbers them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn index(self) -> usize {
                self as usize
            }

            /// The stable label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

label_enum! {
    /// What a request asked for (`route` label).
    Route {
        NarInfo => "narinfo",
        Nar => "nar",
        Listing => "ls",
        Log => "log",
        Realisation => "realisation",
        /// `build-trace-v2/<drv>/<output>.doi` (Nix 2.35+).
        BuildTrace => "build-trace",
        /// `debuginfo/<build id>`.
        DebugInfo => "debuginfo",
        CacheInfo => "cache-info",
        /// `/`, `/health`, `/status`, `/status.json`, `/metrics`.
        Page => "page",
        /// Anything else: malformed paths, unknown pages, other methods.
        Other => "other",
    }
}

impl Route {
    /// Routes whose responses come from the cache (the hit ratio's scope).
    pub fn is_object(self) -> bool {
        matches!(
            self,
            Route::NarInfo
                | Route::Nar
                | Route::Listing
                | Route::Log
                | Route::Realisation
                | Route::BuildTrace
                | Route::DebugInfo
        )
    }
}

label_enum! {
    /// What a fill fetches (`kind` label).
    FillKind {
        /// A NAR, streamed to disk.
        Nar => "nar",
        /// A narinfo, listing, log or realisation, fetched whole.
        Document => "document",
    }
}

label_enum! {
    /// How a fill ended (`outcome` label).
    FillOutcome {
        Stored => "stored",
        /// Every upstream answered 404.
        NotFound => "not_found",
        /// See the [`FailReason`].
        Failed => "failed",
        /// The store refused writes (disk full): clients were served directly.
        Bypassed => "bypassed",
    }
}

label_enum! {
    /// Why a fill failed (`reason` label).
    FailReason {
        /// Every upstream failed before sending a body (connection, timeout, 5xx).
        UpstreamError => "upstream_error",
        /// The body broke off or was shorter than promised.
        Truncated => "truncated",
        /// The body was longer than promised or than the document limit.
        TooLarge => "too_large",
        /// The NAR's bytes do not hash to its name.
        Integrity => "integrity",
        /// A document failed its checks (not a narinfo, wrong path, no trusted signature).
        Rejected => "rejected",
        /// The store could not take it (disk full, I/O error). A document is still served.
        StoreError => "store_error",
        /// The fill task itself failed (a bug).
        Internal => "internal",
    }
}

label_enum! {
    /// What went wrong with one upstream request (`kind` label).
    UpstreamErrorKind {
        /// An HTTP status other than 200, 403 and 404.
        Status => "status",
        /// Connect failure, timeout, reset before the body.
        Transport => "transport",
        /// The body broke off or was shorter than promised.
        Truncated => "truncated",
        /// The body was longer than promised or than the document limit.
        TooLarge => "too_large",
        /// A NAR whose bytes do not hash to its name.
        Integrity => "integrity",
        /// A document that failed its checks.
        Rejected => "rejected",
    }
}

/// Status codes counted one by one; any other is counted in its class slot.
const CODES: [u16; 12] = [200, 206, 304, 400, 403, 404, 405, 416, 500, 502, 503, 504];
/// Slots: the codes above, then one per class (1xx..5xx).
pub const STATUS_SLOTS: usize = CODES.len() + 5;

/// The slot a status code is counted in.
pub fn status_slot(code: u16) -> usize {
    match CODES.iter().position(|&c| c == code) {
        Some(i) => i,
        None => CODES.len() + usize::from(code.clamp(100, 599) / 100 - 1),
    }
}

/// The `status` label of a slot: the code, or its class (`4xx`).
pub fn status_label(slot: usize) -> String {
    match CODES.get(slot) {
        Some(code) => code.to_string(),
        None => format!("{}xx", slot - CODES.len() + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_slots_cover_every_code() {
        assert_eq!(status_label(status_slot(200)), "200");
        assert_eq!(status_label(status_slot(416)), "416");
        assert_eq!(status_label(status_slot(418)), "4xx");
        assert_eq!(status_label(status_slot(101)), "1xx");
        assert_eq!(status_label(status_slot(599)), "5xx");
        assert_eq!(status_label(status_slot(999)), "5xx");
        assert!((0..1000).all(|c| status_slot(c) < STATUS_SLOTS));
    }

    #[test]
    fn indexes_follow_all() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in FailReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
