//! The instance configuration and the rules derived from it.

use std::fmt;

use certctl_sdk::PluginError;
use serde::{Deserialize, Serialize};
use x509_cert::der::asn1::ObjectIdentifier;

use crate::imported::{CaCertificate, CaChain};
use crate::names::Pattern;
use crate::x509::{KP_CLIENT_AUTH, KP_CODE_SIGNING, KP_EMAIL_PROTECTION, KP_SERVER_AUTH};

/// Configuration keys, as the operator writes them. Every key has a default, so `{}` is a
/// working CA that certifies any name.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawConfig")]
pub struct Config {
    /// Common name of the CA certificate created on first use.
    pub ca_common_name: String,
    /// Lifetime of the CA certificate created on first use, in days.
    pub ca_validity_days: u32,
    /// Algorithm of the CA key generated in the host keystore on first use.
    pub key_algorithm: CaKeyAlgorithm,
    /// The longest leaf lifetime this CA issues, in days.
    pub max_validity_days: u32,
    /// Leaf lifetime when the request does not name one, in days.
    pub default_validity_days: u32,
    /// Names this CA may certify; empty means any.
    pub allowed_names: Vec<Pattern>,
    /// Key types a CSR may carry.
    pub allowed_key_types: Vec<KeyType>,
    /// The CA certificate's pathLenConstraint.
    pub path_length: u8,
    /// The extendedKeyUsage purposes of every leaf, in order, without duplicates.
    pub extended_key_usages: Vec<KeyPurpose>,
    /// The URI of the cRLDistributionPoints extension of every leaf, if any.
    pub crl_url: Option<CrlUrl>,
    /// An imported CA certificate (sub-CA mode), with `ca_key_id`.
    pub ca_certificate: Option<CaCertificate>,
    /// The host keystore id of the imported CA's private key, with `ca_certificate_pem`.
    pub ca_key_id: Option<String>,
    /// The certificates above an imported CA, appended to every chain.
    pub ca_chain: Option<CaChain>,
    /// The keys that only configure the self-signed CA and were set, in the order of
    /// [`SELF_SIGNED_KEYS`]: they conflict with an imported CA.
    self_signed_keys: Vec<&'static str>,
}

/// The keys that only configure the self-signed CA the plugin creates.
const SELF_SIGNED_KEYS: [&str; 4] = ["ca_common_name", "ca_validity_days", "key_algorithm", "path_length"];

/// The keys as written: absent and `null` both mean the default (the host treats a `null`
/// optional key as absent too).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ca_common_name: Option<String>,
    ca_validity_days: Option<u32>,
    key_algorithm: Option<CaKeyAlgorithm>,
    max_validity_days: Option<u32>,
    default_validity_days: Option<u32>,
    allowed_names: Option<Vec<Pattern>>,
    allowed_key_types: Option<Vec<KeyType>>,
    path_length: Option<u8>,
    extended_key_usages: Option<Vec<KeyPurpose>>,
    crl_url: Option<CrlUrl>,
    ca_certificate_pem: Option<CaCertificate>,
    ca_key_id: Option<String>,
    ca_chain_pem: Option<CaChain>,
}

impl From<RawConfig> for Config {
    fn from(raw: RawConfig) -> Config {
        let set = [
            raw.ca_common_name.is_some(),
            raw.ca_validity_days.is_some(),
            raw.key_algorithm.is_some(),
            raw.path_length.is_some(),
        ];
        let self_signed_keys = SELF_SIGNED_KEYS
            .iter()
            .zip(set)
            .filter_map(|(key, set)| set.then_some(*key))
            .collect();
        let mut extended_key_usages: Vec<KeyPurpose> = Vec::new();
        for purpose in raw.extended_key_usages.unwrap_or_else(|| vec![KeyPurpose::ServerAuth]) {
            if !extended_key_usages.contains(&purpose) {
                extended_key_usages.push(purpose);
            }
        }
        Config {
            ca_common_name: raw.ca_common_name.unwrap_or_else(|| "certctl local CA".to_string()),
            ca_validity_days: raw.ca_validity_days.unwrap_or(3650),
            key_algorithm: raw.key_algorithm.unwrap_or_default(),
            max_validity_days: raw.max_validity_days.unwrap_or(397),
            default_validity_days: raw.default_validity_days.unwrap_or(90),
            allowed_names: raw.allowed_names.unwrap_or_default(),
            allowed_key_types: raw.allowed_key_types.unwrap_or_else(KeyType::all),
            path_length: raw.path_length.unwrap_or(0),
            extended_key_usages,
            crl_url: raw.crl_url,
            ca_certificate: raw.ca_certificate_pem,
            ca_key_id: raw.ca_key_id.map(|id| id.trim().to_string()),
            ca_chain: raw.ca_chain_pem,
            self_signed_keys,
        }
    }
}

