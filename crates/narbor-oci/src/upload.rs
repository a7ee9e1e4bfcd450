//! Blob uploads: monolithic (POST, then one PUT with the digest) for small
//! blobs, chunked (POST, PATCHes, closing PUT) for large ones, so no request
//! body is larger than [`CHUNK_SIZE`] and memory stays bounded by it.
//!
//! A failed upload is restarted from the POST (an upload session's state after
//! a broken PATCH is unknowable), up to the client's retry attempts.
//!
//! [`BlobUpload`] is the same protocol fed by the caller chunk by chunk, for a
//! blob still being produced (a NAR being compressed): its digest is known
//! only at the end, and it is not restarted (the caller keeps no copy).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use reqwest::header;
use reqwest::{Method, RequestBuilder, Url};

use crate::client::{error_detail, status_error};
use crate::retry::Attempt;
use crate::{Digest, OciError, RegistryClient};

/// Blobs up to this size go up in one PUT; larger ones in chunks of this size.
pub const CHUNK_SIZE: u64 = 16 << 20;

impl RegistryClient {
    /// Uploads `data` as the blob `digest` (checked first, so a wrong digest
    /// is an error here, not at the registry).
    pub async fn upload_blob_bytes(&self, digest: &Digest, data: Bytes) -> Result<(), OciError> {
        if Digest::of(&data) != *digest {
            return Err(OciError::invalid(
                format!("blob {digest}"),
                "content does not match the digest",
            ));
        }
        self.with_restarts(digest, || async {
            let location = self.start_upload(digest).await?;
            self.finish_upload(digest, location, Some(data.clone()))
                .await
        })
        .await?;
        self.count_upload(data.len() as u64);
        Ok(())
    }

    /// Uploads the file at `path` (of `size` bytes, whose sha256 the caller
    /// computed while writing it) as the blob `digest`.
    pub async fn upload_blob_file(
        &self,
        digest: &Digest,
        path: &Path,
        size: u64,
    ) -> Result<(), OciError> {
        if size <= CHUNK_SIZE {
            let data = read_range(path, 0, size).await?;
            return self.upload_blob_bytes(digest, data).await;
        }
        self.with_restarts(digest, || async {
            let mut location = self.start_upload(digest).await?;
            let mut offset = 0u64;
            while offset < size {
                let len = CHUNK_SIZE.min(size - offset);
                let chunk = read_range(path, offset, len).await?;
                location = self.patch_chunk(digest, &location, offset, chunk).await?;
                offset += len;
            }
            self.finish_upload(digest, location, None).await
        })
        .await?;
        self.count_upload(size);
        Ok(())
    }

