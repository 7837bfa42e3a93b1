//! [`MockHttp`]: recorded HTTP exchanges, answering the SDK's [`http`](crate::http) client.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::MockedRequest;
use crate::PluginError;
use crate::http::{MAX_RESPONSE_BODY, Method, RawResponse, cause, no_answer};

thread_local! {
    /// The [`MockHttp`] installed on this thread, if any.
    static ACTIVE: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

/// A closure answering requests. Shared, so that it is called without holding the state.
type Handler = Rc<RefCell<dyn FnMut(&RecordedRequest) -> MockResponse>>;

/// A mock of the host's outbound HTTP for native tests: while it is installed on a thread, the
/// SDK's [`http`](crate::http) client on that thread sends its requests here instead of failing.
///
/// Register the exchanges a test expects with [`MockHttp::expect`] (exact URL) or
/// [`MockHttp::expect_prefix`], each answered with a canned [`MockResponse`] or by a closure;
/// a stateful fake of a whole provider API goes in [`MockHttp::fallback`]. Expectations are
/// tried in the order they were registered; each answers once unless
/// [`Expectation::times`] or [`Expectation::always`] says otherwise, so a sequence (first a
/// 503, then a 200) is two expectations.
///
/// A request that no expectation (and no fallback) answers fails with
/// [`PluginError::Permanent`] saying which request it was and what was expected instead.
/// [`MockHttp::requests`] lists every request that was sent, for assertions.
///
/// Dropping the mock uninstalls it and then panics (unless the test is already failing) if an
/// expectation was not used up or a request was unexpected: a plugin that swallowed the error
/// would otherwise hide it. Assert on unexpected requests deliberately with
/// [`MockHttp::take_unexpected`].
///
/// ```
/// use certctl_sdk::http::{self, Method};
/// use certctl_sdk::testkit::{MockHttp, MockResponse};
///
/// let mock = MockHttp::install();
/// mock.expect(Method::Get, "https://api.example.test/v1/zones")
///     .header("authorization", "Bearer t0ken")
///     .respond(MockResponse::json(200, &serde_json::json!([{"id": 1, "name": "example.com"}])));
///
/// let zones: serde_json::Value = http::get("https://api.example.test/v1/zones")
///     .bearer_auth("t0ken")
///     .send()
///     .and_then(|r| r.error_for_status())
///     .and_then(|r| r.json())
///     .expect("answered");
/// assert_eq!(zones[0]["name"], "example.com");
/// assert_eq!(mock.requests()[0].header("user-agent").map(|ua| ua.starts_with("certctl-plugin/")), Some(true));
/// ```
pub struct MockHttp {
    state: Rc<RefCell<State>>,
}

#[derive(Default)]
struct State {
    expectations: Vec<Slot>,
    fallback: Option<Handler>,
    requests: Vec<RecordedRequest>,
    unexpected: Vec<String>,
}

impl MockHttp {
    /// Installs an empty mock on the current thread, until the returned guard is dropped.
    ///
    /// # Panics
    /// If a `MockHttp` is installed on this thread already.
    pub fn install() -> MockHttp {
        let state = Rc::new(RefCell::new(State::default()));
        ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            assert!(
                active.is_none(),
                "MockHttp::install: a MockHttp is already installed on this thread; use that one \
                 (or drop it first)"
            );
            *active = Some(Rc::clone(&state));
        });
        MockHttp { state }
    }

    /// Expects a request with this method to exactly this URL (as the plugin writes it, query
    /// included). Add checks on the expectation, then answer it with [`Expectation::respond`] or
    /// [`Expectation::respond_with`].
    pub fn expect(&self, method: Method, url: impl Into<String>) -> Expectation<'_> {
        self.expectation(method, UrlMatch::Exact(url.into()))
    }

    /// Expects a request with this method to any URL starting with `url_prefix`.
    pub fn expect_prefix(&self, method: Method, url_prefix: impl Into<String>) -> Expectation<'_> {
        self.expectation(method, UrlMatch::Prefix(url_prefix.into()))
    }

    fn expectation(&self, method: Method, url: UrlMatch) -> Expectation<'_> {
        Expectation {
            mock: self,
            method,
            url,
            headers: Vec::new(),
            body: None,
            limit: Some(1),
        }
    }

    /// Answers every request that no expectation answers (any method, any URL) with `handler`:
    /// the place for a stateful fake of a provider's API. The handler decides, so nothing is
    /// unexpected any more; answer unknown paths with a 404 as the real API would.
    pub fn fallback(&self, handler: impl FnMut(&RecordedRequest) -> MockResponse + 'static) {
        let handler: Handler = Rc::new(RefCell::new(handler));
        self.state.borrow_mut().fallback = Some(handler);
    }

    /// Every request sent while the mock was installed, in order, answered or not.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.borrow().requests.clone()
    }

    /// The messages of the requests that nothing answered so far (each also failed its call),
    /// and forgets them, so that dropping the mock does not report them again.
    pub fn take_unexpected(&self) -> Vec<String> {
        std::mem::take(&mut self.state.borrow_mut().unexpected)
    }

    /// Panics if an expectation was not used as often as it said, or a request was unexpected.
    /// Dropping the mock does the same; call this to check at a precise point.
    #[track_caller]
    pub fn verify(&self) {
        let report = self.state.borrow().problems();
        if let Some(report) = report {
            panic!("{report}");
        }
    }
}

