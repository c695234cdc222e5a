//! The admin listener's defences against requests a browser makes on
//! behalf of another site, and against DNS rebinding.
//!
//! * **`/api/v1`** answers only requests that carry no `Origin` header (curl,
//!   scripts) or whose `Origin` is this listener as the request addressed
//!   it (`http://` or `https://` plus the `Host` header), and none that a
//!   browser marks `Sec-Fetch-Site: cross-site` or `same-site`. Every
//!   request other than GET and HEAD must say `Content-Type:
//!   application/json`, body or not: a cross-site form or a `no-cors`
//!   `fetch` can only send `text/plain`, form or multipart bodies, and any
//!   other type makes the browser ask first (a preflight this listener
//!   never grants).
//! * **With authentication off**, the UI and the API answer only requests
//!   whose `Host` names a loopback address (`localhost`, `127.0.0.0/8`,
//!   `[::1]`, any port): a page whose own domain was rebound to 127.0.0.1
//!   sends its own domain as `Host` and is refused. With authentication on
//!   the bearer token is the defence (a browser never adds it by itself),
//!   so any `Host` is served.
//! * `/healthz`, `/readyz`, `/metrics` and `/about` are public and answer
//!   any `Host`: probes and a Prometheus on another machine address the
//!   listener by a name or address that is not loopback.
//!
//! Refusals are the admin API's JSON error (`{"code", "message"}`, HTTP 403
//! or 415) on `/api/v1` and plain text on the UI; their messages say what
//! to do and quote header values only up to [`pattern_core::error::QUOTE_MAX_CHARS`] characters.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tonic::{Code, Status};

use super::json::{error_body, json_response};

/// What the checks need to know about the listener.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Whether callers must authenticate (`auth.enabled`).
    pub auth_enabled: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// The gRPC code named in the JSON error body.
    pub code: Code,
    pub message: String,
}

impl Refusal {
    fn forbidden(message: String) -> Self {
        Refusal {
            status: StatusCode::FORBIDDEN,
            code: Code::PermissionDenied,
            message,
        }
    }
}

/// Middleware for `/api/v1`: the `Host` rule (authentication off), then
/// `Origin`, `Sec-Fetch-Site` and `Content-Type`.
pub async fn api_guard(State(rules): State<Rules>, request: Request, next: Next) -> Response {
    match check_api(rules, request.method(), request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::info!(
                path = %request.uri().path(),
                method = %request.method(),
                status = refusal.status.as_u16(),
                "admin api request refused by the cross-site rules"
            );
            let status = Status::new(refusal.code, refusal.message);
            json_response(refusal.status, &error_body(&status))
        }
    }
}

/// Middleware for the UI's pages: the `Host` rule (authentication off).
pub async fn ui_guard(State(rules): State<Rules>, request: Request, next: Next) -> Response {
    match check_host(rules, request.uri(), request.headers()) {
        Ok(_) => next.run(request).await,
        Err(refusal) => {
            tracing::info!(
                path = %request.uri().path(),
                "admin ui request refused: host is not loopback while authentication is off"
            );
            (
                refusal.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{}\n", refusal.message),
            )
                .into_response()
        }
    }
}

/// Every rule of `/api/v1`, in the order they are checked.
pub fn check_api(
    rules: Rules,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    let host = check_host(rules, uri, headers)?;
    check_origin(host.as_ref(), headers)?;
    check_fetch_site(headers)?;
    check_content_type(method, headers)
}

/// The host the request addressed, parsed from `Host` (or the request
/// target's authority when there is no `Host`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Addressed {
    /// Lowercase; an IPv6 address without its brackets.
    host: String,
    port: Option<u16>,
}

/// The `Host` the request addressed; with authentication off it must be
/// loopback.
fn check_host(rules: Rules, uri: &Uri, headers: &HeaderMap) -> Result<Option<Addressed>, Refusal> {
    let raw = match headers.get(header::HOST) {
        Some(value) => Some(value.as_bytes()),
        None => uri.authority().map(|a| a.as_str().as_bytes()),
    };
    let addressed = raw.map(parse_host);
    if let (Some(target), Some(host)) = (uri.authority(), headers.get(header::HOST))
        && !target
            .as_str()
            .as_bytes()
            .eq_ignore_ascii_case(host.as_bytes())
    {
        return Err(Refusal::forbidden(format!(
            "the request target names host {} but the Host header {}; send one host",
            quote(target.as_str().as_bytes()),
            quote(host.as_bytes())
        )));
    }
    if rules.auth_enabled {
        return Ok(addressed.and_then(Result::ok));
    }
    match addressed {
        Some(Ok(a)) if a.is_loopback() => Ok(Some(a)),
        Some(_) => Err(Refusal::forbidden(format!(
            "authentication is off, so the admin UI and API answer only requests addressed to \
             a loopback host (localhost, 127.0.0.1 or [::1]); this request's Host is {}. Open \
             it as http://127.0.0.1:{}/ (from another machine, through an SSH tunnel), or turn \
             on auth.enabled in prism.yaml",
            quote(raw.unwrap_or_default()),
            addressed
                .as_ref()
                .and_then(|a| a.as_ref().ok())
                .and_then(|a| a.port)
                .map_or_else(|| "PORT".to_string(), |p| p.to_string())
        ))),
        None => Err(Refusal::forbidden(
            "authentication is off, so the admin UI and API answer only requests addressed to \
             a loopback host; this request has no Host header: send one (e.g. Host: \
             127.0.0.1:PORT), or turn on auth.enabled in prism.yaml"
                .to_string(),
        )),
    }
}

