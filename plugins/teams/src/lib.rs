//! A certctl notifier that posts each event to Microsoft Teams as an Adaptive Card, through an
//! incoming webhook or a Workflows (Power Automate) "When a Teams webhook request is received"
//! URL. See README.md for the card and how the answers map to errors.

use std::time::Duration;

use certctl_sdk::http::{self, Response};
use certctl_sdk::text::{snippet, truncate};
use certctl_sdk::time::rfc3339;
use certctl_sdk::{Event, Notifier, PluginError, Severity, log};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long to wait for the answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The longest text put on the card, in characters (Teams refuses messages over about 28 KB).
const MAX_TEXT: usize = 1000;

/// What the legacy connector writes into a `200 OK` body when Teams refused the message.
const DELIVERY_FAILED: &str = "Microsoft Teams endpoint returned HTTP error";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The incoming webhook or Workflows URL; it carries its own signature, so it is the
    /// credential.
    webhook_url: String,
}

struct Teams;

impl Notifier for Teams {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        // The messages never repeat the URL: it is the credential.
        http::check_endpoint("config.webhook_url", &config.webhook_url)
    }

    fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {
        let response = http::post(&config.webhook_url)
            .json(&message(event))?
            .timeout(TIMEOUT)
            .send()?;
        check_answer(&response)?;
        log::debug(format!("posted {} event for {} to Teams", event.kind, event.subject));
        Ok(())
    }
}

certctl_sdk::register_notifier!(Teams);

/// The message: one Adaptive Card (1.4) with the summary as its title, coloured by severity, a
/// FactSet of subject, severity, kind and the details, and a line with the time and dedup key.
fn message(event: &Event) -> Value {
    let mut facts = vec![
        fact("Subject", &event.subject),
        fact("Severity", event.severity.as_str()),
        fact("Kind", &event.kind),
    ];
    facts.extend(event.detail.iter().map(|(key, value)| fact(key, value)));
    let footer = format!(
        "certctl · {} · dedup key {}",
        rfc3339(event.occurred_at),
        truncate(&event.dedup_key, MAX_TEXT)
    );
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": [
                    {
                        "type": "TextBlock",
                        "text": truncate(&event.summary, MAX_TEXT),
                        "size": "Large",
                        "weight": "Bolder",
                        "color": colour(event.severity),
                        "wrap": true
                    },
                    {"type": "FactSet", "facts": facts},
                    {"type": "TextBlock", "text": footer, "size": "Small", "isSubtle": true, "wrap": true}
                ]
            }
        }]
    })
}

fn fact(title: &str, value: &str) -> Value {
    json!({"title": truncate(title, MAX_TEXT), "value": truncate(value, MAX_TEXT)})
}

/// Adaptive Card text colours.
fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "Good",
        Severity::Warning => "Warning",
        Severity::Critical => "Attention",
    }
}

/// The answers: 2xx is delivered (`1` from the legacy connector, `202 Accepted` from Workflows),
/// except a legacy `200` whose body says Teams refused the message; the errors of
/// [`http::status_error`] otherwise, except that a missing webhook or workflow is the
/// configuration's fault.
fn check_answer(response: &Response) -> Result<(), PluginError> {
    match http::status_error(response) {
        None => delivery_failure(response),
        Some(PluginError::NotFound(m)) => Err(PluginError::invalid_config(format!(
            "config.webhook_url: {m} (the webhook or workflow no longer exists)"
        ))),
        // 400 and 413 stay permanent, 401/403 auth; 429 and 5xx are retried.
        Some(other) => Err(other),
    }
}

