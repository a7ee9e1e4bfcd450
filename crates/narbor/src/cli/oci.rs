//! What `push` and `gc` share: the store reference, credentials, the runtime.

use std::sync::Arc;

use anyhow::Context;
use narbor_oci::{Credentials, RegistryClient, StoreRef};

/// A client for `store`, with credentials from the environment or docker's
/// config (see [`Credentials::discover`]).
pub fn client(store: &str) -> anyhow::Result<Arc<RegistryClient>> {
    let store = StoreRef::parse(store)?;
    let creds = Credentials::discover(&store.host, &|k| std::env::var(k).ok());
    match &creds {
        Some(c) => tracing::debug!(user = %c.username, "using registry credentials"),
        None => tracing::debug!("no registry credentials: anonymous"),
    }
    Ok(Arc::new(RegistryClient::new(store, creds)?))
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
