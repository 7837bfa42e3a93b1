//! Issuer plugins: issue certificates from a CSR (a local CA, ACME, another CA's API), with the
//! issuer-only host services [`kv`], [`keystore`] and [`challenge`].

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::PluginError;
use crate::bindings::base::certctl::plugin::types as wit;
use crate::bindings::issuer::exports::certctl::plugin::issuer as wit_issuer;

/// What to certify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// PKCS#10 certificate request, DER. The private key stays with its owner.
    pub csr: Vec<u8>,
    /// DNS names and IP addresses to certify (the CSR's SANs, normalised by the host).
    pub names: Vec<String>,
    /// Requested lifetime in days, if the certificate's policy sets one.
    pub validity_days: Option<u32>,
    /// Issuer-specific profile name (e.g. an ACME profile), if any.
    pub profile: Option<String>,
    /// On a renewal: the certificate (PEM) this one replaces, so the CA can link the two
    /// (ACME `replaces`, RFC 9773).
    pub replaces: Option<String>,
}

/// When the CA suggests renewing a certificate (ACME Renewal Information, RFC 9773).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalWindow {
    /// Seconds since the Unix epoch: renew no earlier than this...
    pub start: u64,
    /// ...and no later than this.
    pub end: u64,
    /// Seconds until the host should ask again.
    pub retry_after: u32,
    /// A page explaining why the window moved, if the CA gave one.
    pub explanation_url: Option<String>,
}

impl From<RenewalWindow> for wit_issuer::RenewalWindow {
    fn from(w: RenewalWindow) -> Self {
        wit_issuer::RenewalWindow {
            start: w.start,
            end: w.end,
            retry_after: w.retry_after,
            explanation_url: w.explanation_url,
        }
    }
}

impl From<IssueRequest> for wit_issuer::IssueRequest {
    fn from(r: IssueRequest) -> Self {
        wit_issuer::IssueRequest {
            csr: r.csr,
            names: r.names,
            validity_days: r.validity_days,
            profile: r.profile,
            replaces: r.replaces,
        }
    }
}

impl From<wit_issuer::IssueRequest> for IssueRequest {
    fn from(r: wit_issuer::IssueRequest) -> Self {
        IssueRequest {
            csr: r.csr,
            names: r.names,
            validity_days: r.validity_days,
            profile: r.profile,
            replaces: r.replaces,
        }
    }
}

/// How far an issuance got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not done: the host calls [`Issuer::resume`] with `state` after `after_ms` milliseconds.
    /// The host persists `state`, so an order survives a restart of the server.
    Pending {
        /// How long to wait before resuming.
        after_ms: u32,
        /// Opaque to the host; whatever the plugin needs to continue.
        state: Vec<u8>,
    },
    /// Done: the certificate chain, PEM, leaf first.
    Issued(String),
}

impl From<Progress> for wit_issuer::Progress {
    fn from(p: Progress) -> Self {
        match p {
            Progress::Pending { after_ms, state } => {
                wit_issuer::Progress::Pending(wit_issuer::PendingIssuance { after_ms, state })
            }
            Progress::Issued(chain) => wit_issuer::Progress::Issued(chain),
        }
    }
}

impl From<wit_issuer::Progress> for Progress {
    fn from(p: wit_issuer::Progress) -> Self {
        match p {
            wit_issuer::Progress::Pending(wit_issuer::PendingIssuance { after_ms, state }) => {
                Progress::Pending { after_ms, state }
            }
            wit_issuer::Progress::Issued(chain) => Progress::Issued(chain),
        }
    }
}

/// An issuer. Implement it on a unit struct and register it with
/// [`register_issuer!`](crate::register_issuer).
///
/// Calls are stateless: the host creates a fresh instance for every call. A long flow (an
/// ACME order) returns [`Progress::Pending`] with its state, and continues in
/// [`Issuer::resume`]; keep longer-lived data (an account URL) in [`kv`].
pub trait Issuer {
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

