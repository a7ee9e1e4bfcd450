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
