//! The instance configuration and the checks serde cannot express. Errors name the key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certctl_sdk::{PluginError, http};
use serde::{Deserialize, Serialize};

/// The challenge type the plugin answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) enum ChallengeType {
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "dns-01")]
    Dns01,
    /// draft-ietf-acme-dns-persist-01: a lasting `_validation-persist` TXT record.
    #[serde(rename = "dns-persist-01")]
    DnsPersist01,
}

impl ChallengeType {
    /// The ACME name of the challenge type.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::Dns01 => "dns-01",
            ChallengeType::DnsPersist01 => "dns-persist-01",
        }
    }

    /// Validated through DNS: wildcards can be, IP addresses cannot (RFC 8738).
    pub(crate) fn is_dns(self) -> bool {
        matches!(self, ChallengeType::Dns01 | ChallengeType::DnsPersist01)
    }
}

/// Whether the host follows a CNAME at `_acme-challenge.<name>` to publish the record where
/// it points (delegated validation); the host reads this key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CnamePolicy {
    /// Publish at `_acme-challenge.<name>` itself.
    #[default]
    None,
    /// Follow a CNAME there (not one a wildcard synthesised).
    Follow,
}

/// The algorithm of a new account key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub(crate) enum AccountKeyType {
    /// ECDSA P-256, JWS ES256.
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048, JWS RS256.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The ACME directory URL.
    pub(crate) directory_url: String,
    /// `mailto:` addresses for the account.
    #[serde(default)]
    pub(crate) contact: Vec<String>,
    /// External Account Binding key identifier.
    #[serde(default)]
    pub(crate) eab_kid: Option<String>,
    /// External Account Binding MAC key, base64url (secret).
    #[serde(default)]
    pub(crate) eab_hmac_key: Option<String>,
    #[serde(default)]
    pub(crate) challenge: ChallengeType,
    /// The DNS-solver instance the host publishes dns-01 records (and approved dns-persist-01
    /// records) with; the host reads this key itself.
    #[serde(default)]
    pub(crate) dns_solver: Option<String>,
    #[serde(default)]
    pub(crate) cname_policy: CnamePolicy,
    /// Issuer common name of the top certificate of the preferred alternate chain.
    #[serde(default)]
    pub(crate) preferred_chain: Option<String>,
    /// An ACME profile (`meta.profiles` of the directory).
    #[serde(default)]
    pub(crate) profile: Option<String>,
    /// The algorithm of the account key, when the account is created.
    #[serde(default)]
    pub(crate) account_key: AccountKeyType,
}

/// Without the MAC key.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("directory_url", &self.directory_url)
            .field("contact", &self.contact)
            .field("eab_kid", &self.eab_kid)
            .field("eab_hmac_key", &self.eab_hmac_key.as_ref().map(|_| "(secret)"))
            .field("challenge", &self.challenge)
            .field("dns_solver", &self.dns_solver)
            .field("cname_policy", &self.cname_policy)
            .field("preferred_chain", &self.preferred_chain)
            .field("profile", &self.profile)
            .field("account_key", &self.account_key)
            .finish()
    }
}

/// External Account Binding credentials (RFC 8555 §7.3.4).
pub(crate) struct Eab {
    pub(crate) kid: String,
    pub(crate) key: Vec<u8>,
}

impl Config {
    /// The External Account Binding, if configured (both keys are checked by [`check`]).
    pub(crate) fn eab(&self) -> Result<Option<Eab>, PluginError> {
        match (&self.eab_kid, &self.eab_hmac_key) {
            (None, None) => Ok(None),
            (Some(kid), Some(key)) => Ok(Some(Eab {
                kid: kid.clone(),
                key: decode_mac_key(key)?,
            })),
            (Some(_), None) => Err(PluginError::invalid_config(
                "config.eab_hmac_key: required with eab_kid",
            )),
            (None, Some(_)) => Err(PluginError::invalid_config(
                "config.eab_kid: required with eab_hmac_key",
            )),
        }
    }
}

/// The MAC key: base64url, padded or not. The message never repeats the value.
fn decode_mac_key(key: &str) -> Result<Vec<u8>, PluginError> {
    let bad = || PluginError::invalid_config("config.eab_hmac_key: not base64url (as the CA gave it)");
    let key = URL_SAFE_NO_PAD
        .decode(key.trim().trim_end_matches('='))
        .map_err(|_| bad())?;
    if key.is_empty() {
        return Err(bad());
    }
    Ok(key)
}