impl Drop for MockHttp {
    fn drop(&mut self) {
        // `try_with`: the thread's locals may already be gone when a guard lives in one.
        let _ = ACTIVE.try_with(|active| {
            if let Ok(mut active) = active.try_borrow_mut()
                && active.as_ref().is_some_and(|a| Rc::ptr_eq(a, &self.state))
            {
                *active = None;
            }
        });
        if !std::thread::panicking() {
            self.verify();
        }
    }
}

impl fmt::Debug for MockHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("MockHttp")
            .field(
                "expectations",
                &state.expectations.iter().map(Slot::describe).collect::<Vec<_>>(),
            )
            .field("fallback", &state.fallback.is_some())
            .field("requests", &state.requests)
            .field("unexpected", &state.unexpected)
            .finish()
    }
}

impl State {
    /// What `verify` complains about, if anything.
    fn problems(&self) -> Option<String> {
        let unused: Vec<String> = self
            .expectations
            .iter()
            .filter(|slot| slot.limit.is_some_and(|limit| slot.used < limit))
            .map(|slot| format!("\n  - {}", slot.describe()))
            .collect();
        if unused.is_empty() && self.unexpected.is_empty() {
            return None;
        }
        let mut report = String::from("MockHttp:");
        if !unused.is_empty() {
            report.push_str(" expected requests that were not (all) sent:");
            report.extend(unused);
        }
        for message in &self.unexpected {
            report.push('\n');
            report.push_str(message);
        }
        if !self.unexpected.is_empty() {
            report.push_str("\n(call MockHttp::take_unexpected to assert on unexpected requests)");
        }
        Some(report)
    }

    fn unexpected_message(&self, request: &RecordedRequest) -> String {
        let mut message = format!("unexpected request {} {}", request.method.as_str(), request.url);
        if !request.body.is_empty() {
            let _ = write!(message, " with body {}", shown(&request.body));
        }
        if self.expectations.is_empty() {
            message.push_str("; expected instead: nothing (no expectation is registered on this MockHttp)");
            return message;
        }
        message.push_str("; expected instead:");
        for slot in &self.expectations {
            let _ = write!(message, "\n  - {}", slot.describe());
            if slot.targets(request) {
                if !slot.available() {
                    message.push_str(": same method and URL, but already used up");
                } else if let Err(why) = slot.check(request) {
                    let _ = write!(message, ": same method and URL, but {why}");
                }
            }
        }
        message
    }
}

/// Answers `request` if a [`MockHttp`] is installed on this thread.
pub(crate) fn send(request: MockedRequest<'_>) -> Option<Result<RawResponse, PluginError>> {
    // `try_with`: a request from a thread-local's destructor finds no mock.
    let state = ACTIVE.try_with(|active| active.borrow().clone()).ok().flatten()?;
    let recorded = RecordedRequest {
        method: request.method,
        url: request.url.to_string(),
        // As on the wire: `wasi:http` header names are lower case.
        headers: request
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect(),
        body: request.body.to_vec(),
        timeout: request.timeout,
    };
    let answer = {
        let mut state = state.borrow_mut();
        state.requests.push(recorded.clone());
        let chosen = state
            .expectations
            .iter()
            .position(|slot| slot.available() && slot.targets(&recorded) && slot.check(&recorded).is_ok());
        match chosen {
            Some(i) => {
                let slot = &mut state.expectations[i];
                slot.used += 1;
                slot.answer.clone()
            }
            None => match &state.fallback {
                Some(handler) => Answer::With(Rc::clone(handler)),
                None => {
                    let message = state.unexpected_message(&recorded);
                    state.unexpected.push(message.clone());
                    return Some(Err(PluginError::permanent(format!("MockHttp: {message}"))));
                }
            },
        }
    };
    let response = match answer {
        Answer::Fixed(response) => response,
        Answer::With(handler) => match handler.try_borrow_mut() {
            Ok(mut handler) => handler(&recorded),
            Err(_) => {
                return Some(Err(PluginError::permanent(format!(
                    "MockHttp: the handler answering {} {} sent a request that it would answer itself",
                    recorded.method.as_str(),
                    recorded.url
                ))));
            }
        },
    };
    Some(response.into_raw(request.what, request.timeout))
}

