//! The pull-through fill: one upstream fetch per missing object, however many
//! clients ask at once.
//!
//! A NAR fill is a task of its own, not tied to any client: it streams the
//! upstream body into a [`BlobWriter`] (hashing as it goes) and publishes its
//! progress on a `watch` channel. Every client of the fill, the first one
//! included, reads the temporary file behind the writer up to the published
//! length, so each gets bytes as they arrive, and a client that goes away
//! changes nothing for the others. The last byte is held back until the whole
//! object has verified and been committed: a fill that fails (wrong hash,
//! truncation, upstream error) ends every client's transfer with an error, never
//! with a clean short or corrupt response.
//!
//! Small documents (narinfo, listings, logs) are coalesced the same way but
//! travel whole, as one shared result.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

/// What a NAR fill has done so far.
#[derive(Clone)]
pub enum FillState {
    /// Asking the upstreams.
    Connecting,
    /// Bytes are arriving; `written` of them are readable through `reader`.
    Streaming {
        reader: Arc<File>,
        written: u64,
        total: Option<u64>,
    },
    /// Verified and stored.
    Done { reader: Arc<File>, size: u64 },
    /// Every upstream answered 404.
    NotFound,
    /// The fill failed; nothing was stored. The error says whose failure
    /// it was (an upstream's, the store's).
    Failed(Arc<crate::error::Error>),
    /// The store refuses writes (disk full): every client fetches directly.
    Bypass,
}

impl FillState {
    pub fn is_settled_for_headers(&self) -> bool {
        !matches!(self, FillState::Connecting)
    }
}

/// Fills in flight, by cache key. Generic over what followers receive.
pub struct InFlight<T> {
    map: Mutex<HashMap<String, watch::Receiver<T>>>,
}

/// The caller's part in a fill.
pub enum Role<T> {
    /// Nobody is fetching this key: the caller must start the fill with the
    /// sender (and drop the guard when the fill ends).
    Leader(watch::Sender<T>, FillGuard<T>),
    /// A fill is in flight: follow it.
    Follower(watch::Receiver<T>),
}

impl<T: Clone + Send + Sync + 'static> InFlight<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(InFlight {
            map: Mutex::new(HashMap::new()),
        })
    }

    /// Joins the fill of `key`, or (when `may_lead()` says so, checked under
    /// the lock so a fill that just finished is not started twice) leads a new
    /// one starting in state `initial`. `None` when the caller must not lead.
    pub fn join_or_lead(
        self: &Arc<Self>,
        key: &str,
        initial: T,
        may_lead: impl FnOnce() -> bool,
    ) -> Option<Role<T>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = map.get(key) {
            return Some(Role::Follower(rx.clone()));
        }
        if !may_lead() {
            return None;
        }
        let (tx, rx) = watch::channel(initial);
        map.insert(key.to_owned(), rx);
        Some(Role::Leader(
            tx,
            FillGuard {
                owner: Arc::clone(self),
                key: key.to_owned(),
            },
        ))
    }

    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Removes a fill from the in-flight map when dropped: when the fill task ends,
/// however it ends (a panic included, which followers then see as a closed
/// channel, that is, a failure).
pub struct FillGuard<T> {
    owner: Arc<InFlight<T>>,
    key: String,
}

impl<T> Drop for FillGuard<T> {
    fn drop(&mut self) {
        self.owner
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// How many bytes a client may read of a fill in this state: everything once it
/// is verified and stored, all but the last byte before.
fn readable(state: &FillState) -> Option<(Arc<File>, u64, bool)> {
    match state {
        FillState::Streaming {
            reader, written, ..
        } => Some((Arc::clone(reader), written.saturating_sub(1), false)),
        FillState::Done { reader, size } => Some((Arc::clone(reader), *size, true)),
        _ => None,
    }
}

const CHUNK: u64 = 256 * 1024;

/// Reads up to `max` bytes at `offset` without blocking the async workers.
///
/// The bytes land in `buf`, which the caller passes from one chunk to the
/// next: once the previous chunk has been written to the socket and dropped,
/// its allocation is reused, so a transfer holds about two chunks however long
/// it runs, and the memory is allocated here, on the async worker, not in the
/// blocking pool's many malloc arenas.
pub async fn read_chunk(
    file: Arc<File>,
    offset: u64,
    max: u64,
    mut buf: BytesMut,
) -> std::io::Result<(Bytes, BytesMut)> {
    let len = max.min(CHUNK) as usize;
    buf.clear();
    buf.reserve(len);
    buf.resize(len, 0);
    let (filled, mut buf) = tokio::task::spawn_blocking(move || {
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(filled), buf)
    })
    .await
    .map_err(std::io::Error::other)?;
    let filled = filled?;
    if filled == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "object shorter than recorded",
        ));
    }
    buf.truncate(filled);
    let chunk = buf.split().freeze();
    Ok((chunk, buf))
}