/// Checks what serde cannot: URL rules, addresses, pairs of keys.
pub(crate) fn check(config: &Config) -> Result<(), PluginError> {
    // https://, or http:// to this machine only (a test CA such as Pebble).
    http::check_endpoint("config.directory_url", &config.directory_url)?;
    for (i, contact) in config.contact.iter().enumerate() {
        if !is_mailto(contact) {
            return Err(PluginError::invalid_config(format!(
                "config.contact[{i}]: {contact:?} is not a mailto: address (mailto:ops@example.com)"
            )));
        }
    }
    if let Some(kid) = &config.eab_kid
        && kid.trim().is_empty()
    {
        return Err(PluginError::invalid_config("config.eab_kid: empty"));
    }
    config.eab()?;
    // dns-persist-01 may do without: a record published beforehand needs no solver, and the
    // host says so when an approved record has none to be published with.
    if config.challenge == ChallengeType::Dns01 && config.dns_solver.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err(PluginError::invalid_config(
            "config.dns_solver: required with challenge dns-01: the name of the DNS-solver instance that publishes \
             the TXT records",
        ));
    }
    if let Some(chain) = &config.preferred_chain
        && chain.trim().is_empty()
    {
        return Err(PluginError::invalid_config("config.preferred_chain: empty"));
    }
    if let Some(profile) = &config.profile
        && (profile.is_empty() || profile.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(PluginError::invalid_config(format!(
            "config.profile: {profile:?} is not a profile name"
        )));
    }
    Ok(())
}