    /// Checks a request against the instance's policy without side effects (no [`kv`] writes,
    /// no keys, no network), so the host can refuse a CSR at once with a 4xx instead of failing
    /// a job later. The default accepts everything. [`Self::begin`] must check again: it may
    /// run without this having run.
    fn check_request(config: &Self::Config, request: &IssueRequest) -> Result<(), PluginError> {
        let _ = (config, request);
        Ok(())
    }

    /// Starts an issuance.
    fn begin(config: &Self::Config, request: &IssueRequest) -> Result<Progress, PluginError>;

    /// Continues an issuance from the `state` of a [`Progress::Pending`]. The default refuses:
    /// an issuer whose `begin` always finishes never gets here.
    fn resume(config: &Self::Config, state: &[u8]) -> Result<Progress, PluginError> {
        let _ = (config, state);
        Err(PluginError::permanent("this issuer does not resume issuances"))
    }

    /// Revokes a certificate (PEM) with an RFC 5280 reason code. The default refuses with
    /// [`PluginError::Permanent`].
    fn revoke(config: &Self::Config, certificate_pem: &str, reason: u8) -> Result<(), PluginError> {
        let _ = (config, certificate_pem, reason);
        Err(PluginError::permanent("this issuer cannot revoke certificates"))
    }

    /// The CA's suggested renewal window for a certificate it issued (PEM, leaf first), or
    /// `None` when the CA offers no renewal information (the default): the host then renews on
    /// its own schedule.
    fn renewal_info(config: &Self::Config, certificate_pem: &str) -> Result<Option<RenewalWindow>, PluginError> {
        let _ = (config, certificate_pem);
        Ok(None)
    }
}

/// Connects an [`Issuer`] to the generated export glue. Used by [`register_issuer!`](crate::register_issuer).
#[doc(hidden)]
pub struct IssuerExport<T>(PhantomData<T>);

impl<T: Issuer> IssuerExport<T> {
    fn config(raw: &str) -> Result<T::Config, PluginError> {
        let config = crate::config::<T::Config>(raw)?;
        T::check_config(&config)?;
        Ok(config)
    }
}

impl<T: Issuer> wit_issuer::Guest for IssuerExport<T> {
    fn validate_config(config: String) -> Result<(), wit::PluginError> {
        T::validate_config(&config).map_err(Into::into)
    }

    fn check_request(config: String, request: wit_issuer::IssueRequest) -> Result<(), wit::PluginError> {
        let config = Self::config(&config)?;
        T::check_request(&config, &request.into()).map_err(Into::into)
    }

    fn begin(config: String, request: wit_issuer::IssueRequest) -> Result<wit_issuer::Progress, wit::PluginError> {
        let config = Self::config(&config)?;
        Ok(T::begin(&config, &request.into())?.into())
    }

    fn resume(config: String, state: Vec<u8>) -> Result<wit_issuer::Progress, wit::PluginError> {
        let config = Self::config(&config)?;
        Ok(T::resume(&config, &state)?.into())
    }

    fn revoke(config: String, certificate: String, reason: u8) -> Result<(), wit::PluginError> {
        let config = Self::config(&config)?;
        T::revoke(&config, &certificate, reason).map_err(Into::into)
    }

    fn renewal_info(
        config: String,
        certificate: String,
    ) -> Result<Option<wit_issuer::RenewalWindow>, wit::PluginError> {
        let config = Self::config(&config)?;
        Ok(T::renewal_info(&config, &certificate)?.map(Into::into))
    }
}

/// Exports an [`Issuer`] as this component's `certctl:plugin/issuer`. Call it once, at the
/// crate root of a `cdylib` crate that enables the SDK's `issuer` feature.
#[macro_export]
macro_rules! register_issuer {
    ($plugin:ty) => {
        const _: () = {
            type CertctlIssuerExport = $crate::__private::IssuerExport<$plugin>;
    $crate::__private::export_issuer!(CertctlIssuerExport with_types_in $crate::__private::issuer_bindings);
        };
    };
}

