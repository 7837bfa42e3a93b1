//! Tests of the kit itself.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::http::{self, Method};
use crate::{PluginError, log};

/// The message of a panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("panics");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload.downcast::<&str>().map(|s| s.to_string()).unwrap_or_default(),
    }
}

#[test]
fn an_expected_request_is_answered_and_recorded_as_sent() {
    let mock = MockHttp::install();
    mock.expect(Method::Post, "https://api.example.test/v1/records?zone=a")
        .header("Authorization", "Bearer t")
        .json_body(&serde_json::json!({"b": 2, "a": 1}))
        .respond(MockResponse::json(201, &serde_json::json!({"id": 7})).header("X-Request-Id", "r1"));

    let response = http::post("https://api.example.test/v1/records?zone=a")
        .bearer_auth("t")
        .json(&serde_json::json!({"a": 1, "b": 2}))
        .expect("json")
        .timeout(Duration::from_secs(3))
        .send()
        .expect("answered");
    assert_eq!(response.status(), 201);
    assert_eq!(response.header("x-request-id"), Some("r1"));
    assert_eq!(
        response.headers(),
        &[
            ("content-type".to_string(), "application/json".to_string()),
            ("x-request-id".to_string(), "r1".to_string())
        ]
    );
    assert_eq!(response.json::<serde_json::Value>().expect("json")["id"], 7);

    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method, Method::Post);
    assert_eq!(sent.url, "https://api.example.test/v1/records?zone=a");
    assert_eq!(sent.path(), "/v1/records");
    assert_eq!(sent.timeout, Some(Duration::from_secs(3)));
    let names: Vec<&str> = sent.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["authorization", "content-type", "user-agent", "content-length"]);
    assert_eq!(sent.header("Content-Length"), Some("13"));
    assert_eq!(sent.text(), r#"{"a":1,"b":2}"#);
}

#[test]
fn expectations_answer_in_order_and_as_often_as_they_say() {
    let mock = MockHttp::install();
    mock.expect_prefix(Method::Get, "https://api.example.test/v1/")
        .respond(MockResponse::new(503));
    mock.expect_prefix(Method::Get, "https://api.example.test/v1/")
        .times(2)
        .respond(MockResponse::ok().body("fine"));
    mock.expect(Method::Get, "https://api.example.test/health")
        .always()
        .respond(MockResponse::new(204));

    let get = |url: &str| http::get(url).send().map(|r| r.status());
    assert_eq!(get("https://api.example.test/v1/a"), Ok(503));
    assert_eq!(get("https://api.example.test/v1/b"), Ok(200));
    assert_eq!(get("https://api.example.test/health"), Ok(204));
    assert_eq!(get("https://api.example.test/v1/c"), Ok(200));
    assert_eq!(get("https://api.example.test/health"), Ok(204));

    let Err(PluginError::Permanent(m)) = get("https://api.example.test/v1/d") else {
        panic!("a fourth /v1/ request is unexpected");
    };
    assert!(m.contains("same method and URL, but already used up"), "{m}");
    assert_eq!(mock.take_unexpected().len(), 1);
}

