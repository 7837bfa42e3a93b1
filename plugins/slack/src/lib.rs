//! A certctl notifier that posts each event to a Slack channel through an incoming webhook, as a
//! Block Kit message with a plain-text fallback. See README.md for the message and how Slack's
//! answers map to errors.

use std::time::Duration;

use certctl_sdk::http::{self, Response};
use certctl_sdk::text::truncate;
use certctl_sdk::time::rfc3339;
use certctl_sdk::{Event, Notifier, PluginError, Severity, log};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long to wait for Slack's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Slack's limits, in characters: a header block's text, a section field's text.
const MAX_HEADER: usize = 150;
const MAX_FIELD: usize = 2000;
/// The fallback `text` shows in notifications; Slack cuts it much later (40,000).
const MAX_TEXT: usize = 3000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The incoming webhook's URL, `https://hooks.slack.com/services/...`: it is the credential.
    webhook_url: String,
    /// Overrides the webhook's display name (honoured by legacy webhooks only).
    #[serde(default)]
    username: Option<String>,
    /// Overrides the webhook's icon, as `:emoji_name:` (honoured by legacy webhooks only).
    #[serde(default)]
    icon_emoji: Option<String>,
}

struct Slack;

impl Notifier for Slack {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        // The messages never repeat the URL: its path is the credential.
        http::check_endpoint("config.webhook_url", &config.webhook_url)?;
        if let Some(username) = &config.username
            && (username.trim().is_empty() || username.contains(['\r', '\n']))
        {
            return Err(PluginError::invalid_config(
                "config.username: must be one non-empty line; remove it to keep the webhook's name",
            ));
        }
        if let Some(icon) = &config.icon_emoji {
            let name = icon.strip_prefix(':').and_then(|rest| rest.strip_suffix(':'));
            if !name.is_some_and(|n| !n.is_empty() && n.chars().all(|c| !c.is_whitespace() && c != ':')) {
                return Err(PluginError::invalid_config(
                    "config.icon_emoji: must be an emoji name between colons, like :lock:",
                ));
            }
        }
        Ok(())
    }

    fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {
        let response = http::post(&config.webhook_url)
            .json(&message(config, event))?
            .timeout(TIMEOUT)
            .send()?;
        check_answer(&response)?;
        log::debug(format!("posted {} event for {} to Slack", event.kind, event.subject));
        Ok(())
    }
}

certctl_sdk::register_notifier!(Slack);

/// The Block Kit message: a header with the summary, fields for subject, severity, kind and the
/// details, a context line with the time and dedup key, and `text` as the notification fallback.
fn message(config: &Config, event: &Event) -> Value {
    let severity = event.severity.as_str();
    let mut fields = vec![
        field("Subject", &event.subject),
        field("Severity", &format!("{} {severity}", emoji(event.severity))),
        field("Kind", &event.kind),
    ];
    if !event.detail.is_empty() {
        let lines: Vec<String> = event.detail.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        fields.push(field("Details", &lines.join("\n")));
    }
    let context = format!(
        "certctl · {} · dedup key {}",
        rfc3339(event.occurred_at),
        mrkdwn(&event.dedup_key, MAX_FIELD)
    );
    let mut message = json!({
        "text": mrkdwn(&format!("[{severity}] {}", event.summary), MAX_TEXT),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": truncate(or_none(&event.summary), MAX_HEADER), "emoji": true}
            },
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}
        ]
    });
    if let Some(username) = &config.username {
        message["username"] = json!(username);
    }
    if let Some(icon) = &config.icon_emoji {
        message["icon_emoji"] = json!(icon);
    }
    message
}

/// A section field: the title in bold, the value below it.
fn field(title: &str, value: &str) -> Value {
    let title = format!("*{title}*\n");
    let value = mrkdwn(or_none(value), MAX_FIELD - title.chars().count());
    json!({"type": "mrkdwn", "text": format!("{title}{value}")})
}

fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => ":information_source:",
        Severity::Warning => ":warning:",
        Severity::Critical => ":rotating_light:",
    }
}