/// A legacy connector answers `200 OK` when Teams refused the message, with a body like
/// `Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 400
/// with ContextId ...`. The code inside decides: 429 waits, 5xx retries, anything else is
/// permanent.
fn delivery_failure(response: &Response) -> Result<(), PluginError> {
    let text = response.text();
    let Some(at) = text.find(DELIVERY_FAILED) else {
        return Ok(());
    };
    let code: String = text[at + DELIVERY_FAILED.len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let message = format!(
        "Teams answered {} but did not deliver the message: {}",
        response.status(),
        snippet(&text)
    );
    Err(match code.parse::<u16>() {
        Ok(429) => PluginError::rate_limited(response.retry_after()),
        Ok(500..=599) => PluginError::transient(message),
        _ => PluginError::permanent(message),
    })
}

#[cfg(test)]
mod tests {
    use certctl_sdk::http::Method;
    use certctl_sdk::testkit::{self, MockHttp, MockResponse};

    use super::*;

    const URL: &str = "https://contoso.webhook.office.com/webhookb2/1111@2222/IncomingWebhook/SECRETPART/3333";
    const WORKFLOW: &str = "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SECRETSIG";

    fn teams(url: &str) -> testkit::NotifierHost<Teams> {
        testkit::notifier::<Teams>(json!({ "webhook_url": url }).to_string())
    }

    fn expiring() -> Event {
        Event {
            kind: "expiring".into(),
            severity: Severity::Warning,
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

    #[test]
    fn posts_an_adaptive_card() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL)
            .header("content-type", "application/json")
            .json_body(&json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "msteams": {"width": "Full"},
                        "body": [
                            {
                                "type": "TextBlock",
                                "text": "certificate web expires in 7 days",
                                "size": "Large",
                                "weight": "Bolder",
                                "color": "Warning",
                                "wrap": true
                            },
                            {
                                "type": "FactSet",
                                "facts": [
                                    {"title": "Subject", "value": "web"},
                                    {"title": "Severity", "value": "warning"},
                                    {"title": "Kind", "value": "expiring"},
                                    {"title": "days_left", "value": "7"},
                                    {"title": "names", "value": "www.example.com, example.com"}
                                ]
                            },
                            {
                                "type": "TextBlock",
                                "text": "certctl · 2027-01-15T08:00:00Z · dedup key certctl:certificate:42",
                                "size": "Small",
                                "isSubtle": true,
                                "wrap": true
                            }
                        ]
                    }
                }]
            }))
            .respond(MockResponse::ok().body("1"));
        assert_eq!(teams(URL).notify(&expiring()), Ok(()));

        let sent = &mock.requests()[0];
        assert_eq!(sent.timeout, Some(TIMEOUT));
        assert_eq!(testkit::logs()[0].message, "posted expiring event for web to Teams");
    }

    #[test]
    fn colours_follow_severity_and_a_workflow_accepts_with_202() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, WORKFLOW)
            .times(2)
            .respond(MockResponse::new(202));
        assert_eq!(teams(WORKFLOW).notify(&testkit::test_event()), Ok(()));
        let critical = Event {
            severity: Severity::Critical,
            kind: "agent_offline".into(),
            detail: Vec::new(),
            summary: "x".repeat(3000),
            ..expiring()
        };
        assert_eq!(teams(WORKFLOW).notify(&critical), Ok(()));

        let card = |i: usize| -> Value {
            let sent: Value = mock.requests()[i].json().expect("JSON");
            sent["attachments"][0]["content"].clone()
        };
        assert_eq!(card(0)["body"][0]["color"], "Good");
        assert_eq!(
            card(0)["body"][1]["facts"][3],
            json!({"title": "requested_by", "value": "admin"})
        );
        assert_eq!(card(1)["body"][0]["color"], "Attention");
        assert_eq!(card(1)["body"][1]["facts"].as_array().map(Vec::len), Some(3));
        let title = card(1)["body"][0]["text"].as_str().map(|t| t.chars().count());
        assert_eq!(title, Some(MAX_TEXT));
    }

    #[test]
    fn a_legacy_200_carrying_an_error_is_not_a_delivery() {
        let refused = |code: &str| {
            MockResponse::ok().body(format!(
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error {code} \
                 with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deKdNVYz.0.."
            ))
        };
        let cases = [
            (
                refused("400"),
                PluginError::Permanent(
                    "Teams answered 200 but did not deliver the message: Webhook message delivery failed with \
                     error: Microsoft Teams endpoint returned HTTP error 400 with ContextId \
                     tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deKdNVYz.0.."
                        .into(),
                ),
            ),
            (refused("429"), PluginError::RateLimited(None)),
            (
                refused("413"),
                PluginError::Permanent(
                    "Teams answered 200 but did not deliver the message: Webhook message delivery failed with \
                     error: Microsoft Teams endpoint returned HTTP error 413 with ContextId \
                     tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deKdNVYz.0.."
                        .into(),
                ),
            ),
        ];
        for (answer, expected) in cases {
            let mock = MockHttp::install();
            mock.expect(Method::Post, URL).respond(answer);
            assert_eq!(teams(URL).notify(&expiring()), Err(expected));
        }
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL).respond(refused("502"));
        assert!(
            matches!(teams(URL).notify(&expiring()), Err(PluginError::Transient(m)) if m.contains("HTTP error 502"))
        );
    }

    #[test]
    fn statuses_map_to_what_the_host_should_do() {
        let cases = [
            (
                MockResponse::new(400).body("Bad payload: Invalid type daptiveCard"),
                PluginError::Permanent(
                    "POST https://contoso.webhook.office.com answered 400 Bad Request: Bad payload: Invalid type \
                     daptiveCard"
                        .into(),
                ),
            ),
            (
                MockResponse::new(413),
                PluginError::Permanent("POST https://contoso.webhook.office.com answered 413 Content Too Large".into()),
            ),
            (
                MockResponse::new(401),
                PluginError::Auth("POST https://contoso.webhook.office.com answered 401 Unauthorized".into()),
            ),
            (
                MockResponse::json(403, &json!({"error": {"code": "DirectApiAuthorizationRequired"}})),
                PluginError::Auth(
                    "POST https://contoso.webhook.office.com answered 403 Forbidden: {\"error\":{\"code\":\
                     \"DirectApiAuthorizationRequired\"}}"
                        .into(),
                ),
            ),
            (
                MockResponse::new(404).body("WorkflowNotFound"),
                PluginError::InvalidConfig(
                    "config.webhook_url: POST https://contoso.webhook.office.com answered 404 Not Found: \
                     WorkflowNotFound (the webhook or workflow no longer exists)"
                        .into(),
                ),
            ),
            (
                MockResponse::new(429).header("Retry-After", "17"),
                PluginError::RateLimited(Some(17)),
            ),
            (
                MockResponse::new(502),
                PluginError::Transient("POST https://contoso.webhook.office.com answered 502 Bad Gateway".into()),
            ),
            (
                MockResponse::request_denied(),
                PluginError::Transient(
                    "POST https://contoso.webhook.office.com: HTTP request denied: the destination is not granted \
                     to this plugin instance"
                        .into(),
                ),
            ),
        ];
        for (answer, expected) in cases {
            let mock = MockHttp::install();
            mock.expect(Method::Post, URL).respond(answer);
            let got = teams(URL).notify(&expiring());
            assert_eq!(got, Err(expected));
            let message = got.expect_err("an error").to_string();
            assert!(!message.contains("SECRETPART"), "the URL leaked: {message}");
        }
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: Value| testkit::notifier::<Teams>(config.to_string()).validate_config();
        for good in [URL, WORKFLOW, "http://127.0.0.1:8080/hook", "http://localhost/x"] {
            assert_eq!(check(json!({ "webhook_url": good })), Ok(()), "{good}");
        }
        let cases = [
            (json!({}), "config.webhook_url: required"),
            (
                json!({"webhook_url": "http://contoso.webhook.office.com/x"}),
                "config.webhook_url: must start with https://",
            ),
            (json!({"webhook_url": "https://"}), "config.webhook_url: has no host"),
            (json!({"webhook_url": 5}), "config.webhook_url: invalid type"),
            (json!({"webhook_url": URL, "title": "x"}), "config.title: unknown key"),
        ];
        for (config, expected) in cases {
            testkit::assert_invalid_config(check(config), expected);
        }
        let _mock = MockHttp::install();
        let bad = testkit::notifier::<Teams>(json!({"webhook_url": "ftp://x"}).to_string());
        assert!(matches!(bad.notify(&expiring()), Err(PluginError::InvalidConfig(_))));
    }
}
