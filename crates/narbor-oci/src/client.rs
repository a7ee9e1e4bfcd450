//! The OCI distribution client: one repository, with auth, retries and stats.
//!
//! Every request goes through [`RegistryClient::send`]: it attaches the
//! current credentials (a bearer token, or basic auth), answers a 401 by
//! running the challenge it carries (fetching a token with the union of the
//! actions asked for so far), refreshes a token before it expires, and retries
//! 429, 5xx and connection failures as the client's [`RetryPolicy`] says
//! (`retry.rs`). Redirects are followed by hand (see [`RegistryClient::get_blob`])
//! so that the `Authorization` header never goes to another host.
//! Uploads live in `upload.rs`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use narbor_proto::text::shorten;
use reqwest::header;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tokio::sync::Mutex;

use crate::auth::{Challenge, Credentials};
use crate::retry::{retry_after, transient, Attempt, RetryPolicy};
use crate::{Digest, OciError, StoreRef};

/// The manifest types narbor asks for (docker-registry needs the `Accept`
/// header to hand out an OCI manifest).
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json;q=0.9";

/// The largest manifest narbor reads (the spec suggests registries accept 4 MiB).
pub(crate) const MAX_MANIFEST: usize = 8 << 20;

/// Counters of what this client did, for summaries and tests.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub tokens_fetched: AtomicU64,
    pub blob_heads: AtomicU64,
    pub blobs_uploaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
}

/// One bearer token and what it was issued for.
struct Token {
    header: String,
    /// A little before it expires (10 s, or a quarter of a short lifetime).
    refresh_at: Instant,
}

#[derive(Default)]
enum AuthState {
    /// Nothing asked yet: requests go out without credentials.
    #[default]
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        actions: BTreeSet<String>,
        token: Option<Token>,
    },
}