/// One expected exchange, being described; registered by [`Expectation::respond`] or
/// [`Expectation::respond_with`].
#[must_use = "an expectation is registered by .respond(...) or .respond_with(...)"]
pub struct Expectation<'a> {
    mock: &'a MockHttp,
    method: Method,
    url: UrlMatch,
    headers: Vec<(String, String)>,
    body: Option<BodyCheck>,
    limit: Option<usize>,
}

impl Expectation<'_> {
    /// Requires a header with this value (names compare case-insensitively; with a repeated
    /// header, one of its values).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Requires exactly this body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(BodyCheck::Bytes(body.into()));
        self
    }

    /// Requires a JSON body equal to `value` (as JSON values: key order and spacing do not
    /// matter).
    ///
    /// # Panics
    /// If `value` does not serialise to JSON.
    pub fn json_body<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        let value = serde_json::to_value(value)
            .unwrap_or_else(|e| panic!("Expectation::json_body: the expected body is not JSON: {e}"));
        self.body = Some(BodyCheck::Json(value));
        self
    }

    /// Answers `n` requests instead of one.
    pub fn times(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Answers any number of requests, none included.
    pub fn always(mut self) -> Self {
        self.limit = None;
        self
    }

    /// Registers the expectation, answered with `response`.
    pub fn respond(self, response: MockResponse) {
        self.register(Answer::Fixed(response));
    }

    /// Registers the expectation, answered by `handler` (for answers that depend on the request
    /// or on what happened before).
    pub fn respond_with(self, handler: impl FnMut(&RecordedRequest) -> MockResponse + 'static) {
        let handler: Handler = Rc::new(RefCell::new(handler));
        self.register(Answer::With(handler));
    }

    fn register(self, answer: Answer) {
        let slot = Slot {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            limit: self.limit,
            used: 0,
            answer,
        };
        self.mock.state.borrow_mut().expectations.push(slot);
    }
}

impl fmt::Debug for Expectation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expectation")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// A registered expectation.
struct Slot {
    method: Method,
    url: UrlMatch,
    headers: Vec<(String, String)>,
    body: Option<BodyCheck>,
    /// `None`: any number of times.
    limit: Option<usize>,
    used: usize,
    answer: Answer,
}

#[derive(Debug)]
enum UrlMatch {
    Exact(String),
    Prefix(String),
}

enum BodyCheck {
    Bytes(Vec<u8>),
    Json(serde_json::Value),
}

#[derive(Clone)]
enum Answer {
    Fixed(MockResponse),
    With(Handler),
}

impl Slot {
    fn available(&self) -> bool {
        self.limit.is_none_or(|limit| self.used < limit)
    }

    /// Same method and URL.
    fn targets(&self, request: &RecordedRequest) -> bool {
        self.method == request.method
            && match &self.url {
                UrlMatch::Exact(url) => request.url == *url,
                UrlMatch::Prefix(prefix) => request.url.starts_with(prefix.as_str()),
            }
    }

    /// The header and body checks.
    fn check(&self, request: &RecordedRequest) -> Result<(), String> {
        for (name, want) in &self.headers {
            let mut found = request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .peekable();
            if found.peek().is_none() {
                return Err(format!("header {name}: expected {want:?}, found none"));
            }
            let found: Vec<&str> = found.collect();
            if !found.contains(&want.as_str()) {
                return Err(format!("header {name}: expected {want:?}, found {found:?}"));
            }
        }
        match &self.body {
            None => Ok(()),
            Some(BodyCheck::Bytes(want)) if request.body == *want => Ok(()),
            Some(BodyCheck::Bytes(want)) => Err(format!(
                "the body is {}, expected {}",
                shown(&request.body),
                shown(want)
            )),
            Some(BodyCheck::Json(want)) => match serde_json::from_slice::<serde_json::Value>(&request.body) {
                Ok(got) if got == *want => Ok(()),
                Ok(got) => Err(format!("the JSON body is {got}, expected {want}")),
                Err(e) => Err(format!(
                    "the body is not JSON ({e}): {}; expected {want}",
                    shown(&request.body)
                )),
            },
        }
    }

    fn describe(&self) -> String {
        let mut text = match &self.url {
            UrlMatch::Exact(url) => format!("{} {url}", self.method.as_str()),
            UrlMatch::Prefix(prefix) => format!("{} {prefix}* (URL prefix)", self.method.as_str()),
        };
        for (name, value) in &self.headers {
            let _ = write!(text, " with header {name}: {value:?}");
        }
        match &self.body {
            None => {}
            Some(BodyCheck::Bytes(body)) => {
                let _ = write!(text, " with body {}", shown(body));
            }
            Some(BodyCheck::Json(value)) => {
                let _ = write!(text, " with JSON body {value}");
            }
        }
        match self.limit {
            None => text.push_str(" (any number of times)"),
            Some(1) if self.used == 0 => text.push_str(" (once, not sent yet)"),
            Some(1) => text.push_str(" (once, sent)"),
            Some(limit) => {
                let _ = write!(text, " ({limit} times, sent {})", self.used);
            }
        }
        text
    }
}

