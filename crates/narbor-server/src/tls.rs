//! HTTPS: rustls (with the `ring` provider) and certificates that reload
//! without a restart.
//!
//! [`Tls`] knows the certificate and key files and holds the certified key in
//! use behind a lock. rustls asks for that key at every handshake (the lock is
//! the config's [`ResolvesServerCert`]), so a reload changes what new
//! handshakes present while connections already established carry on
//! untouched. A reload that fails (a file missing or unparsable, a key that
//! does not belong to the certificate, say because only one of the two files
//! has been replaced so far) keeps the key in use and reports why.
//!
//! [`Tls::watch`] polls both files' size, modification time and inode and
//! reloads when any of them changes; the binary also reloads on SIGHUP.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// The ALPN protocols offered, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the server's certificate first, then intermediates.
    pub cert: PathBuf,
    /// The private key: PKCS#8, RSA (PKCS#1) or SEC1 (EC).
    pub key: PathBuf,
}

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PEM certificate chain: {detail}", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{}: no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key in it (expected a PEM PKCS#8, RSA or EC private key): {detail}", path.display())]
    NoKey { path: PathBuf, detail: String },
    #[error("{} and {} do not go together: {detail}", cert.display(), key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("setting up TLS: {0}")]
    Setup(rustls::Error),
}

/// HTTPS for one set of files: the acceptor and the key it presents.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
    /// What the files looked like when last loaded (or last tried).
    seen: Mutex<Option<Stamp>>,
}

/// The state of both files that a change would alter.
type Stamp = [(SystemTime, u64, u64); 2];

#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads the files; fails (naming the file) when they are not usable.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = stamp(&files);
        let key = load_certified_key(&files, &provider)?;
        let resolver = Arc::new(Resolver(RwLock::new(Arc::new(key))));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            files,
            provider,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            seen: Mutex::new(seen),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again; on success new handshakes present the new
    /// certificate, on failure the one in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let seen = stamp(&self.files);
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = seen;
        let key = load_certified_key(&self.files, &self.provider)?;
        *self
            .resolver
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// [`reload`](Self::reload), logging the outcome; `why` says what asked.
    pub fn reload_and_log(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.files.cert.display(),
                "{why}: reloaded the TLS certificate"
            ),
            Err(e) => tracing::error!(
                "{why}: TLS reload failed, still serving the previous certificate: {e}"
            ),
        }
    }

    /// Reloads whenever either file changes (size, modification time or
    /// inode), checking every `interval`. Runs until dropped.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let this = Arc::clone(&self);
            let changed = tokio::task::spawn_blocking(move || {
                let now = stamp(&this.files);
                let seen = *this.seen.lock().unwrap_or_else(PoisonError::into_inner);
                // A file that vanished is a change only once it is back:
                // deployment tools often remove and rewrite.
                if now.is_some() && now != seen {
                    this.reload_and_log("certificate files changed");
                }
            })
            .await;
            if changed.is_err() {
                tracing::warn!("TLS file check failed");
            }
        }
    }
}

fn stamp(files: &TlsFiles) -> Option<Stamp> {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    };
    Some([one(&files.cert)?, one(&files.key)?])
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn load_certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: files.cert.clone(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: files.key.clone(),
        detail: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        detail: e.to_string(),
    })
}
