//! A certctl DNS-01 solver for Amazon Route 53, through its REST API (2013-04-01) with requests
//! signed with AWS Signature Version 4. Route 53 keeps all TXT values at a name in one record
//! set, so `present` writes the set with the value added (UPSERT) and `cleanup` writes it with
//! the value removed, or deletes it when the value was its last; `present` then asks Route 53
//! whether the change reached its servers (GetChange), a few times. See README.md.

mod api;
mod clock;
mod sigv4;
mod txt;
mod xml;

#[cfg(test)]
mod tests;

use std::time::Duration;

use certctl_sdk::{DnsRecord, DnsSolver, PluginError, http, log};
use serde::Deserialize;

use crate::api::{Action, Api, ChangeInfo, Operation, RecordSet};

/// TTL of a TXT record set the plugin creates; one that exists keeps its own.
const DEFAULT_TTL: u32 = 60;
const MIN_TTL: u32 = 1;
const MAX_TTL: u32 = 86_400;

/// GetChange polls after a change, [`POLL_INTERVAL`] apart. Route 53 usually takes longer than
/// a call may last to report INSYNC; the host checks propagation itself in any case.
const DEFAULT_POLLS: u32 = 5;
const MAX_POLLS: u32 = 10;
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How many times cleanup reads the record set and writes it back, when it changed in between.
const CLEANUP_ATTEMPTS: u32 = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// An IAM access key ID.
    pub(crate) access_key_id: String,
    /// Its secret.
    pub(crate) secret_access_key: String,
    /// The session token of temporary credentials.
    #[serde(default)]
    pub(crate) session_token: Option<String>,
    /// The hosted zone's ID: skips looking the zone up by name.
    #[serde(default)]
    pub(crate) hosted_zone_id: Option<String>,
    /// The API's base URL.
    #[serde(default)]
    pub(crate) api_url: Option<String>,
    /// TTL of a record set the plugin creates.
    #[serde(default)]
    pub(crate) ttl: Option<u32>,
    /// GetChange polls after presenting.
    #[serde(default)]
    pub(crate) propagation_polls: Option<u32>,
}

struct Route53;

impl DnsSolver for Route53 {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), PluginError> {
        let id = &config.access_key_id;
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(PluginError::invalid_config(
                "config.access_key_id: must be an AWS access key ID (letters and digits, like AKIAIOSFODNN7EXAMPLE)",
            ));
        }
        let garbled = |text: &str| text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control());
        if garbled(&config.secret_access_key) {
            return Err(PluginError::invalid_config(
                "config.secret_access_key: must be the access key's secret (not empty, no spaces or line breaks)",
            ));
        }
        if config.session_token.as_deref().is_some_and(garbled) {
            return Err(PluginError::invalid_config(
                "config.session_token: must be the session token of temporary credentials (not empty, no spaces or \
                 line breaks); leave it out for an IAM user's access key",
            ));
        }
        if let Some(zone) = &config.hosted_zone_id {
            let id = api::zone_id(zone);
            if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(PluginError::invalid_config(
                    "config.hosted_zone_id: must be the hosted zone's ID (like Z1D633PJN98FT9, under Hosted zone \
                     details in the Route 53 console), not its name",
                ));
            }
        }
        if let Some(url) = &config.api_url {
            // https://, or http:// to this machine only (a local test server such as moto).
            http::check_endpoint("config.api_url", url)?;
            if url.contains(['?', '#']) {
                return Err(PluginError::invalid_config(
                    "config.api_url: must be the API's base URL, without a query or fragment",
                ));
            }
        }
        if let Some(ttl) = config.ttl
            && !(MIN_TTL..=MAX_TTL).contains(&ttl)
        {
            return Err(PluginError::invalid_config(format!(
                "config.ttl: must be {MIN_TTL} to {MAX_TTL} seconds"
            )));
        }
        if config.propagation_polls.is_some_and(|polls| polls > MAX_POLLS) {
            return Err(PluginError::invalid_config(format!(
                "config.propagation_polls: must be 0 to {MAX_POLLS} (each poll waits {} s, and the server ends a \
                 call after CERTCTL_PLUGIN_CALL_TIMEOUT_SECONDS, 30 by default)",
                POLL_INTERVAL.as_secs()
            )));
        }
        Ok(())
    }

    fn present(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        let api = Api::new(config);
        let zone = api.zone(&record.zone)?;
        let name = record.fqdn.trim_end_matches('.');
        let current = api.txt_set(&zone, name)?;
        if let Some(set) = &current
            && set.values.iter().any(|v| txt::holds(v, &record.value))
        {
            log::info(format!("{name}: the TXT record set has the value already"));
            return Ok(());
        }
        let value = txt::quote(&record.value);
        let set = match current {
            Some(mut set) => {
                set.values.push(value);
                set
            }
            None => RecordSet {
                name: format!("{name}."),
                ttl: config.ttl.unwrap_or(DEFAULT_TTL),
                values: vec![value],
            },
        };
        let change = match api.change(&zone, Action::Upsert, &set, "certctl: add a DNS-01 challenge value")? {
            Ok(change) => change,
            Err(refusal) => return Err(api.error(refusal, Operation::ChangeResourceRecordSets, Some(&zone))),
        };
        log::info(format!(
            "{name}: added the value to the TXT record set in hosted zone {zone}, now {}; change {}",
            values(set.values.len()),
            change.id
        ));
        wait(&api, &change, config.propagation_polls.unwrap_or(DEFAULT_POLLS))
    }

    fn cleanup(config: &Config, record: &DnsRecord) -> Result<(), PluginError> {
        match remove(&Api::new(config), record) {
            // No zone, no record: what cleanup is for is done.
            Err(PluginError::NotFound(message)) => {
                log::warn(format!("{message}: nothing to clean up"));
                Ok(())
            }
            other => other,
        }
    }
}

