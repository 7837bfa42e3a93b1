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
