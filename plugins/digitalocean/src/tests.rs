//! DigitalOcean cannot run locally: these tests replay the contract of its API v2 as DigitalOcean
//! documents it (the OpenAPI description at github.com/digitalocean/openapi: Domain Records,
//! error bodies, pagination links, rate-limit headers), with canned answers and with
//! `FakeDigitalOcean`, a stateful fake of that contract that the SDK's conformance suite runs
//! against.

use std::cell::RefCell;
use std::rc::Rc;

use certctl_sdk::http::Method;
use certctl_sdk::log::Level;
use certctl_sdk::testkit::{self, MockHttp, MockResponse, RecordedRequest, conformance};
use serde_json::Value;

use super::*;

const TOKEN: &str = "dop_v1_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A token with read access only (DigitalOcean's "Read" scope, or only `domain:read`).
const READ_ONLY_TOKEN: &str = "dop_v1_fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
const NAME: &str = "_acme-challenge.www.example.test";
const RELATIVE: &str = "_acme-challenge.www";
const RECORDS_URL: &str = "https://api.digitalocean.com/v2/domains/example.test/records";

fn list_url(page: u32) -> String {
    format!("{RECORDS_URL}?type=TXT&name={NAME}&per_page=200&page={page}")
}

fn config(extra: Value) -> String {
    let mut config = json!({"api_token": TOKEN});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config.to_string()
}

fn record(value: &str) -> DnsRecord {
    testkit::dns_record("example.test", NAME, value)
}

/// A domain record as DigitalOcean lists it: fields other record types use are `null`.
fn txt(id: u64, name: &str, data: &str) -> Value {
    json!({
        "id": id, "type": "TXT", "name": name, "data": data, "priority": null, "port": null, "ttl": 60,
        "weight": null, "flags": null, "tag": null
    })
}

/// DigitalOcean's rate-limit headers, as on every answer.
fn limited(response: MockResponse) -> MockResponse {
    response
        .header("ratelimit-limit", "5000")
        .header("ratelimit-remaining", "4816")
        .header("ratelimit-reset", "1800000000")
}

/// A page of a listing; `next` is the `links.pages.next` URL if there are more pages.
fn listed(records: Vec<Value>, next: Option<&str>) -> MockResponse {
    let total = records.len();
    let links = match next {
        Some(next) => json!({"pages": {"next": next, "last": next}}),
        None => json!({}),
    };
    limited(MockResponse::json(
        200,
        &json!({"domain_records": records, "links": links, "meta": {"total": total}}),
    ))
}

fn created(id: u64, name: &str, data: &str) -> MockResponse {
    limited(MockResponse::json(201, &json!({"domain_record": txt(id, name, data)})))
}

fn deleted() -> MockResponse {
    limited(MockResponse::new(204))
}

/// An error in DigitalOcean's documented body.
fn refused(status: u16, id: &str, message: &str) -> MockResponse {
    limited(MockResponse::json(status, &json!({"id": id, "message": message})))
}

fn unauthorized() -> MockResponse {
    refused(401, "unauthorized", "Unable to authenticate you.")
}

fn forbidden() -> MockResponse {
    refused(403, "forbidden", "You do not have permission to perform this action.")
}

fn not_found() -> MockResponse {
    refused(404, "not_found", "The resource you were accessing could not be found.")
}

fn messages() -> Vec<String> {
    testkit::logs().into_iter().map(|l| l.message).collect()
}

const TOKEN_HINT: &str = "(config.api_token must be a valid DigitalOcean API token with read and write access to \
                          Domains (custom scopes: domain:read and domain:update))";
const DOMAIN_HINT: &str = "(the domain must be in the token's DigitalOcean team; when the zone certctl picks is not \
                           the domain as registered at DigitalOcean, set config.domain)";

#[test]
fn present_lists_the_name_and_creates_the_record() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, list_url(1))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("accept", "application/json")
        .respond(listed(vec![txt(11, RELATIVE, "apex-value")], None));
    mock.expect(Method::Post, RECORDS_URL)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .json_body(&json!({"type": "TXT", "name": RELATIVE, "data": "wildcard-value", "ttl": 60}))
        .respond(created(12, RELATIVE, "wildcard-value"));

    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    assert_eq!(dns.present(&record("wildcard-value")), Ok(()));
    assert!(mock.requests().iter().all(|r| r.timeout == Some(TIMEOUT)));
    assert_eq!(
        messages(),
        [format!(
            "{NAME}: created TXT record 12 with the value in domain example.test"
        )]
    );
}

