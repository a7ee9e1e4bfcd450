//! The plain-HTTP listener next to an HTTPS one: every request gets a 308 to
//! the same path on HTTPS.
//!
//! The `Location` is built from the request's `Host` (or, for HTTP/2, its
//! authority), so the header is checked first: only a DNS name or an IP
//! address, optionally with a port, made of the characters those allow. Its
//! port is replaced by the HTTPS listener's. Anything else is a 400: a
//! redirect must never carry a header injection or send a client elsewhere
//! than the host it asked for.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::respond::Body;

/// The answer to any request on a redirect listener.
pub fn respond<B>(req: &Request<B>, https_port: u16) -> Response<Body> {
    let host = match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok(),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    let Some(host) = host.and_then(host_without_port) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "bad request: a Host header naming this server is required\n",
        );
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    let Ok(value) = HeaderValue::from_str(&location) else {
        return plain(StatusCode::BAD_REQUEST, "bad request\n");
    };
    let mut resp = plain(
        StatusCode::PERMANENT_REDIRECT,
        "this cache is served over HTTPS\n",
    );
    resp.headers_mut().insert(header::LOCATION, value);
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        crate::CacheStatus::HEADER,
        HeaderValue::from_static(crate::CacheStatus::Local.as_str()),
    );
    resp
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`)
/// when it is well formed; `None` otherwise.
fn host_without_port(value: &str) -> Option<&str> {
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let inner = &value[1..end];
        let ok = !inner.is_empty()
            && inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ok {
            return None;
        }
        let rest = &value[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        (&value[..=end], port)
    } else {
        let (host, port) = match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        };
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with(['.', '-'])
            && !host.contains("..");
        if !ok {
            return None;
        }
        (host, port)
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(host: Option<&str>, uri: &str, port: u16) -> (u16, Option<String>) {
        let mut req = Request::builder().uri(uri);
        if let Some(h) = host {
            req = req.header(header::HOST, h);
        }
        let resp = respond(&req.body(()).unwrap(), port);
        (
            resp.status().as_u16(),
            resp.headers()
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    }

    #[test]
    fn redirects_to_the_same_host_and_path_on_the_https_port() {
        let cases = [
            (
                "cache.lan",
                "/nix-cache-info",
                "https://cache.lan:8443/nix-cache-info",
            ),
            (
                "cache.lan:80",
                "/a.narinfo?x=1",
                "https://cache.lan:8443/a.narinfo?x=1",
            ),
            ("127.0.0.1:37516", "/", "https://127.0.0.1:8443/"),
            ("[::1]:80", "/nar/x.nar", "https://[::1]:8443/nar/x.nar"),
            ("[fe80::1]", "/", "https://[fe80::1]:8443/"),
            (
                "Cache-1.Example.ORG",
                "//x",
                "https://Cache-1.Example.ORG:8443//x",
            ),
        ];
        for (host, uri, want) in cases {
            assert_eq!(
                location(Some(host), uri, 8443),
                (308, Some(want.to_owned())),
                "{host} {uri}"
            );
        }
        assert_eq!(
            location(Some("cache.lan"), "/x", 443),
            (308, Some("https://cache.lan/x".to_owned())),
            "the default port is left out"
        );
        assert_eq!(
            location(None, "http://cache.lan:80/x?y", 443),
            (308, Some("https://cache.lan/x?y".to_owned())),
            "an absolute-form request without Host uses its authority"
        );
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for host in [
            "",
            "evil.com/x",
            "evil.com\\@cache",
            "user@cache.lan",
            "cache.lan:80:80",
            "cache.lan:",
            "cache.lan:http",
            "cache.lan:123456",
            "[::1",
            "[::1]x",
            "[cache.lan]",
            "[]",
            ".cache",
            "-cache",
            "a..b",
            "cache lan",
            "cache.lan%0d%0aSet-Cookie:x",
            "ca\u{e9}che",
        ] {
            assert_eq!(location(Some(host), "/", 443), (400, None), "{host:?}");
        }
        assert_eq!(location(None, "/", 443), (400, None), "no Host at all");
    }
}