#[cfg(not(target_arch = "wasm32"))]
const OUTSIDE_HOST: &str = "this host service needs a certctl host: not running as a WebAssembly component";

/// A small key-value store private to one plugin instance, persisted by the host across calls
/// and restarts (an ACME account URL, an order in progress). Keys are at most
/// [`MAX_KEY_BYTES`](kv::MAX_KEY_BYTES) bytes, values at most
/// [`MAX_VALUE_BYTES`](kv::MAX_VALUE_BYTES), at most [`MAX_KEYS`](kv::MAX_KEYS) keys per
/// instance.
///
/// Natively (unit tests), the store is a `certctl_sdk::testkit::MockKv` installed on the
/// thread; without one, `get` finds nothing and `set` fails.
pub mod kv {
    use crate::PluginError;

    /// The longest key, in bytes (UTF-8).
    pub const MAX_KEY_BYTES: usize = 256;
    /// The largest value, in bytes (64 KiB).
    pub const MAX_VALUE_BYTES: usize = 64 * 1024;
    /// The most keys one instance may hold.
    pub const MAX_KEYS: usize = 1024;

    /// The value stored under `key`, if any.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::issuer::certctl::plugin::host_kv::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testkit::kv_get(key)
    }

    /// Stores `value` under `key`; a limit exceeded is [`PluginError::Permanent`] with the
    /// host's message.
    pub fn set(key: &str, value: &[u8]) -> Result<(), PluginError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::issuer::certctl::plugin::host_kv::set(key, value).map_err(PluginError::Permanent);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testkit::kv_set(key, value)
            .unwrap_or_else(|| Err(super::OUTSIDE_HOST.to_string()))
            .map_err(PluginError::Permanent)
    }

    /// Deletes `key`; deleting a missing key is not an error.
    pub fn delete(key: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::issuer::certctl::plugin::host_kv::delete(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testkit::kv_delete(key);
    }
}

/// Keys held by the host. A plugin names keys by id and never sees private key material.
pub mod keystore {
    use crate::PluginError;

    /// A key type the host can generate.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KeyAlgorithm {
        /// ECDSA on P-256; signatures DER-encoded, over SHA-256.
        EcdsaP256,
        /// ECDSA on P-384; signatures DER-encoded, over SHA-384.
        EcdsaP384,
        /// RSA 2048, PKCS#1 v1.5 over SHA-256.
        Rsa2048,
        /// RSA 3072, PKCS#1 v1.5 over SHA-256.
        Rsa3072,
        /// RSA 4096, PKCS#1 v1.5 over SHA-256.
        Rsa4096,
        /// Ed25519.
        Ed25519,
    }

    /// Creates a key owned by this plugin instance and returns its id.
    pub fn generate_key(algorithm: KeyAlgorithm) -> Result<String, PluginError> {
        #[cfg(target_arch = "wasm32")]
        {
            use crate::bindings::issuer::certctl::plugin::host_keystore::{self as ks, KeyAlgorithm as A};
            let algorithm = match algorithm {
                KeyAlgorithm::EcdsaP256 => A::EcdsaP256,
                KeyAlgorithm::EcdsaP384 => A::EcdsaP384,
                KeyAlgorithm::Rsa2048 => A::Rsa2048,
                KeyAlgorithm::Rsa3072 => A::Rsa3072,
                KeyAlgorithm::Rsa4096 => A::Rsa4096,
                KeyAlgorithm::Ed25519 => A::Ed25519,
            };
            ks::generate_key(algorithm).map_err(Into::into)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = algorithm;
            Err(PluginError::permanent(super::OUTSIDE_HOST))
        }
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_key(key_id: &str) -> Result<Vec<u8>, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::issuer::certctl::plugin::host_keystore::public_key(key_id).map_err(Into::into);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = key_id;
            Err(PluginError::permanent(super::OUTSIDE_HOST))
        }
    }

    /// Signs `data`; the host hashes it as the algorithm requires (see [`KeyAlgorithm`]).
    pub fn sign(key_id: &str, data: &[u8]) -> Result<Vec<u8>, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::issuer::certctl::plugin::host_keystore::sign(key_id, data).map_err(Into::into);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (key_id, data);
            Err(PluginError::permanent(super::OUTSIDE_HOST))
        }
    }
}

