//! NAR fills: one task per missing NAR opens it from the chain of sources
//! (`source/`), streams it to disk and to every waiting client, and checks
//! it before anyone gets the last byte (`verify`). When the store refuses
//! writes, NARs pass through unstored for a while.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use narbor_proto::CacheUrl;
use tokio::sync::watch;

use crate::app::{FillError, FillReport, Server};
use crate::fill::{FillState, Role};
use crate::metrics::{FailReason, FillKind, FillOutcome};
use crate::source::Found;
use crate::upstream::transport;
use crate::verify::{Intake, IntakeError, NarCheck};

/// How long narbor passes NARs through after the store refused one, before it
/// tries storing again.
const STORE_REFUSAL_BACKOFF: Duration = Duration::from_secs(5);

/// How a NAR fill ended, when it did not fail.
pub(crate) enum NarFilled {
    Stored(Arc<std::fs::File>, u64),
    NotFound,
    /// The store refused it before any client saw a byte.
    Bypass,
}

/// A NAR response being read, where it came from, and how to check it.
pub(crate) struct OpenedNar {
    /// The upstream (None: the `--oci` registry).
    pub upstream: Option<usize>,
    /// Who sent it, for messages (no credentials, no query string).
    pub name: String,
    pub resp: reqwest::Response,
    pub check: NarCheck,
}

