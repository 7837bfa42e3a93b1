//! Test issuer: proves the host side of `host-kv` and `host-keystore` (see README.md).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certctl_sdk::{IssueRequest, Issuer, PluginError, Progress, RenewalWindow, keystore, kv};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mode: String,
    #[serde(default)]
    pub key_id: Option<String>,
    /// fixed mode: the chains to hand out, one per issuance, in turn.
    #[serde(default)]
    pub chains: Vec<String>,
    /// fixed mode: the renewal window to report for every certificate (seconds since the
    /// epoch), how long until the host should ask again, and an explanation URL.
    #[serde(default)]
    pub window_start: Option<u64>,
    #[serde(default)]
    pub window_end: Option<u64>,
    #[serde(default)]
    pub retry_after: Option<u32>,
    #[serde(default)]
    pub explanation_url: Option<String>,
}

pub struct KvIssuer;

impl Issuer for KvIssuer {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        match config.mode.as_str() {
            "normal" | "oversize" => Ok(()),
            "fixed" if !config.chains.is_empty() => Ok(()),
            "rate-limited" => Ok(()),
            "fixed" => Err(PluginError::invalid_config("config.chains: required in fixed mode")),
            "foreign-key" if config.key_id.is_some() => Ok(()),
            "foreign-key" => Err(PluginError::invalid_config(
                "config.key_id: required in foreign-key mode",
            )),
            other => Err(PluginError::invalid_config(format!(
                "config.mode: {other:?} is not one of normal, foreign-key, oversize, fixed, rate-limited"
            ))),
        }
    }

    fn begin(config: &Config, request: &IssueRequest) -> Result<Progress, PluginError> {
        match config.mode.as_str() {
            "foreign-key" => {
                let key_id = config.key_id.as_deref().unwrap_or_default();
                keystore::sign(key_id, &request.csr)?;
                Err(PluginError::permanent("signed with a key this instance does not own"))
            }
            "fixed" => {
                // Hands out the next chain, and records what the host asked for.
                let n = kv::get("issued").map_or(0, |v| v.len());
                kv::set("issued", &vec![0u8; n + 1])?;
                kv::set(
                    &format!("replaces-{n}"),
                    request.replaces.as_deref().unwrap_or("none").as_bytes(),
                )?;
                kv::set(
                    &format!("profile-{n}"),
                    request.profile.as_deref().unwrap_or("none").as_bytes(),
                )?;
                let chain = config.chains.get(n % config.chains.len()).cloned().unwrap_or_default();
                Ok(Progress::Issued(chain))
            }
            "rate-limited" => {
                // Counts the calls that reached it, then refuses as a CA's rate limit does.
                let n = kv::get("calls").map_or(0, |v| v.len());
                kv::set("calls", &vec![0u8; n + 1])?;
                Err(PluginError::RateLimited(Some(120)))
            }
            "oversize" => {
                kv::set("big", &vec![0u8; 70 * 1024])?;
                Err(PluginError::permanent("stored a value over the limit"))
            }
            _ => {
                let key_id = keystore::generate_key(keystore::KeyAlgorithm::EcdsaP256)?;
                let signature = keystore::sign(&key_id, &request.csr)?;
                kv::set("key", key_id.as_bytes())?;
                kv::set("signature", &signature)?;
                Ok(Progress::Pending {
                    after_ms: 0,
                    state: key_id.into_bytes(),
                })
            }
        }
    }

    fn resume(_config: &Config, state: &[u8]) -> Result<Progress, PluginError> {
        let key_id = String::from_utf8(state.to_vec()).map_err(|_| PluginError::permanent("state is not a key id"))?;
        let stored = kv::get("key").ok_or_else(|| PluginError::not_found("kv entry `key` is gone"))?;
        if stored != key_id.as_bytes() {
            return Err(PluginError::permanent("kv entry `key` does not match the state"));
        }
        let signature = kv::get("signature").ok_or_else(|| PluginError::not_found("kv entry `signature` is gone"))?;
        let public_key = keystore::public_key(&key_id)?;
        kv::delete("signature");
        let chain = serde_json::json!({
            "key_id": key_id,
            "public_key": STANDARD.encode(public_key),
            "signature": STANDARD.encode(signature),
            "signature_kept_after_delete": kv::get("signature").is_some(),
        });
        Ok(Progress::Issued(chain.to_string()))
    }

    fn renewal_info(config: &Config, _certificate_pem: &str) -> Result<Option<RenewalWindow>, PluginError> {
        Ok(match (config.window_start, config.window_end) {
            (Some(start), Some(end)) => Some(RenewalWindow {
                start,
                end,
                retry_after: config.retry_after.unwrap_or(21_600),
                explanation_url: config.explanation_url.clone(),
            }),
            _ => None,
        })
    }
}

certctl_sdk::register_issuer!(KvIssuer);

#[cfg(test)]
mod tests {
    use certctl_sdk::testkit::{self, MockKv};

    use super::*;

    #[test]
    fn oversize_is_refused_with_the_hosts_message() {
        let store = MockKv::install();
        let request = IssueRequest {
            csr: vec![0x30],
            names: vec!["kv.example.test".into()],
            validity_days: None,
            profile: None,
            replaces: None,
        };
        let issuer = testkit::issuer::<KvIssuer>(r#"{"mode": "oversize"}"#);
        assert_eq!(
            issuer.begin(&request),
            Err(PluginError::Permanent(
                "value is 71680 bytes; the limit is 65536".into()
            ))
        );
        assert!(store.entries().is_empty());
    }

    #[test]
    fn resume_needs_what_begin_stored() {
        let store = MockKv::install();
        let issuer = testkit::issuer::<KvIssuer>(r#"{"mode": "normal"}"#);
        assert_eq!(
            issuer.resume(b"key-1"),
            Err(PluginError::NotFound("kv entry `key` is gone".into()))
        );
        store.set("key", b"key-2").expect("stored");
        assert_eq!(
            issuer.resume(b"key-1"),
            Err(PluginError::Permanent("kv entry `key` does not match the state".into()))
        );
        assert!(matches!(
            testkit::issuer::<KvIssuer>(r#"{"mode": "foreign-key"}"#).validate_config(),
            Err(PluginError::InvalidConfig(m)) if m == "config.key_id: required in foreign-key mode"
        ));
    }
}
