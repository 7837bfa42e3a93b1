//! Notifier plugins: deliver events to a channel (webhook, chat, pager, e-mail).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::bindings::base::certctl::plugin::types as wit;
use crate::bindings::notifier::exports::certctl::plugin::notifier::Guest;
use crate::{Event, PluginError};

/// A notifier. Implement it on a unit struct and register it with
/// [`register_notifier!`](crate::register_notifier).
///
/// Calls are stateless: the host creates a fresh instance for every call and passes the
/// configuration each time, so there is no `self`.
pub trait Notifier {
    /// The instance configuration. Derive `serde::Deserialize`, and add
    /// `#[serde(deny_unknown_fields)]` so a misspelled key is an error rather than ignored.
    type Config: DeserializeOwned;

    /// Checks a configuration without side effects, when an operator creates or changes an
    /// instance. The default parses it into [`Self::Config`] (errors name the key, see
    /// [`config`](crate::config())) and then runs [`Self::check_config`]. Override it only to
    /// check more than the parsed value can tell; never send anything from here.
    fn validate_config(config: &str) -> Result<(), PluginError> {
        let parsed = crate::config::<Self::Config>(config)?;
        Self::check_config(&parsed)
    }

    /// Checks serde cannot express (a URL's scheme, a value's range), as
    /// [`PluginError::InvalidConfig`] naming the key. Runs in the default
    /// [`Self::validate_config`] and before every call. The default accepts everything.
    fn check_config(config: &Self::Config) -> Result<(), PluginError> {
        let _ = config;
        Ok(())
    }

    /// Delivers one event. Return [`PluginError::Transient`] or [`PluginError::RateLimited`]
    /// to have the host retry with backoff (it deduplicates by [`Event::dedup_key`]); any
    /// other error dead-letters the delivery.
    fn notify(config: &Self::Config, event: &Event) -> Result<(), PluginError>;
}

/// Connects a [`Notifier`] to the generated export glue. Used by [`register_notifier!`](crate::register_notifier).
#[doc(hidden)]
pub struct NotifierExport<T>(PhantomData<T>);

impl<T: Notifier> Guest for NotifierExport<T> {
    fn validate_config(config: String) -> Result<(), wit::PluginError> {
        T::validate_config(&config).map_err(Into::into)
    }

    fn notify(config: String, event: wit::Event) -> Result<(), wit::PluginError> {
        let config = crate::config::<T::Config>(&config)?;
        T::check_config(&config)?;
        T::notify(&config, &event.into()).map_err(Into::into)
    }
}

/// Exports a [`Notifier`] as this component's `certctl:plugin/notifier`. Call it once, at the
/// crate root of a `cdylib` crate that enables the SDK's `notifier` feature.
///
/// ```no_run
/// # #[cfg(feature = "notifier")]
/// # mod example {
/// use certctl_sdk::{Event, Notifier, PluginError, http};
///
/// #[derive(serde::Deserialize)]
/// struct Config {
///     url: String,
/// }
///
/// struct Pager;
///
/// impl Notifier for Pager {
///     type Config = Config;
///
///     fn notify(config: &Config, event: &Event) -> Result<(), PluginError> {
///         http::post(&config.url).json(event)?.send()?.error_for_status()?;
///         Ok(())
///     }
/// }
///
/// certctl_sdk::register_notifier!(Pager);
/// # }
/// ```
#[macro_export]
macro_rules! register_notifier {
    ($plugin:ty) => {
        const _: () = {
            type CertctlNotifierExport = $crate::__private::NotifierExport<$plugin>;
            $crate::__private::export_notifier!(
                CertctlNotifierExport with_types_in $crate::__private::notifier_bindings
            );
        };
    };
}

#[cfg(not(target_arch = "wasm32"))]
const OUTSIDE_HOST: &str = "sending e-mail needs a certctl host: not running as a WebAssembly component \
                            (in native tests, install certctl_sdk::testkit::MockMail)";