/// ACME challenges solved by the host, with its own DNS-solver instances and HTTP responder, so
/// an issuer never needs DNS credentials. Handles stay valid across calls: keep them in the
/// state of a [`Progress::Pending`] and check [`ready`](challenge::ready) when resumed.
pub mod challenge {
    use crate::PluginError;

    /// What [`present_dns`] or [`present_http`] set up; persisted by the host.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ChallengeHandle(pub u64);

    /// dns-01: the host publishes TXT `base64url(SHA-256(key_authorization))` at
    /// `_acme-challenge.<identifier>` through the DNS solver named by the instance's `dns_solver`
    /// configuration key.
    pub fn present_dns(identifier: &str, key_authorization: &str) -> Result<ChallengeHandle, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::issuer::certctl::plugin::host_challenge::present_dns(identifier, key_authorization)
            .map(ChallengeHandle)
            .map_err(Into::into);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (identifier, key_authorization);
            Err(PluginError::permanent(super::OUTSIDE_HOST))
        }
    }

    /// http-01: the host serves `key_authorization` at `/.well-known/acme-challenge/<token>`.
    pub fn present_http(token: &str, key_authorization: &str) -> Result<ChallengeHandle, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::issuer::certctl::plugin::host_challenge::present_http(token, key_authorization)
            .map(ChallengeHandle)
            .map_err(Into::into);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (token, key_authorization);
            Err(PluginError::permanent(super::OUTSIDE_HOST))
        }
    }

    /// dns-persist-01 (draft-ietf-acme-dns-persist): the host makes sure TXT
    /// `_validation-persist.<identifier>` authorises `account_uri` at one of
    /// `issuer_domain_names` (the challenge's list), with `policy=wildcard` when `wildcard` is
    /// set. A satisfying record already there is used without a DNS write; otherwise the
    /// operator approves the record and the host publishes it once, never to clean it up.
    pub fn present_persist(
        identifier: &str,
        issuer_domain_names: &[String],
        account_uri: &str,
        wildcard: bool,
    ) -> Result<ChallengeHandle, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::issuer::certctl::plugin::host_challenge::present_persist(
            identifier,
            issuer_domain_names,
            account_uri,
            wildcard,
        )
        .map(ChallengeHandle)
        .map_err(Into::into);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (identifier, issuer_domain_names, account_uri, wildcard);
            Err(PluginError::permanent(super::OUTSIDE_HOST))
        }
    }

    /// One readiness check (a few seconds at most): `true` when the authoritative servers
    /// answer with the value (DNS) or the responder serves it (HTTP); `false`: not yet — return
    /// [`Progress::Pending`](crate::Progress::Pending) and check again when resumed.
    pub fn ready(handle: ChallengeHandle) -> Result<bool, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::issuer::certctl::plugin::host_challenge::ready(handle.0).map_err(Into::into);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = handle;
            Err(PluginError::permanent(super::OUTSIDE_HOST))
        }
    }

    /// Removes exactly what the `present_*` call added. Cleaning up twice is not an error.
    pub fn cleanup(handle: ChallengeHandle) -> Result<(), PluginError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::issuer::certctl::plugin::host_challenge::cleanup(handle.0).map_err(Into::into);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = handle;
            Err(PluginError::permanent(super::OUTSIDE_HOST))
        }
    }
}