#[test]
fn a_configured_domain_api_url_and_ttl_are_used() {
    let mock = MockHttp::install();
    let records = "http://127.0.0.1:8787/v2/domains/example.test/records";
    mock.expect(
        Method::Get,
        format!("{records}?type=TXT&name={NAME}&per_page=200&page=1"),
    )
    .respond(listed(vec![], None));
    mock.expect(Method::Post, records)
        .json_body(&json!({"type": "TXT", "name": RELATIVE, "data": "token", "ttl": 30}))
        .respond(created(7, RELATIVE, "token"));
    let dns = testkit::dns_solver::<DigitalOcean>(config(
        json!({"domain": "Example.TEST.", "api_url": "http://127.0.0.1:8787/", "ttl": 30}),
    ));
    // The host picked www.example.test as the zone; at DigitalOcean the domain is example.test.
    let record = testkit::dns_record("www.example.test", NAME, "token");
    assert_eq!(dns.present(&record), Ok(()));
}

#[test]
fn a_name_at_the_apex_of_the_domain_is_at() {
    // A zone delegated for challenges: the record is at the domain's apex.
    let apex = "_acme-challenge.example.test";
    let records = "https://api.digitalocean.com/v2/domains/_acme-challenge.example.test/records";
    let list = format!("{records}?type=TXT&name={apex}&per_page=200&page=1");
    let mock = MockHttp::install();
    mock.expect(Method::Get, &list).respond(listed(vec![], None));
    mock.expect(Method::Post, records)
        .json_body(&json!({"type": "TXT", "name": "@", "data": "token", "ttl": 60}))
        .respond(created(5, "@", "token"));
    mock.expect(Method::Get, &list)
        .respond(listed(vec![txt(4, "@", "other"), txt(5, "@", "token")], None));
    mock.expect(Method::Delete, format!("{records}/5")).respond(deleted());

    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    let record = testkit::dns_record(apex, apex, "token");
    assert_eq!(dns.present(&record), Ok(()));
    assert_eq!(dns.cleanup(&record), Ok(()));
}

#[test]
fn present_of_a_value_already_there_creates_nothing() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, list_url(1)).respond(listed(
        vec![txt(11, RELATIVE, "other"), txt(12, "_ACME-Challenge.WWW", "token")],
        None,
    ));
    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    assert_eq!(dns.present(&record("token")), Ok(()));
    assert_eq!(
        messages(),
        [format!("{NAME}: a TXT record with the value exists already")]
    );
}

#[test]
fn only_exactly_the_value_at_exactly_the_name_counts() {
    let mock = MockHttp::install();
    let mut not_txt = txt(15, RELATIVE, "token");
    not_txt["type"] = json!("CNAME");
    mock.expect(Method::Get, list_url(1)).respond(listed(
        vec![
            txt(11, RELATIVE, "TOKEN"),
            txt(12, RELATIVE, "\"token\""),
            txt(13, RELATIVE, "token "),
            // The listing's filters are checked again: another name or type never counts.
            txt(14, "_acme-challenge", "token"),
            not_txt,
        ],
        None,
    ));
    mock.expect(Method::Post, RECORDS_URL)
        .json_body(&json!({"type": "TXT", "name": RELATIVE, "data": "token", "ttl": 60}))
        .respond(created(16, RELATIVE, "token"));
    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    assert_eq!(dns.present(&record("token")), Ok(()));
}

#[test]
fn listing_follows_next_links_on_the_configured_api_only() {
    let mock = MockHttp::install();
    // The link's origin is not followed: page 2 is asked of the configured API, with the token.
    mock.expect(Method::Get, list_url(1)).respond(listed(
        vec![txt(11, RELATIVE, "one")],
        Some("https://elsewhere.example/v2/domains/example.test/records?page=2"),
    ));
    mock.expect(Method::Get, list_url(2))
        .header("authorization", format!("Bearer {TOKEN}"))
        .respond(listed(vec![txt(12, RELATIVE, "token")], None));
    mock.expect(Method::Delete, format!("{RECORDS_URL}/12"))
        .respond(deleted());
    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    assert_eq!(dns.cleanup(&record("token")), Ok(()));
    assert!(mock.requests().iter().all(|r| r.url.starts_with(RECORDS_URL)));
}

#[test]
fn listing_stops_after_the_last_page_it_reads() {
    let mock = MockHttp::install();
    for page in 1..=MAX_PAGES {
        let next = format!("{RECORDS_URL}?page={}&per_page=200", page + 1);
        mock.expect(Method::Get, list_url(page))
            .respond(listed(vec![txt(u64::from(page), RELATIVE, "other")], Some(&next)));
    }
    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    assert_eq!(dns.cleanup(&record("token")), Ok(()));
    let logs = testkit::logs();
    assert_eq!(
        (logs[0].level, logs[0].message.as_str()),
        (
            Level::Warn,
            "_acme-challenge.www.example.test: more than 10 pages of TXT records; only the first 2000 were read"
        )
    );
}