/// E-mail through the SMTP relay the operator configured on the server (`CERTCTL_SMTP_*`).
///
/// The plugin composes the message; the host owns the relay: its address, TLS, the credentials
/// and the sender (`From`) address. A plugin that sends mail declares it in its manifest, and
/// needs no outbound host for it:
///
/// ```toml
/// [capabilities]
/// mail = true
/// ```
///
/// The host refuses to load a component that imports `host-mail` without it.
///
/// ```no_run
/// # #[cfg(feature = "notifier")]
/// # mod example {
/// use certctl_sdk::mail::{self, MailMessage};
/// use certctl_sdk::{Event, PluginError};
///
/// fn mail_event(to: &[String], event: &Event) -> Result<(), PluginError> {
///     mail::send(&MailMessage {
///         to: to.to_vec(),
///         subject: format!("[certctl] {}", event.summary.replace(['\r', '\n'], " ")),
///         text_body: format!("{}\n\nsubject: {}\n", event.summary, event.subject),
///         html_body: None,
///     })
/// }
/// # }
/// ```
///
/// Natively (unit tests), messages go to a `certctl_sdk::testkit::MockMail` installed on the
/// thread, which checks them as the host does; without one, [`send`](mail::send) fails.
pub mod mail {
    use crate::PluginError;

    /// The most recipients one message may have.
    pub const MAX_RECIPIENTS: usize = 50;

    /// One e-mail message, as the plugin composes it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct MailMessage {
        /// Recipients: plain addresses (`ops@example.com`, no display names, see
        /// [`is_address`]), 1 to [`MAX_RECIPIENTS`].
        pub to: Vec<String>,
        /// One line, without line breaks; the host encodes it (RFC 2047) when it is not ASCII.
        pub subject: String,
        /// The `text/plain` body, UTF-8.
        pub text_body: String,
        /// An optional `text/html` alternative. Escape what goes into it: event text comes from
        /// certificate names, agents and operators.
        pub html_body: Option<String>,
    }

    /// Sends one message and returns when the relay accepted it. The errors are the host's, to
    /// be returned as they are:
    ///
    /// - [`PluginError::InvalidConfig`]: the server has no SMTP relay configured, a recipient is
    ///   not an address, or there are none or more than [`MAX_RECIPIENTS`];
    /// - [`PluginError::Auth`]: the relay refused the server's credentials;
    /// - [`PluginError::Transient`]: a connection or TLS failure, or a 4xx reply (retried);
    /// - [`PluginError::Permanent`]: a 5xx reply, or a subject with a line break.
    pub fn send(message: &MailMessage) -> Result<(), PluginError> {
        #[cfg(target_arch = "wasm32")]
        {
            use crate::bindings::notifier::certctl::plugin::host_mail;
            let message = host_mail::MailMessage {
                to: message.to.clone(),
                subject: message.subject.clone(),
                text_body: message.text_body.clone(),
                html_body: message.html_body.clone(),
            };
            host_mail::send(&message).map_err(Into::into)
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::testkit::mail_send(message).unwrap_or_else(|| Err(PluginError::permanent(super::OUTSIDE_HOST)))
    }

    /// Whether the host accepts `address` as a recipient: a plain address with one `@`, a
    /// local part of 1 to 64 bytes, a domain of up to 253 bytes with a dot in it, and no spaces,
    /// control characters, `<`, `>`, `,`, `;` or `"`. Check configured recipients with it, so
    /// that a typo is reported when the instance is created rather than at the first event.
    pub fn is_address(address: &str) -> bool {
        let Some((local, domain)) = address.split_once('@') else {
            return false;
        };
        !local.is_empty()
            && local.len() <= 64
            && !domain.is_empty()
            && domain.len() <= 253
            && domain.contains('.')
            && !domain.contains('@')
            && address
                .chars()
                .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>' | ',' | ';' | '"'))
    }
}
