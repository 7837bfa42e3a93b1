//! Calling a plugin the way the host does: through the same export glue
//! [`register_dns_solver!`](crate::register_dns_solver) and its siblings generate, with the
//! configuration as a JSON string.

use std::fmt;
use std::marker::PhantomData;

use crate::PluginError;

/// Calls to a [`DnsSolver`](crate::DnsSolver) `T` with one configuration, made exactly as the
/// host makes them: `validate_config` with the raw JSON; `present` and `cleanup` parse the
/// configuration and run `check_config` before every call, as the export glue does. Made by
/// [`dns_solver`].
#[cfg(feature = "dns-solver")]
pub struct DnsSolverHost<T> {
    config: String,
    plugin: PhantomData<T>,
}

/// A DNS solver `T` with the configuration `config` (JSON, secrets resolved), ready to be
/// called as the host calls it.
///
/// ```
/// # #[cfg(feature = "dns-solver")] {
/// use certctl_sdk::{DnsRecord, DnsSolver, PluginError, testkit};
///
/// #[derive(serde::Deserialize)]
/// struct Config {
///     zone_id: u32,
/// }
///
/// struct Nothing;
///
/// impl DnsSolver for Nothing {
///     type Config = Config;
///
///     fn check_config(config: &Config) -> Result<(), PluginError> {
///         match config.zone_id {
///             0 => Err(PluginError::invalid_config("config.zone_id: must not be 0")),
///             _ => Ok(()),
///         }
///     }
///
///     fn present(_: &Config, _: &DnsRecord) -> Result<(), PluginError> {
///         Ok(())
///     }
///
///     fn cleanup(_: &Config, _: &DnsRecord) -> Result<(), PluginError> {
///         Ok(())
///     }
/// }
///
/// let record = testkit::dns_record("example.com", "_acme-challenge.example.com", "token");
/// assert_eq!(testkit::dns_solver::<Nothing>(r#"{"zone_id": 7}"#).present(&record), Ok(()));
/// // check_config runs before every call, not only in validate_config:
/// assert_eq!(
///     testkit::dns_solver::<Nothing>(r#"{"zone_id": 0}"#).present(&record),
///     Err(PluginError::InvalidConfig("config.zone_id: must not be 0".into()))
/// );
/// # }
/// ```
#[cfg(feature = "dns-solver")]
pub fn dns_solver<T: crate::DnsSolver>(config: impl Into<String>) -> DnsSolverHost<T> {
    DnsSolverHost {
        config: config.into(),
        plugin: PhantomData,
    }
}

#[cfg(feature = "dns-solver")]
impl<T: crate::DnsSolver> DnsSolverHost<T> {
    /// The configuration passed to every call.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// `validate-config`, as when an operator creates or changes an instance.
    pub fn validate_config(&self) -> Result<(), PluginError> {
        use crate::bindings::dns_solver::exports::certctl::plugin::dns_solver::Guest;
        <crate::dns_solver::DnsSolverExport<T> as Guest>::validate_config(self.config.clone()).map_err(Into::into)
    }

    /// `present`.
    pub fn present(&self, record: &crate::DnsRecord) -> Result<(), PluginError> {
        use crate::bindings::dns_solver::exports::certctl::plugin::dns_solver::Guest;
        <crate::dns_solver::DnsSolverExport<T> as Guest>::present(self.config.clone(), record.clone().into())
            .map_err(Into::into)
    }

    /// `cleanup`.
    pub fn cleanup(&self, record: &crate::DnsRecord) -> Result<(), PluginError> {
        use crate::bindings::dns_solver::exports::certctl::plugin::dns_solver::Guest;
        <crate::dns_solver::DnsSolverExport<T> as Guest>::cleanup(self.config.clone(), record.clone().into())
            .map_err(Into::into)
    }
}

