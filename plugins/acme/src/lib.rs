//! certctl issuer plugin: certificates from an ACME CA (RFC 8555), see README.md.
//!
//! The account key lives in the host keystore (generated on first use; the host signs every
//! JWS), the account URL in host-kv. An issuance is a state machine over `begin` and `resume`
//! ([`order`]): the host presents the http-01, dns-01 or dns-persist-01 challenges
//! (host-challenge), so the plugin holds no DNS credentials and opens no port. Renewal
//! information (RFC 9773) comes from [`renewal`]. All host services go through
//! [`services::Services`], so the whole flow runs natively in tests against a fake host and a
//! fake CA.

mod account;
mod chain;
mod client;
mod config;
mod der;
mod jws;
mod names;
mod order;
mod renewal;
mod revoke;
mod services;

#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use certctl_sdk::challenge::{self, ChallengeHandle};
use certctl_sdk::keystore::{self, KeyAlgorithm};
use certctl_sdk::{IssueRequest, Issuer, PluginError, Progress, RenewalWindow, kv};

pub use config::Config;

use crate::config::AccountKeyType;

/// The ACME issuer.
pub struct AcmeIssuer;

impl Issuer for AcmeIssuer {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        config::check(config)
    }

    /// The names only: no host service, no network.
    fn check_request(config: &Config, request: &IssueRequest) -> Result<(), PluginError> {
        names::identifiers(&request.names, config.challenge).map(|_| ())
    }

    fn begin(config: &Config, request: &IssueRequest) -> Result<Progress, PluginError> {
        order::begin(&HostServices, config, request)
    }

    fn resume(config: &Config, state: &[u8]) -> Result<Progress, PluginError> {
        order::resume(&HostServices, config, state)
    }

    fn revoke(config: &Config, certificate_pem: &str, reason: u8) -> Result<(), PluginError> {
        revoke::revoke(&HostServices, config, certificate_pem, reason)
    }

    fn renewal_info(config: &Config, certificate_pem: &str) -> Result<Option<RenewalWindow>, PluginError> {
        renewal::renewal_info(&HostServices, config, certificate_pem)
    }
}

certctl_sdk::register_issuer!(AcmeIssuer);

/// The real host.
struct HostServices;

impl services::Services for HostServices {
    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        kv::get(key)
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), PluginError> {
        kv::set(key, value)
    }

    fn kv_delete(&self, key: &str) {
        kv::delete(key);
    }

    fn generate_key(&self, algorithm: AccountKeyType) -> Result<String, PluginError> {
        keystore::generate_key(match algorithm {
            AccountKeyType::EcdsaP256 => KeyAlgorithm::EcdsaP256,
            AccountKeyType::Rsa2048 => KeyAlgorithm::Rsa2048,
        })
    }

    fn public_key(&self, key_id: &str) -> Result<Vec<u8>, PluginError> {
        keystore::public_key(key_id)
    }

    fn sign(&self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, PluginError> {
        keystore::sign(key_id, data)
    }

    fn present_dns(&self, identifier: &str, key_authorization: &str) -> Result<u64, PluginError> {
        challenge::present_dns(identifier, key_authorization).map(|h| h.0)
    }

    fn present_http(&self, token: &str, key_authorization: &str) -> Result<u64, PluginError> {
        challenge::present_http(token, key_authorization).map(|h| h.0)
    }

    fn present_persist(
        &self,
        identifier: &str,
        issuer_domain_names: &[String],
        account_uri: &str,
        wildcard: bool,
    ) -> Result<u64, PluginError> {
        challenge::present_persist(identifier, issuer_domain_names, account_uri, wildcard).map(|h| h.0)
    }

    fn ready(&self, handle: u64) -> Result<bool, PluginError> {
        challenge::ready(ChallengeHandle(handle))
    }

    fn cleanup(&self, handle: u64) -> Result<(), PluginError> {
        challenge::cleanup(ChallengeHandle(handle))
    }

    fn now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}
