//! The upstream caches as a source, asked in the order configured.
//!
//! Documents are fetched at their own path. A narinfo is made servable by
//! [`localize`]: served as it is when it names its NAR by file hash (the
//! layout of cache.nixos.org and `nix copy`), else with its NAR renamed to
//! `nar/<store hash>-<NarHash>.nar<ext>`, whose real place is remembered in
//! [`NarSources`] and found again from the upstream's narinfo when it is
//! not. The HTTP client is `upstream.rs`.

use futures_util::future::BoxFuture;
use narbor_proto::{CacheUrl, NarInfo, PublicKey};

use super::{Fetched, Found, Source};
use crate::app::DOCUMENT_LIMIT;
use crate::nar_fill::OpenedNar;
use crate::nar_source::{localize, NarSource, NarSources};
use crate::upstream::{shown_url, Lookup, Upstreams};
use crate::verify::NarCheck;

pub(crate) struct UpstreamSource {
    pub upstreams: Upstreams,
    /// Where the NARs of narinfos narbor renamed are.
    pub sources: NarSources,
    /// When non-empty, a narinfo needs a signature by one of these.
    pub trusted_keys: Vec<PublicKey>,
}

impl<T> From<Lookup<T>> for Found<T> {
    fn from(l: Lookup<T>) -> Found<T> {
        match l {
            Lookup::Found { upstream, value } => Found::Yes {
                value,
                upstream: Some(upstream),
            },
            Lookup::NotFound => Found::No,
            Lookup::Failed(e) => Found::Failed(e),
        }
    }
}

impl Source for UpstreamSource {
    fn may_have(&self, _url: &CacheUrl, _key: &str) -> bool {
        !self.upstreams.is_empty()
    }

    fn document<'a>(&'a self, url: &'a CacheUrl) -> BoxFuture<'a, Found<Fetched>> {
        Box::pin(async move {
            match self
                .upstreams
                .get_document(&url.to_path(), DOCUMENT_LIMIT)
                .await
            {
                Lookup::Found { upstream, value } => Found::Yes {
                    value: Fetched {
                        body: value,
                        upstream: Some(upstream),
                    },
                    upstream: Some(upstream),
                },
                Lookup::NotFound => Found::No,
                Lookup::Failed(e) => Found::Failed(e),
            }
        })
    }

    fn serve_narinfo(
        &self,
        upstream: Option<usize>,
        info: &NarInfo,
        text: &str,
    ) -> Result<String, String> {
        let Some(i) = upstream else {
            return Ok(text.to_owned());
        };
        let local = localize(info, text, i, &self.upstreams.bases()[i])?;
        if let Some(source) = local.source {
            self.sources.remember(&local.key, source);
        }
        Ok(local.text)
    }

    fn open_nar<'a>(&'a self, url: &'a CacheUrl, key: &'a str) -> BoxFuture<'a, Found<OpenedNar>> {
        Box::pin(async move {
            match url {
                CacheUrl::Nar { file_hash, .. } => match self.upstreams.get_stream(key).await {
                    Lookup::Found { upstream, value } => Found::Yes {
                        value: OpenedNar {
                            upstream: Some(upstream),
                            name: self.upstreams.bases()[upstream].clone(),
                            resp: value,
                            check: NarCheck::File {
                                hash: *file_hash,
                                size: None,
                            },
                        },
                        upstream: Some(upstream),
                    },
                    Lookup::NotFound => Found::No,
                    Lookup::Failed(e) => Found::Failed(e),
                },
                CacheUrl::NarOfPath { .. } => self.open_renamed(url, key).await,
                // Only an index can say what the other names name.
                _ => Found::No,
            }
        })
    }

    fn head_nar<'a>(
        &'a self,
        url: &'a CacheUrl,
        key: &'a str,
    ) -> BoxFuture<'a, Found<Option<u64>>> {
        Box::pin(async move {
            match url {
                CacheUrl::Nar { .. } => self.upstreams.head(key).await.into(),
                CacheUrl::NarOfPath { .. } => {
                    let source = match self.sources.get(key) {
                        Some(s) => s,
                        None => match self.find(url, key).await {
                            Found::Yes { value, .. } => value,
                            Found::No => return Found::No,
                            Found::Failed(e) => return Found::Failed(e),
                        },
                    };
                    if let Some(len) = source.check.file_size() {
                        return Found::Yes {
                            value: Some(len),
                            upstream: Some(source.upstream),
                        };
                    }
                    self.upstreams
                        .head_url(source.upstream, &source.url)
                        .await
                        .into()
                }
                _ => Found::No,
            }
        })
    }
}

impl UpstreamSource {
    /// GETs a NAR narbor named itself from where its upstream's narinfo
    /// says it is; once more with the narinfo fetched again when that place
    /// no longer has it (a URL that expired, a remembered source from before
    /// the upstream changed).
    async fn open_renamed(&self, url: &CacheUrl, key: &str) -> Found<OpenedNar> {
        let mut fresh = false;
        loop {
            let source = match self.sources.get(key) {
                Some(s) if !fresh => s,
                _ => {
                    fresh = true;
                    match self.find(url, key).await {
                        Found::Yes { value, .. } => value,
                        Found::No => return Found::No,
                        Found::Failed(e) => return Found::Failed(e),
                    }
                }
            };
            match self.upstreams.get_nar(source.upstream, &source.url).await {
                Lookup::Found { upstream, value } => {
                    return Found::Yes {
                        value: OpenedNar {
                            upstream: Some(upstream),
                            name: shown_url(&source.url),
                            resp: value,
                            check: source.check,
                        },
                        upstream: Some(upstream),
                    }
                }
                Lookup::NotFound if !fresh => {
                    self.sources.forget(key);
                    fresh = true;
                }
                Lookup::NotFound => return Found::No,
                Lookup::Failed(e) => return Found::Failed(e),
            }
        }
    }

    /// Where the NAR `url` (`nar/<store hash>-<NarHash>...`) is, from the
    /// upstreams' narinfos for its store path, in order: the first whose
    /// narinfo has that NarHash and localizes to this very name.
    async fn find(&self, url: &CacheUrl, key: &str) -> Found<NarSource> {
        let CacheUrl::NarOfPath {
            store_hash,
            nar_hash,
            ..
        } = url
        else {
            return Found::No;
        };
        let path = format!("{store_hash}.narinfo");
        let mut failure = None;
        for index in 0..self.upstreams.bases().len() {
            let body = match self
                .upstreams
                .get_document_from(index, &path, DOCUMENT_LIMIT)
                .await
            {
                Lookup::Found { value, .. } => value,
                Lookup::NotFound => continue,
                Lookup::Failed(e) => {
                    failure = Some(e);
                    continue;
                }
            };
            let base = &self.upstreams.bases()[index];
            let found = std::str::from_utf8(&body)
                .ok()
                .and_then(|text| Some((text, NarInfo::parse(text).ok()?)))
                .filter(|(_, info)| {
                    info.store_path.hash() == store_hash
                        && info.nar_hash == *nar_hash
                        && (self.trusted_keys.is_empty() || info.verify(&self.trusted_keys))
                })
                .and_then(|(text, info)| localize(&info, text, index, base).ok())
                .filter(|l| l.key == key)
                .and_then(|l| l.source);
            // An upstream that has the path but names another NAR does not
            // have this one.
            if let Some(source) = found {
                self.sources.remember(key, source.clone());
                return Found::Yes {
                    value: source,
                    upstream: Some(index),
                };
            }
        }
        match failure {
            Some(e) => Found::Failed(e),
            None => Found::No,
        }
    }
}