#[cfg(feature = "dns-solver")]
impl<T> fmt::Debug for DnsSolverHost<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsSolverHost")
            .field("plugin", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

/// A TXT record for a DNS-01 challenge, as the host passes it: `fqdn` in `zone`, TTL 60.
#[cfg(feature = "dns-solver")]
pub fn dns_record(zone: &str, fqdn: &str, value: &str) -> crate::DnsRecord {
    crate::DnsRecord {
        zone: zone.to_string(),
        fqdn: fqdn.to_string(),
        value: value.to_string(),
        ttl: 60,
    }
}

/// Calls to a [`Notifier`](crate::Notifier) `T` with one configuration, made exactly as the
/// host makes them: `validate_config` with the raw JSON; `notify` parses the configuration and
/// runs `check_config` first, as the export glue does. Made by [`notifier`].
#[cfg(feature = "notifier")]
pub struct NotifierHost<T> {
    config: String,
    plugin: PhantomData<T>,
}

/// A notifier `T` with the configuration `config` (JSON, secrets resolved), ready to be called
/// as the host calls it.
#[cfg(feature = "notifier")]
pub fn notifier<T: crate::Notifier>(config: impl Into<String>) -> NotifierHost<T> {
    NotifierHost {
        config: config.into(),
        plugin: PhantomData,
    }
}

#[cfg(feature = "notifier")]
impl<T: crate::Notifier> NotifierHost<T> {
    /// The configuration passed to every call.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// `validate-config`, as when an operator creates or changes an instance.
    pub fn validate_config(&self) -> Result<(), PluginError> {
        use crate::bindings::notifier::exports::certctl::plugin::notifier::Guest;
        <crate::notifier::NotifierExport<T> as Guest>::validate_config(self.config.clone()).map_err(Into::into)
    }

    /// `notify`.
    pub fn notify(&self, event: &crate::Event) -> Result<(), PluginError> {
        use crate::bindings::notifier::exports::certctl::plugin::notifier::Guest;
        <crate::notifier::NotifierExport<T> as Guest>::notify(self.config.clone(), event.clone().into())
            .map_err(Into::into)
    }
}

#[cfg(feature = "notifier")]
impl<T> fmt::Debug for NotifierHost<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifierHost")
            .field("plugin", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

/// An event shaped like the one `POST /api/v1/notifiers/{id}/test` sends (kind `test`,
/// severity info), for an instance named `example`, at a fixed time.
#[cfg(feature = "notifier")]
pub fn test_event() -> crate::Event {
    crate::Event {
        kind: "test".into(),
        severity: crate::Severity::Info,
        summary: "certctl test notification for example".into(),
        subject: "example".into(),
        dedup_key: "test-example".into(),
        occurred_at: 1_800_000_000,
        detail: vec![("requested_by".into(), "admin".into())],
    }
}

/// Calls to an [`Issuer`](crate::Issuer) `T` with one configuration, made exactly as the host
/// makes them: `validate_config` with the raw JSON; `begin`, `resume` and `revoke` parse the
/// configuration and run `check_config` first, as the export glue does. Made by [`issuer`].
#[cfg(feature = "issuer")]
pub struct IssuerHost<T> {
    config: String,
    plugin: PhantomData<T>,
}

/// An issuer `T` with the configuration `config` (JSON, secrets resolved), ready to be called
/// as the host calls it. Install a [`MockKv`](super::MockKv) first if it uses
/// [`kv`](crate::kv).
#[cfg(feature = "issuer")]
pub fn issuer<T: crate::Issuer>(config: impl Into<String>) -> IssuerHost<T> {
    IssuerHost {
        config: config.into(),
        plugin: PhantomData,
    }
}

#[cfg(feature = "issuer")]
impl<T: crate::Issuer> IssuerHost<T> {
    /// The configuration passed to every call.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// `validate-config`, as when an operator creates or changes an instance.
    pub fn validate_config(&self) -> Result<(), PluginError> {
        use crate::bindings::issuer::exports::certctl::plugin::issuer::Guest;
        <crate::issuer::IssuerExport<T> as Guest>::validate_config(self.config.clone()).map_err(Into::into)
    }

    /// `check-request`, as when the host receives a CSR.
    pub fn check_request(&self, request: &crate::IssueRequest) -> Result<(), PluginError> {
        use crate::bindings::issuer::exports::certctl::plugin::issuer::Guest;
        <crate::issuer::IssuerExport<T> as Guest>::check_request(self.config.clone(), request.clone().into())
            .map_err(Into::into)
    }

    /// `begin`.
    pub fn begin(&self, request: &crate::IssueRequest) -> Result<crate::Progress, PluginError> {
        use crate::bindings::issuer::exports::certctl::plugin::issuer::Guest;
        <crate::issuer::IssuerExport<T> as Guest>::begin(self.config.clone(), request.clone().into())
            .map(Into::into)
            .map_err(Into::into)
    }

    /// `resume`, with the `state` of a [`Progress::Pending`](crate::Progress::Pending).
    pub fn resume(&self, state: &[u8]) -> Result<crate::Progress, PluginError> {
        use crate::bindings::issuer::exports::certctl::plugin::issuer::Guest;
        <crate::issuer::IssuerExport<T> as Guest>::resume(self.config.clone(), state.to_vec())
            .map(Into::into)
            .map_err(Into::into)
    }

    /// `revoke`.
    pub fn revoke(&self, certificate_pem: &str, reason: u8) -> Result<(), PluginError> {
        use crate::bindings::issuer::exports::certctl::plugin::issuer::Guest;
        <crate::issuer::IssuerExport<T> as Guest>::revoke(self.config.clone(), certificate_pem.to_string(), reason)
            .map_err(Into::into)
    }
}

#[cfg(feature = "issuer")]
impl<T> fmt::Debug for IssuerHost<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerHost")
            .field("plugin", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}