/// Slack fields may not be empty.
fn or_none(text: &str) -> &str {
    if text.trim().is_empty() { "(none)" } else { text }
}

/// `text` escaped for Slack's mrkdwn (`&`, `<` and `>`, so that a name cannot become a link or
/// a mention), at most `max` characters with the escapes, cut with `…`.
fn mrkdwn(text: &str, max: usize) -> String {
    let escape = |c: char| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    };
    let width = |c: char| escape(c).map_or(1, str::len);
    let fits = text.chars().map(width).sum::<usize>() <= max;
    let budget = if fits { max } else { max.saturating_sub(1) };
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        used += width(c);
        if used > budget {
            break;
        }
        match escape(c) {
            Some(entity) => out.push_str(entity),
            None => out.push(c),
        }
    }
    if !fits {
        out.push('…');
    }
    out
}

/// Slack's answers: 2xx is delivered (the body is `ok`); the errors of
/// [`http::status_error`] otherwise (the body, Slack's error code, is in the message), except
/// that a missing webhook or an archived channel is the configuration's fault.
fn check_answer(response: &Response) -> Result<(), PluginError> {
    let Some(error) = http::status_error(response) else {
        return Ok(());
    };
    Err(match error {
        // invalid_token, action_prohibited
        PluginError::Auth(m) => PluginError::auth(format!(
            "{m} (the webhook was revoked, or may no longer post to its channel)"
        )),
        // no_service, channel_not_found
        PluginError::NotFound(m) => PluginError::invalid_config(format!(
            "config.webhook_url: {m} (the webhook URL no longer exists: create a new incoming webhook)"
        )),
        // channel_is_archived
        PluginError::Permanent(m) if response.status() == 410 => {
            PluginError::invalid_config(format!("config.webhook_url: {m} (the webhook's channel is archived)"))
        }
        // 400 invalid_payload, invalid_blocks, ... stay permanent; 429 and 5xx are retried.
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use certctl_sdk::http::Method;
    use certctl_sdk::testkit::{self, MockHttp, MockResponse};

    use super::*;

    const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";

    fn slack() -> testkit::NotifierHost<Slack> {
        testkit::notifier::<Slack>(json!({"webhook_url": URL}).to_string())
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
    fn posts_a_block_kit_message_with_a_fallback_text() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL)
            .header("content-type", "application/json")
            .json_body(&json!({
                "text": "[warning] certificate web expires in 7 days",
                "blocks": [
                    {
                        "type": "header",
                        "text": {"type": "plain_text", "text": "certificate web expires in 7 days", "emoji": true}
                    },
                    {
                        "type": "section",
                        "fields": [
                            {"type": "mrkdwn", "text": "*Subject*\nweb"},
                            {"type": "mrkdwn", "text": "*Severity*\n:warning: warning"},
                            {"type": "mrkdwn", "text": "*Kind*\nexpiring"},
                            {"type": "mrkdwn", "text": "*Details*\ndays_left: 7\nnames: www.example.com, example.com"}
                        ]
                    },
                    {
                        "type": "context",
                        "elements": [{
                            "type": "mrkdwn",
                            "text": "certctl · 2027-01-15T08:00:00Z · dedup key certctl:certificate:42"
                        }]
                    }
                ]
            }))
            .respond(MockResponse::ok().body("ok"));
        assert_eq!(slack().notify(&expiring()), Ok(()));

        let sent = &mock.requests()[0];
        assert_eq!(sent.timeout, Some(TIMEOUT));
        assert_eq!(sent.header("authorization"), None, "the URL is the credential");
        assert_eq!(testkit::logs()[0].message, "posted expiring event for web to Slack");
    }

    #[test]
    fn the_test_event_and_the_optional_overrides() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL).respond(MockResponse::ok().body("ok"));
        let config = json!({"webhook_url": URL, "username": "certctl", "icon_emoji": ":lock:"});
        let slack = testkit::notifier::<Slack>(config.to_string());
        assert_eq!(slack.notify(&testkit::test_event()), Ok(()));

        let sent: Value = mock.requests()[0].json().expect("JSON");
        assert_eq!(sent["username"], "certctl");
        assert_eq!(sent["icon_emoji"], ":lock:");
        assert_eq!(sent["text"], "[info] certctl test notification for example");
        assert_eq!(
            sent["blocks"][1]["fields"][1]["text"],
            "*Severity*\n:information_source: info"
        );
        assert_eq!(sent["blocks"][1]["fields"][3]["text"], "*Details*\nrequested_by: admin");
    }

    #[test]
    fn text_is_escaped_and_cut_to_slacks_limits() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL).respond(MockResponse::ok());
        let event = Event {
            summary: format!("<!channel> & {}", "x".repeat(300)),
            subject: "<https://evil.example|click>".into(),
            detail: vec![("note".into(), "y".repeat(5000))],
            severity: Severity::Critical,
            kind: "renewal_failed".into(),
            ..expiring()
        };
        assert_eq!(slack().notify(&event), Ok(()));

        let sent: Value = mock.requests()[0].json().expect("JSON");
        let text = sent["text"].as_str().expect("text");
        assert!(text.starts_with("[critical] &lt;!channel&gt; &amp; xxx"), "{text}");
        let header = sent["blocks"][0]["text"]["text"].as_str().expect("header");
        assert_eq!(header.chars().count(), MAX_HEADER);
        assert!(
            header.starts_with("<!channel> & xx") && header.ends_with('…'),
            "plain text is not escaped"
        );
        let fields = &sent["blocks"][1]["fields"];
        assert_eq!(fields[0]["text"], "*Subject*\n&lt;https://evil.example|click&gt;");
        assert_eq!(fields[1]["text"], "*Severity*\n:rotating_light: critical");
        let details = fields[3]["text"].as_str().expect("details");
        assert_eq!(details.chars().count(), MAX_FIELD);
        assert!(details.starts_with("*Details*\nnote: yyy") && details.ends_with('…'));
    }

    #[test]
    fn slacks_errors_map_to_what_the_host_should_do() {
        let cases = [
            (
                MockResponse::new(400).body("invalid_payload"),
                PluginError::Permanent("POST https://hooks.slack.com answered 400 Bad Request: invalid_payload".into()),
            ),
            (
                MockResponse::new(400).body("invalid_blocks"),
                PluginError::Permanent("POST https://hooks.slack.com answered 400 Bad Request: invalid_blocks".into()),
            ),
            (
                MockResponse::new(403).body("invalid_token"),
                PluginError::Auth(
                    "POST https://hooks.slack.com answered 403 Forbidden: invalid_token (the webhook was revoked, \
                     or may no longer post to its channel)"
                        .into(),
                ),
            ),
            (
                MockResponse::new(403).body("action_prohibited"),
                PluginError::Auth(
                    "POST https://hooks.slack.com answered 403 Forbidden: action_prohibited (the webhook was \
                     revoked, or may no longer post to its channel)"
                        .into(),
                ),
            ),
            (
                MockResponse::new(404).body("no_service"),
                PluginError::InvalidConfig(
                    "config.webhook_url: POST https://hooks.slack.com answered 404 Not Found: no_service (the \
                     webhook URL no longer exists: create a new incoming webhook)"
                        .into(),
                ),
            ),
            (
                MockResponse::new(404).body("channel_not_found"),
                PluginError::InvalidConfig(
                    "config.webhook_url: POST https://hooks.slack.com answered 404 Not Found: channel_not_found \
                     (the webhook URL no longer exists: create a new incoming webhook)"
                        .into(),
                ),
            ),
            (
                MockResponse::new(410).body("channel_is_archived"),
                PluginError::InvalidConfig(
                    "config.webhook_url: POST https://hooks.slack.com answered 410 Gone: channel_is_archived (the \
                     webhook's channel is archived)"
                        .into(),
                ),
            ),
            (
                MockResponse::new(429).header("Retry-After", "30").body("rate_limited"),
                PluginError::RateLimited(Some(30)),
            ),
            (MockResponse::new(429), PluginError::RateLimited(None)),
            (
                MockResponse::new(500).body("rollup_error"),
                PluginError::Transient(
                    "POST https://hooks.slack.com answered 500 Internal Server Error: rollup_error".into(),
                ),
            ),
            (
                MockResponse::new(503),
                PluginError::Transient("POST https://hooks.slack.com answered 503 Service Unavailable".into()),
            ),
            (
                MockResponse::connection_refused(),
                PluginError::Transient("POST https://hooks.slack.com: connection refused".into()),
            ),
            (
                MockResponse::timeout(),
                PluginError::Transient("POST https://hooks.slack.com: no complete answer within 10.0 s".into()),
            ),
        ];
        for (answer, expected) in cases {
            let mock = MockHttp::install();
            mock.expect(Method::Post, URL).respond(answer);
            let got = slack().notify(&expiring());
            assert_eq!(got, Err(expected));
            let message = got.expect_err("an error").to_string();
            assert!(!message.contains("XXXXSECRET"), "the URL's token leaked: {message}");
        }
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let mock = MockHttp::install();
        mock.expect(Method::Post, URL)
            .respond(MockResponse::new(400).body(format!("invalid_payload {}", "z".repeat(1000))));
        let Err(PluginError::Permanent(m)) = slack().notify(&expiring()) else {
            panic!("permanent expected");
        };
        assert!(m.starts_with("POST https://hooks.slack.com answered 400 Bad Request: invalid_payload zzz"));
        assert!(m.len() < 300 && m.ends_with("..."), "{m}");
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: Value| testkit::notifier::<Slack>(config.to_string()).validate_config();
        for good in [
            json!({"webhook_url": URL}),
            json!({"webhook_url": "http://127.0.0.1:8080/hook", "username": "certctl", "icon_emoji": ":lock:"}),
            json!({"webhook_url": "http://localhost/hook"}),
            json!({"webhook_url": "HTTP://LOCALHOST:9000"}),
            json!({"webhook_url": "http://[::1]:8080/hook"}),
        ] {
            assert_eq!(check(good.clone()), Ok(()), "{good}");
        }
        let cases = [
            (json!({}), "config.webhook_url: required"),
            (
                json!({"webhook_url": "http://hooks.slack.com/services/x"}),
                "config.webhook_url: must start with https://",
            ),
            (
                json!({"webhook_url": "http://localhost.evil.example/x"}),
                "config.webhook_url: must start with https://",
            ),
            (
                json!({"webhook_url": "http://127.0.0.2/x"}),
                "config.webhook_url: must start with https://",
            ),
            (
                json!({"webhook_url": "hooks.slack.com/services/x"}),
                "config.webhook_url: must start with https://",
            ),
            (
                json!({"webhook_url": "https:///services/x"}),
                "config.webhook_url: has no host",
            ),
            (
                json!({"webhook_url": "https://u:p@hooks.slack.com/x"}),
                "config.webhook_url: the host part",
            ),
            (
                json!({"webhook_url": URL, "username": " "}),
                "config.username: must be one non-empty line",
            ),
            (
                json!({"webhook_url": URL, "icon_emoji": "lock"}),
                "config.icon_emoji: must be an emoji name",
            ),
            (
                json!({"webhook_url": URL, "icon_emoji": "::"}),
                "config.icon_emoji: must be an emoji name",
            ),
            (
                json!({"webhook_url": URL, "channel": "#ops"}),
                "config.channel: unknown key",
            ),
        ];
        for (config, expected) in cases {
            let message = testkit::assert_invalid_config(check(config), expected);
            assert!(!message.contains("services"), "the URL leaked: {message}");
        }
        // The same checks run before every delivery, so nothing is sent with a bad configuration.
        let _mock = MockHttp::install();
        let bad = testkit::notifier::<Slack>(json!({"webhook_url": "http://hooks.slack.com/x"}).to_string());
        assert!(matches!(bad.notify(&expiring()), Err(PluginError::InvalidConfig(_))));
    }
}
