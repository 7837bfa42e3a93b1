//! A certctl notifier for PagerDuty's Events API v2: problems trigger an alert, and an issued or
//! renewed certificate resolves it through the shared dedup key. See README.md for the events
//! sent and how PagerDuty's answers map to errors.

use std::time::Duration;

use certctl_sdk::http::{self, Response};
use certctl_sdk::text::truncate;
use certctl_sdk::time::rfc3339;
use certctl_sdk::{Event, Notifier, PluginError, Severity, log};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// PagerDuty's endpoint (US service region); EU accounts use `https://events.eu.pagerduty.com/v2/enqueue`.
const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const DEFAULT_SOURCE: &str = "certctl";
const DEFAULT_MIN_SEVERITY: Severity = Severity::Warning;

/// How long to wait for PagerDuty's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// PagerDuty's limits, in characters: `payload.summary`, `payload.source`.
const MAX_SUMMARY: usize = 1024;
const MAX_SOURCE: usize = 255;

/// Event kinds that end a condition: they resolve the alert of their dedup key.
const RESOLVING_KINDS: &[&str] = &["issued", "renewed"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The integration key of an Events API v2 integration (or an event orchestration).
    routing_key: String,
    /// The Events API endpoint.
    #[serde(default)]
    events_url: Option<String>,
    /// `payload.source`: where the problem is, as PagerDuty shows it.
    #[serde(default)]
    source: Option<String>,
    /// Events below it are not sent (resolves and tests always are).
    #[serde(default)]
    min_severity: Option<Severity>,
}

struct PagerDuty;

impl Notifier for PagerDuty {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        let key = &config.routing_key;
        if key.chars().count() != 32 || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(PluginError::invalid_config(
                "config.routing_key: must be the 32-character integration key of an Events API v2 integration",
            ));
        }
        if let Some(url) = &config.events_url {
            http::check_endpoint("config.events_url", url)?;
        }
        if let Some(source) = &config.source
            && (source.trim().is_empty() || source.chars().count() > MAX_SOURCE || source.contains(['\r', '\n']))
        {
            return Err(PluginError::invalid_config(format!(
                "config.source: must be one non-empty line of at most {MAX_SOURCE} characters"
            )));
        }
        Ok(())
    }

    fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {
        let resolve = RESOLVING_KINDS.contains(&event.kind.as_str());
        let min_severity = config.min_severity.unwrap_or(DEFAULT_MIN_SEVERITY);
        if !resolve && event.kind != "test" && rank(event.severity) < rank(min_severity) {
            log::debug(format!(
                "not sent: {} event for {} is {}, below min_severity {min_severity}",
                event.kind, event.subject, event.severity
            ));
            return Ok(());
        }
        let body = if resolve {
            resolve_event(config, event)
        } else {
            trigger_event(config, event)
        };
        let url = config.events_url.as_deref().unwrap_or(DEFAULT_EVENTS_URL);
        let response = http::post(url).json(&body)?.timeout(TIMEOUT).send()?;
        check_answer(&response)?;
        log::debug(format!(
            "PagerDuty accepted the {} for {} (dedup key {})",
            if resolve { "resolve" } else { "trigger" },
            event.subject,
            event.dedup_key
        ));
        Ok(())
    }
}

certctl_sdk::register_notifier!(PagerDuty);

fn rank(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// A `trigger`: opens an alert, or adds to the open one with the same dedup key.
fn trigger_event(config: &Config, event: &Event) -> Value {
    let mut details = Map::new();
    details.insert("kind".into(), json!(event.kind));
    for (key, value) in &event.detail {
        // A repeated key keeps its first value, as in the SDK's JSON of an event.
        details.entry(key.clone()).or_insert_with(|| json!(value));
    }
    json!({
        "routing_key": config.routing_key,
        "event_action": "trigger",
        "dedup_key": event.dedup_key,
        "payload": {
            "summary": truncate(&event.summary, MAX_SUMMARY),
            "source": config.source.as_deref().unwrap_or(DEFAULT_SOURCE),
            "severity": event.severity.as_str(),
            "timestamp": rfc3339(event.occurred_at),
            "component": event.subject,
            "custom_details": details
        }
    })
}

/// A `resolve`: closes the alert with this dedup key, if one is open (otherwise PagerDuty drops it).
fn resolve_event(config: &Config, event: &Event) -> Value {
    json!({
        "routing_key": config.routing_key,
        "event_action": "resolve",
        "dedup_key": event.dedup_key
    })
}

/// PagerDuty's `400` body: `{"status": "invalid event", "message": "Event object is invalid",
/// "errors": ["..."]}`.
#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<String>,
}

