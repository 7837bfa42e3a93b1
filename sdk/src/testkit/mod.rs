//! A mock host for testing plugins natively, with plain `cargo test`: no WebAssembly runtime,
//! no network. Only when not compiling for `wasm32` (a component never contains it).
//!
//! - [`MockHttp`]: the SDK's [`http`](crate::http) client sends to recorded exchanges (expected
//!   method, URL, headers, body, with canned [`MockResponse`]s or a closure for a stateful fake)
//!   and records every request. It also simulates the answers that never come (connection
//!   refused, timeout, "HTTP request denied"), failing exactly as under a real host.
//! - [`MockKv`] (issuers): an in-memory [`kv`](crate::kv) with the host's limits.
//! - [`MockMail`] (notifiers): an outbox for [`mail`](crate::mail), checking messages as the
//!   host does, and refusing them on request as a relay would.
//! - [`logs`] and [`take_logs`]: what the plugin logged with [`log`](crate::log).
//! - [`dns_solver`], [`notifier`], [`issuer`]: call a plugin as the host does, through the
//!   export glue, with the configuration as JSON (so `check_config` runs before every call).
//! - [`assert_invalid_config`]: that a configuration is refused, naming the key.
//! - [`conformance::dns_solver`]: the host's DNS-solver conformance rules, against a fake of
//!   the provider's API.
//!
//! Everything is per thread: Rust's test harness runs each test on its own thread, so tests
//! running in parallel never see each other's mocks or logs.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "notifier")]
//! # fn main() {
//! use certctl_sdk::http::{self, Method};
//! use certctl_sdk::testkit::{self, MockHttp, MockResponse};
//! use certctl_sdk::{Event, Notifier, PluginError, log};
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     url: String,
//! }
//!
//! struct Pager;
//!
//! impl Notifier for Pager {
//!     type Config = Config;
//!
//!     fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {
//!         http::post(&config.url).json(event)?.send()?.error_for_status()?;
//!         log::info(format!("paged about {}", event.subject));
//!         Ok(())
//!     }
//! }
//!
//! let pager = testkit::notifier::<Pager>(r#"{"url": "https://pager.example.test/v1/events"}"#);
//! let event = testkit::test_event();
//!
//! // The happy path: what was sent, and what was logged.
//! let mock = MockHttp::install();
//! mock.expect(Method::Post, "https://pager.example.test/v1/events")
//!     .header("content-type", "application/json")
//!     .respond(MockResponse::new(202));
//! assert_eq!(pager.notify(&event), Ok(()));
//! let sent: serde_json::Value = mock.requests()[0].json().expect("a JSON body");
//! assert_eq!(sent["kind"], "test");
//! assert_eq!(testkit::logs()[0].message, "paged about example");
//!
//! // No answer: the same error as under a real host, which the host retries.
//! mock.expect(Method::Post, "https://pager.example.test/v1/events")
//!     .respond(MockResponse::connection_refused());
//! assert_eq!(
//!     pager.notify(&event),
//!     Err(PluginError::Transient("POST https://pager.example.test: connection refused".into()))
//! );
//! # }
//! # #[cfg(not(feature = "notifier"))]
//! # fn main() {}
//! ```

use std::fmt;
use std::time::Duration;

use crate::PluginError;
use crate::http::Method;

#[cfg(feature = "dns-solver")]
pub mod conformance;
#[cfg(any(feature = "dns-solver", feature = "notifier", feature = "issuer"))]
mod host;
mod logs;
mod mock_dns;
mod mock_http;
#[cfg(feature = "issuer")]
mod mock_kv;
#[cfg(feature = "notifier")]
mod mock_mail;

#[cfg(feature = "dns-solver")]
pub use host::{DnsSolverHost, dns_record, dns_solver};
#[cfg(feature = "issuer")]
pub use host::{IssuerHost, issuer};
#[cfg(feature = "notifier")]
pub use host::{NotifierHost, notifier, test_event};
pub use logs::{LogLine, logs, take_logs};
pub use mock_dns::MockDns;
pub use mock_http::{Expectation, MockHttp, MockResponse, RecordedRequest};
#[cfg(feature = "issuer")]
pub use mock_kv::MockKv;
#[cfg(feature = "notifier")]
pub use mock_mail::MockMail;

pub(crate) use logs::capture as capture_log;
pub(crate) use mock_dns::exchange as dns_exchange;
pub(crate) use mock_http::send;
#[cfg(feature = "issuer")]
pub(crate) use mock_kv::{delete as kv_delete, get as kv_get, set as kv_set};
#[cfg(feature = "notifier")]
pub(crate) use mock_mail::send as mail_send;

/// Asserts that `result` is [`PluginError::InvalidConfig`] whose message starts with `expected`:
/// the key, then as much of the reason as the test cares about. Returns the whole message, for
/// further checks (that it does not repeat a secret, say).
///
/// ```
/// # #[cfg(feature = "notifier")] {
/// use certctl_sdk::testkit::{self, assert_invalid_config};
/// use certctl_sdk::{Event, Notifier, PluginError, http};
///
/// #[derive(serde::Deserialize)]
/// struct Config {
///     url: String,
/// }
///
/// struct Hook;
///
/// impl Notifier for Hook {
///     type Config = Config;
///
///     fn check_config(config: &Config) -> Result<(), PluginError> {
///         http::check_endpoint("config.url", &config.url)
///     }
///
///     fn notify(_: &Config, _: &Event) -> Result<(), PluginError> {
///         Ok(())
///     }
/// }
///
/// let check = |config: &str| testkit::notifier::<Hook>(config).validate_config();
/// assert_invalid_config(check("{}"), "config.url: required");
/// let message = assert_invalid_config(check(r#"{"url": "http://hooks.example.com/t0ken"}"#), "config.url: must start with https://");
/// assert!(!message.contains("t0ken"));
/// # }
/// ```
///
/// # Panics
/// With `expected` and what `result` was instead, if it is anything else.
#[track_caller]
pub fn assert_invalid_config<T: fmt::Debug>(result: Result<T, PluginError>, expected: &str) -> String {
    match result {
        Err(PluginError::InvalidConfig(message)) if message.starts_with(expected) => message,
        other => panic!("expected InvalidConfig starting with {expected:?}, got {other:?}"),
    }
}

/// A request on its way to the transport, as [`crate::http`] hands it over.
pub(crate) struct MockedRequest<'a> {
    pub(crate) method: Method,
    pub(crate) url: &'a str,
    /// With the headers the SDK adds (`User-Agent`, `Content-Length`).
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: &'a [u8],
    pub(crate) timeout: Option<Duration>,
    /// `METHOD origin`, for error messages.
    pub(crate) what: &'a str,
}

#[cfg(test)]
mod tests;
