//! The instance configuration and the rules derived from it.

use std::fmt;

use certctl_sdk::PluginError;
use serde::{Deserialize, Serialize};

use crate::names::Pattern;

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
}

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
}

impl From<RawConfig> for Config {
    fn from(raw: RawConfig) -> Config {
        Config {
            ca_common_name: raw.ca_common_name.unwrap_or_else(|| "certctl local CA".to_string()),
            ca_validity_days: raw.ca_validity_days.unwrap_or(3650),
            key_algorithm: raw.key_algorithm.unwrap_or_default(),
            max_validity_days: raw.max_validity_days.unwrap_or(397),
            default_validity_days: raw.default_validity_days.unwrap_or(90),
            allowed_names: raw.allowed_names.unwrap_or_default(),
            allowed_key_types: raw.allowed_key_types.unwrap_or_else(KeyType::all),
            path_length: raw.path_length.unwrap_or(0),
        }
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

/// The checks serde cannot express, as `invalid-config` naming the key.
pub fn check(config: &Config) -> Result<(), PluginError> {
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
    if config.max_validity_days == 0 || config.max_validity_days > config.ca_validity_days {
        return Err(PluginError::invalid_config(format!(
            "config.max_validity_days: must be between 1 and ca_validity_days ({}), not {}",
            config.ca_validity_days, config.max_validity_days
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
    Ok(())
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
        }
    }

    #[test]
    fn null_means_the_default() {
        let c = parse(
            r#"{"ca_common_name": null, "ca_validity_days": null, "key_algorithm": null, "max_validity_days": null,
                "default_validity_days": null, "allowed_names": null, "allowed_key_types": null, "path_length": null}"#,
        )
        .expect("defaults");
        assert_eq!(c.ca_common_name, "certctl local CA");
        assert_eq!(c.allowed_key_types, KeyType::all());
        assert_eq!(
            (c.ca_validity_days, c.max_validity_days, c.default_validity_days),
            (3650, 397, 90)
        );
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"{"ca_common_name": "Lab CA", "ca_validity_days": 1000, "key_algorithm": "ecdsa-p384",
                "max_validity_days": 30, "default_validity_days": 7,
                "allowed_names": ["*.lab.test", "lab.test", "10.1.2.3"],
                "allowed_key_types": ["rsa-3072", "ed25519"], "path_length": 2}"#,
        )
        .expect("parses");
        assert_eq!(c.key_algorithm, CaKeyAlgorithm::EcdsaP384);
        assert_eq!(c.allowed_names.len(), 3);
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