#[test]
fn an_unexpected_request_says_what_was_expected_instead() {
    let mock = MockHttp::install();
    mock.expect(Method::Post, "https://dns.example.test/present")
        .header("authorization", "Basic dTpw")
        .respond(MockResponse::ok());
    mock.expect(Method::Post, "https://dns.example.test/cleanup")
        .json_body(&serde_json::json!({"value": "v"}))
        .respond(MockResponse::ok());

    let err = http::post("https://dns.example.test/present")
        .body("x")
        .send()
        .expect_err("no authorization header");
    assert_eq!(
        err,
        PluginError::Permanent(
            "MockHttp: unexpected request POST https://dns.example.test/present with body \"x\"; expected instead:\n  \
             - POST https://dns.example.test/present with header authorization: \"Basic dTpw\" (once, not sent yet): \
             same method and URL, but header authorization: expected \"Basic dTpw\", found none\n  \
             - POST https://dns.example.test/cleanup with JSON body {\"value\":\"v\"} (once, not sent yet)"
                .into()
        )
    );

    let err = http::post("https://dns.example.test/cleanup")
        .json(&serde_json::json!({"value": "w"}))
        .expect("json")
        .send()
        .expect_err("another value");
    let PluginError::Permanent(m) = err else {
        panic!("permanent expected");
    };
    assert!(
        m.contains(r#"same method and URL, but the JSON body is {"value":"w"}, expected {"value":"v"}"#),
        "{m}"
    );

    // Both are also recorded, and reported again when the mock is dropped unless taken.
    assert_eq!(mock.requests().len(), 2);
    let unexpected = mock.take_unexpected();
    assert_eq!(unexpected.len(), 2);
    assert!(unexpected[0].starts_with("unexpected request POST https://dns.example.test/present"));
    assert!(mock.take_unexpected().is_empty());

    // Use both expectations up, so dropping the mock is quiet.
    for (url, body) in [
        ("https://dns.example.test/present", "{}"),
        ("https://dns.example.test/cleanup", r#"{"value":"v"}"#),
    ] {
        let sent = http::post(url).basic_auth("u", Some("p")).body(body).send();
        assert_eq!(sent.map(|r| r.status()), Ok(200));
    }
}

#[test]
fn with_nothing_registered_every_request_is_unexpected() {
    let mock = MockHttp::install();
    let err = http::delete("https://api.example.test/x")
        .send()
        .expect_err("unexpected");
    assert_eq!(
        err,
        PluginError::Permanent(
            "MockHttp: unexpected request DELETE https://api.example.test/x; expected instead: nothing \
             (no expectation is registered on this MockHttp)"
                .into()
        )
    );
    mock.take_unexpected();
}

#[test]
fn closures_answer_statefully() {
    let mock = MockHttp::install();
    let calls = Rc::new(RefCell::new(0));
    let seen = Rc::clone(&calls);
    mock.expect_prefix(Method::Put, "https://api.example.test/")
        .always()
        .respond_with(move |request| {
            *seen.borrow_mut() += 1;
            MockResponse::json(200, &serde_json::json!({"n": *seen.borrow(), "path": request.path()}))
        });
    mock.fallback(|request| MockResponse::new(404).body(format!("no {}", request.path())));

    for n in 1..=2 {
        let answer: serde_json::Value = http::put("https://api.example.test/a/b")
            .send()
            .and_then(|r| r.json())
            .expect("answered");
        assert_eq!(answer, serde_json::json!({"n": n, "path": "/a/b"}));
    }
    let missing = http::get("https://api.example.test/a/b").send().expect("answered");
    assert_eq!((missing.status(), missing.text()), (404, "no /a/b".to_string()));
    assert_eq!(*calls.borrow(), 2);
}

#[test]
fn no_answer_fails_exactly_like_the_wasm_transport() {
    let mock = MockHttp::install();
    let url = "https://dns.example.test:8443/secret-token/present";
    mock.expect(Method::Post, url)
        .respond(MockResponse::connection_refused());
    mock.expect(Method::Post, url).respond(MockResponse::request_denied());
    mock.expect(Method::Post, url).respond(MockResponse::timeout());
    mock.expect(Method::Post, url).respond(MockResponse::timeout());
    let send = |timeout: Option<Duration>| {
        let mut request = http::post(url);
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        request.send().map(|r| r.status())
    };
    let what = "POST https://dns.example.test:8443";
    assert_eq!(
        send(None),
        Err(PluginError::Transient(format!("{what}: connection refused")))
    );
    assert_eq!(
        send(None),
        Err(PluginError::Transient(format!(
            "{what}: HTTP request denied: the destination is not granted to this plugin instance"
        )))
    );
    assert_eq!(
        send(Some(Duration::from_millis(2500))),
        Err(PluginError::Transient(format!(
            "{what}: no complete answer within 2.5 s"
        )))
    );
    assert_eq!(
        send(None),
        Err(PluginError::Transient(format!("{what}: connection timed out")))
    );
    // The same words the transport uses, not a copy of them.
    assert_eq!(
        crate::http::cause::REQUEST_DENIED,
        "HTTP request denied: the destination is not granted to this plugin instance"
    );
}

#[test]
fn oversized_response_bodies_are_refused_as_by_the_transport() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, "https://api.example.test/big")
        .respond(MockResponse::ok().body(vec![b'x'; crate::http::MAX_RESPONSE_BODY + 1]));
    assert_eq!(
        http::get("https://api.example.test/big").send().map(|r| r.status()),
        Err(PluginError::Transient(
            "GET https://api.example.test: the response body is larger than 16 MiB".into()
        ))
    );
}

