//! A small blocking HTTP client over `wasi:http`.
//!
//! ```no_run
//! use certctl_sdk::{http, PluginError};
//!
//! fn create_record(token: &str) -> Result<(), PluginError> {
//!     let response = http::post("https://dns.example.com/v1/records")
//!         .bearer_auth(token)
//!         .json(&serde_json::json!({"name": "_acme-challenge", "type": "TXT"}))?
//!         .send()?             // Err only when no answer came back (Transient)
//!         .error_for_status()?; // 401/403 -> Auth, 404 -> NotFound, 429 -> RateLimited, ...
//!     let created: serde_json::Value = response.json()?;
//!     certctl_sdk::log::info(format!("created record {}", created["id"]));
//!     Ok(())
//! }
//! ```
//!
//! The host decides where a plugin may connect: a destination the operator has not granted to
//! the instance fails with [`PluginError::Transient`] whose message contains "HTTP request
//! denied", and the host's log of the call says which grant is missing. Check a configured URL
//! in `check_config` with [`check_endpoint`], so that a wrong one is refused up front.
//!
//! Error messages name the method and the origin (`POST https://dns.example.com`), never the path
//! or query, which may hold a token (Slack webhook URLs do).

use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{PluginError, text};

#[cfg(target_arch = "wasm32")]
mod transport;

/// The SDK's `User-Agent` unless the request sets one.
const USER_AGENT: &str = concat!("certctl-plugin/", env!("CARGO_PKG_VERSION"));

/// Response bodies larger than this are refused (the host caps them lower still).
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
}

impl Method {
    /// The method's name, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// A GET request to `url`.
pub fn get(url: impl Into<String>) -> Request {
    Request::new(Method::Get, url)
}

/// A POST request to `url`.
pub fn post(url: impl Into<String>) -> Request {
    Request::new(Method::Post, url)
}

/// A PUT request to `url`.
pub fn put(url: impl Into<String>) -> Request {
    Request::new(Method::Put, url)
}

/// A PATCH request to `url`.
pub fn patch(url: impl Into<String>) -> Request {
    Request::new(Method::Patch, url)
}

/// A DELETE request to `url`.
pub fn delete(url: impl Into<String>) -> Request {
    Request::new(Method::Delete, url)
}

/// An HTTP request, built step by step and sent with [`Request::send`].
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request without headers or body. `url` is `http://` or `https://`, with an optional
    /// port, path and query; credentials in the URL are refused (use [`Request::basic_auth`]).
    pub fn new(method: Method, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// Adds a header (a repeated name adds another value).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets `Authorization: Basic ...` from a user name and an optional password.
    pub fn basic_auth(self, username: &str, password: Option<&str>) -> Request {
        let pair = format!("{username}:{}", password.unwrap_or(""));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        self.header("Authorization", format!("Basic {encoded}"))
    }

    /// Sets `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: &str) -> Request {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON and `Content-Type: application/json` unless a content
    /// type was set already.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Request, PluginError> {
        self.body = serde_json::to_vec(value)
            .map_err(|e| PluginError::permanent(format!("cannot encode the request body as JSON: {e}")))?;
        if self.header_value("content-type").is_none() {
            self = self.header("Content-Type", "application/json");
        }
        Ok(self)
    }

