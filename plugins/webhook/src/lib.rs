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
    use super::*;

    fn check(json: serde_json::Value) -> Result<(), PluginError> {
        Webhook::validate_config(&json.to_string())
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
    fn config_is_checked_by_key() {
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
            match check(config.clone()) {
                Err(PluginError::InvalidConfig(m)) => assert!(m.starts_with(expected), "{config}: {m}"),
                other => panic!("{config}: {other:?}"),
            }
        }
    }
}
