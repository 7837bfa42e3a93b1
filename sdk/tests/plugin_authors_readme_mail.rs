//! The Rust example of "Sending e-mail" in docs/plugin-authors/README.md, verbatim: a notifier
//! that mails events, and its tests. `readme_shows_this_code` in plugin_authors_readme.rs checks
//! that the page still shows exactly this code; change both together.

#![cfg(feature = "notifier")]

use certctl_sdk::mail::{self, MailMessage};
use certctl_sdk::{Event, Notifier, PluginError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    to: Vec<String>,
}

struct MyMail;

impl Notifier for MyMail {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        match config.to.iter().find(|a| !mail::is_address(a)) {
            Some(bad) => Err(PluginError::invalid_config(format!(
                "config.to: {bad:?} is not an address"
            ))),
            None => Ok(()),
        }
    }

    fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {
        mail::send(&MailMessage {
            to: config.to.clone(),
            subject: format!("[certctl] {}", event.summary.replace(['\r', '\n'], " ")), // one line
            text_body: format!("{}\n\nsubject: {}\n", event.summary, event.subject),
            html_body: None, // or Some(html), with every interpolated value escaped
        }) // the host's errors, passed on as they are
    }
}

certctl_sdk::register_notifier!(MyMail);

#[cfg(test)]
mod tests {
    use certctl_sdk::testkit::{self, MockMail};

    use super::*;

    #[test]
    fn mails_the_event_and_passes_refusals_on() {
        let outbox = MockMail::install();
        let mailer = testkit::notifier::<MyMail>(r#"{"to": ["ops@example.com"]}"#);
        assert_eq!(mailer.notify(&testkit::test_event()), Ok(()));
        assert_eq!(
            outbox.sent()[0].subject,
            "[certctl] certctl test notification for example"
        );

        outbox.fail_next(PluginError::transient("the relay answered 421 to DATA: busy"));
        assert!(mailer.notify(&testkit::test_event()).is_err_and(|e| e.is_retryable()));
    }
}