/// An imported CA: its certificate, the host keystore id of its key, the certificates above it.
#[derive(Debug, Clone, Copy)]
pub struct ImportedCa<'a> {
    pub certificate: &'a CaCertificate,
    pub key_id: &'a str,
    pub chain: Option<&'a CaChain>,
}

impl Config {
    /// The imported CA, when `ca_certificate_pem` and `ca_key_id` are set ([`check`] refuses
    /// one without the other); `None` means the self-signed CA kept in host-kv.
    pub fn imported_ca(&self) -> Option<ImportedCa<'_>> {
        Some(ImportedCa {
            certificate: self.ca_certificate.as_ref()?,
            key_id: self.ca_key_id.as_deref()?,
            chain: self.ca_chain.as_ref(),
        })
    }
}

/// The longest CA lifetime accepted: 100 years keeps every date inside what X.509 can encode.
pub const MAX_CA_VALIDITY_DAYS: u32 = 36_500;

/// The X.509 upper bound of a common name (ub-common-name), in characters.
pub const MAX_COMMON_NAME_CHARS: usize = 64;

/// The CA key's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CaKeyAlgorithm {
    /// ECDSA on P-256, certificates signed with ecdsa-with-SHA256.
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on P-384, certificates signed with ecdsa-with-SHA384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
}

impl CaKeyAlgorithm {
    /// The key type of such a key.
    pub fn key_type(self) -> KeyType {
        match self {
            CaKeyAlgorithm::EcdsaP256 => KeyType::EcdsaP256,
            CaKeyAlgorithm::EcdsaP384 => KeyType::EcdsaP384,
        }
    }
}

/// An extendedKeyUsage purpose of the leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyPurpose {
    /// id-kp-serverAuth: TLS servers.
    #[serde(rename = "server-auth")]
    ServerAuth,
    /// id-kp-clientAuth: TLS clients (mTLS).
    #[serde(rename = "client-auth")]
    ClientAuth,
    /// id-kp-codeSigning.
    #[serde(rename = "code-signing")]
    CodeSigning,
    /// id-kp-emailProtection: S/MIME.
    #[serde(rename = "email-protection")]
    EmailProtection,
}

impl KeyPurpose {
    /// The purpose's object identifier (RFC 5280 4.2.1.12).
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            KeyPurpose::ServerAuth => KP_SERVER_AUTH,
            KeyPurpose::ClientAuth => KP_CLIENT_AUTH,
            KeyPurpose::CodeSigning => KP_CODE_SIGNING,
            KeyPurpose::EmailProtection => KP_EMAIL_PROTECTION,
        }
    }
}

/// The http or https URL where the host serves this instance's CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlUrl(String);

impl CrlUrl {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CrlUrl {
    type Error = String;

    /// `http://` or `https://`, a host (no user or password), then any path; printable ASCII
    /// without spaces (a URI in a certificate is an IA5String).
    fn try_from(value: String) -> Result<CrlUrl, String> {
        let url = value.trim();
        let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        if !url.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "{url:?}: a URL in a certificate may hold only printable ASCII characters, no spaces \
                 (percent-encode the others)"
            ));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        if authority.contains('@') {
            return Err(format!("{url:?}: a user name or password does not belong in a CRL URL"));
        }
        Ok(CrlUrl(url.to_string()))
    }
}

