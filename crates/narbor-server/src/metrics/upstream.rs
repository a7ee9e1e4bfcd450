//! Per-upstream counters: answers, errors, bytes, latency and health.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::histogram::Histogram;
use super::labels::UpstreamErrorKind;

/// How one request to an upstream ended (`result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamResult {
    /// 200 and a usable body.
    Found,
    /// 404 (or an S3-style 403).
    NotFound,
    Error(UpstreamErrorKind),
}

pub struct UpstreamStats {
    /// The base URL without credentials: the `upstream` label.
    pub name: String,
    found: AtomicU64,
    not_found: AtomicU64,
    /// Requests that got no usable answer.
    failed: AtomicU64,
    /// Failures by kind: of requests, and of transfers that had started.
    errors: [AtomicU64; UpstreamErrorKind::ALL.len()],
    pub(super) fetched: AtomicU64,
    /// Time from sending a request to its response head.
    pub latency: Histogram,
    /// Unix milliseconds (0: never).
    last_success_ms: AtomicU64,
    last_failure_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_ms(ms: u64) -> Option<SystemTime> {
    (ms != 0).then(|| UNIX_EPOCH + Duration::from_millis(ms))
}

/// `https://user:secret@host/path` → `https://host/path`: labels and pages
/// never show credentials.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    if scheme.is_empty() {
        rest.to_owned()
    } else {
        format!("{scheme}://{rest}")
    }
}

impl UpstreamStats {
    pub fn new(base_url: &str) -> UpstreamStats {
        UpstreamStats {
            name: redact_url(base_url),
            found: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            errors: Default::default(),
            fetched: AtomicU64::new(0),
            latency: Histogram::default(),
            last_success_ms: AtomicU64::new(0),
            last_failure_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// A response head arrived after `latency`.
    pub fn observe_latency(&self, latency: Duration) {
        self.latency.observe(latency);
    }

    /// Records how a request ended; `message` says what went wrong.
    pub fn record(&self, result: UpstreamResult, message: Option<&str>) {
        match result {
            UpstreamResult::Found => {
                self.found.fetch_add(1, Relaxed);
                self.last_success_ms.store(now_ms(), Relaxed);
            }
            UpstreamResult::NotFound => {
                self.not_found.fetch_add(1, Relaxed);
                self.last_success_ms.store(now_ms(), Relaxed);
            }
            UpstreamResult::Error(kind) => {
                self.failed.fetch_add(1, Relaxed);
                self.error(kind, message);
            }
        }
    }

    /// A response that had been counted as found failed later (its body
    /// broke off, or it failed verification): an error, not another request.
    pub fn record_late_error(&self, kind: UpstreamErrorKind, message: &str) {
        self.error(kind, Some(message));
    }

    fn error(&self, kind: UpstreamErrorKind, message: Option<&str>) {
        self.errors[kind.index()].fetch_add(1, Relaxed);
        self.last_failure_ms.store(now_ms(), Relaxed);
        if let Some(m) = message {
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.to_owned());
        }
    }

    pub fn found(&self) -> u64 {
        self.found.load(Relaxed)
    }

    pub fn not_found(&self) -> u64 {
        self.not_found.load(Relaxed)
    }

    /// Requests that got no usable answer.
    pub fn failed(&self) -> u64 {
        self.failed.load(Relaxed)
    }

    pub fn errors(&self, kind: UpstreamErrorKind) -> u64 {
        self.errors[kind.index()].load(Relaxed)
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Relaxed)).sum()
    }

    pub fn fetched(&self) -> u64 {
        self.fetched.load(Relaxed)
    }

    /// The last answer that was not an error (a 200 or a 404).
    pub fn last_success(&self) -> Option<SystemTime> {
        from_ms(self.last_success_ms.load(Relaxed))
    }

    pub fn last_failure(&self) -> Option<SystemTime> {
        from_ms(self.last_failure_ms.load(Relaxed))
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn credentials_are_removed() {
        assert_eq!(
            redact_url("https://u:p@cache.example/x@y"),
            "https://cache.example/x@y"
        );
        assert_eq!(
            redact_url("https://cache.nixos.org"),
            "https://cache.nixos.org"
        );
        assert_eq!(redact_url("http://127.0.0.1:80"), "http://127.0.0.1:80");
    }
}