#[test]
fn a_malformed_url_fails_before_the_mock() {
    let mock = MockHttp::install();
    assert!(matches!(
        http::get("api.example.test/x").send(),
        Err(PluginError::InvalidConfig(_))
    ));
    assert!(mock.requests().is_empty());
}

#[test]
fn dropping_the_mock_reports_what_went_unused_or_unexpected() {
    let m = panic_message(|| {
        let mock = MockHttp::install();
        mock.expect(Method::Get, "https://api.example.test/a")
            .times(2)
            .respond(MockResponse::ok());
        mock.expect(Method::Get, "https://api.example.test/b")
            .always()
            .respond(MockResponse::ok());
        let _ = http::get("https://api.example.test/a").send();
    });
    assert_eq!(
        m,
        "MockHttp: expected requests that were not (all) sent:\n  - GET https://api.example.test/a (2 times, sent 1)"
    );

    let m = panic_message(|| {
        let _mock = MockHttp::install();
        let _ = http::get("https://api.example.test/swallowed").send();
    });
    assert!(
        m.starts_with("MockHttp:\nunexpected request GET https://api.example.test/swallowed;"),
        "{m}"
    );
    // The panic uninstalled it.
    let _again = MockHttp::install();
}

#[test]
fn mocks_are_per_thread_and_one_at_a_time() {
    let mock = MockHttp::install();
    mock.expect(Method::Get, "https://api.example.test/")
        .always()
        .respond(MockResponse::ok());
    let elsewhere = std::thread::spawn(|| http::get("https://api.example.test/").send().map(|r| r.status()))
        .join()
        .expect("thread");
    assert!(
        matches!(&elsewhere, Err(PluginError::Transient(m)) if m.contains("needs a certctl host")),
        "{elsewhere:?}"
    );
    assert!(panic_message(|| drop(MockHttp::install())).contains("already installed"));
    drop(mock);
    assert!(http::get("https://api.example.test/").send().is_err());
}