/// A client for one repository of one registry.
pub struct RegistryClient {
    http: reqwest::Client,
    store: StoreRef,
    base: Url,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
    retry: RetryPolicy,
    stats: ClientStats,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("store", &self.store)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for `store`; `credentials` are used for basic auth and for the
    /// token endpoint (anonymous tokens without them).
    pub fn new(store: StoreRef, credentials: Option<Credentials>) -> Result<Self, OciError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("narbor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OciError::Transport {
                op: "creating the HTTP client".into(),
                reason: e.to_string(),
            })?;
        let base = Url::parse(&store.base_url()).map_err(|e| OciError::Reference {
            input: store.to_string(),
            reason: e.to_string(),
        })?;
        Ok(RegistryClient {
            http,
            store,
            base,
            credentials,
            auth: Mutex::new(AuthState::None),
            retry: RetryPolicy::default(),
            stats: ClientStats::default(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    pub fn store(&self) -> &StoreRef {
        &self.store
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// `/v2/<name>/<rest>` on the registry.
    pub(crate) fn url(&self, rest: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/v2/{}/{}", self.store.name, rest));
        u
    }

    /// Resolves a `Location` header against the registry.
    pub(crate) fn resolve(&self, location: &str) -> Result<Url, OciError> {
        self.base
            .join(location)
            .map_err(|e| OciError::invalid("Location header", e.to_string()))
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Sends a request built by `build` (called again for each attempt),
    /// with auth and retries. `retry` is false for requests that must not be
    /// repeated blindly (an upload chunk: the whole upload is restarted instead).
    /// Returns the response whatever its status, except for 401s it could not
    /// get past.
    pub(crate) async fn send(
        &self,
        op: &str,
        method: Method,
        url: &Url,
        retry: bool,
        build: &(dyn Fn(RequestBuilder) -> RequestBuilder + Sync),
    ) -> Result<Response, OciError> {
        let policy = if retry { self.retry } else { RetryPolicy::ONCE };
        // Answer one 401 by authenticating, not more.
        let reauthenticated = &AtomicBool::new(false);
        let method = &method;
        policy
            .run(op, &self.stats.retries, || async move {
                let mut req = build(self.http.request(method.clone(), url.clone()));
                if self.same_origin(url) {
                    if let Some(h) = self.auth_header().await? {
                        req = req.header(header::AUTHORIZATION, h);
                    }
                }
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                let resp = match req.send().await {
                    Ok(r) => r,
                    Err(e) => {
                        let reason = error_chain(&e.without_url());
                        return Ok(Attempt::Retry {
                            why: format!("request failed: {reason}"),
                            last: Err(OciError::Transport {
                                op: op.to_owned(),
                                reason,
                            }),
                            retry_after: None,
                        });
                    }
                };
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED
                    && self.same_origin(url)
                    && !reauthenticated.swap(true, Ordering::Relaxed)
                {
                    let challenge = resp
                        .headers()
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    self.authenticate(op, challenge.as_deref()).await?;
                    return Ok(Attempt::Again);
                }
                if status == StatusCode::UNAUTHORIZED {
                    let detail = error_detail(resp).await;
                    return Err(OciError::Auth {
                        host: self.store.host.clone(),
                        reason: format!(
                            "{op}: refused after authenticating{}; check the credentials and that they may {}",
                            detail.map(|d| format!(" ({d})")).unwrap_or_default(),
                            if method == Method::GET || method == Method::HEAD { "read" } else { "write and delete" }
                        ),
                    });
                }
                if transient(status) {
                    return Ok(Attempt::Retry {
                        why: format!("the registry answered {status}"),
                        retry_after: retry_after(resp.headers()),
                        last: Ok(resp),
                    });
                }
                Ok(Attempt::Done(resp))
            })
            .await
    }

    /// The `Authorization` value to send now, refreshing a token about to expire.
    async fn auth_header(&self) -> Result<Option<String>, OciError> {
        let mut state = self.auth.lock().await;
        match &mut *state {
            AuthState::None => Ok(None),
            AuthState::Basic => Ok(self.credentials.as_ref().map(Credentials::basic_header)),
            AuthState::Bearer {
                realm,
                service,
                actions,
                token,
            } => {
                let fresh = token
                    .as_ref()
                    .is_some_and(|t| t.refresh_at > Instant::now());
                if !fresh {
                    *token = Some(self.fetch_token(realm, service.as_deref(), actions).await?);
                }
                Ok(token.as_ref().map(|t| t.header.clone()))
            }
        }
    }

    /// Answers a 401's challenge: switch to basic auth, or fetch a new token
    /// covering the actions the registry asked for plus those asked before.
    async fn authenticate(&self, op: &str, challenge: Option<&str>) -> Result<(), OciError> {
        let host = self.store.host.clone();
        let challenge = challenge
            .and_then(Challenge::parse)
            .ok_or_else(|| OciError::Auth {
                host: host.clone(),
                reason: format!("{op}: 401 without a usable WWW-Authenticate challenge"),
            })?;
        let mut state = self.auth.lock().await;
        match challenge {
            Challenge::Basic => {
                if self.credentials.is_none() {
                    return Err(OciError::Auth {
                        host,
                        reason: "the registry requires a user name and password: set NARBOR_REGISTRY_USERNAME and NARBOR_REGISTRY_PASSWORD (or log in with docker)".into(),
                    });
                }
                if matches!(*state, AuthState::Basic) {
                    return Err(OciError::Auth {
                        host,
                        reason: "the user name or password was rejected".into(),
                    });
                }
                *state = AuthState::Basic;
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let mut actions = match &*state {
                    AuthState::Bearer { actions, .. } => actions.clone(),
                    _ => BTreeSet::new(),
                };
                actions.extend(scope_actions(scope.as_deref(), &self.store.name));
                if actions.is_empty() {
                    actions.insert("pull".to_owned());
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), &actions)
                    .await?;
                *state = AuthState::Bearer {
                    realm,
                    service,
                    actions,
                    token: Some(token),
                };
            }
        }
        Ok(())
    }

    /// GET `realm?service=...&scope=repository:NAME:ACTIONS`, with basic auth
    /// when there are credentials. The realm may be on another host: that is
    /// the protocol (the registry names its token server).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        actions: &BTreeSet<String>,
    ) -> Result<Token, OciError> {
        let host = self.store.host.clone();
        let auth_err = |reason: String| OciError::Auth {
            host: host.clone(),
            reason,
        };
        let mut url =
            Url::parse(realm).map_err(|e| auth_err(format!("token realm {realm:?}: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(auth_err(format!("token realm {realm:?} is not http(s)")));
        }
        if url.scheme() == "http" && self.base.scheme() == "https" {
            return Err(auth_err(format!(
                "refusing to send credentials to the plain-HTTP token realm {realm:?}"
            )));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            let acts: Vec<&str> = actions.iter().map(String::as_str).collect();
            q.append_pair(
                "scope",
                &format!("repository:{}:{}", self.store.name, acts.join(",")),
            );
        }
        let (url, auth_err) = (&url, &auth_err);
        let resp = self
            .retry
            .run(
                "fetching a registry token",
                &self.stats.retries,
                || async move {
                    let mut req = self.http.get(url.clone());
                    if let Some(c) = &self.credentials {
                        req = req.basic_auth(&c.username, Some(c.password()));
                    }
                    self.stats.requests.fetch_add(1, Ordering::Relaxed);
                    match req.send().await {
                        Ok(r) if transient(r.status()) => Ok(Attempt::Retry {
                            why: format!("the token server answered {}", r.status()),
                            retry_after: retry_after(r.headers()),
                            last: Ok(r),
                        }),
                        Ok(r) => Ok(Attempt::Done(r)),
                        Err(e) => {
                            let e = auth_err(format!(
                                "token endpoint: {}",
                                error_chain(&e.without_url())
                            ));
                            Ok(Attempt::Retry {
                                why: e.to_string(),
                                last: Err(e),
                                retry_after: None,
                            })
                        }
                    }
                },
            )
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(auth_err(
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    if self.credentials.is_some() {
                        format!("the token server refused the credentials ({status})")
                    } else {
                        format!("the token server refused an anonymous token ({status}); set NARBOR_REGISTRY_USERNAME and NARBOR_REGISTRY_PASSWORD")
                    }
                } else {
                    format!("the token server answered {status}")
                },
            ));
        }
        let body = resp.bytes().await.map_err(|e| {
            auth_err(format!(
                "reading the token: {}",
                error_chain(&e.without_url())
            ))
        })?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| auth_err("the token server's answer is not JSON".into()))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_err("the token server's answer has no token".into()))?;
        // The spec's default lifetime is 60 s.
        let lifetime = v
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .unwrap_or(60)
            .max(1);
        self.stats.tokens_fetched.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(host = %self.store.host, lifetime, ?actions, "got a registry token");
        let margin = Duration::from_secs(10).min(Duration::from_secs(lifetime) / 4);
        Ok(Token {
            header: format!("Bearer {token}"),
            refresh_at: Instant::now() + Duration::from_secs(lifetime) - margin,
        })
    }
}

