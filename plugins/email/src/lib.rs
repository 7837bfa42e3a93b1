//! A certctl notifier that e-mails each event through the SMTP relay the operator configured on
//! the server (`host-mail`): a one-line subject, a text body and an HTML alternative. The host
//! owns the relay, its credentials, TLS and the sender address. See README.md.

use std::fmt::Write as _;

use certctl_sdk::mail::{self, MAX_RECIPIENTS, MailMessage};
use certctl_sdk::text::truncate;
use certctl_sdk::time::rfc3339;
use certctl_sdk::{Event, Notifier, PluginError, Severity, log};
use serde::Deserialize;

/// Default for `subject_prefix`.
const DEFAULT_SUBJECT_PREFIX: &str = "[certctl]";
/// The longest `subject_prefix`, in characters.
const MAX_PREFIX: usize = 50;
/// The summary is cut to this many characters in the subject (the body has all of it).
const MAX_SUBJECT_SUMMARY: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Recipients: plain addresses, 1 to 50.
    to: Vec<String>,
    /// Put before the severity in the subject; empty for none.
    #[serde(default)]
    subject_prefix: Option<String>,
}

struct Email;

impl Notifier for Email {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        if config.to.is_empty() || config.to.len() > MAX_RECIPIENTS {
            return Err(PluginError::invalid_config(format!(
                "config.to: needs 1 to {MAX_RECIPIENTS} addresses, has {}",
                config.to.len()
            )));
        }
        for (i, address) in config.to.iter().enumerate() {
            if !mail::is_address(address) {
                return Err(PluginError::invalid_config(format!(
                    "config.to[{i}]: {address:?} is not a plain e-mail address like ops@example.com"
                )));
            }
            if config.to[..i]
                .iter()
                .any(|earlier| earlier.eq_ignore_ascii_case(address))
            {
                return Err(PluginError::invalid_config(format!(
                    "config.to[{i}]: {address:?} is listed twice"
                )));
            }
        }
        if let Some(prefix) = &config.subject_prefix
            && (prefix.chars().any(char::is_control) || prefix.chars().count() > MAX_PREFIX)
        {
            return Err(PluginError::invalid_config(format!(
                "config.subject_prefix: must be one line of at most {MAX_PREFIX} characters"
            )));
        }
        Ok(())
    }

    fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {
        mail::send(&compose(config, event))?;
        log::debug(format!(
            "mailed {} event for {} to {} recipient(s)",
            event.kind,
            event.subject,
            config.to.len()
        ));
        Ok(())
    }
}

certctl_sdk::register_notifier!(Email);

/// The message for `event`: subject `<prefix> <severity>: <summary>`, a text body, and the same
/// as HTML.
fn compose(config: &Config, event: &Event) -> MailMessage {
    let prefix = config
        .subject_prefix
        .as_deref()
        .unwrap_or(DEFAULT_SUBJECT_PREFIX)
        .trim();
    let summary = truncate(&one_line(&event.summary), MAX_SUBJECT_SUMMARY);
    let subject = if prefix.is_empty() {
        format!("{}: {summary}", event.severity)
    } else {
        format!("{prefix} {}: {summary}", event.severity)
    };
    MailMessage {
        to: config.to.clone(),
        subject,
        text_body: text_body(event),
        html_body: Some(html_body(event)),
    }
}