#[test]
fn recorded_paths() {
    let request = |url: &str| RecordedRequest {
        method: Method::Get,
        url: url.into(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout: None,
    };
    assert_eq!(request("https://h/a/b?x=/y#f").path(), "/a/b");
    assert_eq!(request("https://h").path(), "/");
    assert_eq!(request("https://h?x=/y").path(), "/");
    assert_eq!(request("http://h:80/#x").path(), "/");
}

#[test]
fn log_lines_are_captured_per_thread() {
    take_logs();
    log::info("one");
    log::warn(format_args!("two {}", 2));
    assert_eq!(
        logs().iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["[Info] one", "[Warn] two 2"]
    );
    assert_eq!(logs()[1].level, log::Level::Warn);
    let elsewhere = std::thread::spawn(logs).join().expect("thread");
    assert!(elsewhere.is_empty());
    assert_eq!(take_logs().len(), 2);
    assert!(logs().is_empty());
}

#[test]
fn invalid_config_is_asserted_by_its_start() {
    let refused: Result<(), PluginError> = Err(PluginError::invalid_config("config.url: has no host"));
    assert_eq!(
        assert_invalid_config(refused.clone(), "config.url: has"),
        "config.url: has no host"
    );
    assert_eq!(
        panic_message(|| {
            assert_invalid_config(refused, "config.url: must");
        }),
        "expected InvalidConfig starting with \"config.url: must\", got Err(InvalidConfig(\"config.url: has no host\"))"
    );
    assert_eq!(
        panic_message(|| {
            assert_invalid_config(Ok(7), "config.url");
        }),
        "expected InvalidConfig starting with \"config.url\", got Ok(7)"
    );
    let other: Result<(), PluginError> = Err(PluginError::permanent("config.url: has no host"));
    assert!(
        panic_message(|| {
            assert_invalid_config(other, "config.url");
        })
        .ends_with("got Err(Permanent(\"config.url: has no host\"))")
    );
}

#[test]
fn rules_are_worded_as_the_hosts() {
    // The host runs the same rules against real providers; the wording must not drift. Only in
    // the certctl repository, where the host's source is beside the SDK.
    let host = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src/plugins/conformance.rs");
    let Ok(source) = std::fs::read_to_string(&host) else {
        return;
    };
    #[cfg(feature = "dns-solver")]
    for rule in conformance::RULES {
        assert!(
            source.contains(&format!("\"{rule}\"")),
            "{rule:?} is not in {}",
            host.display()
        );
    }
    assert!(source.contains("_certctl-conformance.{zone}"));
    assert!(source.contains("TXT values at {fqdn}: expected {want:?}, found {got:?}"));
}

#[cfg(feature = "dns-solver")]
mod dns {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::{DnsRecord, DnsSolver};
    use conformance::{Check, FakeDnsProvider};

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        api: String,
        /// How the solver misbehaves, for the conformance tests.
        #[serde(default)]
        bug: Option<String>,
    }

    /// Talks to `PUT|DELETE {api}/txt/{fqdn}/{value}` and `PUT {api}/only/{fqdn}/{value}`
    /// (replaces the whole set).
    struct Solver;

    impl DnsSolver for Solver {
        type Config = Config;

        fn check_config(config: &Config) -> Result<(), PluginError> {
            if config.api.ends_with('/') {
                return Err(PluginError::invalid_config("config.api: no trailing slash"));
            }
            Ok(())
        }

        fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
            let kind = if config.bug.as_deref() == Some("swap") {
                "only"
            } else {
                "txt"
            };
            let url = format!("{}/{kind}/{}/{}", config.api, record.fqdn, record.value);
            http::put(url).send()?.error_for_status()?;
            log::info(format!("presented {}", record.value));
            Ok(())
        }

        fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
            let url = format!("{}/txt/{}/{}", config.api, record.fqdn, record.value);
            match http::delete(url).send()?.error_for_status() {
                Err(PluginError::NotFound(_)) if config.bug.as_deref() != Some("strict") => Ok(()),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }

    fn provider() -> FakeDnsProvider {
        let records: Rc<RefCell<BTreeMap<String, Vec<String>>>> = Rc::default();
        let state = Rc::clone(&records);
        FakeDnsProvider::new(
            move |request| {
                let mut records = state.borrow_mut();
                let parts: Vec<&str> = request.path().trim_start_matches('/').split('/').collect();
                let [kind, fqdn, value] = parts[..] else {
                    return MockResponse::new(404);
                };
                let values = records.entry(fqdn.to_string()).or_default();
                let present = values.iter().any(|v| v == value);
                match (request.method, kind) {
                    (Method::Put, "txt") if !present => values.push(value.to_string()),
                    (Method::Put, "only") => *values = vec![value.to_string()],
                    (Method::Delete, "txt") if present => values.retain(|v| v != value),
                    (Method::Delete, "txt") => return MockResponse::new(404),
                    (Method::Put, "txt") => {}
                    _ => return MockResponse::new(405),
                }
                MockResponse::new(204)
            },
            move |fqdn| records.borrow().get(fqdn).cloned().unwrap_or_default(),
        )
    }

    #[test]
    fn calls_go_through_the_glue_with_check_config_first() {
        let record = dns_record("example.com", "_acme-challenge.example.com", "v1");
        assert_eq!(record.ttl, 60);
        let bad = dns_solver::<Solver>(r#"{"api": "https://dns.example.test/"}"#);
        let invalid = Err(PluginError::InvalidConfig("config.api: no trailing slash".into()));
        assert_eq!(bad.validate_config(), invalid);
        assert_eq!(bad.present(&record), invalid);
        assert_eq!(bad.cleanup(&record), invalid);
        let unknown = dns_solver::<Solver>(r#"{"api": "https://x", "zone": 1}"#);
        assert!(
            matches!(unknown.validate_config(), Err(PluginError::InvalidConfig(m)) if m.starts_with("config.zone: unknown key"))
        );
        assert!(matches!(unknown.present(&record), Err(PluginError::InvalidConfig(_))));

        let mock = MockHttp::install();
        mock.expect(
            Method::Put,
            "https://dns.example.test/txt/_acme-challenge.example.com/v1",
        )
        .respond(MockResponse::new(204));
        let good = dns_solver::<Solver>(r#"{"api": "https://dns.example.test"}"#);
        assert_eq!(good.config(), r#"{"api": "https://dns.example.test"}"#);
        assert_eq!(good.validate_config(), Ok(()));
        assert_eq!(good.present(&record), Ok(()));
        assert!(logs().iter().any(|l| l.message == "presented v1"));
    }

    #[test]
    fn a_conforming_solver_passes() {
        conformance::dns_solver::<Solver>(r#"{"api": "https://dns.example.test"}"#, "example.test", provider());
        let checks =
            conformance::run_dns_solver::<Solver>(r#"{"api": "https://dns.example.test"}"#, "example.test", provider());
        assert_eq!(
            checks.iter().map(|c| (c.rule, c.passed)).collect::<Vec<_>>(),
            conformance::RULES.iter().map(|r| (*r, true)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_solver_that_swaps_values_is_caught() {
        let checks = conformance::run_dns_solver::<Solver>(
            r#"{"api": "https://dns.example.test", "bug": "swap"}"#,
            "example.test",
            provider(),
        );
        let broken: Vec<&Check> = checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(broken.len(), 1, "{checks:#?}");
        assert_eq!(
            broken[0].rule,
            "a second value at the same name is added, not swapped in"
        );
        assert_eq!(
            broken[0].detail,
            "TXT values at _certctl-conformance.example.test: expected [\"conformance-a\", \"conformance-b\"], \
             found [\"conformance-b\"]"
        );
    }

    #[test]
    fn a_solver_that_fails_on_missing_values_is_caught_with_a_report() {
        let m = panic_message(|| {
            conformance::dns_solver::<Solver>(
                r#"{"api": "https://dns.example.test", "bug": "strict"}"#,
                "example.test",
                provider(),
            );
        });
        let not_found = "not found: DELETE https://dns.example.test answered 404 Not Found";
        assert!(
            m.contains(": 2 of 7 rules broken, on _certctl-conformance.example.test"),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "\n  BROKEN  cleanup of a record that was never presented succeeds: {not_found}\n  ok      present publishes the value"
            )),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "\n  BROKEN  cleanup of a value already gone succeeds: {not_found}"
            )),
            "{m}"
        );
        assert!(
            m.contains("\n  PUT https://dns.example.test/txt/_certctl-conformance.example.test/conformance-a"),
            "{m}"
        );
    }
}

#[cfg(feature = "notifier")]
mod notify {
    use super::*;
    use crate::mail::{self, MailMessage};
    use crate::{Event, Notifier};

    #[derive(serde::Deserialize)]
    struct Config {
        url: String,
    }

    struct Hook;

    impl Notifier for Hook {
        type Config = Config;

        fn check_config(config: &Config) -> Result<(), PluginError> {
            match config.url.starts_with("https://") {
                true => Ok(()),
                false => Err(PluginError::invalid_config("config.url: https only")),
            }
        }

        fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {
            http::post(&config.url).json(event)?.send()?.error_for_status()?;
            Ok(())
        }
    }

    #[test]
    fn notify_goes_through_the_glue() {
        let event = test_event();
        assert_eq!(
            (event.kind.as_str(), event.detail("requested_by")),
            ("test", Some("admin"))
        );
        let bad = notifier::<Hook>(r#"{"url": "http://x"}"#);
        assert_eq!(
            bad.notify(&event),
            Err(PluginError::InvalidConfig("config.url: https only".into()))
        );
        assert_eq!(bad.validate_config(), bad.notify(&event));

        let mock = MockHttp::install();
        mock.expect(Method::Post, "https://hooks.example.test/x")
            .json_body(&event)
            .respond(MockResponse::new(429).header("Retry-After", "12"));
        let hook = notifier::<Hook>(r#"{"url": "https://hooks.example.test/x"}"#);
        assert_eq!(hook.config(), r#"{"url": "https://hooks.example.test/x"}"#);
        assert_eq!(hook.notify(&event), Err(PluginError::RateLimited(Some(12))));
    }

    fn message(to: &[&str], subject: &str) -> MailMessage {
        MailMessage {
            to: to.iter().map(|a| a.to_string()).collect(),
            subject: subject.into(),
            text_body: "body".into(),
            html_body: Some("<p>body</p>".into()),
        }
    }

    #[test]
    fn the_outbox_keeps_what_passes_the_hosts_checks() {
        let outbox = MockMail::install();
        let good = message(&["ops@example.com", "oncall@example.org"], "[certctl] web expires");
        assert_eq!(mail::send(&good), Ok(()));
        assert_eq!(outbox.sent(), std::slice::from_ref(&good));

        let refused = [
            (
                message(&[], "s"),
                PluginError::invalid_config("a message needs 1 to 50 recipients"),
            ),
            (
                message(&["ops@example.com"; 51], "s"),
                PluginError::invalid_config("a message needs 1 to 50 recipients"),
            ),
            (
                message(&["ops@example.com", "Ops <ops@example.com>"], "s"),
                PluginError::invalid_config("\"Ops <ops@example.com>\" is not an e-mail address"),
            ),
            (
                message(&["ops@example.com"], "one\r\nBcc: x@example.com"),
                PluginError::permanent("the subject must be one line"),
            ),
        ];
        for (message, error) in refused {
            assert_eq!(mail::send(&message), Err(error));
        }
        assert_eq!(mail::send(&message(&["ops@example.com"; 50], "s")), Ok(()));
        assert_eq!(outbox.sent().len(), 2);
    }

    #[test]
    fn queued_failures_refuse_the_next_messages_in_order() {
        let outbox = MockMail::install();
        outbox.fail_next(PluginError::auth("the relay answered 535 to AUTH: bad credentials"));
        outbox.fail_next(PluginError::transient("the relay answered 421 to DATA: busy"));
        let good = message(&["ops@example.com"], "s");
        // A message the host refuses does not reach the relay, so it uses no queued failure.
        assert!(matches!(
            mail::send(&message(&[], "s")),
            Err(PluginError::InvalidConfig(_))
        ));
        assert!(matches!(mail::send(&good), Err(PluginError::Auth(_))));
        assert!(matches!(mail::send(&good), Err(PluginError::Transient(_))));
        assert!(outbox.sent().is_empty());
        assert_eq!(mail::send(&good), Ok(()));
        assert_eq!(outbox.sent(), [good]);

        outbox.fail_next(PluginError::permanent("never used"));
        let m = panic_message(|| drop(outbox));
        assert!(
            m.starts_with("MockMail: 1 failure(s) queued with fail_next were not used"),
            "{m}"
        );
        // The panic uninstalled it.
        let _again = MockMail::install();
    }

    #[test]
    fn without_a_mock_mail_nothing_is_sent() {
        let good = message(&["ops@example.com"], "s");
        assert!(
            matches!(mail::send(&good), Err(PluginError::Permanent(m)) if m.contains("install certctl_sdk::testkit::MockMail"))
        );
        let outbox = MockMail::install();
        assert!(panic_message(|| drop(MockMail::install())).contains("already installed"));
        let elsewhere = std::thread::spawn(move || mail::send(&message(&["ops@example.com"], "s")))
            .join()
            .expect("thread");
        assert!(elsewhere.is_err(), "mocks are per thread");
        drop(outbox);
        assert!(mail::send(&good).is_err());
    }

    #[test]
    fn addresses_and_messages_are_the_hosts() {
        for good in ["ops@example.com", "first.last+tag@sub.example.co.uk"] {
            assert!(mail::is_address(good), "{good}");
        }
        for bad in [
            "ops",
            "@example.com",
            "ops@",
            "a@b@example.com",
            "ops@example.com>\r\nRCPT TO:<x@y.z",
            "ops @example.com",
            "ops@localhost",
            "Ops <ops@example.com>",
            "a,b@example.com",
        ] {
            assert!(!mail::is_address(bad), "{bad}");
        }
        assert!(!mail::is_address(&format!("{}@example.com", "a".repeat(65))));
        // The host checks messages with the same rule and words; they must not drift. Only in
        // the certctl repository, where the host's source is beside the SDK.
        let host = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src/mail.rs");
        let Ok(source) = std::fs::read_to_string(&host) else {
            return;
        };
        for words in [
            "\"a message needs 1 to 50 recipients\"",
            "\"{bad:?} is not an e-mail address\"",
            "\"the subject must be one line\"",
            "&& local.len() <= 64",
            "&& domain.len() <= 253",
            "&& domain.contains('.')",
            "!matches!(c, '<' | '>' | ',' | ';' | '\"')",
        ] {
            assert!(source.contains(words), "{words} is not in {}", host.display());
        }
    }
}

#[cfg(feature = "issuer")]
mod issue {
    use super::*;
    use crate::kv::{MAX_KEYS, MAX_VALUE_BYTES};
    use crate::{IssueRequest, Issuer, Progress, kv};

    struct Counter;

    impl Issuer for Counter {
        type Config = serde_json::Value;

        fn check_config(config: &serde_json::Value) -> Result<(), PluginError> {
            match config.get("ca") {
                Some(_) => Ok(()),
                None => Err(PluginError::invalid_config("config.ca: required")),
            }
        }

        fn begin(_: &serde_json::Value, request: &IssueRequest) -> Result<Progress, PluginError> {
            kv::set("names", request.names.join(",").as_bytes())?;
            Ok(Progress::Pending {
                after_ms: 5,
                state: b"order-1".to_vec(),
            })
        }

        fn resume(_: &serde_json::Value, state: &[u8]) -> Result<Progress, PluginError> {
            let names = kv::get("names").ok_or_else(|| PluginError::not_found("kv: names"))?;
            kv::delete("names");
            Ok(Progress::Issued(format!(
                "{}:{}",
                String::from_utf8_lossy(state),
                String::from_utf8_lossy(&names)
            )))
        }
    }

    #[test]
    fn begin_and_resume_share_the_mock_kv() {
        let store = MockKv::install();
        let ca = issuer::<Counter>(r#"{"ca": "x"}"#);
        assert_eq!(ca.config(), r#"{"ca": "x"}"#);
        assert_eq!(ca.validate_config(), Ok(()));
        let request = IssueRequest {
            csr: vec![1, 2],
            names: vec!["a.example".into(), "b.example".into()],
            validity_days: Some(7),
            profile: None,
            replaces: None,
        };
        let Progress::Pending { after_ms: 5, state } = ca.begin(&request).expect("begins") else {
            panic!("pending expected");
        };
        assert_eq!(store.get("names").as_deref(), Some(&b"a.example,b.example"[..]));
        assert_eq!(
            ca.resume(&state),
            Ok(Progress::Issued("order-1:a.example,b.example".into()))
        );
        assert!(store.entries().is_empty());
        assert_eq!(
            ca.revoke("pem", 1),
            Err(PluginError::Permanent("this issuer cannot revoke certificates".into()))
        );
        let unconfigured = issuer::<Counter>("{}");
        let invalid = Err(PluginError::InvalidConfig("config.ca: required".into()));
        assert_eq!(
            unconfigured.begin(&request),
            invalid.clone().map(|()| Progress::Issued(String::new()))
        );
        assert_eq!(unconfigured.revoke("pem", 1), invalid);
    }

    #[test]
    fn the_kv_has_the_hosts_limits_and_messages() {
        let store = MockKv::install();
        assert_eq!(
            kv::set(&"k".repeat(257), b""),
            Err(PluginError::Permanent("key is 257 bytes; the limit is 256".into()))
        );
        assert_eq!(kv::set(&"k".repeat(256), b""), Ok(()));
        assert_eq!(
            kv::set("v", &vec![0; MAX_VALUE_BYTES + 1]),
            Err(PluginError::Permanent(
                "value is 65537 bytes; the limit is 65536".into()
            ))
        );
        assert_eq!(kv::set("v", &vec![0; MAX_VALUE_BYTES]), Ok(()));
        for i in 2..MAX_KEYS {
            store.set(&format!("key-{i}"), b"x").expect("under the limit");
        }
        assert_eq!(store.entries().len(), MAX_KEYS);
        assert_eq!(
            kv::set("one-more", b"x"),
            Err(PluginError::Permanent(
                "this instance already has 1024 keys; delete some first".into()
            ))
        );
        assert_eq!(kv::set("v", b"replaced"), Ok(()), "replacing a value adds no key");
        kv::delete("v");
        kv::delete("v");
        assert_eq!(kv::get("v"), None);
        assert_eq!(kv::set("one-more", b"x"), Ok(()));
    }

    #[test]
    fn without_a_mock_kv_nothing_is_stored() {
        assert_eq!(kv::get("k"), None);
        assert!(matches!(kv::set("k", b"v"), Err(PluginError::Permanent(m)) if m.contains("needs a certctl host")));
        kv::delete("k");
        let store = MockKv::install();
        kv::set("k", b"v").expect("stored");
        assert!(panic_message(|| drop(MockKv::install())).contains("already installed"));
        drop(store);
        assert_eq!(kv::get("k"), None);
    }
}