#[test]
fn cleanup_deletes_every_record_with_the_value_and_nothing_else() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, list_url(1)).respond(listed(
        vec![
            txt(11, RELATIVE, "apex-value"),
            txt(12, RELATIVE, "token"),
            txt(13, RELATIVE, "token"),
            txt(14, "_acme-challenge", "token"),
        ],
        None,
    ));
    mock.expect(Method::Delete, format!("{RECORDS_URL}/12"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .respond(deleted());
    // Deleted by someone else in between: fine.
    mock.expect(Method::Delete, format!("{RECORDS_URL}/13"))
        .respond(not_found());
    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    assert_eq!(dns.cleanup(&record("token")), Ok(()));
    assert_eq!(
        messages(),
        [
            "record 13 was deleted already".to_string(),
            format!("{NAME}: deleted 2 TXT records with the value, 1 TXT record left at the name")
        ]
    );
}

#[test]
fn cleanup_of_what_is_not_there_succeeds_without_deleting() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, list_url(1))
        .respond(listed(vec![txt(11, RELATIVE, "other")], None));
    mock.expect(Method::Get, list_url(1)).respond(listed(vec![], None));
    mock.expect(Method::Get, list_url(1)).respond(not_found());
    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    assert_eq!(dns.cleanup(&record("token")), Ok(()), "value absent");
    assert_eq!(dns.cleanup(&record("token")), Ok(()), "no record at the name");
    assert_eq!(dns.cleanup(&record("token")), Ok(()), "no such domain");
    assert!(mock.requests().iter().all(|r| r.method == Method::Get));
    let logs = testkit::logs();
    assert_eq!(
        (logs[2].level, logs[2].message.clone()),
        (
            Level::Warn,
            format!(
                "DigitalOcean domain example.test: DigitalOcean answered 404 not_found: The resource you were \
                 accessing could not be found. {DOMAIN_HINT}: nothing to clean up"
            )
        )
    );
}

#[test]
fn digitaloceans_answers_map_to_what_the_host_should_do() {
    let cases = [
        (
            unauthorized(),
            PluginError::Auth(format!(
                "DigitalOcean domain example.test: DigitalOcean answered 401 unauthorized: Unable to authenticate \
                 you. {TOKEN_HINT}"
            )),
        ),
        (
            MockResponse::new(401),
            PluginError::Auth(format!(
                "DigitalOcean domain example.test: GET https://api.digitalocean.com answered 401 Unauthorized \
                 {TOKEN_HINT}"
            )),
        ),
        (
            forbidden(),
            PluginError::Auth(format!(
                "DigitalOcean domain example.test: DigitalOcean answered 403 forbidden: You do not have permission \
                 to perform this action. {TOKEN_HINT}"
            )),
        ),
        (
            not_found(),
            PluginError::NotFound(format!(
                "DigitalOcean domain example.test: DigitalOcean answered 404 not_found: The resource you were \
                 accessing could not be found. {DOMAIN_HINT}"
            )),
        ),
        (
            limited(MockResponse::json(
                400,
                &json!({"id": "bad_request", "message": "error parsing request body",
                    "request_id": "4851a473-1621-42ea-b2f9-5071c0ea8414"}),
            )),
            PluginError::Permanent(
                "DigitalOcean refused the change in domain example.test: DigitalOcean answered 400 bad_request: \
                 error parsing request body (request id 4851a473-1621-42ea-b2f9-5071c0ea8414)"
                    .into(),
            ),
        ),
        (
            MockResponse::new(400).body("<html>bad request</html>"),
            PluginError::Permanent(
                "GET https://api.digitalocean.com answered 400 Bad Request: <html>bad request</html>".into(),
            ),
        ),
        (
            refused(429, "too_many_requests", "API rate limit exceeded.").header("retry-after", "29"),
            PluginError::RateLimited(Some(29)),
        ),
        (
            refused(500, "server_error", "Unexpected server-side error"),
            PluginError::Transient(
                "DigitalOcean domain example.test: DigitalOcean answered 500 server_error: Unexpected server-side \
                 error"
                    .into(),
            ),
        ),
        (
            MockResponse::new(502),
            PluginError::Transient("GET https://api.digitalocean.com answered 502 Bad Gateway".into()),
        ),
        (
            MockResponse::connection_refused(),
            PluginError::Transient("GET https://api.digitalocean.com: connection refused".into()),
        ),
        (
            MockResponse::timeout(),
            PluginError::Transient("GET https://api.digitalocean.com: no complete answer within 10.0 s".into()),
        ),
        (
            MockResponse::request_denied(),
            PluginError::Transient(
                "GET https://api.digitalocean.com: HTTP request denied: the destination is not granted to this \
                 plugin instance"
                    .into(),
            ),
        ),
        (
            MockResponse::new(200).body("<html>a proxy's login page</html>"),
            PluginError::Permanent(
                "GET https://api.digitalocean.com answered 200 with a body that is not the expected JSON (expected \
                 value at line 1 column 1): <html>a proxy's login page</html>"
                    .into(),
            ),
        ),
        (
            MockResponse::json(200, &json!({"domains": []})),
            PluginError::Permanent(
                "GET https://api.digitalocean.com answered 200 with a body that is not the expected JSON (missing \
                 field `domain_records` at line 1 column 14): {\"domains\":[]}"
                    .into(),
            ),
        ),
    ];
    for (answer, expected) in cases {
        let mock = MockHttp::install();
        mock.expect(Method::Get, list_url(1)).respond(answer);
        let got = testkit::dns_solver::<DigitalOcean>(config(json!({}))).present(&record("token"));
        assert_eq!(got, Err(expected));
        assert!(
            !got.expect_err("an error").to_string().contains(TOKEN),
            "the token leaked"
        );
    }
}

