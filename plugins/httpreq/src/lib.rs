//! A certctl DNS-01 solver compatible with lego's `httpreq` provider: it POSTs
//! `{"fqdn": "<name>.", "value": "<txt>"}` to `<endpoint>/present` and `<endpoint>/cleanup`, so
//! any endpoint written for lego (or a few lines wrapping an old `dnsPresentScript`) works
//! unchanged. See README.md.

use std::time::Duration;

use certctl_sdk::{DnsRecord, DnsSolver, PluginError, http, log};
use serde::{Deserialize, Serialize};

/// How long to wait for the endpoint (lego's default for httpreq).
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Base URL; the plugin appends `/present` and `/cleanup`.
    endpoint: String,
    /// Basic-auth user name; no authentication when absent.
    #[serde(default)]
    username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    password: Option<String>,
    /// lego's `HTTPREQ_MODE`: empty (default) or `RAW`.
    #[serde(default)]
    mode: Option<String>,
}

/// The body lego sends in its default mode.
#[derive(Debug, Serialize)]
struct Message<'a> {
    fqdn: String,
    value: &'a str,
}

struct HttpReq;

impl DnsSolver for HttpReq {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        let endpoint = config.endpoint.to_ascii_lowercase();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(PluginError::invalid_config(
                "config.endpoint: must start with https:// or http://",
            ));
        }
        match config.mode.as_deref() {
            None | Some("") => {}
            Some("RAW") => {
                return Err(PluginError::invalid_config(
                    "config.mode: RAW mode needs the key authorization, which dns-solver plugins do not \
                     receive; use the default mode",
                ));
            }
            Some(other) => {
                return Err(PluginError::invalid_config(format!(
                    "config.mode: {other:?} is not a mode; leave it empty (RAW is not supported)"
                )));
            }
        }
        if config.password.is_some() && config.username.as_deref().unwrap_or("").is_empty() {
            return Err(PluginError::invalid_config(
                "config.password: set without config.username",
            ));
        }
        Ok(())
    }

    fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        call(config, "present", record)
    }

    fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        call(config, "cleanup", record)
    }
}

certctl_sdk::register_dns_solver!(HttpReq);

fn call(config: &Config, action: &str, record: &DnsRecord) -> Result<(), PluginError> {
    let url = format!("{}/{action}", config.endpoint.trim_end_matches('/'));
    let message = Message {
        fqdn: with_trailing_dot(&record.fqdn),
        value: &record.value,
    };
    let mut request = http::post(url).timeout(TIMEOUT).json(&message)?;
    if let Some(username) = config.username.as_deref().filter(|u| !u.is_empty()) {
        request = request.basic_auth(username, config.password.as_deref());
    }
    request.send()?.error_for_status()?;
    log::info(format!("{action} {} done", message.fqdn));
    Ok(())
}

/// lego sends fully qualified names with the trailing dot.
fn with_trailing_dot(fqdn: &str) -> String {
    if fqdn.ends_with('.') {
        fqdn.to_string()
    } else {
        format!("{fqdn}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: serde_json::Value) -> Result<(), PluginError> {
        HttpReq::validate_config(&json.to_string())
    }

    #[test]
    fn the_body_is_legos() {
        let message = Message {
            fqdn: with_trailing_dot("_acme-challenge.example.test"),
            value: "token-value",
        };
        assert_eq!(
            serde_json::to_value(&message).expect("json"),
            serde_json::json!({"fqdn": "_acme-challenge.example.test.", "value": "token-value"})
        );
        assert_eq!(with_trailing_dot("a.example."), "a.example.");
    }

    #[test]
    fn config_is_checked_by_key() {
        assert!(check(serde_json::json!({"endpoint": "https://dns.internal/acme"})).is_ok());
        assert!(
            check(serde_json::json!({"endpoint": "http://x", "username": "u", "password": "p", "mode": ""})).is_ok()
        );
        let cases = [
            (serde_json::json!({}), "config.endpoint: required"),
            (
                serde_json::json!({"endpoint": "dns.internal"}),
                "config.endpoint: must start",
            ),
            (
                serde_json::json!({"endpoint": "http://x", "mode": "RAW"}),
                "config.mode: RAW mode needs the key authorization",
            ),
            (
                serde_json::json!({"endpoint": "http://x", "mode": "raw"}),
                "config.mode: \"raw\" is not a mode",
            ),
            (
                serde_json::json!({"endpoint": "http://x", "password": "p"}),
                "config.password",
            ),
            (
                serde_json::json!({"endpoint": "http://x", "token": "t"}),
                "config.token: unknown key",
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