    /// Gives up waiting for an answer after `timeout` (connection, first byte and body), with a
    /// [`PluginError::Transient`]. Without one, the call's own time limit set by the operator
    /// applies, and the host ends the whole call when it runs out.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sends the request and reads the whole response body.
    ///
    /// Returns the response whatever its status (see [`Response::error_for_status`]). Fails
    /// only when no response came: a refused, unreachable or timed-out destination, a
    /// destination the operator has not granted ("HTTP request denied"), or a broken
    /// connection, all as [`PluginError::Transient`] naming the method, the origin and the
    /// cause; a malformed URL is [`PluginError::InvalidConfig`].
    pub fn send(&self) -> Result<Response, PluginError> {
        let target = Target::parse(&self.url)?;
        let what = format!("{} {}", self.method.as_str(), target.origin());
        let mut headers = self.headers.clone();
        if self.header_value("user-agent").is_none() {
            headers.push(("User-Agent".into(), USER_AGENT.into()));
        }
        let sends_body = !self.body.is_empty() || matches!(self.method, Method::Post | Method::Put | Method::Patch);
        if sends_body && self.header_value("content-length").is_none() {
            headers.push(("Content-Length".into(), self.body.len().to_string()));
        }
        let raw = send_raw(self, &target, &headers, &what)?;
        Ok(Response {
            status: raw.status,
            headers: raw.headers,
            body: raw.body,
            what,
        })
    }
}

/// What the transport hands back.
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// The error for a request that got no answer: [`PluginError::Transient`] naming the method, the
/// origin and the cause.
pub(crate) fn no_answer(what: &str, cause: &str) -> PluginError {
    PluginError::transient(format!("{what}: {cause}"))
}

/// Why no answer came, worded as the `wasi:http` transport words it. Shared with the native test
/// kit, so that the failures it simulates read exactly like real ones.
pub(crate) mod cause {
    use std::time::Duration;

    /// `HttpRequestDenied`: the host refused the destination (no grant).
    pub(crate) const REQUEST_DENIED: &str =
        "HTTP request denied: the destination is not granted to this plugin instance";
    /// `ConnectionRefused`.
    pub(crate) const CONNECTION_REFUSED: &str = "connection refused";
    /// `ConnectionTimeout`: certctl's host reports its own client timeout this way.
    pub(crate) const CONNECTION_TIMEOUT: &str = "connection timed out";

    /// The request's own deadline ([`Request::timeout`](super::Request::timeout)) passed.
    pub(crate) fn timed_out(timeout: Option<Duration>) -> String {
        match timeout {
            Some(t) => format!("no complete answer within {:.1} s", t.as_secs_f64()),
            None => "timed out".to_string(),
        }
    }

    /// The response body is over [`MAX_RESPONSE_BODY`](super::MAX_RESPONSE_BODY).
    pub(crate) fn body_too_large() -> String {
        format!(
            "the response body is larger than {} MiB",
            super::MAX_RESPONSE_BODY / (1024 * 1024)
        )
    }
}

#[cfg(target_arch = "wasm32")]
fn send_raw(
    request: &Request,
    target: &Target,
    headers: &[(String, String)],
    what: &str,
) -> Result<RawResponse, PluginError> {
    transport::send(request.method, target, headers, &request.body, request.timeout)
        .map_err(|cause| no_answer(what, &cause))
}

/// Natively, a [`MockHttp`](crate::testkit::MockHttp) installed on this thread answers; without
/// one, sending fails cleanly.
#[cfg(not(target_arch = "wasm32"))]
fn send_raw(
    request: &Request,
    _target: &Target,
    headers: &[(String, String)],
    what: &str,
) -> Result<RawResponse, PluginError> {
    let exchange = crate::testkit::MockedRequest {
        method: request.method,
        url: &request.url,
        headers,
        body: &request.body,
        timeout: request.timeout,
        what,
    };
    crate::testkit::send(exchange).unwrap_or_else(|| {
        Err(no_answer(
            what,
            "outbound HTTP needs a certctl host: this code is not running as a WebAssembly component \
             (in native tests, install certctl_sdk::testkit::MockHttp)",
        ))
    })
}

/// An HTTP response with its whole body.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `METHOD origin`, for messages.
    what: String,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// All headers, names lower case as received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; a body that does not parse is [`PluginError::Permanent`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PluginError::permanent(format!(
                "{} answered {} with a body that is not the expected JSON ({e}): {}",
                self.what,
                self.status,
                body_snippet(&self.body)
            ))
        })
    }

    /// `Retry-After` in seconds, when given as a number of seconds.
    pub fn retry_after(&self) -> Option<u32> {
        self.header("retry-after")?.trim().parse().ok()
    }

    /// The response if its status is 2xx, otherwise the matching error (see [`status_error`]).
    pub fn error_for_status(self) -> Result<Response, PluginError> {
        match status_error(&self) {
            None => Ok(self),
            Some(e) => Err(e),
        }
    }
}