/// `host[:port]` as in a `Host` header; `Err` when it is not one.
fn parse_host(raw: &[u8]) -> Result<Addressed, ()> {
    let text = std::str::from_utf8(raw).map_err(|_| ())?;
    if text.is_empty() || text.contains(['@', '/', '?', '#']) {
        return Err(());
    }
    let authority: axum::http::uri::Authority = text.parse().map_err(|_| ())?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok(Addressed {
        host: host.to_ascii_lowercase(),
        port: authority.port_u16(),
    })
}

impl Addressed {
    fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// `http://host:port` as a refusal shows it.
    fn show(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => format!("http://{host}:{port}"),
            None => format!("http://{host}"),
        }
    }
}

/// An `Origin` header, when present, must be this listener as addressed.
fn check_origin(host: Option<&Addressed>, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let Some(origin) = origins.next() else {
        return Ok(());
    };
    let refuse = || {
        let quoted = quote(origin.as_bytes());
        Refusal::forbidden(match host {
            Some(host) => format!(
                "cross-origin request refused: Origin {quoted} is not this listener ({0}); the \
                 admin API answers only the admin UI it serves (open it at {0}/) and clients \
                 that send no Origin header (curl, scripts)",
                host.show()
            ),
            None => format!(
                "cross-origin request refused: Origin {quoted}, and no valid Host header to \
                 compare it with; the admin API answers only the admin UI it serves and clients that \
                 send no Origin header (curl, scripts)"
            ),
        })
    };
    if origins.next().is_some() {
        return Err(refuse());
    }
    match (host, parse_origin(origin.as_bytes())) {
        (Some(host), Some((scheme_port, origin))) => {
            let port = |p: Option<u16>| p.unwrap_or(scheme_port);
            if origin.host == host.host && port(origin.port) == port(host.port) {
                Ok(())
            } else {
                Err(refuse())
            }
        }
        _ => Err(refuse()),
    }
}

/// `http://host[:port]` or `https://host[:port]`: the scheme's default port
/// and the host and port named.
fn parse_origin(raw: &[u8]) -> Option<(u16, Addressed)> {
    let text = std::str::from_utf8(raw).ok()?.to_ascii_lowercase();
    let (default_port, rest) = if let Some(rest) = text.strip_prefix("http://") {
        (80, rest)
    } else if let Some(rest) = text.strip_prefix("https://") {
        (443, rest)
    } else {
        return None;
    };
    parse_host(rest.as_bytes()).ok().map(|a| (default_port, a))
}

/// Browsers mark every request with where it comes from; only the UI's
/// own pages (`same-origin`) and typed-in addresses (`none`) are served.
fn check_fetch_site(headers: &HeaderMap) -> Result<(), Refusal> {
    match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
        None | Some(b"same-origin") | Some(b"none") => Ok(()),
        Some(other) => Err(Refusal::forbidden(format!(
            "cross-site request refused (Sec-Fetch-Site: {}); the admin API answers only the \
             admin UI it serves and clients that are not browsers",
            quote(other)
        ))),
    }
}

/// Requests other than GET and HEAD must be `application/json`.
fn check_content_type(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    let value = headers.get(header::CONTENT_TYPE);
    let essence = value
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    Err(Refusal {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: Code::InvalidArgument,
        message: format!(
            "{method} requests to the admin API must carry Content-Type: application/json \
             (this one has {}), with or without a body; e.g. curl -X {method} -H \
             'Content-Type: application/json' ...",
            value.map_or_else(|| "none".to_string(), |v| quote(v.as_bytes()))
        ),
    })
}