certctl_sdk::register_dns_solver!(Route53);

/// Asks Route 53 up to `polls` times, [`POLL_INTERVAL`] apart, whether `change` is INSYNC.
/// Still PENDING after that is fine: the host's propagation check waits for the record.
fn wait(api: &Api<'_>, change: &ChangeInfo, polls: u32) -> Result<(), PluginError> {
    let mut status = change.status.clone();
    if change.in_sync() {
        log::info(format!("change {} is INSYNC", change.id));
        return Ok(());
    }
    for _ in 0..polls {
        clock::wait(POLL_INTERVAL);
        match api.get_change(&change.id) {
            Ok(info) if info.in_sync() => {
                log::info(format!("change {} is INSYNC", change.id));
                return Ok(());
            }
            Ok(info) => status = info.status,
            // A policy without route53:GetChange: the operator fixes it (or stops the polls).
            Err(PluginError::Auth(message)) => {
                return Err(PluginError::auth(format!(
                    "{message}; or set config.propagation_polls to 0 not to ask"
                )));
            }
            Err(error) => {
                log::warn(format!(
                    "change {}: {error}; leaving the rest to the server's propagation check",
                    change.id
                ));
                return Ok(());
            }
        }
    }
    log::info(format!(
        "change {} is {status} after {polls} polls {} s apart; the server's propagation check waits for it",
        change.id,
        POLL_INTERVAL.as_secs()
    ));
    Ok(())
}

/// Removes the value from the TXT record set at the name: writes the set back without it, or
/// deletes the set when the value was its last. A DELETE must name the set exactly as it is
/// (TTL and values), so when Route 53 refuses one because the set changed in between, the set is
/// read again.
fn remove(api: &Api<'_>, record: &DnsRecord) -> Result<(), PluginError> {
    let zone = api.zone(&record.zone)?;
    let name = record.fqdn.trim_end_matches('.');
    let mut attempt = 1;
    loop {
        let Some(set) = api.txt_set(&zone, name)? else {
            log::info(format!("{name}: no TXT record set: nothing to remove"));
            return Ok(());
        };
        let (ours, rest): (Vec<&String>, Vec<&String>) = set.values.iter().partition(|v| txt::holds(v, &record.value));
        if ours.is_empty() {
            log::info(format!(
                "{name}: the TXT record set does not have the value: nothing to remove"
            ));
            return Ok(());
        }
        let (action, change) = match rest.is_empty() {
            true => (Action::Delete, set.clone()),
            false => (
                Action::Upsert,
                RecordSet {
                    values: rest.into_iter().cloned().collect(),
                    ..set.clone()
                },
            ),
        };
        match api.change(&zone, action, &change, "certctl: remove a DNS-01 challenge value")? {
            Ok(info) => {
                match action {
                    Action::Delete => log::info(format!(
                        "{name}: deleted the TXT record set, the value was its last; change {}",
                        info.id
                    )),
                    Action::Upsert => log::info(format!(
                        "{name}: removed the value from the TXT record set, {} left; change {}",
                        values(change.values.len()),
                        info.id
                    )),
                }
                return Ok(());
            }
            Err(refusal)
                if action == Action::Delete && refusal.is_invalid_change_batch() && attempt < CLEANUP_ATTEMPTS =>
            {
                let error = api.error(refusal, Operation::ChangeResourceRecordSets, Some(&zone));
                log::info(format!("{name}: {}; reading the record set again", error.message()));
                attempt += 1;
            }
            Err(refusal) => return Err(api.error(refusal, Operation::ChangeResourceRecordSets, Some(&zone))),
        }
    }
}

fn values(n: usize) -> String {
    match n {
        1 => "1 value".into(),
        n => format!("{n} values"),
    }
}