impl OpenedNar {
    /// The response's `Content-Encoding`, if it has one.
    pub fn content_encoding(&self) -> Option<String> {
        self.resp
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The body's intake (see [`Intake`]).
    pub fn intake(&self, file_checked_elsewhere: bool) -> Result<Intake, FillError> {
        Intake::new(
            &self.check,
            self.content_encoding().as_deref(),
            self.resp.content_length(),
            file_checked_elsewhere,
        )
        .map_err(|e| {
            FillError::new(
                FailReason::Integrity,
                format!("{}: the bytes cannot be checked: {e}", self.name),
            )
        })
    }
}

impl Server {
    /// Joins the fill of a NAR, or starts one. `None` means the object has just
    /// been stored by a fill that finished: read it from the store.
    pub(crate) fn join_nar_fill(
        self: &Arc<Self>,
        url: &CacheUrl,
        key: &str,
    ) -> Option<(watch::Receiver<FillState>, bool)> {
        if !self.store_accepting() {
            self.metrics.count_bypass();
            return Some((watch::channel(FillState::Bypass).1, false));
        }
        let store = Arc::clone(&self.store);
        let role = self
            .nar_fills
            .join_or_lead(key, FillState::Connecting, || !store.contains(key))?;
        Some(match role {
            Role::Follower(rx) => {
                self.metrics.count_coalesced(FillKind::Nar);
                (rx, true)
            }
            Role::Leader(tx, guard) => {
                let rx = tx.subscribe();
                let server = Arc::clone(self);
                let (url, key) = (url.clone(), key.to_owned());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let mut report = FillReport::default();
                    let last = match server.fill_nar(&url, &key, &tx, &mut report).await {
                        Ok(NarFilled::Bypass) => {
                            report.result = Ok(FillOutcome::Bypassed);
                            FillState::Bypass
                        }
                        Ok(NarFilled::Stored(reader, size)) => {
                            report.result = Ok(FillOutcome::Stored);
                            tracing::info!(
                                %key, bytes = size, ms = started.elapsed().as_millis() as u64, "stored"
                            );
                            FillState::Done { reader, size }
                        }
                        Ok(NarFilled::NotFound) => {
                            report.result = Ok(FillOutcome::NotFound);
                            FillState::NotFound
                        }
                        Err(e) => {
                            tracing::warn!(%key, "fill failed: {}", e.message);
                            if let (Some(i), Some(kind)) = (report.upstream, e.upstream_kind()) {
                                server.upstreams.record_late_error(i, kind, &e.message);
                            }
                            let failed = FillState::Failed(Arc::new(e.edge()));
                            report.result = Err(e);
                            failed
                        }
                    };
                    // Counted, and out of the in-flight map, before any client
                    // sees the end: a scrape after a response reflects its fill.
                    server.record_fill(FillKind::Nar, &key, report, started);
                    drop(guard);
                    tx.send_replace(last);
                });
                (rx, false)
            }
        })
    }

    /// Streams a NAR into the store. The caller publishes the last state.
    async fn fill_nar(
        &self,
        url: &CacheUrl,
        key: &str,
        tx: &watch::Sender<FillState>,
        report: &mut FillReport,
    ) -> Result<NarFilled, FillError> {
        use FailReason::{Integrity, Internal, StoreError, TooLarge, Truncated};
        let Some(opened) = self.open_nar(url, key).await? else {
            self.remember_not_found(key);
            return Ok(NarFilled::NotFound);
        };
        report.upstream = opened.upstream;
        let mut intake = opened.intake(true)?;
        let total = intake.file_len(&opened.check);
        if let Err(why) = self.store.admit(total) {
            self.store_refused(&why.to_string());
            return Ok(NarFilled::Bypass);
        }
        let store = Arc::clone(&self.store);
        let key_owned = key.to_owned();
        let begun = tokio::task::spawn_blocking(move || store.begin_blob(&key_owned))
            .await
            .map_err(|e| FillError::new(Internal, e.to_string()))?;
        let mut writer = match begun {
            Ok(w) => w,
            Err(e) => {
                // No client has seen a byte yet: they can all go direct.
                self.store_refused(&e.to_string());
                return Ok(NarFilled::Bypass);
            }
        };
        let reader =
            Arc::new(writer.reader().map_err(|e| {
                FillError::new(StoreError, format!("cannot reopen temp file: {e}"))
            })?);
        tx.send_replace(FillState::Streaming {
            reader: Arc::clone(&reader),
            written: 0,
            total,
        });
        let name = opened.name.clone();
        let intake_error = |e: IntakeError| {
            let reason = match e {
                IntakeError::TooLarge(_) => TooLarge,
                IntakeError::Truncated { .. } => Truncated,
                IntakeError::Encoding(_) | IntakeError::Verify(_) => Integrity,
            };
            FillError::new(reason, format!("{name}: {e}"))
        };
        /// Why a chunk was not taken.
        enum Step {
            Intake(IntakeError),
            Store(String),
        }
        let mut body = opened.resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| FillError::new(Truncated, transport(name.clone(), &e).to_string()))?;
            report.bytes += chunk.len() as u64;
            if let Some(upstream) = opened.upstream {
                self.upstreams.add_fetched(upstream, chunk.len() as u64);
            }
            let step = tokio::task::block_in_place(|| {
                let file = intake.take(chunk).map_err(Step::Intake)?;
                writer
                    .write_all(&file)
                    .map_err(|e| Step::Store(e.to_string()))?;
                Ok(writer.written())
            });
            let written = match step {
                Ok(w) => w,
                Err(Step::Intake(e)) => return Err(intake_error(e)),
                Err(Step::Store(why)) => {
                    self.store_refused(&why);
                    return Err(FillError::new(StoreError, format!("cannot store: {why}")));
                }
            };
            if total.is_some_and(|t| written > t) {
                return Err(FillError::new(
                    TooLarge,
                    format!(
                        "{name} sent more than the {} bytes it promised",
                        total.unwrap_or(0)
                    ),
                ));
            }
            tx.send_modify(|s| {
                if let FillState::Streaming { written: w, .. } = s {
                    *w = written;
                }
            });
        }
        let rest = tokio::task::block_in_place(|| intake.finish()).map_err(intake_error)?;
        if !rest.is_empty() {
            if let Err(e) = writer.write_all(&rest) {
                self.store_refused(&e.to_string());
                return Err(FillError::new(StoreError, format!("cannot store: {e}")));
            }
        }
        let size = writer.written();
        if let Some(t) = total {
            if size != t {
                return Err(FillError::new(
                    Truncated,
                    format!("{name} promised {t} bytes and sent {size}"),
                ));
            }
        }
        // A file check is the store's (it hashes what it writes); a NAR
        // check was done by the intake.
        let expected = match opened.check {
            NarCheck::File { hash, size: want } => Some((hash, want.unwrap_or(size))),
            NarCheck::Nar { .. } => None,
        };
        let committed = tokio::task::spawn_blocking(move || writer.commit(expected))
            .await
            .map_err(|e| FillError::new(Internal, e.to_string()))?;
        match committed {
            Ok(()) => {}
            Err(narbor_store::StoreError::Integrity { .. }) => {
                return Err(FillError::new(
                    Integrity,
                    format!("{name} sent bytes that do not match the NAR's file hash"),
                ))
            }
            Err(e) => {
                self.store_refused(&e.to_string());
                return Err(FillError::new(StoreError, format!("cannot store: {e}")));
            }
        }
        Ok(NarFilled::Stored(reader, size))
    }

    /// Opens the NAR `url` names from the first source that has it. `None`:
    /// nobody has it.
    pub(crate) async fn open_nar(
        &self,
        url: &CacheUrl,
        key: &str,
    ) -> Result<Option<OpenedNar>, FillError> {
        match self.chain.open_nar(url, key).await {
            Found::Yes { value, .. } => Ok(Some(value)),
            Found::No => Ok(None),
            Found::Failed(e) => Err(FillError::upstream(&e)),
        }
    }

    /// Whether the store takes NARs now (it has not refused one lately).
    pub(crate) fn store_accepting(&self) -> bool {
        let mut until = self
            .store_refusing_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *until {
            Some(t) if t > self.clock.now() => false,
            Some(_) => {
                *until = None;
                tracing::info!("trying to store NARs again");
                true
            }
            None => true,
        }
    }

    /// The store refused a NAR: pass NARs through unstored for a while.
    pub(crate) fn store_refused(&self, why: &str) {
        let mut until = self
            .store_refusing_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if until.is_none() {
            tracing::warn!(
                "the store refused a NAR ({why}): passing NARs through without storing for {}s",
                STORE_REFUSAL_BACKOFF.as_secs()
            );
        }
        *until = Some(self.clock.now() + STORE_REFUSAL_BACKOFF);
    }
}