/// The error for a response's status, `None` for 2xx:
///
/// | status | error |
/// | --- | --- |
/// | 401, 403 | [`PluginError::Auth`] |
/// | 404 | [`PluginError::NotFound`] |
/// | 429 | [`PluginError::RateLimited`] with `Retry-After` seconds if present |
/// | 408, 5xx | [`PluginError::Transient`] |
/// | other 4xx, 1xx, 3xx (redirects are not followed) | [`PluginError::Permanent`] |
///
/// Messages carry the method, the origin, the status and the start of the body, which is where
/// providers explain what they refused.
pub fn status_error(response: &Response) -> Option<PluginError> {
    let status = response.status;
    if response.is_success() {
        return None;
    }
    let mut message = format!("{} answered {status}", response.what);
    if let Some(reason) = reason(status) {
        message.push(' ');
        message.push_str(reason);
    }
    let body = body_snippet(&response.body);
    if !body.is_empty() {
        message.push_str(": ");
        message.push_str(&body);
    }
    Some(match status {
        401 | 403 => PluginError::Auth(message),
        404 => PluginError::NotFound(message),
        429 => PluginError::RateLimited(response.retry_after()),
        408 | 500..=599 => PluginError::Transient(message),
        _ => PluginError::Permanent(message),
    })
}

fn reason(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// The start of a body, on one line, for messages (see [`text::snippet`]).
fn body_snippet(body: &[u8]) -> String {
    text::snippet(&String::from_utf8_lossy(body))
}

/// Checks a configured URL that the plugin sends to (a webhook, an API's base URL), from
/// `check_config`, so that a wrong one is refused when the operator configures it rather than at
/// the first call: `https://`, or `http://` only to `localhost`, `127.0.0.1` or `[::1]` (a local
/// test receiver), with a host, and without credentials or spaces in it.
///
/// The error is [`PluginError::InvalidConfig`] starting with `key`, and never repeats the URL,
/// whose path or query may be the credential (a Slack webhook URL is):
///
/// - `<key>: must start with https:// (http:// only to localhost, 127.0.0.1 or [::1], for tests)`
/// - `<key>: has no host`
/// - `<key>: the host part is not a host name (credentials or spaces in it)`
///
/// ```
/// use certctl_sdk::{PluginError, http};
///
/// assert_eq!(http::check_endpoint("config.url", "https://hooks.example.com/T0/B0/secret"), Ok(()));
/// assert_eq!(http::check_endpoint("config.url", "http://127.0.0.1:8080/hook"), Ok(()));
/// assert!(matches!(
///     http::check_endpoint("config.url", "http://hooks.example.com/T0/B0/secret"),
///     Err(PluginError::InvalidConfig(m)) if m.starts_with("config.url: must start with https://")
/// ));
/// ```
///
/// A plugin that must reach plain `http://` elsewhere (a receiver on an internal network) checks
/// its URL itself; the host's grants decide where it may connect in any case.
pub fn check_endpoint(key: &str, url: &str) -> Result<(), PluginError> {
    let invalid = |why: &str| PluginError::invalid_config(format!("{key}: {why}"));
    let must_be_https = "must start with https:// (http:// only to localhost, 127.0.0.1 or [::1], for tests)";
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid(must_be_https))?;
    let authority = &rest[..authority_len(rest)];
    if authority.is_empty() {
        return Err(invalid("has no host"));
    }
    if authority.contains('@') || authority.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "the host part is not a host name (credentials or spaces in it)",
        ));
    }
    if scheme.eq_ignore_ascii_case("https") || (scheme.eq_ignore_ascii_case("http") && is_loopback(authority)) {
        Ok(())
    } else {
        Err(invalid(must_be_https))
    }
}

