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
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use certctl_sdk::http::Method;
    use certctl_sdk::testkit::{self, MockHttp, MockResponse, RecordedRequest, conformance};

    use super::*;

    fn record(value: &str) -> DnsRecord {
        testkit::dns_record("example.test", "_acme-challenge.www.example.test", value)
    }

    #[test]
    fn present_and_cleanup_post_legos_body() {
        let mock = MockHttp::install();
        for action in ["present", "cleanup"] {
            mock.expect(Method::Post, format!("https://dns.internal/acme/{action}"))
                .header("content-type", "application/json")
                .json_body(&serde_json::json!({"fqdn": "_acme-challenge.www.example.test.", "value": "token-value"}))
                .respond(MockResponse::ok());
        }
        // A trailing slash on the endpoint is not doubled.
        let dns = testkit::dns_solver::<HttpReq>(r#"{"endpoint": "https://dns.internal/acme/"}"#);
        assert_eq!(dns.present(&record("token-value")), Ok(()));
        assert_eq!(dns.cleanup(&record("token-value")), Ok(()));

        let requests = mock.requests();
        assert!(
            requests.iter().all(|r| r.header("authorization").is_none()),
            "{requests:?}"
        );
        assert!(requests.iter().all(|r| r.timeout == Some(TIMEOUT)));
        let logged: Vec<String> = testkit::logs().into_iter().map(|l| l.message).collect();
        assert_eq!(
            logged,
            [
                "present _acme-challenge.www.example.test. done",
                "cleanup _acme-challenge.www.example.test. done"
            ]
        );
    }

    #[test]
    fn a_name_with_a_trailing_dot_keeps_one() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, "http://dns.internal/present")
            .json_body(&serde_json::json!({"fqdn": "a.example.", "value": "v"}))
            .respond(MockResponse::ok());
        let dns = testkit::dns_solver::<HttpReq>(r#"{"endpoint": "http://dns.internal"}"#);
        assert_eq!(dns.present(&testkit::dns_record("example", "a.example.", "v")), Ok(()));
    }

    #[test]
    fn basic_auth_as_lego_sends_it() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, "https://dns.internal/present")
            .header("authorization", "Basic dTpw") // base64("u:p")
            .respond(MockResponse::ok());
        mock.expect(Method::Post, "https://dns.internal/present")
            .header("authorization", "Basic dTo=") // base64("u:"): no password
            .respond(MockResponse::ok());
        let with_password =
            testkit::dns_solver::<HttpReq>(r#"{"endpoint": "https://dns.internal", "username": "u", "password": "p"}"#);
        assert_eq!(with_password.present(&record("v")), Ok(()));
        let without = testkit::dns_solver::<HttpReq>(r#"{"endpoint": "https://dns.internal", "username": "u"}"#);
        assert_eq!(without.present(&record("v")), Ok(()));
        // An empty user name sends no credentials.
        let empty = testkit::dns_solver::<HttpReq>(r#"{"endpoint": "https://dns.internal", "username": ""}"#);
        mock.expect(Method::Post, "https://dns.internal/present")
            .respond(MockResponse::ok());
        assert_eq!(empty.present(&record("v")), Ok(()));
        assert_eq!(mock.requests()[2].header("authorization"), None);
    }

    #[test]
    fn endpoint_failures_are_typed() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, "https://dns.internal/present")
            .respond(MockResponse::new(401).body("bad credentials"));
        mock.expect(Method::Post, "https://dns.internal/present")
            .respond(MockResponse::new(502));
        mock.expect(Method::Post, "https://dns.internal/present")
            .respond(MockResponse::timeout());
        let dns = testkit::dns_solver::<HttpReq>(r#"{"endpoint": "https://dns.internal"}"#);
        assert_eq!(
            dns.present(&record("v")),
            Err(PluginError::Auth(
                "POST https://dns.internal answered 401 Unauthorized: bad credentials".into()
            ))
        );
        assert!(matches!(dns.present(&record("v")), Err(PluginError::Transient(_))));
        assert_eq!(
            dns.present(&record("v")),
            Err(PluginError::Transient(
                "POST https://dns.internal: no complete answer within 30.0 s".into()
            ))
        );
    }

    /// A lego httpreq endpoint: `/present` adds the value to the TXT set at the name, `/cleanup`
    /// removes it (and answers 200 when it is not there, as such endpoints do).
    fn lego_endpoint() -> conformance::FakeDnsProvider {
        let records: Rc<RefCell<BTreeMap<String, Vec<String>>>> = Rc::default();
        let state = Rc::clone(&records);
        let handle = move |request: &RecordedRequest| {
            #[derive(Deserialize)]
            struct Body {
                fqdn: String,
                value: String,
            }
            let Ok(body) = request.json::<Body>() else {
                return MockResponse::new(400);
            };
            let Some(name) = body.fqdn.strip_suffix('.') else {
                return MockResponse::new(400).body("fqdn must end with a dot");
            };
            let mut records = state.borrow_mut();
            let values = records.entry(name.to_string()).or_default();
            match (request.method, request.path()) {
                (Method::Post, "/present") => {
                    if !values.contains(&body.value) {
                        values.push(body.value);
                    }
                }
                (Method::Post, "/cleanup") => values.retain(|v| *v != body.value),
                _ => return MockResponse::new(404),
            }
            MockResponse::ok()
        };
        let lookup = move |fqdn: &str| records.borrow().get(fqdn).cloned().unwrap_or_default();
        conformance::FakeDnsProvider::new(handle, lookup)
    }

    #[test]
    fn conforms_against_a_lego_httpreq_endpoint() {
        conformance::dns_solver::<HttpReq>(
            r#"{"endpoint": "https://dns.internal", "username": "u", "password": "p"}"#,
            "example.test",
            lego_endpoint(),
        );
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: serde_json::Value| testkit::dns_solver::<HttpReq>(config.to_string()).validate_config();
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
            testkit::assert_invalid_config(check(config), expected);
        }
        // The same checks run before every call, so nothing is sent with a bad configuration.
        let _mock = MockHttp::install();
        let bad = testkit::dns_solver::<HttpReq>(r#"{"endpoint": "http://x", "mode": "RAW"}"#);
        assert!(matches!(bad.present(&record("v")), Err(PluginError::InvalidConfig(_))));
    }
}
