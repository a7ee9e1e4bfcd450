//! The publishing errors.

use std::path::PathBuf;

use narbor_oci::OciError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PublishError {
    #[error(transparent)]
    Registry(#[from] OciError),
    #[error("{command}: {detail}")]
    Nix { command: String, detail: String },
    #[error("{}: {detail}", path.display())]
    Dump { path: PathBuf, detail: String },
    #[error("{path}: the NAR narbor wrote has {what} {ours}, but Nix recorded {nix}; the store path was modified or the Nix database is wrong (try `nix store verify {path}`)")]
    NarMismatch {
        path: String,
        what: &'static str,
        ours: String,
        nix: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl PublishError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| PublishError::Io { what, source }
    }
}