#[test]
fn rate_limits_say_how_long_to_wait() {
    let too_many = || {
        MockResponse::json(
            429,
            &json!({"id": "too_many_requests", "message": "API Rate limit exceeded."}),
        )
    };
    let hourly = |remaining: &str, reset: &str| {
        too_many()
            .header("ratelimit-limit", "5000")
            .header("ratelimit-remaining", remaining)
            .header("ratelimit-reset", reset)
    };
    let cases = [
        // The burst limit (250 a minute): DigitalOcean says how long with Retry-After.
        (
            hourly("0", "1800000600")
                .header("retry-after", "29")
                .header("date", "Fri, 15 Jan 2027 08:00:00 GMT"),
            Some(29),
        ),
        // The hourly limit: until the oldest request expires, by DigitalOcean's clock.
        (
            hourly("0", "1800000600").header("date", "Fri, 15 Jan 2027 08:00:00 GMT"),
            Some(600),
        ),
        (
            hourly("0", "1800000000").header("date", "Fri, 15 Jan 2027 08:00:05 GMT"),
            Some(1),
        ),
        // Requests left, or no clock to count from: the answer does not say.
        (
            hourly("12", "1800000600").header("date", "Fri, 15 Jan 2027 08:00:00 GMT"),
            None,
        ),
        (hourly("0", "1800000600"), None),
        (
            hourly("0", "soon").header("date", "Fri, 15 Jan 2027 08:00:00 GMT"),
            None,
        ),
        (hourly("0", "1800000600").header("date", "2027-01-15T08:00:00Z"), None),
        (too_many(), None),
    ];
    for (answer, wait) in cases {
        let mock = MockHttp::install();
        mock.expect(Method::Get, list_url(1)).respond(answer);
        let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
        assert_eq!(dns.present(&record("token")), Err(PluginError::RateLimited(wait)));
    }
}

#[test]
fn write_failures_are_reported() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, list_url(1))
        .times(2)
        .respond(listed(vec![], None));
    mock.expect(Method::Post, RECORDS_URL).respond(forbidden());
    mock.expect(Method::Post, RECORDS_URL)
        .respond(limited(MockResponse::json(
            422,
            &json!({"id": "unprocessable_entity", "message": "request payload validation failed",
            "request_id": "4851a473-1621-42ea-b2f9-5071c0ea8414"}),
        )));
    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    assert_eq!(
        dns.present(&record("token")),
        Err(PluginError::Auth(format!(
            "DigitalOcean domain example.test: DigitalOcean answered 403 forbidden: You do not have permission to \
             perform this action. {TOKEN_HINT}"
        )))
    );
    assert_eq!(
        dns.present(&record("token")),
        Err(PluginError::Permanent(
            "DigitalOcean refused the change in domain example.test: DigitalOcean answered 422 \
             unprocessable_entity: request payload validation failed (request id \
             4851a473-1621-42ea-b2f9-5071c0ea8414)"
                .into()
        ))
    );

    mock.expect(Method::Get, list_url(1))
        .times(3)
        .respond(listed(vec![txt(12, RELATIVE, "token")], None));
    mock.expect(Method::Delete, format!("{RECORDS_URL}/12"))
        .respond(unauthorized());
    mock.expect(Method::Delete, format!("{RECORDS_URL}/12"))
        .respond(refused(503, "service_unavailable", "Service is unavailable."));
    mock.expect(Method::Delete, format!("{RECORDS_URL}/12"))
        .respond(MockResponse::timeout());
    assert!(matches!(dns.cleanup(&record("token")), Err(PluginError::Auth(_))));
    assert_eq!(
        dns.cleanup(&record("token")),
        Err(PluginError::Transient(
            "DigitalOcean domain example.test: DigitalOcean answered 503 service_unavailable: Service is \
             unavailable."
                .into()
        ))
    );
    assert_eq!(
        dns.cleanup(&record("token")),
        Err(PluginError::Transient(
            "DELETE https://api.digitalocean.com: no complete answer within 10.0 s".into()
        ))
    );
}

#[test]
fn names_outside_the_domain_are_refused_before_any_request() {
    let _mock = MockHttp::install();
    let configured = testkit::dns_solver::<DigitalOcean>(config(json!({"domain": "other.test"})));
    let expected = PluginError::InvalidConfig(format!(
        "config.domain: {NAME} is not within the domain other.test; set it to the DigitalOcean domain that holds \
         the name, or leave it out to use the zone certctl picks"
    ));
    assert_eq!(configured.present(&record("token")), Err(expected.clone()));
    assert_eq!(configured.cleanup(&record("token")), Err(expected));

    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    for (zone, fqdn) in [
        ("example.test", "_acme-challenge.www.example.org"),
        ("example.test", "_acme-challenge.wwwexample.test"),
        ("www.example.test", "example.test"),
    ] {
        assert_eq!(
            dns.present(&testkit::dns_record(zone, fqdn, "token")),
            Err(PluginError::Permanent(format!(
                "{fqdn} is not within the zone {zone} it was given for"
            )))
        );
    }
}

