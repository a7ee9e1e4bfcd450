//! The one error type of the registry client and the index format.

use thiserror::Error;

use crate::Digest;

/// Why a registry operation failed. Messages name the operation and the
/// object, never a credential or a token.
#[derive(Debug, Error)]
pub enum OciError {
    #[error("invalid store reference {input:?}: {reason}")]
    Reference { input: String, reason: String },
    #[error("{op}: cannot reach the registry: {reason}")]
    Transport { op: String, reason: String },
    #[error("{op}: the registry answered {status}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Status {
        op: String,
        status: u16,
        /// The OCI error code and message from the body, when there is one.
        detail: Option<String>,
    },
    #[error("{op}: the registry does not know blob(s) {}; they were deleted or never uploaded", list(.digests))]
    ManifestBlobUnknown { op: String, digests: Vec<Digest> },
    #[error("authenticating to {host}: {reason}")]
    Auth { host: String, reason: String },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn list(digests: &[Digest]) -> String {
    let v: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
    v.join(", ")
}

impl OciError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        OciError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// True when the registry failed the operation (unreachable, or a
    /// status): an upload started again from its POST may pass.
    pub fn may_pass_on_restart(&self) -> bool {
        matches!(self, OciError::Transport { .. } | OciError::Status { .. })
    }

    /// True for a 404 from the registry.
    pub fn is_not_found(&self) -> bool {
        matches!(self, OciError::Status { status: 404, .. })
    }
}
