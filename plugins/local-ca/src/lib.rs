//! certctl issuer plugin: a local certificate authority (see README.md).
//!
//! The CA is either imported (its certificate in the configuration, its key imported into the
//! host keystore) or self-signed: on the first issuance of an instance the CA key is generated
//! in the host keystore and a self-signed CA certificate is stored in host-kv. Every issuance
//! verifies the CSR, applies the configured policy (names, key types, lifetime, the CA's own
//! validity) and signs the leaf through the keystore; `check-request` applies the same policy
//! without side effects. The plugin never sees a private key.

mod ca;
mod config;
mod csr;
mod imported;
mod names;
mod x509;

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certctl_sdk::{IssueRequest, Issuer, PluginError, Progress, keystore, kv, log};

pub use config::Config;

/// The local CA issuer.
pub struct LocalCa;

impl Issuer for LocalCa {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        config::check(config)
    }

    fn check_request(config: &Config, request: &IssueRequest) -> Result<(), PluginError> {
        ca::check(&HostServices, config, request).map(|_| ())
    }

    fn begin(config: &Config, request: &IssueRequest) -> Result<Progress, PluginError> {
        ca::issue(&HostServices, config, request).map(Progress::Issued)
    }

    fn revoke(_config: &Config, _certificate_pem: &str, reason: u8) -> Result<(), PluginError> {
        // The host records the revocation and publishes the CRL, signed with this instance's
        // CA key; there is no one else to tell.
        log::info(format!(
            "revocation (reason {reason}) recorded by the host; it publishes the CRL"
        ));
        Ok(())
    }
}

certctl_sdk::register_issuer!(LocalCa);

/// The real host: host-kv, host-keystore, the WASI clock and random source.
struct HostServices;

impl ca::Lookup for HostServices {
    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        kv::get(key)
    }

    fn public_key(&self, key_id: &str) -> Result<Vec<u8>, PluginError> {
        keystore::public_key(key_id)
    }

    fn now(&self) -> Result<Duration, PluginError> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| PluginError::transient("the host clock is set before 1970"))
    }

    fn log(&self, message: &str) {
        log::info(message);
    }
}

impl ca::Services for HostServices {
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), PluginError> {
        kv::set(key, value)
    }

    fn generate_key(&self, algorithm: config::CaKeyAlgorithm) -> Result<String, PluginError> {
        keystore::generate_key(match algorithm {
            config::CaKeyAlgorithm::EcdsaP256 => keystore::KeyAlgorithm::EcdsaP256,
            config::CaKeyAlgorithm::EcdsaP384 => keystore::KeyAlgorithm::EcdsaP384,
        })
    }

    fn sign(&self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, PluginError> {
        keystore::sign(key_id, data)
    }

    fn random(&self, buf: &mut [u8]) -> Result<(), PluginError> {
        getrandom::fill(buf).map_err(|e| PluginError::transient(format!("no random numbers from the host: {e}")))
    }
}