/// The facts every message shows, in order.
fn facts(event: &Event) -> [(&'static str, String); 5] {
    [
        ("Subject", event.subject.clone()),
        ("Kind", event.kind.clone()),
        ("Severity", event.severity.to_string()),
        ("Time", rfc3339(event.occurred_at)),
        ("Dedup key", event.dedup_key.clone()),
    ]
}

fn text_body(event: &Event) -> String {
    let mut body = format!("{}\n\n", event.summary);
    for (name, value) in facts(event) {
        let _ = writeln!(body, "{:<11}{value}", format!("{name}:"));
    }
    if !event.detail.is_empty() {
        body.push_str("\nDetails:\n");
        for (key, value) in &event.detail {
            let _ = writeln!(body, "  {key}: {}", value.replace('\n', "\n    "));
        }
    }
    body.push_str("\n-- \nSent by certctl.\n");
    body
}

fn html_body(event: &Event) -> String {
    let mut html = String::from("<!DOCTYPE html>\n<html>\n<body style=\"font-family: sans-serif\">\n");
    let _ = writeln!(
        html,
        "<h2 style=\"color: {}\">{}</h2>",
        colour(event.severity),
        escape(&event.summary)
    );
    html.push_str("<table>\n");
    for (name, value) in facts(event) {
        let _ = writeln!(
            html,
            "<tr><th align=\"left\">{name}</th><td>{}</td></tr>",
            escape(&value)
        );
    }
    html.push_str("</table>\n");
    if !event.detail.is_empty() {
        html.push_str("<h3>Details</h3>\n<table>\n");
        for (key, value) in &event.detail {
            let _ = writeln!(
                html,
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape(key),
                escape(value)
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("<p style=\"color: #666666; font-size: small\">Sent by certctl.</p>\n</body>\n</html>\n");
    html
}

fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "#2e7d32",
        Severity::Warning => "#b26a00",
        Severity::Critical => "#c62828",
    }
}

/// `text` safe in HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Line breaks and other control characters as spaces: the host refuses a multi-line subject.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use certctl_sdk::testkit::{self, MockMail};
    use serde_json::{Value, json};

    use super::*;

    fn email(config: Value) -> testkit::NotifierHost<Email> {
        testkit::notifier::<Email>(config.to_string())
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
    fn mails_a_text_and_an_html_body() {
        let outbox = MockMail::install();
        let config = json!({"to": ["ops@example.com", "oncall@example.org"]});
        assert_eq!(email(config).notify(&expiring()), Ok(()));

        let sent = outbox.sent();
        assert_eq!(sent.len(), 1);
        let message = &sent[0];
        assert_eq!(message.to, ["ops@example.com", "oncall@example.org"]);
        assert_eq!(message.subject, "[certctl] warning: certificate web expires in 7 days");
        assert_eq!(
            message.text_body,
            "certificate web expires in 7 days\n\
             \n\
             Subject:   web\n\
             Kind:      expiring\n\
             Severity:  warning\n\
             Time:      2027-01-15T08:00:00Z\n\
             Dedup key: certctl:certificate:42\n\
             \n\
             Details:\n  \
             days_left: 7\n  \
             names: www.example.com, example.com\n\
             \n\
             -- \n\
             Sent by certctl.\n"
        );
        assert_eq!(
            message.html_body.as_deref(),
            Some(
                "<!DOCTYPE html>\n\
                 <html>\n\
                 <body style=\"font-family: sans-serif\">\n\
                 <h2 style=\"color: #b26a00\">certificate web expires in 7 days</h2>\n\
                 <table>\n\
                 <tr><th align=\"left\">Subject</th><td>web</td></tr>\n\
                 <tr><th align=\"left\">Kind</th><td>expiring</td></tr>\n\
                 <tr><th align=\"left\">Severity</th><td>warning</td></tr>\n\
                 <tr><th align=\"left\">Time</th><td>2027-01-15T08:00:00Z</td></tr>\n\
                 <tr><th align=\"left\">Dedup key</th><td>certctl:certificate:42</td></tr>\n\
                 </table>\n\
                 <h3>Details</h3>\n\
                 <table>\n\
                 <tr><th align=\"left\">days_left</th><td>7</td></tr>\n\
                 <tr><th align=\"left\">names</th><td>www.example.com, example.com</td></tr>\n\
                 </table>\n\
                 <p style=\"color: #666666; font-size: small\">Sent by certctl.</p>\n\
                 </body>\n\
                 </html>\n"
            )
        );
        assert_eq!(
            testkit::logs()[0].message,
            "mailed expiring event for web to 2 recipient(s)"
        );
    }

    #[test]
    fn the_html_is_escaped_and_the_subject_one_line() {
        let outbox = MockMail::install();
        let event = Event {
            summary: "<script>alert('x')</script> & \"more\"\r\nBcc: victim@example.com".into(),
            subject: "<b>web</b>".into(),
            detail: vec![("<k>".into(), "a & b\nc".into())],
            severity: Severity::Critical,
            ..expiring()
        };
        assert_eq!(email(json!({"to": ["ops@example.com"]})).notify(&event), Ok(()));

        let message = &outbox.sent()[0];
        assert_eq!(
            message.subject,
            "[certctl] critical: <script>alert('x')</script> & \"more\"  Bcc: victim@example.com"
        );
        let html = message.html_body.as_deref().expect("an HTML body");
        assert!(html.contains(
            "<h2 style=\"color: #c62828\">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;\r\n"
        ));
        assert!(html.contains("<td>&lt;b&gt;web&lt;/b&gt;</td>"));
        assert!(html.contains("<tr><th align=\"left\">&lt;k&gt;</th><td>a &amp; b\nc</td></tr>"));
        assert!(!html.contains("<script>") && !html.contains("<b>"));
        assert!(
            message.text_body.contains("  <k>: a & b\n    c\n"),
            "{}",
            message.text_body
        );
    }

    #[test]
    fn prefixes_and_long_summaries() {
        let outbox = MockMail::install();
        let long = Event {
            summary: "s".repeat(500),
            ..expiring()
        };
        email(json!({"to": ["ops@example.com"], "subject_prefix": "[prod PKI]"}))
            .notify(&testkit::test_event())
            .expect("sent");
        email(json!({"to": ["ops@example.com"], "subject_prefix": ""}))
            .notify(&testkit::test_event())
            .expect("sent");
        email(json!({"to": ["ops@example.com"]})).notify(&long).expect("sent");

        let sent = outbox.sent();
        assert_eq!(
            sent[0].subject,
            "[prod PKI] info: certctl test notification for example"
        );
        assert_eq!(sent[1].subject, "info: certctl test notification for example");
        assert!(sent[0].text_body.contains("\nDetails:\n  requested_by: admin\n"));
        let summary = sent[2].subject.strip_prefix("[certctl] warning: ").expect("prefix");
        assert_eq!(summary.chars().count(), MAX_SUBJECT_SUMMARY);
        assert!(summary.ends_with('…'));
        assert!(
            sent[2].text_body.starts_with(&"s".repeat(500)),
            "the body has the whole summary"
        );
    }

    #[test]
    fn the_hosts_errors_pass_through_unchanged() {
        let errors = [
            PluginError::invalid_config("this server has no SMTP relay: set CERTCTL_SMTP_HOST and CERTCTL_SMTP_FROM"),
            PluginError::auth("the relay answered 535 to AUTH: 5.7.8 authentication failed"),
            PluginError::transient("SMTP connect to smtp.example.com:587: connection refused"),
            PluginError::transient("the relay answered 451 to DATA: try again later"),
            PluginError::permanent("the relay answered 550 to RCPT TO: mailbox unavailable"),
        ];
        let outbox = MockMail::install();
        let email = email(json!({"to": ["ops@example.com"]}));
        for error in errors {
            outbox.fail_next(error.clone());
            assert_eq!(email.notify(&expiring()), Err(error));
        }
        assert!(outbox.sent().is_empty());
        assert!(testkit::logs().is_empty(), "nothing claims a delivery");
    }

    #[test]
    fn config_is_checked_by_key() {
        let check = |config: Value| testkit::notifier::<Email>(config.to_string()).validate_config();
        let fifty: Vec<String> = (0..50).map(|i| format!("ops{i}@example.com")).collect();
        for good in [
            json!({"to": ["ops@example.com"]}),
            json!({"to": fifty, "subject_prefix": ""}),
            json!({"to": ["a@example.com", "b@example.com"], "subject_prefix": "[PKI]"}),
        ] {
            assert_eq!(check(good.clone()), Ok(()), "{good}");
        }
        let mut fifty_one = fifty.clone();
        fifty_one.push("ops50@example.com".into());
        let cases = [
            (json!({}), "config.to: required"),
            (json!({"to": []}), "config.to: needs 1 to 50 addresses, has 0"),
            (json!({"to": fifty_one}), "config.to: needs 1 to 50 addresses, has 51"),
            (json!({"to": "ops@example.com"}), "config.to: invalid type: string"),
            (
                json!({"to": ["ops@example.com", "Ops <ops@example.com>"]}),
                "config.to[1]: \"Ops <ops@example.com>\" is not a plain e-mail address",
            ),
            (
                json!({"to": ["ops@localhost"]}),
                "config.to[0]: \"ops@localhost\" is not a plain",
            ),
            (
                json!({"to": ["ops@example.com", "OPS@example.com"]}),
                "config.to[1]: \"OPS@example.com\" is listed twice",
            ),
            (
                json!({"to": ["ops@example.com"], "subject_prefix": "a\nb"}),
                "config.subject_prefix: must be one line",
            ),
            (
                json!({"to": ["ops@example.com"], "subject_prefix": "x".repeat(51)}),
                "config.subject_prefix: must be one line of at most 50 characters",
            ),
            (
                json!({"to": ["ops@example.com"], "from": "me@example.com"}),
                "config.from: unknown key",
            ),
        ];
        for (config, expected) in cases {
            testkit::assert_invalid_config(check(config), expected);
        }
        // The same checks run before every delivery, so nothing is sent with a bad configuration.
        let outbox = MockMail::install();
        assert!(matches!(
            email(json!({"to": ["nobody"]})).notify(&expiring()),
            Err(PluginError::InvalidConfig(_))
        ));
        assert!(outbox.sent().is_empty());
    }
}