/// The documented answers: `202` is accepted; `400` is an invalid event (permanent, with
/// PagerDuty's `errors`; the configuration's fault when they are about the routing key); `429`
/// waits; 5xx retries. Anything else as [`http::status_error`] says, except that a `404` means
/// `events_url` is not the Events API.
fn check_answer(response: &Response) -> Result<(), PluginError> {
    let Some(error) = http::status_error(response) else {
        return Ok(());
    };
    match (response.status(), error) {
        (400, error) => {
            let refusal = match serde_json::from_slice::<Refusal>(response.body()) {
                Ok(refusal) if !refusal.errors.is_empty() => refusal,
                _ => return Err(error),
            };
            let errors = refusal.errors.join("; ");
            let what = if refusal.message.is_empty() {
                "invalid event"
            } else {
                refusal.message.as_str()
            };
            let message = format!("PagerDuty refused the event (400 {what}): {errors}");
            if errors.to_ascii_lowercase().contains("routing key") || errors.contains("routing_key") {
                Err(PluginError::invalid_config(format!("config.routing_key: {message}")))
            } else {
                Err(PluginError::permanent(message))
            }
        }
        (404, PluginError::NotFound(m)) => Err(PluginError::invalid_config(format!(
            "config.events_url: {m} (not the Events API v2 endpoint, .../v2/enqueue)"
        ))),
        (_, error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use certctl_sdk::http::Method;
    use certctl_sdk::testkit::{self, MockHttp, MockResponse};

    use super::*;

    const KEY: &str = "R0123456789abcdef0123456789ABCDE";

    fn pagerduty(config: Value) -> testkit::NotifierHost<PagerDuty> {
        let mut config = config;
        config["routing_key"] = json!(KEY);
        testkit::notifier::<PagerDuty>(config.to_string())
    }

    fn event(kind: &str, severity: Severity) -> Event {
        Event {
            kind: kind.into(),
            severity,
            summary: "certificate web expires in 7 days".into(),
            subject: "web".into(),
            dedup_key: "certctl:certificate:42".into(),
            occurred_at: 1_800_000_000,
            detail: vec![
                ("days_left".into(), "7".into()),
                ("names".into(), "www.example.com, example.com".into()),
            ],
        }
    }

    fn accepted() -> MockResponse {
        MockResponse::json(
            202,
            &json!({"status": "success", "message": "Event processed", "dedup_key": "certctl:certificate:42"}),
        )
    }

    #[test]
    fn a_problem_triggers_an_alert() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, DEFAULT_EVENTS_URL)
            .header("content-type", "application/json")
            .json_body(&json!({
                "routing_key": KEY,
                "event_action": "trigger",
                "dedup_key": "certctl:certificate:42",
                "payload": {
                    "summary": "certificate web expires in 7 days",
                    "source": "certctl",
                    "severity": "warning",
                    "timestamp": "2027-01-15T08:00:00Z",
                    "component": "web",
                    "custom_details": {
                        "kind": "expiring",
                        "days_left": "7",
                        "names": "www.example.com, example.com"
                    }
                }
            }))
            .respond(accepted());
        assert_eq!(
            pagerduty(json!({})).notify(&event("expiring", Severity::Warning)),
            Ok(())
        );

        let sent = &mock.requests()[0];
        assert_eq!(sent.timeout, Some(TIMEOUT));
        assert_eq!(sent.header("authorization"), None, "the routing key is the credential");
        assert_eq!(
            testkit::logs()[0].message,
            "PagerDuty accepted the trigger for web (dedup key certctl:certificate:42)"
        );
    }

    #[test]
    fn issued_and_renewed_resolve_with_the_same_dedup_key() {
        let mock = MockHttp::install();
        let resolve = json!({
            "routing_key": KEY,
            "event_action": "resolve",
            "dedup_key": "certctl:certificate:42"
        });
        mock.expect(Method::Post, DEFAULT_EVENTS_URL)
            .json_body(&resolve)
            .times(2)
            .respond(accepted());
        // Resolves are info events: sent whatever min_severity says.
        let pd = pagerduty(json!({"min_severity": "critical"}));
        assert_eq!(pd.notify(&event("renewed", Severity::Info)), Ok(()));
        assert_eq!(pd.notify(&event("issued", Severity::Info)), Ok(()));
        assert_eq!(
            testkit::logs()[0].message,
            "PagerDuty accepted the resolve for web (dedup key certctl:certificate:42)"
        );
    }

    #[test]
    fn events_below_min_severity_are_skipped_but_tests_are_sent() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, DEFAULT_EVENTS_URL)
            .times(3)
            .respond(accepted());
        let default = pagerduty(json!({}));
        assert_eq!(default.notify(&event("revoked", Severity::Info)), Ok(()));
        assert_eq!(
            testkit::take_logs()[0].message,
            "not sent: revoked event for web is info, below min_severity warning"
        );
        assert_eq!(default.notify(&event("renewal_failed", Severity::Critical)), Ok(()));
        assert_eq!(default.notify(&testkit::test_event()), Ok(()));
        let critical_only = pagerduty(json!({"min_severity": "critical"}));
        assert_eq!(critical_only.notify(&event("expiring", Severity::Warning)), Ok(()));
        let everything = pagerduty(json!({"min_severity": "info"}));
        assert_eq!(everything.notify(&event("revoked", Severity::Info)), Ok(()));

        let sent: Vec<Value> = mock.requests().iter().map(|r| r.json().expect("JSON")).collect();
        let kinds: Vec<&Value> = sent.iter().map(|s| &s["payload"]["custom_details"]["kind"]).collect();
        assert_eq!(kinds, [&json!("renewal_failed"), &json!("test"), &json!("revoked")]);
        assert_eq!(sent[0]["payload"]["severity"], "critical");
        assert_eq!(sent[1]["event_action"], "trigger");
        assert_eq!(sent[1]["payload"]["severity"], "info");
        assert_eq!(sent[1]["payload"]["custom_details"]["requested_by"], "admin");
    }

    #[test]
    fn the_eu_endpoint_source_and_long_summaries() {
        let mock = MockHttp::install();
        let eu = "https://events.eu.pagerduty.com/v2/enqueue";
        mock.expect(Method::Post, eu).respond(accepted());
        let pd = pagerduty(json!({"events_url": eu, "source": "certctl.prod.example.com"}));
        let long = Event {
            summary: "s".repeat(2000),
            detail: vec![
                ("kind".into(), "shadowed".into()),
                ("a".into(), "1".into()),
                ("a".into(), "2".into()),
            ],
            ..event("agent_offline", Severity::Critical)
        };
        assert_eq!(pd.notify(&long), Ok(()));

        let sent: Value = mock.requests()[0].json().expect("JSON");
        assert_eq!(sent["payload"]["source"], "certctl.prod.example.com");
        let summary = sent["payload"]["summary"].as_str().expect("summary");
        assert_eq!(summary.chars().count(), MAX_SUMMARY);
        assert!(summary.ends_with('…'));
        assert_eq!(
            sent["payload"]["custom_details"],
            json!({"kind": "agent_offline", "a": "1"}),
            "the event's kind wins, and a repeated key keeps its first value"
        );
    }

    #[test]
    fn pagerdutys_answers_map_to_what_the_host_should_do() {
        let cases = [
            (
                MockResponse::json(
                    400,
                    &json!({
                        "status": "invalid event",
                        "message": "Event object is invalid",
                        "errors": ["'payload.summary' is missing or blank", "'payload.source' is missing or blank"]
                    }),
                ),
                PluginError::Permanent(
                    "PagerDuty refused the event (400 Event object is invalid): 'payload.summary' is missing or \
                     blank; 'payload.source' is missing or blank"
                        .into(),
                ),
            ),
            (
                MockResponse::json(
                    400,
                    &json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["Invalid routing key"]}),
                ),
                PluginError::InvalidConfig(
                    "config.routing_key: PagerDuty refused the event (400 Event object is invalid): Invalid routing key"
                        .into(),
                ),
            ),
            (
                MockResponse::new(400).body("<html>bad request</html>"),
                PluginError::Permanent(
                    "POST https://events.pagerduty.com answered 400 Bad Request: <html>bad request</html>".into(),
                ),
            ),
            (
                MockResponse::json(400, &json!({"status": "invalid event"})),
                PluginError::Permanent(
                    "POST https://events.pagerduty.com answered 400 Bad Request: {\"status\":\"invalid event\"}".into(),
                ),
            ),
            (
                MockResponse::new(404),
                PluginError::InvalidConfig(
                    "config.events_url: POST https://events.pagerduty.com answered 404 Not Found (not the Events \
                     API v2 endpoint, .../v2/enqueue)"
                        .into(),
                ),
            ),
            (MockResponse::new(429), PluginError::RateLimited(None)),
            (MockResponse::new(429).header("Retry-After", "60"), PluginError::RateLimited(Some(60))),
            (
                MockResponse::new(500),
                PluginError::Transient("POST https://events.pagerduty.com answered 500 Internal Server Error".into()),
            ),
            (
                MockResponse::new(503),
                PluginError::Transient("POST https://events.pagerduty.com answered 503 Service Unavailable".into()),
            ),
            (
                MockResponse::connection_refused(),
                PluginError::Transient("POST https://events.pagerduty.com: connection refused".into()),
            ),
        ];
        for (answer, expected) in cases {
            let mock = MockHttp::install();
            mock.expect(Method::Post, DEFAULT_EVENTS_URL).respond(answer);
            let got = pagerduty(json!({})).notify(&event("expiring", Severity::Critical));
            assert_eq!(got, Err(expected));
            assert!(
                !got.expect_err("an error").to_string().contains(KEY),
                "the routing key leaked"
            );
        }
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: Value| testkit::notifier::<PagerDuty>(config.to_string()).validate_config();
        for good in [
            json!({"routing_key": KEY}),
            json!({
                "routing_key": KEY, "events_url": "https://events.eu.pagerduty.com/v2/enqueue",
                "source": "certctl-prod", "min_severity": "info"
            }),
            json!({"routing_key": KEY, "events_url": "http://127.0.0.1:8080/v2/enqueue"}),
        ] {
            assert_eq!(check(good.clone()), Ok(()), "{good}");
        }
        let cases = [
            (json!({}), "config.routing_key: required"),
            (
                json!({"routing_key": "short"}),
                "config.routing_key: must be the 32-character",
            ),
            (
                json!({"routing_key": format!("{KEY}0")}),
                "config.routing_key: must be the 32-character",
            ),
            (
                json!({"routing_key": "0123456789abcdef0123456789abcde-"}),
                "config.routing_key: must be",
            ),
            (
                json!({"routing_key": KEY, "events_url": "http://events.pagerduty.com/v2/enqueue"}),
                "config.events_url: must start with https://",
            ),
            (
                json!({"routing_key": KEY, "source": ""}),
                "config.source: must be one non-empty line",
            ),
            (
                json!({"routing_key": KEY, "source": "a\nb"}),
                "config.source: must be one non-empty line",
            ),
            (
                json!({"routing_key": KEY, "min_severity": "error"}),
                "config.min_severity: unknown variant `error`, expected one of `info`, `warning`, `critical`",
            ),
            (
                json!({"routing_key": KEY, "severity": "info"}),
                "config.severity: unknown key",
            ),
        ];
        for (config, expected) in cases {
            let message = testkit::assert_invalid_config(check(config), expected);
            assert!(!message.contains(KEY), "the routing key leaked: {message}");
        }
        let _mock = MockHttp::install();
        let bad = testkit::notifier::<PagerDuty>(json!({"routing_key": "x"}).to_string());
        assert!(matches!(
            bad.notify(&event("expiring", Severity::Critical)),
            Err(PluginError::InvalidConfig(_))
        ));
    }
}