/// A header value for a refusal, bounded by [`pattern_core::quote`]
/// (bytes that are not UTF-8 become U+FFFD).
pub fn quote(raw: &[u8]) -> String {
    pattern_core::quote(&String::from_utf8_lossy(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn api(auth: bool, method: &str, pairs: &[(&str, &str)]) -> Result<(), Refusal> {
        check_api(
            Rules { auth_enabled: auth },
            &method.parse().unwrap(),
            &"/api/v1/namespaces".parse().unwrap(),
            &headers(pairs),
        )
    }

    #[test]
    fn with_authentication_off_only_loopback_hosts_are_served() {
        for host in [
            "127.0.0.1:8981",
            "127.0.0.1",
            "127.1.2.3:80",
            "localhost:8981",
            "LOCALHOST",
            "[::1]:8981",
            "[::1]",
        ] {
            assert_eq!(api(false, "GET", &[("host", host)]), Ok(()), "{host}");
        }
        for host in [
            "rebound.example:8981",
            "localhost.example",
            "10.0.0.5:8981",
            "[::ffff:127.0.0.1]:8981",
            "127.0.0.1.nip.io",
            "user@127.0.0.1",
            "",
        ] {
            let refusal = api(false, "GET", &[("host", host)]).unwrap_err();
            assert_eq!(refusal.status, StatusCode::FORBIDDEN, "{host}");
            assert!(refusal.message.contains("loopback"), "{}", refusal.message);
            assert!(
                refusal.message.contains("auth.enabled"),
                "{}",
                refusal.message
            );
        }
        let refusal = api(false, "GET", &[]).unwrap_err();
        assert!(refusal.message.contains("no Host"), "{}", refusal.message);
        // With authentication on, the token is the defence.
        assert_eq!(api(true, "GET", &[("host", "prism.internal:8981")]), Ok(()));
        assert_eq!(api(true, "GET", &[]), Ok(()));
    }

    #[test]
    fn an_origin_must_be_the_listener_as_addressed() {
        let host = ("host", "127.0.0.1:8981");
        for origin in ["http://127.0.0.1:8981", "HTTP://127.0.0.1:8981"] {
            assert_eq!(api(false, "GET", &[host, ("origin", origin)]), Ok(()));
        }
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:3000",
            "http://localhost:8981",
            "null",
            "file://",
            "http://127.0.0.1:8981/path",
        ] {
            let refusal = api(false, "GET", &[host, ("origin", origin)]).unwrap_err();
            assert_eq!(refusal.status, StatusCode::FORBIDDEN, "{origin}");
            assert!(
                refusal.message.contains("http://127.0.0.1:8981"),
                "{}",
                refusal.message
            );
        }
        // Two Origin headers are refused.
        let two = [
            host,
            ("origin", "http://127.0.0.1:8981"),
            ("origin", "http://evil.example"),
        ];
        assert!(api(false, "GET", &two).is_err());
        // Behind a TLS-terminating proxy: the scheme's default port.
        let public = ("host", "prism.example.com");
        assert_eq!(
            api(
                true,
                "GET",
                &[public, ("origin", "https://prism.example.com")]
            ),
            Ok(())
        );
        assert!(
            api(
                true,
                "GET",
                &[public, ("origin", "https://evil.example.com")]
            )
            .is_err()
        );
        assert!(
            api(
                true,
                "GET",
                &[public, ("origin", "https://prism.example.com:8443")]
            )
            .is_err()
        );
        assert!(api(true, "GET", &[("origin", "http://127.0.0.1:8981")]).is_err());
    }

    #[test]
    fn browsers_cross_site_marks_are_refused() {
        let host = ("host", "127.0.0.1:8981");
        for site in ["same-origin", "none"] {
            assert_eq!(api(false, "GET", &[host, ("sec-fetch-site", site)]), Ok(()));
        }
        for site in ["cross-site", "same-site"] {
            let refusal = api(false, "GET", &[host, ("sec-fetch-site", site)]).unwrap_err();
            assert_eq!(refusal.status, StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn changes_must_be_json() {
        let host = ("host", "127.0.0.1:8981");
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            for method in ["POST", "DELETE", "PUT"] {
                assert_eq!(api(false, method, &[host, ("content-type", ct)]), Ok(()));
            }
        }
        for (method, pairs) in [
            ("POST", vec![host, ("content-type", "text/plain")]),
            (
                "POST",
                vec![host, ("content-type", "application/x-www-form-urlencoded")],
            ),
            ("POST", vec![host, ("content-type", "multipart/form-data")]),
            ("POST", vec![host]),
            ("DELETE", vec![host]),
        ] {
            let refusal = api(false, method, &pairs).unwrap_err();
            assert_eq!(refusal.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert_eq!(refusal.code, Code::InvalidArgument);
            assert!(
                refusal.message.contains("Content-Type: application/json"),
                "{}",
                refusal.message
            );
        }
        assert_eq!(api(false, "GET", &[host]), Ok(()));
        assert_eq!(api(false, "HEAD", &[host]), Ok(()));
    }

    #[test]
    fn refusals_quote_at_most_64_characters() {
        let long = format!("http://{}.example", "a".repeat(10_000));
        let refusal = api(
            false,
            "GET",
            &[("host", "127.0.0.1:8981"), ("origin", &long)],
        )
        .unwrap_err();
        assert!(refusal.message.len() < 600, "{}", refusal.message);
        assert!(
            refusal
                .message
                .contains(&format!("…' ({} bytes)", long.len())),
            "{}",
            refusal.message
        );
        assert_eq!(quote(b"short"), "'short'");
        assert_eq!(quote(&[b'a', 0xff]), "'a\u{fffd}'");
    }
}