/// A body in a message: as text, cut after 500 characters.
fn shown(body: &[u8]) -> String {
    const MAX: usize = 500;
    let text = String::from_utf8_lossy(body);
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut:?}... ({} bytes)", body.len())
    }
}

/// A request the plugin sent, as the transport saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The URL as the plugin gave it.
    pub url: String,
    /// The headers as sent: names lower case (as `wasi:http` sends them), in order, including
    /// the `user-agent` and `content-length` the SDK adds.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The timeout the plugin set with [`Request::timeout`](crate::http::Request::timeout).
    pub timeout: Option<Duration>,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The URL's path, without query or fragment: `/v1/zones` for
    /// `https://api.example.test/v1/zones?page=2`, `/` when it has none.
    pub fn path(&self) -> &str {
        let rest = self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest);
        match rest.find(['/', '?', '#']) {
            Some(start) if rest[start..].starts_with('/') => {
                let path = &rest[start..];
                path.find(['?', '#']).map_or(path, |end| &path[..end])
            }
            _ => "/",
        }
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// What a [`MockHttp`] answers: a response (status, headers, body) or, to test error
/// handling, no answer at all ([`MockResponse::connection_refused`], [`MockResponse::timeout`],
/// [`MockResponse::request_denied`]), which the client reports exactly as it does under a real
/// host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockResponse {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    ConnectionRefused,
    Timeout,
    RequestDenied,
}

impl MockResponse {
    /// A response with this status, no headers and no body.
    pub fn new(status: u16) -> MockResponse {
        MockResponse {
            kind: Kind::Answer {
                status,
                headers: Vec::new(),
                body: Vec::new(),
            },
        }
    }

    /// `200 OK`, no body.
    pub fn ok() -> MockResponse {
        MockResponse::new(200)
    }

    /// A response with this status and `value` as a JSON body, with
    /// `content-type: application/json`.
    ///
    /// # Panics
    /// If `value` does not serialise to JSON.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> MockResponse {
        let body = serde_json::to_vec(value)
            .unwrap_or_else(|e| panic!("MockResponse::json: the response body is not JSON: {e}"));
        MockResponse::new(status)
            .header("content-type", "application/json")
            .body(body)
    }

    /// Adds a response header (names reach the plugin lower case, as from a real host). No
    /// effect on a response that is no answer.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> MockResponse {
        if let Kind::Answer { headers, .. } = &mut self.kind {
            headers.push((name.into().to_ascii_lowercase(), value.into()));
        }
        self
    }

    /// Sets the body. No effect on a response that is no answer.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> MockResponse {
        if let Kind::Answer { body: b, .. } = &mut self.kind {
            *b = body.into();
        }
        self
    }

    /// The server refused the connection: `send` fails with [`PluginError::Transient`]
    /// `"POST https://host: connection refused"`.
    pub fn connection_refused() -> MockResponse {
        MockResponse {
            kind: Kind::ConnectionRefused,
        }
    }

    /// No answer in time: `send` fails with [`PluginError::Transient`]. With a
    /// [`Request::timeout`](crate::http::Request::timeout), the message is the client's own
    /// (`"... no complete answer within 30.0 s"`); without one it is the host's
    /// (`"... connection timed out"`).
    pub fn timeout() -> MockResponse {
        MockResponse { kind: Kind::Timeout }
    }

    /// The host refused the destination because the operator has not granted it to the
    /// instance: `send` fails with [`PluginError::Transient`]
    /// `"GET https://host: HTTP request denied: the destination is not granted to this plugin
    /// instance"`.
    pub fn request_denied() -> MockResponse {
        MockResponse {
            kind: Kind::RequestDenied,
        }
    }

    /// What the client gets, exactly as the `wasi:http` transport reports it.
    fn into_raw(self, what: &str, timeout: Option<Duration>) -> Result<RawResponse, PluginError> {
        match self.kind {
            Kind::Answer { body, .. } if body.len() > MAX_RESPONSE_BODY => {
                Err(no_answer(what, &cause::body_too_large()))
            }
            Kind::Answer { status, headers, body } => Ok(RawResponse { status, headers, body }),
            Kind::ConnectionRefused => Err(no_answer(what, cause::CONNECTION_REFUSED)),
            Kind::Timeout => match timeout {
                Some(_) => Err(no_answer(what, &cause::timed_out(timeout))),
                None => Err(no_answer(what, cause::CONNECTION_TIMEOUT)),
            },
            Kind::RequestDenied => Err(no_answer(what, cause::REQUEST_DENIED)),
        }
    }
}
