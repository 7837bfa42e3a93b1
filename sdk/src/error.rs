//! [`PluginError`]: what a plugin reports when a call fails.

use std::fmt;

use crate::bindings::base::certctl::plugin::types as wit;

/// What went wrong, typed so the host can decide what to do next: retry with backoff, wait, or
/// stop and alert. The string in each case is a message for operators: say what failed and what
/// to check, and never include a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The instance configuration is wrong (missing key, bad value); name the key, as in
    /// `config.url: required`. Not retried: the instance is marked failing until its
    /// configuration changes.
    InvalidConfig(String),
    /// The provider refused the credentials. Not retried until the configuration changes.
    Auth(String),
    /// Something named does not exist at the provider (zone, record, order, account).
    NotFound(String),
    /// The provider asks to slow down: seconds to wait, if it said. The host waits at least
    /// that long (or its own backoff) before the next attempt.
    RateLimited(Option<u32>),
    /// A temporary failure (network, timeout, 5xx). Retried with exponential backoff.
    Transient(String),
    /// Will not succeed if retried (e.g. the provider rejected the request as invalid).
    Permanent(String),
}

impl PluginError {
    /// [`PluginError::InvalidConfig`]. Start the message with the key: `config.url: ...`.
    pub fn invalid_config(message: impl Into<String>) -> PluginError {
        PluginError::InvalidConfig(message.into())
    }

    /// [`PluginError::Auth`].
    pub fn auth(message: impl Into<String>) -> PluginError {
        PluginError::Auth(message.into())
    }

    /// [`PluginError::NotFound`].
    pub fn not_found(message: impl Into<String>) -> PluginError {
        PluginError::NotFound(message.into())
    }

    /// [`PluginError::RateLimited`], with the seconds to wait if the provider said.
    pub fn rate_limited(retry_after_seconds: Option<u32>) -> PluginError {
        PluginError::RateLimited(retry_after_seconds)
    }

    /// [`PluginError::Transient`].
    pub fn transient(message: impl Into<String>) -> PluginError {
        PluginError::Transient(message.into())
    }

    /// [`PluginError::Permanent`].
    pub fn permanent(message: impl Into<String>) -> PluginError {
        PluginError::Permanent(message.into())
    }

    /// The message for operators, without the prefix that `Display` puts before it
    /// (`authentication failed: `): for wording a more precise error around one from
    /// [`http::status_error`](crate::http::status_error). [`PluginError::RateLimited`] carries
    /// none, and gives `Display`'s text.
    ///
    /// ```
    /// use certctl_sdk::PluginError;
    ///
    /// let error = PluginError::auth("GET https://api.example.com answered 401 Unauthorized");
    /// assert_eq!(
    ///     PluginError::auth(format!("{} (check config.api_token)", error.message())),
    ///     PluginError::auth("GET https://api.example.com answered 401 Unauthorized (check config.api_token)")
    /// );
    /// ```
    pub fn message(&self) -> String {
        match self {
            PluginError::InvalidConfig(m)
            | PluginError::Auth(m)
            | PluginError::NotFound(m)
            | PluginError::Transient(m)
            | PluginError::Permanent(m) => m.clone(),
            PluginError::RateLimited(_) => self.to_string(),
        }
    }

    /// Whether the host retries this error (`Transient` and `RateLimited`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, PluginError::Transient(_) | PluginError::RateLimited(_))
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            PluginError::Auth(m) => write!(f, "authentication failed: {m}"),
            PluginError::NotFound(m) => write!(f, "not found: {m}"),
            PluginError::RateLimited(Some(s)) => write!(f, "rate limited: retry after {s}s"),
            PluginError::RateLimited(None) => write!(f, "rate limited"),
            PluginError::Transient(m) => write!(f, "temporary failure: {m}"),
            PluginError::Permanent(m) => write!(f, "failed: {m}"),
        }
    }
}

impl std::error::Error for PluginError {}

impl From<PluginError> for wit::PluginError {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::InvalidConfig(m) => wit::PluginError::InvalidConfig(m),
            PluginError::Auth(m) => wit::PluginError::Auth(m),
            PluginError::NotFound(m) => wit::PluginError::NotFound(m),
            PluginError::RateLimited(s) => wit::PluginError::RateLimited(s),
            PluginError::Transient(m) => wit::PluginError::Transient(m),
            PluginError::Permanent(m) => wit::PluginError::Permanent(m),
        }
    }
}

impl From<wit::PluginError> for PluginError {
    fn from(e: wit::PluginError) -> Self {
        match e {
            wit::PluginError::InvalidConfig(m) => PluginError::InvalidConfig(m),
            wit::PluginError::Auth(m) => PluginError::Auth(m),
            wit::PluginError::NotFound(m) => PluginError::NotFound(m),
            wit::PluginError::RateLimited(s) => PluginError::RateLimited(s),
            wit::PluginError::Transient(m) => PluginError::Transient(m),
            wit::PluginError::Permanent(m) => PluginError::Permanent(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways_without_loss() {
        let all = [
            PluginError::invalid_config("config.url: required"),
            PluginError::auth("a"),
            PluginError::not_found("n"),
            PluginError::rate_limited(Some(7)),
            PluginError::rate_limited(None),
            PluginError::transient("t"),
            PluginError::permanent("p"),
        ];
        for e in all {
            let back: PluginError = wit::PluginError::from(e.clone()).into();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn messages_come_without_the_kinds_prefix() {
        assert_eq!(
            PluginError::invalid_config("config.url: required").message(),
            "config.url: required"
        );
        assert_eq!(PluginError::auth("a").message(), "a");
        assert_eq!(PluginError::not_found("n").message(), "n");
        assert_eq!(PluginError::transient("t").message(), "t");
        assert_eq!(PluginError::permanent("p").message(), "p");
        assert_eq!(
            PluginError::rate_limited(Some(7)).message(),
            "rate limited: retry after 7s"
        );
        assert_eq!(PluginError::rate_limited(None).message(), "rate limited");
    }

    #[test]
    fn only_transient_and_rate_limited_are_retried() {
        assert!(PluginError::transient("x").is_retryable());
        assert!(PluginError::rate_limited(None).is_retryable());
        assert!(!PluginError::auth("x").is_retryable());
        assert!(!PluginError::permanent("x").is_retryable());
    }
}
