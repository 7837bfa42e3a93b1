//! A certctl notifier that POSTs each event as JSON to an HTTP endpoint, optionally signed with
//! HMAC-SHA256 so the receiver can tell it came from certctl. See README.md for the format and
//! how to verify a signature.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certctl_sdk::{Event, Notifier, PluginError, http, log};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Default for `timeout_seconds`.
const DEFAULT_TIMEOUT_SECONDS: u32 = 10;

/// Headers the plugin sets itself; `headers` may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "x-certctl-timestamp",
    "x-certctl-signature",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where to POST: `https://...` (or `http://...`).
    url: String,
    /// Shared secret for the HMAC-SHA256 signature; unsigned when absent.
    #[serde(default)]
    secret: Option<String>,
    /// Extra request headers (e.g. an `Authorization` the receiver wants).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Seconds to wait for the receiver's answer.
    #[serde(default)]
    timeout_seconds: Option<u32>,
}

struct Webhook;

impl Notifier for Webhook {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        let url = config.url.to_ascii_lowercase();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(PluginError::invalid_config(
                "config.url: must start with https:// or http://",
            ));
        }
        if url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.is_empty() || rest.starts_with('/'))
        {
            return Err(PluginError::invalid_config("config.url: has no host"));
        }
        if config.secret.as_deref() == Some("") {
            return Err(PluginError::invalid_config(
                "config.secret: is empty; remove it to send unsigned requests",
            ));
        }
        for (name, value) in &config.headers {
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name {
                return Err(PluginError::invalid_config(format!(
                    "config.headers.{name}: not a valid header name"
                )));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(PluginError::invalid_config(format!(
                    "config.headers.{name}: set by the plugin itself"
                )));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(PluginError::invalid_config(format!(
                    "config.headers.{name}: the value contains a line break"
                )));
            }
        }
        if config.timeout_seconds == Some(0) {
            return Err(PluginError::invalid_config(
                "config.timeout_seconds: must be at least 1",
            ));
        }
        Ok(())
    }

    fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {
        let body = serde_json::to_vec(event)
            .map_err(|e| PluginError::permanent(format!("cannot encode the event as JSON: {e}")))?;
        let timeout = config.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        let mut request = http::post(&config.url)
            .header("Content-Type", "application/json")
            .timeout(Duration::from_secs(u64::from(timeout)));
        for (name, value) in &config.headers {
            request = request.header(name, value);
        }
        if let Some(secret) = &config.secret {
            let timestamp = unix_seconds()?;
            request = request
                .header("X-Certctl-Timestamp", timestamp.to_string())
                .header("X-Certctl-Signature", signature(secret, timestamp, &body)?);
        }
        request.body(body).send()?.error_for_status()?;
        log::debug(format!("delivered {} event for {}", event.kind, event.subject));
        Ok(())
    }
}

certctl_sdk::register_notifier!(Webhook);