    fn count_upload(&self, bytes: u64) {
        let s = self.stats();
        s.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
        s.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Runs a whole upload, `f`, again from its POST when the registry
    /// failed it, as the client's [`RetryPolicy`](crate::RetryPolicy) allows.
    async fn with_restarts<F, Fut>(&self, digest: &Digest, f: F) -> Result<(), OciError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), OciError>>,
    {
        let op = format!("uploading {digest}");
        let f = &f;
        self.retry_policy()
            .run(&op, &self.stats().retries, || async move {
                match f().await {
                    Ok(()) => Ok(Attempt::Done(())),
                    Err(e) if e.may_pass_on_restart() => Ok(Attempt::Retry {
                        why: format!("the upload failed, starting it again: {e}"),
                        last: Err(e),
                        retry_after: None,
                    }),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// Opens an upload session that [`BlobUpload::append`] feeds.
    pub async fn begin_upload(&self) -> Result<BlobUpload<'_>, OciError> {
        let location = self.start_upload_for("starting an upload").await?;
        Ok(BlobUpload {
            client: self,
            location,
            offset: 0,
        })
    }

    /// POST `blobs/uploads/`: the upload session's URL.
    async fn start_upload(&self, digest: &Digest) -> Result<Url, OciError> {
        self.start_upload_for(&format!("starting the upload of {digest}"))
            .await
    }

    async fn start_upload_for(&self, op: &str) -> Result<Url, OciError> {
        let url = self.url("blobs/uploads/");
        let build = |r: RequestBuilder| r.header(header::CONTENT_LENGTH, 0);
        let resp = self.send(op, Method::POST, &url, true, &build).await?;
        if resp.status().as_u16() != 202 {
            let s = resp.status().as_u16();
            return Err(status_error(op, s, error_detail(resp).await));
        }
        self.location(&resp, op)
    }

    fn location(&self, resp: &reqwest::Response, op: &str) -> Result<Url, OciError> {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| OciError::invalid(op, "no Location in the answer"))?;
        self.resolve(loc)
    }

    async fn patch_chunk(
        &self,
        digest: &dyn std::fmt::Display,
        location: &Url,
        offset: u64,
        chunk: Bytes,
    ) -> Result<Url, OciError> {
        let op = format!("uploading {digest} at offset {offset}");
        let end = offset + chunk.len() as u64 - 1;
        let build = |r: RequestBuilder| {
            r.header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_RANGE, format!("{offset}-{end}"))
                .body(chunk.clone())
        };
        let resp = self
            .send(&op, Method::PATCH, location, false, &build)
            .await?;
        if resp.status().as_u16() != 202 {
            let s = resp.status().as_u16();
            return Err(status_error(&op, s, error_detail(resp).await));
        }
        self.location(&resp, &op)
    }

    /// The closing PUT `?digest=`, with the whole blob (monolithic) or none.
    async fn finish_upload(
        &self,
        digest: &Digest,
        mut location: Url,
        body: Option<Bytes>,
    ) -> Result<(), OciError> {
        let op = format!("uploading {digest}");
        location
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let body = body.unwrap_or_default();
        let build = |r: RequestBuilder| {
            r.header(header::CONTENT_TYPE, "application/octet-stream")
                .body(body.clone())
        };
        // Not retried alone: the session may be consumed; the whole upload restarts.
        let resp = self
            .send(&op, Method::PUT, &location, false, &build)
            .await?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            s => Err(status_error(&op, s, error_detail(resp).await)),
        }
    }
}

/// An open upload session: [`append`](Self::append) the blob's bytes in
/// order, then [`finish`](Self::finish) with their digest, which the registry
/// checks. Until then nothing is visible; a session never finished is dropped
/// by the registry (or at once with [`cancel`](Self::cancel)).
pub struct BlobUpload<'a> {
    client: &'a RegistryClient,
    location: Url,
    offset: u64,
}

impl BlobUpload<'_> {
    /// Sends the next `chunk` (one PATCH).
    pub async fn append(&mut self, chunk: Bytes) -> Result<(), OciError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let len = chunk.len() as u64;
        self.location = self
            .client
            .patch_chunk(&"a new blob", &self.location, self.offset, chunk)
            .await?;
        self.offset += len;
        Ok(())
    }

    /// The bytes appended so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    /// Closes the session: the registry checks the bytes against `digest`
    /// and makes the blob visible.
    pub async fn finish(self, digest: &Digest) -> Result<(), OciError> {
        self.client
            .finish_upload(digest, self.location, None)
            .await?;
        self.client.count_upload(self.offset);
        Ok(())
    }

    /// Abandons the session (DELETE); best effort, as registries also expire
    /// sessions left open.
    pub async fn cancel(self) {
        let op = "cancelling an upload";
        let build = |r: RequestBuilder| r;
        if let Err(e) = self
            .client
            .send(op, Method::DELETE, &self.location, false, &build)
            .await
        {
            tracing::debug!("{op}: {e}");
        }
    }
}

/// `len` bytes of `path` from `offset`, read off the async threads.
async fn read_range(path: &Path, offset: u64, len: u64) -> Result<Bytes, OciError> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let io = |source| OciError::Io {
            what: format!("reading {}", p.display()),
            source,
        };
        let mut f = std::fs::File::open(&p).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(io)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(|e| OciError::invalid("reading a blob file", e.to_string()))?
}