#[test]
fn config_is_checked_by_key() {
    let check = |config: Value| testkit::dns_solver::<DigitalOcean>(config.to_string()).validate_config();
    for good in [
        json!({"api_token": TOKEN}),
        json!({"api_token": TOKEN, "domain": "example.com", "ttl": 30}),
        json!({"api_token": TOKEN, "domain": "_acme.Example-1.co.uk.", "ttl": 86400}),
        json!({"api_token": TOKEN, "api_url": "https://api.digitalocean.com/"}),
        json!({"api_token": TOKEN, "api_url": "http://localhost:8787"}),
        json!({"api_token": TOKEN, "api_url": "http://[::1]:8787/do"}),
    ] {
        assert_eq!(check(good.clone()), Ok(()), "{good}");
    }
    let cases = [
        (json!({}), "config.api_token: required"),
        (
            json!({"api_token": ""}),
            "config.api_token: must be a DigitalOcean API token",
        ),
        (
            json!({"api_token": format!("Bearer {TOKEN}")}),
            "config.api_token: must be a DigitalOcean API token",
        ),
        (
            json!({"api_token": format!("{TOKEN}\n")}),
            "config.api_token: must be a DigitalOcean API token",
        ),
        (
            json!({"api_token": TOKEN, "domain": "https://example.com"}),
            "config.domain: must be the domain's name",
        ),
        (
            json!({"api_token": TOKEN, "domain": ""}),
            "config.domain: must be the domain's name",
        ),
        (
            json!({"api_token": TOKEN, "domain": "example..com"}),
            "config.domain: must be the domain's name",
        ),
        (
            json!({"api_token": TOKEN, "domain": format!("{}.com", "a".repeat(64))}),
            "config.domain: must be the domain's name",
        ),
        (
            json!({"api_token": TOKEN, "api_url": "http://api.digitalocean.com"}),
            "config.api_url: must start with https://",
        ),
        (
            json!({"api_token": TOKEN, "api_url": "api.digitalocean.com"}),
            "config.api_url: must start with https://",
        ),
        (
            json!({"api_token": TOKEN, "api_url": "https://user:pw@api.digitalocean.com"}),
            "config.api_url: the host part is not a host name",
        ),
        (
            json!({"api_token": TOKEN, "api_url": "https://api.digitalocean.com/?x=1"}),
            "config.api_url: must be the API's base URL, without a query",
        ),
        (
            json!({"api_token": TOKEN, "api_url": "https://api.digitalocean.com/v2/"}),
            "config.api_url: must be the API's base URL without /v2",
        ),
        (
            json!({"api_token": TOKEN, "ttl": 29}),
            "config.ttl: must be 30 (DigitalOcean's minimum) to 86400 seconds",
        ),
        (json!({"api_token": TOKEN, "ttl": 86401}), "config.ttl: must be 30"),
        (json!({"api_token": TOKEN, "ttl": -1}), "config.ttl:"),
        (
            json!({"api_token": TOKEN, "zone": "example.com"}),
            "config.zone: unknown key",
        ),
    ];
    for (config, expected) in cases {
        let message = testkit::assert_invalid_config(check(config), expected);
        assert!(!message.contains(TOKEN), "the token leaked: {message}");
    }
    let _mock = MockHttp::install();
    let bad = testkit::dns_solver::<DigitalOcean>(json!({"api_token": TOKEN, "ttl": 5}).to_string());
    assert!(matches!(bad.present(&record("v")), Err(PluginError::InvalidConfig(_))));
    assert!(matches!(bad.cleanup(&record("v")), Err(PluginError::InvalidConfig(_))));
}

#[test]
fn http_dates_are_read_as_servers_send_them() {
    for (text, seconds) in [
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777),
        ("Tue, 29 Feb 2000 00:00:00 GMT", 951_782_400),
        ("Fri, 15 Jan 2027 08:10:00 GMT", 1_800_000_600),
        ("Mon, 01 Mar 2100 00:00:00 GMT", 4_107_542_400),
    ] {
        assert_eq!(http_date(text), Some(seconds), "{text}");
    }
    // Every day of a few years, against the SDK's formatting of the same second.
    for seconds in (946_684_800..1_100_000_000).step_by(86_400 + 3_661) {
        let rfc3339 = certctl_sdk::time::rfc3339(seconds);
        let month: usize = rfc3339[5..7].parse().expect("a month");
        let text = format!(
            "Xxx, {} {} {} {} GMT",
            &rfc3339[8..10],
            MONTHS[month - 1],
            &rfc3339[..4],
            &rfc3339[11..19]
        );
        assert_eq!(http_date(&text), Some(seconds), "{text}");
    }
    for bad in [
        "",
        "Fri, 15 Jan 2027 08:10:00",
        "Fri, 15 Jan 2027 08:10:00 UTC",
        "Friday, 15-Jan-27 08:10:00 GMT",
        "Fri Jan 15 08:10:00 2027",
        "Fri, 15 Jnu 2027 08:10:00 GMT",
        "Fri, 32 Jan 2027 08:10:00 GMT",
        "Fri, 15 Jan 2027 24:10:00 GMT",
        "Fri, 15 Jan 2027 08:10 GMT",
        "Fri, 15 Jan 2027 08:10:00:00 GMT",
        "Thu, 31 Dec 1969 23:59:59 GMT",
    ] {
        assert_eq!(http_date(bad), None, "{bad}");
    }
    assert_eq!(
        encode("_acme-challenge.www.example.test"),
        "_acme-challenge.www.example.test"
    );
    assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
}

