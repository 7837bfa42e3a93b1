//! The host services an ACME issuance uses, behind a trait: in the component they are the
//! host's ([`crate::HostServices`]); unit tests bring a fake host whose keystore signs for real.
//! Outbound HTTP goes through `certctl_sdk::http` (the SDK's `MockHttp` in tests).

use certctl_sdk::PluginError;

use crate::config::AccountKeyType;

pub(crate) trait Services {
    /// host-kv.
    fn kv_get(&self, key: &str) -> Option<Vec<u8>>;
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), PluginError>;
    fn kv_delete(&self, key: &str);

    /// host-keystore: a new key owned by this instance, its id.
    fn generate_key(&self, algorithm: AccountKeyType) -> Result<String, PluginError>;
    /// DER SubjectPublicKeyInfo.
    fn public_key(&self, key_id: &str) -> Result<Vec<u8>, PluginError>;
    /// Signs as the host keystore does: SHA-256 then ECDSA (DER) or RSA PKCS#1 v1.5.
    fn sign(&self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, PluginError>;

    /// host-challenge.
    fn present_dns(&self, identifier: &str, key_authorization: &str) -> Result<u64, PluginError>;
    fn present_http(&self, token: &str, key_authorization: &str) -> Result<u64, PluginError>;
    /// dns-persist-01: a lasting `_validation-persist.<identifier>` record; the host's cleanup
    /// of its handle closes the handle and leaves the record.
    fn present_persist(
        &self,
        identifier: &str,
        issuer_domain_names: &[String],
        account_uri: &str,
        wildcard: bool,
    ) -> Result<u64, PluginError>;
    fn ready(&self, handle: u64) -> Result<bool, PluginError>;
    fn cleanup(&self, handle: u64) -> Result<(), PluginError>;

    /// Seconds since the Unix epoch, for `Retry-After` dates.
    fn now(&self) -> u64;
}