pub(crate) fn status_error(op: &str, status: u16, detail: Option<String>) -> OciError {
    OciError::Status {
        op: op.to_owned(),
        status,
        detail,
    }
}

/// `CODE: message` of the first error in an OCI error body.
pub(crate) async fn error_detail(resp: Response) -> Option<String> {
    let text = resp.text().await.ok()?;
    summarize_errors(&text)
}

pub(crate) fn summarize_errors(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let e = v.get("errors")?.as_array()?.first()?;
    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
    Some(shorten(&format!("{code}: {msg}"), 300))
}

/// The digests named by `BLOB_UNKNOWN`/`MANIFEST_BLOB_UNKNOWN` errors.
pub(crate) fn blob_unknown_digests(text: &str) -> Vec<Digest> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let Some(errors) = v.get("errors").and_then(|e| e.as_array()) else {
        return Vec::new();
    };
    errors
        .iter()
        .filter(|e| {
            e.get("code")
                .and_then(|c| c.as_str())
                .is_some_and(|c| c.ends_with("BLOB_UNKNOWN"))
        })
        .filter_map(|e| {
            let d = e.get("detail")?;
            let s = d
                .as_str()
                .or_else(|| d.get("digest").and_then(|x| x.as_str()))?;
            Digest::parse(s).ok()
        })
        .collect()
}

/// A response body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    resp: Response,
    limit: usize,
    op: &str,
) -> Result<Bytes, OciError> {
    use futures_util::StreamExt;
    if resp.content_length().is_some_and(|l| l > limit as u64) {
        return Err(OciError::invalid(op, format!("larger than {limit} bytes")));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| OciError::Transport {
            op: op.to_owned(),
            reason: error_chain(&e.without_url()),
        })?;
        if out.len() + chunk.len() > limit {
            return Err(OciError::invalid(op, format!("larger than {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// An error and its sources, one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The actions of a `repository:NAME:a,b` scope for our repository.
fn scope_actions(scope: Option<&str>, name: &str) -> Vec<String> {
    let Some(scope) = scope else {
        return Vec::new();
    };
    scope
        .split(' ')
        .filter_map(|s| {
            let rest = s.strip_prefix("repository:")?;
            let (n, acts) = rest.rsplit_once(':')?;
            (n == name).then(|| acts.split(',').map(str::to_owned).collect::<Vec<_>>())
        })
        .flatten()
        .filter(|a| !a.is_empty() && a != "*")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(
            scope_actions(Some("repository:a/b:pull,push"), "a/b"),
            vec!["pull", "push"]
        );
        assert!(scope_actions(Some("repository:other:pull"), "a/b").is_empty());
        assert_eq!(
            scope_actions(Some("repository:h:5000/x:delete"), "h:5000/x"),
            vec!["delete"]
        );
    }

    /// The regression: `String::truncate(300)` panicked when byte 300 fell
    /// inside a character of the registry's message.
    #[test]
    fn bug_long_error_message_cut_inside_a_character_panicked() {
        // "DENIED: x" is 9 bytes: byte 300 is inside an 'é'.
        let body = format!(
            r#"{{"errors":[{{"code":"DENIED","message":"x{}"}}]}}"#,
            "é".repeat(400)
        );
        let s = summarize_errors(&body).unwrap();
        assert!(s.starts_with("DENIED: xé") && s.ends_with("é…"), "{s}");
        assert_eq!(s.chars().count(), 301);
    }

    #[test]
    fn blob_unknown_bodies() {
        let d = Digest::of(b"x");
        let body = format!(
            r#"{{"errors":[{{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"{d}"}}]}}"#
        );
        assert_eq!(blob_unknown_digests(&body), vec![d]);
        let body =
            format!(r#"{{"errors":[{{"code":"BLOB_UNKNOWN","detail":{{"digest":"{d}"}}}}]}}"#);
        assert_eq!(blob_unknown_digests(&body), vec![d]);
    }
}