/// Whether an authority is `localhost`, `127.0.0.1` or `[::1]`, with or without a port.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or(bracketed, |(host, _)| host),
        None => authority.split_once(':').map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

/// The length of the authority (`host[:port]`, or `user@host`) at the start of what follows a
/// URL's `scheme://`.
fn authority_len(rest: &str) -> usize {
    rest.find(['/', '?', '#']).unwrap_or(rest.len())
}

/// A URL split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    /// `host[:port]`.
    authority: String,
    /// Starts with `/`.
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, PluginError> {
        let invalid = |why: &str| PluginError::invalid_config(format!("invalid URL {:?}: {why}", redact(url)));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("it needs a scheme: https://host/path"))?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(invalid("the scheme must be https or http"));
        };
        let (authority, tail) = rest.split_at(authority_len(rest));
        if authority.is_empty() {
            return Err(invalid("it has no host"));
        }
        if authority.contains('@') {
            return Err(invalid(
                "credentials in the URL are not supported; configure them separately",
            ));
        }
        if authority.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("the host contains spaces"));
        }
        let tail = tail.split('#').next().unwrap_or("");
        let path_and_query = if tail.starts_with('/') {
            tail.to_string()
        } else {
            format!("/{tail}")
        };
        if path_and_query.chars().any(|c| c == ' ' || c.is_control()) {
            return Err(invalid(
                "the path contains spaces or control characters; percent-encode them",
            ));
        }
        Ok(Target {
            https,
            authority: authority.to_string(),
            path_and_query,
        })
    }

    /// `scheme://host[:port]`.
    fn origin(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.authority)
    }
}