/// A record as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    id: u64,
    domain: String,
    kind: String,
    /// Relative to the domain, `@` at the apex, as DigitalOcean keeps it.
    name: String,
    data: String,
    ttl: u64,
}

impl Stored {
    fn fqdn(&self) -> String {
        match self.name.as_str() {
            "@" => self.domain.clone(),
            name => format!("{name}.{}", self.domain),
        }
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id, "type": self.kind, "name": self.name, "data": self.data, "priority": null,
            "port": null, "ttl": self.ttl, "weight": null, "flags": null, "tag": null
        })
    }
}

/// The Domain Records resource of the DigitalOcean API v2 as DigitalOcean documents it: bearer
/// tokens (401 `unauthorized` for a wrong one, 403 `forbidden` for writes with a read-only one),
/// 404 `not_found` for a domain or record that is not there, listing with the `type` filter and
/// the `name` filter that takes the fully qualified name, pages of `per_page` (default 20, at
/// most 200) with `links.pages` URLs, creating with a relative `name` (400 `bad_request` for a
/// body that is not JSON, 422 `unprocessable_entity` for a missing field or a TTL under 30),
/// deleting by id (204), and the rate-limit headers on every answer.
struct FakeDigitalOcean {
    domains: Vec<String>,
    records: Vec<Stored>,
    next_id: u64,
    /// Requests answered, for `ratelimit-remaining`.
    answered: u64,
}

impl FakeDigitalOcean {
    fn new() -> FakeDigitalOcean {
        FakeDigitalOcean {
            domains: vec!["example.test".into(), "other.test".into()],
            records: Vec::new(),
            next_id: 3_352_896,
            answered: 0,
        }
    }

    fn handle(&mut self, request: &RecordedRequest) -> MockResponse {
        self.answered += 1;
        let answer = self.answer(request);
        answer
            .header("ratelimit-limit", "5000")
            .header("ratelimit-remaining", (5000 - self.answered).to_string())
            .header("ratelimit-reset", "1800000000")
    }

    fn answer(&mut self, request: &RecordedRequest) -> MockResponse {
        let error =
            |status: u16, id: &str, message: &str| MockResponse::json(status, &json!({"id": id, "message": message}));
        let not_found = || error(404, "not_found", "The resource you were accessing could not be found.");
        let writable = match request.header("authorization").and_then(|a| a.strip_prefix("Bearer ")) {
            Some(TOKEN) => true,
            Some(READ_ONLY_TOKEN) => false,
            _ => return error(401, "unauthorized", "Unable to authenticate you."),
        };
        let segments: Vec<&str> = request.path().trim_start_matches('/').split('/').collect();
        let ["v2", "domains", domain, "records", rest @ ..] = segments.as_slice() else {
            return not_found();
        };
        if !self.domains.iter().any(|d| d == domain) {
            return not_found();
        }
        let forbidden = || error(403, "forbidden", "You do not have permission to perform this action.");
        match (request.method, rest) {
            (Method::Get, []) => self.list(domain, request),
            (Method::Post | Method::Delete, _) if !writable => forbidden(),
            (Method::Post, []) => self.create(domain, request),
            (Method::Delete, [id]) => match self
                .records
                .iter()
                .position(|r| r.domain == *domain && r.id.to_string() == *id)
            {
                Some(i) => {
                    self.records.remove(i);
                    MockResponse::new(204)
                }
                None => not_found(),
            },
            _ => not_found(),
        }
    }

