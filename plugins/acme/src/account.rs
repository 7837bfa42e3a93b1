//! The ACME account of an instance: its key in the host keystore (generated on first use, never
//! seen by the plugin), registered with newAccount, remembered in the host-kv entry `account`.

use certctl_sdk::{PluginError, log};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::{self, Client, Directory};
use crate::config::Config;
use crate::jws::{self, AccountKey};
use crate::services::Services;

/// The host-kv entry of the account.
pub(crate) const ACCOUNT_KV_KEY: &str = "account";

/// What host-kv keeps: the account at one directory, and its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredAccount {
    pub(crate) directory_url: String,
    pub(crate) key_id: String,
    /// `None`: the key exists but no account is known for it (newAccount did not complete, or
    /// the CA no longer knows the account): the next issuance registers it.
    pub(crate) account_url: Option<String>,
}

pub(crate) fn stored(host: &impl Services) -> Option<StoredAccount> {
    serde_json::from_slice(&host.kv_get(ACCOUNT_KV_KEY)?).ok()
}

fn store(host: &impl Services, account: &StoredAccount) -> Result<(), PluginError> {
    let value = serde_json::to_vec(account)
        .map_err(|e| PluginError::permanent(format!("cannot encode the account entry: {e}")))?;
    host.kv_set(ACCOUNT_KV_KEY, &value)
}

/// A client signed in to the instance's account at `directory`, and the account URL: the stored
/// account, or a new one (with a new key when the directory changed).
pub(crate) fn open<'h, H: Services>(
    host: &'h H,
    config: &Config,
    directory: &Directory,
) -> Result<(Client<'h, H>, String), PluginError> {
    let existing = stored(host).filter(|a| a.directory_url == config.directory_url);
    if let Some(StoredAccount {
        key_id,
        account_url: Some(url),
        ..
    }) = &existing
    {
        let key = AccountKey::load(host, key_id)?;
        return Ok((
            Client::new(host, &directory.new_nonce, key, Some(url.clone())),
            url.clone(),
        ));
    }
    let eab = config.eab()?;
    if directory.meta.external_account_required && eab.is_none() {
        return Err(PluginError::invalid_config(
            "config.eab_kid: the CA requires External Account Binding: set eab_kid and eab_hmac_key to the \
             credentials it gave you",
        ));
    }
    // The key first, remembered before it is used: a failed registration is retried with it.
    let key_id = match existing {
        Some(account) => account.key_id,
        None => {
            let key_id = host.generate_key(config.account_key)?;
            store(
                host,
                &StoredAccount {
                    directory_url: config.directory_url.clone(),
                    key_id: key_id.clone(),
                    account_url: None,
                },
            )?;
            key_id
        }
    };
    let key = AccountKey::load(host, &key_id)?;
    let mut payload = json!({"termsOfServiceAgreed": true});
    if !config.contact.is_empty() {
        payload["contact"] = json!(config.contact);
    }
    if let Some(eab) = &eab {
        payload["externalAccountBinding"] = jws::external_account_binding(eab, key.jwk(), &directory.new_account)?;
    }
    let mut client = Client::new(host, &directory.new_nonce, key, None);
    let response = client.post("newAccount", &directory.new_account, &payload)?;
    let url = client::location("newAccount", &response)?;
    let body: Value = client::json("newAccount", &response)?;
    if let Some(status) = body["status"].as_str()
        && status != "valid"
    {
        return Err(PluginError::auth(format!("the CA's account {url} is {status}")));
    }
    store(
        host,
        &StoredAccount {
            directory_url: config.directory_url.clone(),
            key_id,
            account_url: Some(url.clone()),
        },
    )?;
    log::info(format!("ACME account {url} ready (at {})", config.directory_url));
    client.set_kid(url.clone());
    Ok((client, url))
}

/// The CA does not know the account `account_url`: keep the key, drop the URL, so that the next
/// issuance registers again. Whether the stored account was that one.
pub(crate) fn forget(host: &impl Services, account_url: &str) -> bool {
    let Some(mut account) = stored(host).filter(|a| a.account_url.as_deref() == Some(account_url)) else {
        return false;
    };
    account.account_url = None;
    match store(host, &account) {
        Ok(()) => {
            log::warn(format!(
                "the CA does not know the account {account_url}; it will be registered again"
            ));
            true
        }
        Err(e) => {
            log::warn(format!("could not forget the account {account_url}: {e}"));
            false
        }
    }
}