impl<'de> Deserialize<'de> for CrlUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CrlUrl, D::Error> {
        CrlUrl::try_from(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A key type a CSR may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyType {
    /// ECDSA on P-256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on P-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    /// RSA with a 2048-bit modulus.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    /// Ed25519.
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyType {
    /// Every key type, the default of `allowed_key_types`.
    pub fn all() -> Vec<KeyType> {
        vec![
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::Rsa2048,
            KeyType::Rsa3072,
            KeyType::Rsa4096,
            KeyType::Ed25519,
        ]
    }

    /// Whether certificates for this key type carry keyEncipherment (RSA key transport).
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::Ed25519 => "ed25519",
        })
    }
}

/// The checks serde cannot express, as `invalid-config` naming the key. Pure: no host calls
/// (whether `ca_key_id` names a key that matches `ca_certificate_pem` is checked when issuing).
pub fn check(config: &Config) -> Result<(), PluginError> {
    let imported = check_ca_keys(config)?;
    if !imported {
        let cn = config.ca_common_name.trim();
        if cn.is_empty() {
            return Err(PluginError::invalid_config("config.ca_common_name: must not be empty"));
        }
        if cn.chars().count() > MAX_COMMON_NAME_CHARS {
            return Err(PluginError::invalid_config(format!(
                "config.ca_common_name: at most {MAX_COMMON_NAME_CHARS} characters (the X.509 limit)"
            )));
        }
        if config.ca_validity_days == 0 || config.ca_validity_days > MAX_CA_VALIDITY_DAYS {
            return Err(PluginError::invalid_config(format!(
                "config.ca_validity_days: must be between 1 and {MAX_CA_VALIDITY_DAYS} days, not {}",
                config.ca_validity_days
            )));
        }
    }
    // A self-signed CA lives ca_validity_days; an imported CA's own notAfter is checked when
    // issuing.
    let (limit, limit_name) = if imported {
        (MAX_CA_VALIDITY_DAYS, format!("{MAX_CA_VALIDITY_DAYS}"))
    } else {
        (
            config.ca_validity_days,
            format!("ca_validity_days ({})", config.ca_validity_days),
        )
    };
    if config.max_validity_days == 0 || config.max_validity_days > limit {
        return Err(PluginError::invalid_config(format!(
            "config.max_validity_days: must be between 1 and {limit_name}, not {}",
            config.max_validity_days
        )));
    }
    if config.default_validity_days == 0 || config.default_validity_days > config.max_validity_days {
        return Err(PluginError::invalid_config(format!(
            "config.default_validity_days: must be between 1 and max_validity_days ({}), not {}",
            config.max_validity_days, config.default_validity_days
        )));
    }
    if config.allowed_key_types.is_empty() {
        return Err(PluginError::invalid_config(
            "config.allowed_key_types: must list at least one key type (leave the key out to allow all)",
        ));
    }
    if config.extended_key_usages.is_empty() {
        return Err(PluginError::invalid_config(
            "config.extended_key_usages: must list at least one of server-auth, client-auth, code-signing, \
             email-protection (leave the key out for server-auth)",
        ));
    }
    Ok(())
}

/// The imported-CA keys: `ca_certificate_pem` and `ca_key_id` together or not at all,
/// `ca_chain_pem` only with them, and none of the keys that configure the self-signed CA.
/// Whether the CA is imported.
fn check_ca_keys(config: &Config) -> Result<bool, PluginError> {
    match (&config.ca_certificate, &config.ca_key_id) {
        (None, None) => {
            if config.ca_chain.is_some() {
                return Err(PluginError::invalid_config(
                    "config.ca_chain_pem: only with ca_certificate_pem and ca_key_id (the certificates above an \
                     imported CA); the self-signed CA has nothing above it",
                ));
            }
            Ok(false)
        }
        (Some(_), None) => Err(PluginError::invalid_config(
            "config.ca_key_id: required with ca_certificate_pem: the id of the CA's private key, imported into \
             the host keystore for this instance",
        )),
        (None, Some(_)) => Err(PluginError::invalid_config(
            "config.ca_certificate_pem: required with ca_key_id: the CA certificate (PEM) of that key",
        )),
        (Some(_), Some(key_id)) => {
            if key_id.trim().is_empty() {
                return Err(PluginError::invalid_config(
                    "config.ca_key_id: must not be empty (the id the host returned when the CA key was imported)",
                ));
            }
            if let Some(first) = config.self_signed_keys.first() {
                return Err(PluginError::invalid_config(format!(
                    "config.{first}: conflicts with ca_certificate_pem: an imported CA brings its own name, \
                     lifetime, key and path length, so remove the keys that configure only the self-signed CA ({})",
                    config.self_signed_keys.join(", ")
                )));
            }
            Ok(true)
        }
    }
}

