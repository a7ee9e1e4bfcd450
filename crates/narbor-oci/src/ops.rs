//! The distribution API's operations on one repository: blob HEAD/GET/DELETE,
//! manifest PUT/GET/HEAD/DELETE, and the paginated tag list. Each goes
//! through [`RegistryClient::send`] (auth, retries); uploads are `upload.rs`.

use bytes::Bytes;
use reqwest::header;
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::client::{
    blob_unknown_digests, error_detail, read_limited, status_error, summarize_errors,
    MANIFEST_ACCEPT, MAX_MANIFEST,
};
use crate::format::MANIFEST_MEDIA_TYPE;
use crate::{Digest, OciError, RegistryClient};

impl RegistryClient {
    /// HEAD a blob: true when the registry has it. Never a GET: registries
    /// such as GHCR answer a GET with a redirect to storage.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool, OciError> {
        Ok(self.blob_size(digest).await?.is_some())
    }

    /// HEAD a blob: its size (`Content-Length`, 0 when a redirect hides it),
    /// or None when the registry does not have it.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, OciError> {
        self.stats()
            .blob_heads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let op = format!("HEAD blob {digest}");
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(&op, Method::HEAD, &url, true, &|r| r).await?;
        let len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match resp.status().as_u16() {
            200 => Ok(Some(len.unwrap_or(0))),
            307 | 302 | 301 | 303 | 308 => Ok(Some(0)),
            404 => Ok(None),
            s => Err(status_error(&op, s, None)),
        }
    }

    /// GET a blob (with an optional `Range` header value such as
    /// `bytes=100-`), following redirects by hand: the `Authorization` header
    /// goes only to the registry itself, never to the storage it redirects to.
    /// Returns the 200 or 206 response for the caller to stream.
    pub async fn get_blob(
        &self,
        digest: &Digest,
        range: Option<&str>,
    ) -> Result<Response, OciError> {
        let op = format!("GET blob {digest}");
        let mut url = self.url(&format!("blobs/{digest}"));
        for _ in 0..10 {
            let build = |r: RequestBuilder| match range {
                Some(v) => r.header(header::RANGE, v),
                None => r,
            };
            // `send` attaches credentials only to the registry's own origin.
            let resp = self.send(&op, Method::GET, &url, true, &build).await?;
            let status = resp.status();
            if status.is_redirection() {
                let loc = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| OciError::invalid(&op, "redirect without a Location"))?;
                url = url
                    .join(loc)
                    .map_err(|e| OciError::invalid(&op, format!("bad redirect: {e}")))?;
                continue;
            }
            if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
                return Ok(resp);
            }
            let detail = error_detail(resp).await;
            return Err(status_error(&op, status.as_u16(), detail));
        }
        Err(OciError::invalid(op, "more than 10 redirects"))
    }

    /// A whole blob in memory, at most `limit` bytes, checked against its digest.
    pub async fn get_blob_bytes(&self, digest: &Digest, limit: usize) -> Result<Bytes, OciError> {
        let op = format!("GET blob {digest}");
        let resp = self.get_blob(digest, None).await?;
        let body = read_limited(resp, limit, &op).await?;
        if Digest::of(&body) != *digest {
            return Err(OciError::invalid(
                op,
                "the content does not match its digest",
            ));
        }
        Ok(body)
    }

    /// Deletes a blob from this repository; false when it was already gone.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<bool, OciError> {
        let op = format!("DELETE blob {digest}");
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(&op, Method::DELETE, &url, true, &|r| r).await?;
        match resp.status().as_u16() {
            200 | 202 | 204 => Ok(true),
            404 => Ok(false),
            s => Err(status_error(&op, s, error_detail(resp).await)),
        }
    }

    /// PUT an image manifest under `reference` (a tag or its digest); returns
    /// its digest. A manifest naming a blob the registry lacks is
    /// [`OciError::ManifestBlobUnknown`], so the caller can upload and retry.
    pub async fn put_manifest(&self, reference: &str, body: Bytes) -> Result<Digest, OciError> {
        let op = format!("PUT manifest {reference}");
        let url = self.url(&format!("manifests/{reference}"));
        let build = |r: RequestBuilder| {
            r.header(header::CONTENT_TYPE, MANIFEST_MEDIA_TYPE)
                .body(body.clone())
        };
        let resp = self.send(&op, Method::PUT, &url, true, &build).await?;
        let status = resp.status().as_u16();
        if status == 201 || status == 200 {
            return Ok(Digest::of(&body));
        }
        let text = resp.text().await.unwrap_or_default();
        let unknown = blob_unknown_digests(&text);
        if !unknown.is_empty()
            || text.contains("MANIFEST_BLOB_UNKNOWN")
            || text.contains("BLOB_UNKNOWN")
        {
            return Err(OciError::ManifestBlobUnknown {
                op,
                digests: unknown,
            });
        }
        Err(status_error(&op, status, summarize_errors(&text)))
    }

    /// GET a manifest by tag or digest: its bytes and digest, or None on 404.
    /// Fetched by digest, the bytes are checked against it.
    pub async fn get_manifest(&self, reference: &str) -> Result<Option<(Bytes, Digest)>, OciError> {
        let op = format!("GET manifest {reference}");
        let url = self.url(&format!("manifests/{reference}"));
        let build = |r: RequestBuilder| r.header(header::ACCEPT, MANIFEST_ACCEPT);
        let resp = self.send(&op, Method::GET, &url, true, &build).await?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => return Err(status_error(&op, s, error_detail(resp).await)),
        }
        let body = read_limited(resp, MAX_MANIFEST, &op).await?;
        let digest = Digest::of(&body);
        if reference.starts_with("sha256:") && reference != digest.to_string() {
            return Err(OciError::invalid(
                op,
                "the manifest does not match its digest",
            ));
        }
        Ok(Some((body, digest)))
    }

    /// HEAD a manifest: its digest (from `Docker-Content-Digest`), or None on 404.
    pub async fn head_manifest(&self, reference: &str) -> Result<Option<Digest>, OciError> {
        let op = format!("HEAD manifest {reference}");
        let url = self.url(&format!("manifests/{reference}"));
        let build = |r: RequestBuilder| r.header(header::ACCEPT, MANIFEST_ACCEPT);
        let resp = self.send(&op, Method::HEAD, &url, true, &build).await?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => return Err(status_error(&op, s, None)),
        }
        match resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) => Digest::parse(d).map(Some),
            // Without the header, fetch it to learn the digest.
            None => Ok(self.get_manifest(reference).await?.map(|(_, d)| d)),
        }
    }

    /// DELETE a manifest by digest; false when it was already gone.
    pub async fn delete_manifest(&self, digest: &Digest) -> Result<bool, OciError> {
        let op = format!("DELETE manifest {digest}");
        let url = self.url(&format!("manifests/{digest}"));
        let resp = self.send(&op, Method::DELETE, &url, true, &|r| r).await?;
        match resp.status().as_u16() {
            200 | 202 | 204 => Ok(true),
            404 => Ok(false),
            s => Err(status_error(&op, s, error_detail(resp).await)),
        }
    }

    /// Every tag of the repository, following `Link` pagination. A repository
    /// that does not exist yet has no tags.
    pub async fn list_tags(&self) -> Result<Vec<String>, OciError> {
        let mut url = self.url("tags/list");
        url.set_query(Some("n=1000"));
        let mut tags = Vec::new();
        for page in 0.. {
            if page > 10_000 {
                return Err(OciError::invalid("listing tags", "more than 10000 pages"));
            }
            let op = "listing tags".to_owned();
            let resp = self.send(&op, Method::GET, &url, true, &|r| r).await?;
            match resp.status().as_u16() {
                200 => {}
                404 if page == 0 => return Ok(Vec::new()),
                s => return Err(status_error(&op, s, error_detail(resp).await)),
            }
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = read_limited(resp, 64 << 20, &op).await?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| OciError::invalid(&op, e.to_string()))?;
            let page_tags = match v.get("tags") {
                Some(serde_json::Value::Array(a)) => a.clone(),
                Some(serde_json::Value::Null) | None => Vec::new(),
                Some(_) => return Err(OciError::invalid(&op, "`tags` is not a list")),
            };
            let before = tags.len();
            tags.extend(
                page_tags
                    .into_iter()
                    .filter_map(|t| t.as_str().map(str::to_owned)),
            );
            match next {
                Some(link) if tags.len() > before => url = self.resolve(&link)?,
                _ => break,
            }
        }
        Ok(tags)
    }
}

/// The target of `Link: <...>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                p.trim()
                    .replace(' ', "")
                    .eq_ignore_ascii_case("rel=\"next\"")
                    || p.trim().eq_ignore_ascii_case("rel=next")
            })
            .then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=x&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}