fn unix_seconds() -> Result<u64, PluginError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| PluginError::transient("the host clock is before 1970"))
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
fn signature(secret: &str, timestamp: u64, body: &[u8]) -> Result<String, PluginError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| PluginError::invalid_config("config.secret: unusable as an HMAC key"))?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use certctl_sdk::http::Method;
    use certctl_sdk::testkit::{self, MockHttp, MockResponse};

    use super::*;

    const URL: &str = "https://hooks.example.test/certctl?token=abc";

    /// The event as a receiver sees it, written out rather than derived from `Event`.
    fn expected_body() -> serde_json::Value {
        serde_json::json!({
            "kind": "test",
            "severity": "info",
            "summary": "certctl test notification for example",
            "subject": "example",
            "dedup_key": "test-example",
            "occurred_at": 1_800_000_000u64,
            "detail": {"requested_by": "admin"}
        })
    }

    #[test]
    fn posts_the_event_as_json_with_the_configured_headers() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL)
            .header("content-type", "application/json")
            .header("authorization", "Bearer receiver-token")
            .json_body(&expected_body())
            .respond(MockResponse::new(204));
        let config = serde_json::json!({"url": URL, "headers": {"Authorization": "Bearer receiver-token"}});
        let webhook = testkit::notifier::<Webhook>(config.to_string());
        assert_eq!(webhook.notify(&testkit::test_event()), Ok(()));

        let sent = &mock.requests()[0];
        assert_eq!(sent.timeout, Some(Duration::from_secs(10)));
        assert_eq!(sent.header("x-certctl-signature"), None, "unsigned without a secret");
        assert_eq!(sent.header("x-certctl-timestamp"), None);
        assert_eq!(testkit::logs()[0].message, "delivered test event for example");
    }

    #[test]
    fn the_signature_verifies_as_the_readme_says() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL)
            .json_body(&expected_body())
            .respond(MockResponse::ok());
        let config = serde_json::json!({"url": URL, "secret": "shared-secret", "timeout_seconds": 3});
        let before = unix_seconds().expect("clock");
        assert_eq!(
            testkit::notifier::<Webhook>(config.to_string()).notify(&testkit::test_event()),
            Ok(())
        );

        // Verify as a receiver would: HMAC-SHA256 over "<timestamp>.<body>", hex, "sha256=".
        let sent = &mock.requests()[0];
        assert_eq!(sent.timeout, Some(Duration::from_secs(3)));
        let timestamp = sent.header("x-certctl-timestamp").expect("a timestamp");
        let seconds: u64 = timestamp.parse().expect("seconds");
        assert!(seconds >= before && seconds <= before + 60, "{timestamp}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"shared-secret").expect("key");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&sent.body);
        let hex = sent
            .header("x-certctl-signature")
            .and_then(|s| s.strip_prefix("sha256="))
            .expect("sha256=<hex>");
        mac.verify_slice(&hex::decode(hex).expect("hex"))
            .expect("the signature verifies");
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // printf '1800000000.{"a":1}' | openssl dgst -sha256 -hmac shared-secret
        assert_eq!(
            signature("shared-secret", 1_800_000_000, br#"{"a":1}"#).expect("signs"),
            "sha256=6ebe8db01699f364a8d8e7903eef5fb83a30ca77dff61d30188a71880358090d"
        );
    }

    #[test]
    fn a_busy_receiver_is_retried_later() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL)
            .respond(MockResponse::new(429).header("Retry-After", "120"));
        let webhook = testkit::notifier::<Webhook>(serde_json::json!({"url": URL}).to_string());
        let err = webhook.notify(&testkit::test_event()).expect_err("429");
        assert_eq!(err, PluginError::RateLimited(Some(120)));
        assert!(err.is_retryable());
    }

    #[test]
    fn a_refused_connection_is_transient_and_names_no_token() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL)
            .respond(MockResponse::connection_refused());
        let webhook = testkit::notifier::<Webhook>(serde_json::json!({"url": URL}).to_string());
        assert_eq!(
            webhook.notify(&testkit::test_event()),
            Err(PluginError::Transient(
                "POST https://hooks.example.test: connection refused".into()
            ))
        );
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: serde_json::Value| testkit::notifier::<Webhook>(config.to_string()).validate_config();
        assert!(check(serde_json::json!({"url": "https://hooks.example.com/x"})).is_ok());
        assert!(
            check(serde_json::json!({
                "url": "http://127.0.0.1:9000/hook", "secret": "s",
                "headers": {"Authorization": "Bearer t"}, "timeout_seconds": 5
            }))
            .is_ok()
        );
        let cases = [
            (serde_json::json!({}), "config.url: required"),
            (serde_json::json!({"url": "ftp://x"}), "config.url: must start"),
            (serde_json::json!({"url": "https://"}), "config.url: has no host"),
            (
                serde_json::json!({"url": "https://x", "secret": ""}),
                "config.secret: is empty",
            ),
            (
                serde_json::json!({"url": "https://x", "headers": {"Bad Name": "v"}}),
                "config.headers.Bad Name",
            ),
            (
                serde_json::json!({"url": "https://x", "headers": {"Content-Type": "x"}}),
                "config.headers.Content-Type",
            ),
            (
                serde_json::json!({"url": "https://x", "headers": {"X-A": "a\r\nb"}}),
                "config.headers.X-A",
            ),
            (
                serde_json::json!({"url": "https://x", "timeout_seconds": 0}),
                "config.timeout_seconds",
            ),
            (
                serde_json::json!({"url": "https://x", "timeout_seconds": "5"}),
                "config.timeout_seconds",
            ),
            (
                serde_json::json!({"url": "https://x", "colour": "red"}),
                "config.colour: unknown key",
            ),
        ];
        for (config, expected) in cases {
            testkit::assert_invalid_config(check(config), expected);
        }
        // The same checks run before every delivery, so nothing is sent with a bad configuration.
        let _mock = MockHttp::install();
        let bad = testkit::notifier::<Webhook>(serde_json::json!({"url": "https://x", "secret": ""}).to_string());
        assert!(matches!(
            bad.notify(&testkit::test_event()),
            Err(PluginError::InvalidConfig(_))
        ));
    }
}
