//! DNS-01 solver plugins: publish and remove `_acme-challenge` TXT values at one DNS provider.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::bindings::base::certctl::plugin::types as wit;
use crate::bindings::dns_solver::exports::certctl::plugin::dns_solver::Guest;
use crate::{DnsRecord, PluginError};

/// A DNS-01 challenge solver for one DNS provider. Implement it on a unit struct and register
/// it with [`register_dns_solver!`](crate::register_dns_solver).
///
/// Calls are stateless: the host creates a fresh instance for every call and passes the
/// configuration each time, so there is no `self`. The host picks the zone, checks
/// propagation against the authoritative servers itself, and records every `present` before
/// making it, so `cleanup` runs even after a crash.
pub trait DnsSolver {
    /// The instance configuration. Derive `serde::Deserialize`, and add
    /// `#[serde(deny_unknown_fields)]` so a misspelled key is an error rather than ignored.
    type Config: DeserializeOwned;

    /// Checks a configuration without side effects, when an operator creates or changes an
    /// instance. The default parses it into [`Self::Config`] (errors name the key, see
    /// [`config`](crate::config())) and then runs [`Self::check_config`].
    fn validate_config(config: &str) -> Result<(), PluginError> {
        let parsed = crate::config::<Self::Config>(config)?;
        Self::check_config(&parsed)
    }

    /// Checks serde cannot express, as [`PluginError::InvalidConfig`] naming the key. Runs in
    /// the default [`Self::validate_config`] and before every call. The default accepts
    /// everything.
    fn check_config(config: &Self::Config) -> Result<(), PluginError> {
        let _ = config;
        Ok(())
    }

    /// Adds `record.value` to the TXT set at `record.fqdn`.
    /// - Idempotent: presenting the same value twice leaves one value.
    /// - Appends: other values at the same name stay (an apex and a wildcard order share one).
    fn present(config: &Self::Config, record: &DnsRecord) -> Result<(), PluginError>;

    /// Removes exactly `record.value` from the TXT set at `record.fqdn`; other values stay.
    /// A value or record that is already gone is success, not [`PluginError::NotFound`].
    fn cleanup(config: &Self::Config, record: &DnsRecord) -> Result<(), PluginError>;
}

/// Connects a [`DnsSolver`] to the generated export glue. Used by [`register_dns_solver!`](crate::register_dns_solver).
#[doc(hidden)]
pub struct DnsSolverExport<T>(PhantomData<T>);

impl<T: DnsSolver> DnsSolverExport<T> {
    fn call(
        config: &str,
        record: wit::DnsRecord,
        op: fn(&T::Config, &DnsRecord) -> Result<(), PluginError>,
    ) -> Result<(), wit::PluginError> {
        let config = crate::config::<T::Config>(config)?;
        T::check_config(&config)?;
        op(&config, &record.into()).map_err(Into::into)
    }
}

impl<T: DnsSolver> Guest for DnsSolverExport<T> {
    fn validate_config(config: String) -> Result<(), wit::PluginError> {
        T::validate_config(&config).map_err(Into::into)
    }

    fn present(config: String, challenge: wit::DnsRecord) -> Result<(), wit::PluginError> {
        Self::call(&config, challenge, T::present)
    }

    fn cleanup(config: String, challenge: wit::DnsRecord) -> Result<(), wit::PluginError> {
        Self::call(&config, challenge, T::cleanup)
    }
}

/// Exports a [`DnsSolver`] as this component's `certctl:plugin/dns-solver`. Call it once, at
/// the crate root of a `cdylib` crate that enables the SDK's `dns-solver` feature.
#[macro_export]
macro_rules! register_dns_solver {
    ($plugin:ty) => {
        const _: () = {
            type CertctlDnsSolverExport = $crate::__private::DnsSolverExport<$plugin>;
            $crate::__private::export_dns_solver!(
                CertctlDnsSolverExport with_types_in $crate::__private::dns_solver_bindings
            );
        };
    };
}
