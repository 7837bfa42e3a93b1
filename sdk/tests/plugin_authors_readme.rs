//! The Rust examples of docs/plugin-authors/README.md, verbatim: the plugin of section 1 and its
//! tests from "Testing natively" (the e-mail example of section 5 is in
//! plugin_authors_readme_mail.rs, which needs the `notifier` feature). `readme_shows_this_code`
//! checks that the page still shows exactly this code; change both together.

#![cfg(feature = "dns-solver")]

use certctl_sdk::{DnsRecord, DnsSolver, PluginError, http, log};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    api_url: String,
    api_token: String,
}

struct MyDns;

impl DnsSolver for MyDns {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        // https://, or http:// to localhost only; the error names the key
        http::check_endpoint("config.api_url", &config.api_url)
    }

    fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        log::info(format!("adding a TXT value at {}", record.fqdn));
        http::post(format!("{}/zones/{}/txt", config.api_url, record.zone))
            .bearer_auth(&config.api_token)
            .json(&serde_json::json!({"name": record.relative_name(), "value": record.value}))?
            .send()?
            .error_for_status()?; // 401 -> Auth, 429 -> RateLimited, 5xx -> Transient, ...
        Ok(())
    }

    fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        let url = format!("{}/zones/{}/txt/{}", config.api_url, record.zone, record.value);
        match http::delete(url)
            .bearer_auth(&config.api_token)
            .send()?
            .error_for_status()
        {
            Ok(_) | Err(PluginError::NotFound(_)) => Ok(()), // already gone is success
            Err(e) => Err(e),
        }
    }
}

certctl_sdk::register_dns_solver!(MyDns);

#[cfg(test)]
mod tests {
    use certctl_sdk::http::Method;
    use certctl_sdk::testkit::{self, MockHttp, MockResponse};

    use super::*;

    const CONFIG: &str = r#"{"api_url": "https://api.example-dns.com/v1", "api_token": "t0ken"}"#;

    #[test]
    fn present_adds_the_value() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, "https://api.example-dns.com/v1/zones/example.com/txt")
            .header("authorization", "Bearer t0ken")
            .json_body(&serde_json::json!({"name": "_acme-challenge.www", "value": "token"}))
            .respond(MockResponse::json(201, &serde_json::json!({"id": 1})));

        let dns = testkit::dns_solver::<MyDns>(CONFIG);
        let record = testkit::dns_record("example.com", "_acme-challenge.www.example.com", "token");
        assert_eq!(dns.present(&record), Ok(()));
        assert_eq!(
            testkit::logs()[0].message,
            "adding a TXT value at _acme-challenge.www.example.com"
        );
    }

    #[test]
    fn cleanup_accepts_a_value_already_gone_and_reports_a_refusal() {
        let mock = MockHttp::install();
        let values = "https://api.example-dns.com/v1/zones/example.com/txt/";
        mock.expect_prefix(Method::Delete, values)
            .respond(MockResponse::new(404));
        mock.expect_prefix(Method::Delete, values)
            .respond(MockResponse::request_denied());

        let dns = testkit::dns_solver::<MyDns>(CONFIG);
        let record = testkit::dns_record("example.com", "_acme-challenge.example.com", "token");
        assert_eq!(dns.cleanup(&record), Ok(()));
        let denied = dns.cleanup(&record).expect_err("not granted");
        assert!(denied.is_retryable() && denied.to_string().contains("HTTP request denied"));
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: &str| testkit::dns_solver::<MyDns>(config).validate_config();
        testkit::assert_invalid_config(check("{}"), "config.api_url: required");
        let plain_http = r#"{"api_url": "http://api.example-dns.com/v1", "api_token": "t0ken"}"#;
        testkit::assert_invalid_config(check(plain_http), "config.api_url: must start with https://");
    }
}

/// Every Rust block of the page appears verbatim in this file.
#[test]
fn readme_shows_this_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Only in the certctl repository, where the page is beside the SDK.
    let Ok(page) = std::fs::read_to_string(root.join("../docs/plugin-authors/README.md")) else {
        return;
    };
    let this = std::fs::read_to_string(root.join("tests/plugin_authors_readme.rs")).expect("this file");
    let mail = std::fs::read_to_string(root.join("tests/plugin_authors_readme_mail.rs")).expect("the e-mail example");
    let blocks: Vec<&str> = page
        .split("```rust\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(code, _)| code))
        .collect();
    assert_eq!(blocks.len(), 3, "the page's Rust blocks changed: update this file");
    for block in blocks {
        assert!(
            this.contains(block) || mail.contains(block),
            "README.md shows code neither this file nor plugin_authors_readme_mail.rs compiles:\n{block}"
        );
    }
}