/// `mailto:` with one plain address (ACME CAs refuse several addresses or header fields).
fn is_mailto(contact: &str) -> bool {
    let Some(address) = contact.strip_prefix("mailto:") else {
        return false;
    };
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '?' | '<' | '>'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, PluginError> {
        let config: Config = certctl_sdk::config(json)?;
        check(&config)?;
        Ok(config)
    }

    fn err(json: &str) -> String {
        match parse(json) {
            Err(PluginError::InvalidConfig(m)) => m,
            other => panic!("expected invalid-config for {json}, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"directory_url": "https://acme.example.test/directory"}"#).expect("valid");
        assert_eq!(c.challenge, ChallengeType::Http01);
        assert_eq!(c.account_key, AccountKeyType::EcdsaP256);
        assert!(c.contact.is_empty() && c.profile.is_none() && c.preferred_chain.is_none());
        assert!(c.eab().expect("no eab").is_none());
    }

    #[test]
    fn a_full_configuration() {
        let c = parse(
            r#"{"directory_url": "https://acme.example.test/dir", "contact": ["mailto:ops@example.com"],
                "eab_kid": "kid-1", "eab_hmac_key": "c2VjcmV0LWtleS0xMjM0NTY3ODkwYWJjZGVm",
                "challenge": "dns-01", "dns_solver": "pdns", "preferred_chain": "ISRG Root X1",
                "profile": "shortlived", "account_key": "rsa-2048"}"#,
        )
        .expect("valid");
        assert_eq!(c.challenge, ChallengeType::Dns01);
        assert_eq!(c.account_key, AccountKeyType::Rsa2048);
        let eab = c.eab().expect("eab").expect("configured");
        assert_eq!(eab.kid, "kid-1");
        assert_eq!(eab.key, b"secret-key-1234567890abcdef");
        assert!(!format!("{c:?}").contains("c2VjcmV0"), "Debug hides the MAC key");
    }

    #[test]
    fn directory_urls() {
        for ok in [
            "https://acme-v02.api.letsencrypt.org/directory",
            "https://127.0.0.1:14000/dir",
            "http://127.0.0.1:14000/dir",
            "http://localhost/dir",
            "http://[::1]:14000/dir",
        ] {
            parse(&format!(r#"{{"directory_url": "{ok}"}}"#)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert_eq!(err("{}"), "config.directory_url: required");
        const HTTPS: &str = "config.directory_url: must start with https://";
        for bad in [
            "http://acme.example.test/dir",
            "http://127.0.0.2/dir",
            "ftp://acme.example.test/dir",
            "acme.example.test",
        ] {
            assert!(
                err(&format!(r#"{{"directory_url": "{bad}"}}"#)).starts_with(HTTPS),
                "{bad}"
            );
        }
        assert_eq!(
            err(r#"{"directory_url": "https:///dir"}"#),
            "config.directory_url: has no host"
        );
        let credentials = err(r#"{"directory_url": "https://u:p@acme.example.test/"}"#);
        assert!(credentials.starts_with("config.directory_url: the host part") && !credentials.contains("u:p"));
    }

    #[test]
    fn errors_name_the_key() {
        const DIR: &str = r#""directory_url": "https://acme.example.test/dir""#;
        assert_eq!(
            err(&format!(r#"{{{DIR}, "contact": ["ops@example.com"]}}"#)),
            "config.contact[0]: \"ops@example.com\" is not a mailto: address (mailto:ops@example.com)"
        );
        for bad in [
            "mailto:",
            "mailto:ops",
            "mailto:a@b@example.com",
            "mailto:a@example.com,b@example.com",
            "mailto:a@example.com?subject=x",
        ] {
            assert!(
                err(&format!(r#"{{{DIR}, "contact": ["mailto:ok@example.com", "{bad}"]}}"#))
                    .starts_with("config.contact[1]:"),
                "{bad}"
            );
        }
        assert_eq!(
            err(&format!(r#"{{{DIR}, "eab_kid": "k"}}"#)),
            "config.eab_hmac_key: required with eab_kid"
        );
        assert_eq!(
            err(&format!(r#"{{{DIR}, "eab_hmac_key": "a2V5"}}"#)),
            "config.eab_kid: required with eab_hmac_key"
        );
        let bad_key = err(&format!(r#"{{{DIR}, "eab_kid": "k", "eab_hmac_key": "not base64!!"}}"#));
        assert_eq!(bad_key, "config.eab_hmac_key: not base64url (as the CA gave it)");
        assert_eq!(
            err(&format!(r#"{{{DIR}, "eab_kid": " ", "eab_hmac_key": "a2V5"}}"#)),
            "config.eab_kid: empty"
        );
        assert!(
            err(&format!(r#"{{{DIR}, "challenge": "dns-01"}}"#))
                .starts_with("config.dns_solver: required with challenge dns-01")
        );
        assert!(
            err(&format!(r#"{{{DIR}, "challenge": "tls-alpn-01"}}"#))
                .starts_with("config.challenge: unknown variant `tls-alpn-01`")
        );
        assert!(
            err(&format!(r#"{{{DIR}, "account_key": "ed25519"}}"#)).starts_with("config.account_key: unknown variant")
        );
        assert!(err(&format!(r#"{{{DIR}, "colour": 1}}"#)).starts_with("config.colour: unknown key"));
        assert_eq!(
            err(&format!(r#"{{{DIR}, "preferred_chain": ""}}"#)),
            "config.preferred_chain: empty"
        );
        assert!(err(&format!(r#"{{{DIR}, "profile": "two words"}}"#)).starts_with("config.profile:"));
        // dns_solver with http-01 is harmless: the host reads it only for dns-01.
        parse(&format!(r#"{{{DIR}, "dns_solver": "pdns"}}"#)).expect("valid");
        let c = parse(&format!(r#"{{{DIR}, "cname_policy": "follow"}}"#)).expect("valid");
        assert_eq!(c.cname_policy, CnamePolicy::Follow);
        assert_eq!(
            parse(&format!("{{{DIR}}}")).expect("valid").cname_policy,
            CnamePolicy::None
        );
        assert!(err(&format!(r#"{{{DIR}, "cname_policy": "always"}}"#)).starts_with("config.cname_policy"));
    }

    #[test]
    fn dns_persist_01_needs_no_solver() {
        const DIR: &str = r#""directory_url": "https://acme.example.test/dir""#;
        let c = parse(&format!(r#"{{{DIR}, "challenge": "dns-persist-01"}}"#)).expect("valid");
        assert_eq!(c.challenge, ChallengeType::DnsPersist01);
        assert!(c.challenge.is_dns() && c.dns_solver.is_none());
        let c = parse(&format!(
            r#"{{{DIR}, "challenge": "dns-persist-01", "dns_solver": "pdns"}}"#
        ))
        .expect("valid");
        assert_eq!(c.dns_solver.as_deref(), Some("pdns"));
        assert!(!ChallengeType::Http01.is_dns() && ChallengeType::Dns01.is_dns());
    }

    #[test]
    fn padded_mac_keys_are_accepted() {
        let c = parse(r#"{"directory_url": "https://a.test/d", "eab_kid": "k", "eab_hmac_key": "a2V5MQ=="}"#)
            .expect("valid");
        assert_eq!(c.eab().expect("ok").expect("some").key, b"key1");
    }
}