/// The body of a client following a NAR fill: bytes as they become readable,
/// an error (so the connection is cut, not completed) if the fill fails.
pub fn follow_body(
    rx: watch::Receiver<FillState>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    let initial = (rx, 0u64, BytesMut::new());
    futures_util::stream::unfold(Some(initial), |state| async move {
        let (mut rx, offset, buf) = state?;
        loop {
            let snapshot = rx.borrow_and_update().clone();
            if let FillState::Failed(e) = &snapshot {
                let err = std::io::Error::other(format!("the fill failed: {e}"));
                return Some((Err(err), None));
            }
            if let Some((reader, limit, done)) = readable(&snapshot) {
                if offset < limit {
                    return match read_chunk(reader, offset, limit - offset, buf).await {
                        Ok((chunk, buf)) => {
                            let next = offset + chunk.len() as u64;
                            Some((Ok(chunk), Some((rx, next, buf))))
                        }
                        Err(e) => Some((Err(e), None)),
                    };
                }
                if done {
                    return None;
                }
            }
            if rx.changed().await.is_err() {
                let err = std::io::Error::other("fill ended without a result");
                return Some((Err(err), None));
            }
        }
    })
}

/// The body of a stored object, `[start, end)`.
pub fn file_body(
    file: Arc<File>,
    start: u64,
    end: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some((start, BytesMut::new())), move |state| {
        let file = Arc::clone(&file);
        async move {
            let (offset, buf) = state?;
            if offset >= end {
                return None;
            }
            match read_chunk(file, offset, end - offset, buf).await {
                Ok((chunk, buf)) => {
                    let next = offset + chunk.len() as u64;
                    Some((Ok(chunk), Some((next, buf))))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}

/// An upstream body checked as it passes: each chunk is held until the next
/// arrives, and the last is released only once the whole body checked out
/// (its hash, its promised length, a `Content-Encoding` that decoded);
/// otherwise the stream ends in an error.
pub(crate) fn verified_body(
    opened: crate::nar_fill::OpenedNar,
    on_bytes: impl Fn(u64) + Send + Sync + 'static,
) -> Result<impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send, crate::app::FillError>
{
    use futures_util::StreamExt;
    struct S<B> {
        body: B,
        intake: Option<crate::verify::Intake>,
        held: Option<Bytes>,
    }
    let state = S {
        intake: Some(opened.intake(false)?),
        body: opened.resp.bytes_stream().boxed(),
        held: None,
    };
    let on_bytes = Arc::new(on_bytes);
    Ok(futures_util::stream::unfold(Some(state), move |state| {
        let on_bytes = Arc::clone(&on_bytes);
        async move {
            let mut st = state?;
            loop {
                match st.body.next().await {
                    Some(Ok(chunk)) => {
                        on_bytes(chunk.len() as u64);
                        let intake = st.intake.as_mut()?;
                        let file = match intake.take(chunk) {
                            Ok(f) => f,
                            Err(e) => {
                                let err = std::io::Error::other(format!("upstream bytes: {e}"));
                                return Some((Err(err), None));
                            }
                        };
                        if file.is_empty() {
                            continue;
                        }
                        if let Some(prev) = st.held.replace(file) {
                            return Some((Ok(prev), Some(st)));
                        }
                    }
                    Some(Err(e)) => {
                        let err = std::io::Error::other(format!("upstream body broke off: {e}"));
                        return Some((Err(err), None));
                    }
                    None => {
                        let rest = match st.intake.take()?.finish() {
                            Ok(rest) => rest,
                            Err(e) => {
                                let err = std::io::Error::other(format!("upstream bytes: {e}"));
                                return Some((Err(err), None));
                            }
                        };
                        let last = match st.held.take() {
                            Some(mut held) if !rest.is_empty() => {
                                let mut joined = BytesMut::from(&held[..]);
                                joined.extend_from_slice(&rest);
                                held = joined.freeze();
                                held
                            }
                            Some(held) => held,
                            None if !rest.is_empty() => rest,
                            None => return None,
                        };
                        return Some((Ok(last), None));
                    }
                }
            }
        }
    }))
}
