//! Revocation (RFC 8555 §7.6), signed with the instance's account.

use certctl_sdk::{PluginError, log};
use serde_json::json;

use crate::account;
use crate::client::{AcmeError, Client, Directory};
use crate::config::Config;
use crate::der;
use crate::jws::{AccountKey, b64};
use crate::services::Services;

/// Revokes the first certificate of `certificate_pem` with RFC 5280 reason `reason` (0,
/// unspecified, is sent as no reason). A certificate revoked already counts as revoked.
pub(crate) fn revoke<H: Services>(
    host: &H,
    config: &Config,
    certificate_pem: &str,
    reason: u8,
) -> Result<(), PluginError> {
    let certificate = der::pem_blocks(certificate_pem, "CERTIFICATE")
        .map_err(PluginError::permanent)?
        .into_iter()
        .next()
        .ok_or_else(|| PluginError::permanent("no PEM certificate to revoke"))?;
    let directory = Directory::fetch(&config.directory_url, host.now())?;
    let revoke_url = directory
        .revoke_cert
        .as_deref()
        .ok_or_else(|| PluginError::permanent("the CA's directory offers no revokeCert"))?;
    let Some((key_id, account_url)) = account::stored(host)
        .filter(|a| a.directory_url == config.directory_url)
        .and_then(|a| Some((a.key_id, a.account_url?)))
    else {
        return Err(PluginError::not_found(format!(
            "this instance has no ACME account at {}: only the account that ordered a certificate can revoke it",
            config.directory_url
        )));
    };
    let key = AccountKey::load(host, &key_id)?;
    let mut client = Client::new(host, &directory.new_nonce, key, Some(account_url));
    let mut payload = json!({"certificate": b64(&certificate)});
    if reason != 0 {
        payload["reason"] = json!(reason);
    }
    match client.post("revokeCert", revoke_url, &payload) {
        Ok(_) => {
            log::info(format!("revoked (reason {reason})"));
            Ok(())
        }
        Err(AcmeError::Problem(p)) if p.is("alreadyRevoked") => {
            log::info(format!("the certificate was revoked already ({})", p.detail));
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