/// A URL for messages: the origin only, since paths and queries may hold tokens.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = authority_len(rest);
            let authority = &rest[..end];
            let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
            if end < rest.len() {
                format!("{scheme}://{host}/...")
            } else {
                format!("{scheme}://{host}")
            }
        }
        None => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
            what: "POST https://api.example.com".into(),
        }
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        assert!(response(204, &[], "").error_for_status().is_ok());
        let e = response(401, &[], "{\"error\": \"bad token\"}")
            .error_for_status()
            .expect_err("401");
        assert_eq!(
            e,
            PluginError::Auth(
                "POST https://api.example.com answered 401 Unauthorized: {\"error\": \"bad token\"}".into()
            )
        );
        assert!(matches!(
            status_error(&response(403, &[], "")),
            Some(PluginError::Auth(_))
        ));
        assert!(matches!(
            status_error(&response(404, &[], "")),
            Some(PluginError::NotFound(_))
        ));
        assert_eq!(
            status_error(&response(429, &[("Retry-After", "30")], "")),
            Some(PluginError::RateLimited(Some(30)))
        );
        assert_eq!(
            status_error(&response(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], "")),
            Some(PluginError::RateLimited(None))
        );
        assert!(matches!(
            status_error(&response(503, &[], "")),
            Some(PluginError::Transient(_))
        ));
        assert!(matches!(
            status_error(&response(408, &[], "")),
            Some(PluginError::Transient(_))
        ));
        assert!(matches!(
            status_error(&response(400, &[], "")),
            Some(PluginError::Permanent(_))
        ));
        assert!(matches!(
            status_error(&response(302, &[], "")),
            Some(PluginError::Permanent(_))
        ));
    }

    #[test]
    fn long_bodies_are_cut_in_messages() {
        let long = "x ".repeat(500);
        let Some(PluginError::Permanent(m)) = status_error(&response(400, &[], &long)) else {
            panic!("permanent expected");
        };
        assert!(m.len() < 300, "{m}");
        assert!(m.ends_with("..."));
    }

    #[test]
    fn urls_split_for_wasi_http() {
        let t = Target::parse("https://hooks.example.com/services/T0/B0/secret?x=1#frag").expect("parses");
        assert_eq!(
            t,
            Target {
                https: true,
                authority: "hooks.example.com".into(),
                path_and_query: "/services/T0/B0/secret?x=1".into()
            }
        );
        assert_eq!(t.origin(), "https://hooks.example.com");
        let t = Target::parse("HTTP://127.0.0.1:8080").expect("parses");
        assert_eq!(
            (t.https, t.authority.as_str(), t.path_and_query.as_str()),
            (false, "127.0.0.1:8080", "/")
        );
        let t = Target::parse("http://[::1]:8080?q").expect("parses");
        assert_eq!((t.authority.as_str(), t.path_and_query.as_str()), ("[::1]:8080", "/?q"));
    }

    #[test]
    fn bad_urls_are_invalid_config_without_the_path() {
        for url in [
            "hooks.example.com/x",
            "ftp://x/y",
            "https:///path",
            "https://user:pw@host/secret",
        ] {
            let Err(PluginError::InvalidConfig(m)) = Target::parse(url) else {
                panic!("{url} accepted");
            };
            assert!(!m.contains("secret") && !m.contains("pw"), "{m}");
        }
    }

    #[test]
    fn endpoints_are_https_or_http_to_this_machine() {
        for good in [
            "https://hooks.slack.com/services/T0/B0/x",
            "HTTPS://api.example.com:8443/v1?x=1",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "HTTP://LOCALHOST:9000",
            "http://[::1]:8080/hook",
            "http://[::1]",
        ] {
            assert_eq!(check_endpoint("config.url", good), Ok(()), "{good}");
        }
        let https = "config.url: must start with https:// (http:// only to localhost, 127.0.0.1 or [::1], for tests)";
        let cases = [
            ("http://hooks.slack.com/services/x", https),
            ("http://localhost.evil.example/x", https),
            ("http://127.0.0.2/x", https),
            ("http://[::2]:80/x", https),
            ("ftp://localhost/x", https),
            ("hooks.slack.com/services/x", https),
            ("https:///services/x", "config.url: has no host"),
            ("https://", "config.url: has no host"),
            (
                "https://u:p@hooks.slack.com/services/x",
                "config.url: the host part is not a host name (credentials or spaces in it)",
            ),
            (
                "https://hooks slack.com/services/x",
                "config.url: the host part is not a host name (credentials or spaces in it)",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(
                check_endpoint("config.url", url),
                Err(PluginError::InvalidConfig(expected.into())),
                "{url}"
            );
        }
    }

    #[test]
    fn loopback_authorities() {
        assert!(is_loopback("localhost:8787") && is_loopback("[::1]:1") && is_loopback("127.0.0.1"));
        assert!(is_loopback("LocalHost") && is_loopback("[::1]"));
        assert!(!is_loopback("127.0.0.2") && !is_loopback("localhost.example.com") && !is_loopback("[::2]"));
    }

    #[test]
    fn basic_auth_matches_the_usual_encoding() {
        let r = post("http://x").basic_auth("u", Some("p"));
        assert_eq!(r.header_value("authorization"), Some("Basic dTpw"));
        let r = post("http://x").basic_auth("user", None);
        assert_eq!(r.header_value("Authorization"), Some("Basic dXNlcjo="));
    }

    #[test]
    fn json_sets_the_content_type_once() {
        let r = post("http://x").json(&serde_json::json!({"a": 1})).expect("json");
        assert_eq!(r.body_bytes(), b"{\"a\":1}");
        assert_eq!(r.header_value("content-type"), Some("application/json"));
        let r = post("http://x")
            .header("Content-Type", "application/vnd.api+json")
            .json(&1)
            .expect("json");
        assert_eq!(r.header_value("content-type"), Some("application/vnd.api+json"));
    }

    #[test]
    fn outside_a_host_sending_fails_cleanly() {
        let e = get("https://example.com/x").send().expect_err("no host");
        assert!(
            matches!(e, PluginError::Transient(ref m) if m.starts_with("GET https://example.com: ")),
            "{e:?}"
        );
    }
}