    fn list(&self, domain: &str, request: &RecordedRequest) -> MockResponse {
        let query = query(&request.url);
        let param = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let number = |key: &str, default: usize| param(key).and_then(|v| v.parse().ok()).unwrap_or(default);
        let (per_page, page) = (number("per_page", 20).clamp(1, 200), number("page", 1).max(1));
        let found: Vec<Value> = self
            .records
            .iter()
            .filter(|r| r.domain == domain)
            .filter(|r| param("type").is_none_or(|t| t == r.kind))
            .filter(|r| param("name").is_none_or(|n| n.eq_ignore_ascii_case(&r.fqdn())))
            .map(Stored::json)
            .collect();
        let total = found.len();
        let last = total.div_ceil(per_page).max(1);
        let link = |to: usize| {
            let mut url =
                format!("https://api.digitalocean.com/v2/domains/{domain}/records?page={to}&per_page={per_page}");
            for key in ["type", "name"] {
                if let Some(value) = param(key) {
                    url.push_str(&format!("&{key}={}", encode(value)));
                }
            }
            url
        };
        let mut pages = serde_json::Map::new();
        if page > 1 {
            pages.insert("first".into(), json!(link(1)));
            pages.insert("prev".into(), json!(link(page - 1)));
        }
        if page < last {
            pages.insert("last".into(), json!(link(last)));
            pages.insert("next".into(), json!(link(page + 1)));
        }
        let links = match pages.is_empty() {
            true => json!({}),
            false => json!({"pages": pages}),
        };
        let records: Vec<Value> = found.into_iter().skip((page - 1) * per_page).take(per_page).collect();
        MockResponse::json(
            200,
            &json!({"domain_records": records, "links": links, "meta": {"total": total}}),
        )
    }

    fn create(&mut self, domain: &str, request: &RecordedRequest) -> MockResponse {
        let invalid = || {
            MockResponse::json(
                422,
                &json!({"id": "unprocessable_entity", "message": "request payload validation failed",
                    "request_id": "4851a473-1621-42ea-b2f9-5071c0ea8414"}),
            )
        };
        let Ok(body) = request.json::<Value>() else {
            return MockResponse::json(
                400,
                &json!({"id": "bad_request", "message": "error parsing request body"}),
            );
        };
        let (Some(kind), Some(name), Some(data)) =
            (body["type"].as_str(), body["name"].as_str(), body["data"].as_str())
        else {
            return invalid();
        };
        let ttl = body["ttl"].as_u64().unwrap_or(1800);
        if name.is_empty() || data.is_empty() || ttl < 30 {
            return invalid();
        }
        let stored = Stored {
            id: self.next_id,
            domain: domain.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            data: data.to_string(),
            ttl,
        };
        self.next_id += 1;
        self.records.push(stored.clone());
        MockResponse::json(201, &json!({"domain_record": stored.json()}))
    }

    /// The TXT values DigitalOcean's name servers answer with at `fqdn`.
    fn served(&self, fqdn: &str) -> Vec<String> {
        self.records
            .iter()
            .filter(|r| r.kind == "TXT" && r.fqdn().eq_ignore_ascii_case(fqdn))
            .map(|r| r.data.clone())
            .collect()
    }
}