/// The lifetime of a leaf, in days: the request's, or `default_validity_days`; refused above
/// `max_validity_days`.
pub fn leaf_validity_days(config: &Config, requested: Option<u32>) -> Result<u32, PluginError> {
    let days = requested.unwrap_or(config.default_validity_days);
    if days == 0 {
        return Err(PluginError::permanent(
            "the requested validity of 0 days is too short: at least 1 day",
        ));
    }
    if days > config.max_validity_days {
        return Err(PluginError::permanent(format!(
            "the requested validity of {days} days exceeds this CA's limit of {} days (max_validity_days)",
            config.max_validity_days
        )));
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, PluginError> {
        let config: Config = certctl_sdk::config(json)?;
        check(&config)?;
        Ok(config)
    }

    fn invalid(json: &str) -> String {
        match parse(json) {
            Err(PluginError::InvalidConfig(m)) => m,
            other => panic!("expected invalid-config for {json}, got {other:?}"),
        }
    }

    #[test]
    fn the_empty_config_has_the_documented_defaults() {
        for empty in ["", "{}"] {
            let c = parse(empty).expect("defaults");
            assert_eq!(c.ca_common_name, "certctl local CA");
            assert_eq!(c.ca_validity_days, 3650);
            assert_eq!(c.key_algorithm, CaKeyAlgorithm::EcdsaP256);
            assert_eq!(c.max_validity_days, 397);
            assert_eq!(c.default_validity_days, 90);
            assert!(c.allowed_names.is_empty());
            assert_eq!(c.allowed_key_types, KeyType::all());
            assert_eq!(c.path_length, 0);
            assert_eq!(c.extended_key_usages, [KeyPurpose::ServerAuth]);
            assert_eq!(c.crl_url, None);
            assert!(c.imported_ca().is_none() && c.ca_chain.is_none());
        }
    }

    #[test]
    fn null_means_the_default() {
        let c = parse(
            r#"{"ca_common_name": null, "ca_validity_days": null, "key_algorithm": null, "max_validity_days": null,
                "default_validity_days": null, "allowed_names": null, "allowed_key_types": null, "path_length": null,
                "extended_key_usages": null, "crl_url": null, "ca_certificate_pem": null, "ca_key_id": null,
                "ca_chain_pem": null}"#,
        )
        .expect("defaults");
        assert_eq!(c.ca_common_name, "certctl local CA");
        assert_eq!(c.allowed_key_types, KeyType::all());
        assert_eq!(
            (c.ca_validity_days, c.max_validity_days, c.default_validity_days),
            (3650, 397, 90)
        );
        assert_eq!(c.extended_key_usages, [KeyPurpose::ServerAuth]);
        assert!(c.imported_ca().is_none());
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"{"ca_common_name": "Lab CA", "ca_validity_days": 1000, "key_algorithm": "ecdsa-p384",
                "max_validity_days": 30, "default_validity_days": 7,
                "allowed_names": ["*.lab.test", "lab.test", "10.1.2.3", "*@lab.test", "ops@example.test"],
                "allowed_key_types": ["rsa-3072", "ed25519"], "path_length": 2,
                "extended_key_usages": ["client-auth", "server-auth"], "crl_url": "https://ca.lab.test/crl/1"}"#,
        )
        .expect("parses");
        assert_eq!(c.extended_key_usages, [KeyPurpose::ClientAuth, KeyPurpose::ServerAuth]);
        assert_eq!(
            c.crl_url.as_ref().map(CrlUrl::as_str),
            Some("https://ca.lab.test/crl/1")
        );
        assert_eq!(c.key_algorithm, CaKeyAlgorithm::EcdsaP384);
        assert_eq!(c.allowed_names.len(), 5);
        assert_eq!(c.allowed_key_types, vec![KeyType::Rsa3072, KeyType::Ed25519]);
        assert_eq!(c.path_length, 2);
    }

    #[test]
    fn errors_name_the_key() {
        assert!(invalid(r#"{"colour": 1}"#).starts_with("config.colour: unknown key"));
        assert!(invalid(r#"{"key_algorithm": "rsa-2048"}"#).starts_with("config.key_algorithm: unknown variant"));
        let m = invalid(r#"{"allowed_key_types": ["ecdsa-p256", "dsa-1024"]}"#);
        assert!(
            m.starts_with("config.allowed_key_types[1]: unknown variant `dsa-1024`"),
            "{m}"
        );
        let m = invalid(r#"{"allowed_names": ["*.ok.test", "10.0.0.0/8"]}"#);
        assert!(
            m.starts_with("config.allowed_names[1]: \"10.0.0.0/8\": address ranges"),
            "{m}"
        );
        assert!(invalid(r#"{"allowed_names": ["a.*.test"]}"#).starts_with("config.allowed_names[0]: "));
        assert!(invalid(r#"{"path_length": 300}"#).starts_with("config.path_length: "));
        assert!(invalid(r#"{"max_validity_days": -1}"#).starts_with("config.max_validity_days: "));
        assert!(invalid(r#"{"ca_common_name": " "}"#).starts_with("config.ca_common_name: must not be empty"));
        let long = format!(r#"{{"ca_common_name": "{}"}}"#, "x".repeat(65));
        assert!(invalid(&long).starts_with("config.ca_common_name: at most 64"));
        assert!(invalid(r#"{"ca_validity_days": 0}"#).starts_with("config.ca_validity_days: "));
        assert!(invalid(r#"{"ca_validity_days": 40000}"#).starts_with("config.ca_validity_days: "));
        assert!(invalid(r#"{"allowed_key_types": []}"#).starts_with("config.allowed_key_types: "));
    }

    #[test]
    fn validity_limits_must_be_consistent() {
        let m = invalid(r#"{"max_validity_days": 30}"#);
        assert!(
            m.starts_with("config.default_validity_days: must be between 1 and max_validity_days (30), not 90"),
            "{m}"
        );
        let m = invalid(r#"{"ca_validity_days": 100}"#);
        assert!(
            m.starts_with("config.max_validity_days: must be between 1 and ca_validity_days (100)"),
            "{m}"
        );
        assert!(invalid(r#"{"max_validity_days": 0}"#).starts_with("config.max_validity_days: "));
        assert!(invalid(r#"{"default_validity_days": 0}"#).starts_with("config.default_validity_days: "));
        assert!(parse(r#"{"ca_validity_days": 100, "max_validity_days": 100, "default_validity_days": 100}"#).is_ok());
    }

    #[test]
    fn leaf_validity_follows_the_request_the_default_and_the_limit() {
        let c = parse(r#"{"max_validity_days": 90, "default_validity_days": 30}"#).expect("config");
        assert_eq!(leaf_validity_days(&c, None), Ok(30));
        assert_eq!(leaf_validity_days(&c, Some(90)), Ok(90));
        assert_eq!(leaf_validity_days(&c, Some(1)), Ok(1));
        match leaf_validity_days(&c, Some(91)) {
            Err(PluginError::Permanent(m)) => {
                assert!(
                    m.contains("91 days") && m.contains("limit of 90 days (max_validity_days)"),
                    "{m}"
                )
            }
            other => panic!("expected permanent, got {other:?}"),
        }
        assert!(matches!(
            leaf_validity_days(&c, Some(0)),
            Err(PluginError::Permanent(_))
        ));
    }
}