/// The query of a URL as decoded pairs.
fn query(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let decode = |text: &str| {
        let mut bytes = Vec::new();
        let mut rest = text.as_bytes();
        while let Some((&first, tail)) = rest.split_first() {
            let hex = tail
                .get(..2)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            match (first, hex) {
                (b'%', Some(byte)) => {
                    bytes.push(byte);
                    rest = &tail[2..];
                }
                (b'+', _) => {
                    bytes.push(b' ');
                    rest = tail;
                }
                _ => {
                    bytes.push(first);
                    rest = tail;
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn serve(fake: &Rc<RefCell<FakeDigitalOcean>>) -> MockHttp {
    let mock = MockHttp::install();
    let state = Rc::clone(fake);
    mock.fallback(move |request| state.borrow_mut().handle(request));
    mock
}

#[test]
fn conforms_against_digitalocean() {
    for (extra, zone) in [
        (json!({}), "example.test"),
        (json!({"domain": "example.test", "ttl": 30}), "sub.example.test"),
    ] {
        let fake = Rc::new(RefCell::new(FakeDigitalOcean::new()));
        let (handler, reader) = (Rc::clone(&fake), Rc::clone(&fake));
        let provider = conformance::FakeDnsProvider::new(
            move |request| handler.borrow_mut().handle(request),
            move |fqdn| reader.borrow().served(fqdn),
        );
        conformance::dns_solver::<DigitalOcean>(&config(extra), zone, provider);
    }
}

#[test]
fn records_of_others_survive_a_present_and_cleanup() {
    let mut fake = FakeDigitalOcean::new();
    for (id, name, data) in [
        (1, RELATIVE, "someone-else"),
        (2, RELATIVE, "v=legacy"),
        (3, "_acme-challenge", "token"),
    ] {
        fake.records.push(Stored {
            id,
            domain: "example.test".into(),
            kind: "TXT".into(),
            name: name.into(),
            data: data.into(),
            ttl: 300,
        });
    }
    let before = fake.records.clone();
    let fake = Rc::new(RefCell::new(fake));
    let _mock = serve(&fake);
    let dns = testkit::dns_solver::<DigitalOcean>(config(json!({})));
    assert_eq!(dns.present(&record("token")), Ok(()));
    assert_eq!(fake.borrow().served(NAME), ["someone-else", "v=legacy", "token"]);
    assert_eq!(dns.cleanup(&record("token")), Ok(()));
    assert_eq!(fake.borrow().records, before);
}

#[test]
fn a_read_only_token_is_refused_writing() {
    let fake = Rc::new(RefCell::new(FakeDigitalOcean::new()));
    let _mock = serve(&fake);
    let read_only = json!({"api_token": READ_ONLY_TOKEN}).to_string();
    let dns = testkit::dns_solver::<DigitalOcean>(read_only);
    let Err(PluginError::Auth(message)) = dns.present(&record("token")) else {
        panic!("a read-only token must be refused as auth");
    };
    assert!(
        message.contains("403 forbidden") && message.ends_with(TOKEN_HINT),
        "{message}"
    );
    assert!(!message.contains(READ_ONLY_TOKEN), "the token leaked");
    assert!(fake.borrow().records.is_empty());
}

#[test]
fn the_fake_answers_as_digitalocean_documents() {
    let fake = Rc::new(RefCell::new(FakeDigitalOcean::new()));
    let _mock = serve(&fake);
    let send = |request: http::Request| {
        let answer = request.send().expect("answered");
        let body: Value = match answer.body() {
            [] => Value::Null,
            _ => answer.json().expect("JSON"),
        };
        (answer.status(), body)
    };
    let error_id = |(status, body): (u16, Value)| (status, body["id"].as_str().map(str::to_string));
    let create = |token: &str, body: Value| send(http::post(RECORDS_URL).bearer_auth(token).json(&body).expect("JSON"));
    let txt = |name: &str, data: &str, ttl: u32| json!({"type": "TXT", "name": name, "data": data, "ttl": ttl});

    assert_eq!(
        error_id(send(http::get(RECORDS_URL))),
        (401, Some("unauthorized".into()))
    );
    assert_eq!(
        error_id(send(http::get(RECORDS_URL).bearer_auth("dop_v1_wrong"))),
        (401, Some("unauthorized".into()))
    );
    assert_eq!(
        error_id(send(
            http::get("https://api.digitalocean.com/v2/domains/example.org/records").bearer_auth(TOKEN)
        )),
        (404, Some("not_found".into()))
    );
    assert_eq!(
        error_id(create(READ_ONLY_TOKEN, txt(RELATIVE, "token", 60))),
        (403, Some("forbidden".into()))
    );
    assert_eq!(
        error_id(create(TOKEN, txt(RELATIVE, "token", 20))),
        (422, Some("unprocessable_entity".into()))
    );
    assert_eq!(
        error_id(send(http::post(RECORDS_URL).bearer_auth(TOKEN).body("{not json"))),
        (400, Some("bad_request".into()))
    );

    let (status, first) = create(TOKEN, txt(RELATIVE, "one", 60));
    assert_eq!((status, first["domain_record"]["name"].as_str()), (201, Some(RELATIVE)));
    assert_eq!(create(TOKEN, txt(RELATIVE, "two", 60)).0, 201);

    // `name` takes the fully qualified name; records come back with their relative name.
    let list = |query: &str, token: &str| send(http::get(format!("{RECORDS_URL}?{query}")).bearer_auth(token));
    let (status, all) = list(&format!("type=TXT&name={NAME}"), READ_ONLY_TOKEN);
    assert_eq!((status, all["meta"]["total"].as_u64()), (200, Some(2)));
    assert_eq!(
        (all["domain_records"][0]["name"].as_str(), &all["links"]),
        (Some(RELATIVE), &json!({}))
    );
    assert_eq!(list(&format!("name={RELATIVE}"), TOKEN).1["meta"]["total"], 0);
    assert_eq!(list("type=A", TOKEN).1["meta"]["total"], 0);

    let (_, page1) = list(&format!("type=TXT&name={NAME}&per_page=1"), TOKEN);
    let next = page1["links"]["pages"]["next"].as_str().expect("a next page");
    assert_eq!(
        next,
        format!("https://api.digitalocean.com/v2/domains/example.test/records?page=2&per_page=1&type=TXT&name={NAME}")
    );
    let (_, page2) = send(http::get(next).bearer_auth(TOKEN));
    assert_eq!(page2["domain_records"][0]["data"], "two");
    assert!(page2["links"]["pages"]["next"].is_null() && page2["links"]["pages"]["prev"].is_string());

    let id = first["domain_record"]["id"].as_u64().expect("an id");
    let (status, body) = send(http::delete(format!("{RECORDS_URL}/{id}")).bearer_auth(TOKEN));
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(
        error_id(send(http::delete(format!("{RECORDS_URL}/{id}")).bearer_auth(TOKEN))),
        (404, Some("not_found".into()))
    );
    assert_eq!(fake.borrow().served(NAME), ["two"]);
    let answer = http::get(RECORDS_URL).bearer_auth(TOKEN).send().expect("answered");
    assert_eq!(
        (answer.header("ratelimit-limit"), answer.header("ratelimit-reset")),
        (Some("5000"), Some("1800000000"))
    );
}
