//! ACME Renewal Information (RFC 9773): the CA's suggested renewal window for a certificate,
//! from an unauthenticated GET of `<renewalInfo>/<certificate id>`, and that certificate id,
//! which a renewal's newOrder also sends as `replaces`.

use certctl_sdk::{PluginError, RenewalWindow, http, log, time};
use serde::Deserialize;

use crate::client::{self, Directory, Problem, USER_AGENT};
use crate::config::Config;
use crate::der;
use crate::jws::b64;
use crate::services::Services;

/// Without a usable `Retry-After`, ask again after six hours (RFC 9773 §4.3.3).
const DEFAULT_RETRY_AFTER: u32 = 21_600;
/// "Clients MUST set reasonable limits on their checking interval. For example, values under
/// one minute could be treated as if they were one minute, and values over one day could be
/// treated as if they were one day." (RFC 9773 §4.3.2)
const MIN_RETRY_AFTER: u32 = 60;
const MAX_RETRY_AFTER: u32 = 86_400;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewalInfoBody {
    suggested_window: SuggestedWindow,
    #[serde(default, rename = "explanationURL")]
    explanation_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SuggestedWindow {
    start: String,
    end: String,
}

/// The unique identifier of the first certificate of `pem` (RFC 9773 §4.1): the base64url
/// keyIdentifier of its Authority Key Identifier, `.`, the base64url contents octets of its
/// serial number. `None` when the certificate has no AKI keyIdentifier to name it by.
pub(crate) fn certificate_id(pem: &str) -> Result<Option<String>, PluginError> {
    let certificate = der::pem_blocks(pem, "CERTIFICATE")
        .map_err(PluginError::permanent)?
        .into_iter()
        .next()
        .ok_or_else(|| PluginError::permanent("no PEM certificate"))?;
    let parts = der::ari_parts(&certificate)
        .ok_or_else(|| PluginError::permanent("the first PEM certificate is not a DER X.509 certificate"))?;
    Ok(parts
        .key_identifier
        .map(|key_identifier| format!("{}.{}", b64(key_identifier), b64(parts.serial))))
}

/// The CA's suggested renewal window for the first certificate of `certificate_pem`, or `None`
/// when the CA offers no renewal information, the certificate has no Authority Key Identifier,
/// or the CA does not know the certificate (404).
///
/// An invalid window (one that ends before or when it starts) is `transient`: RFC 9773 §4.2
/// has the client treat it as no answer at all, that is, keep its schedule and ask again later,
/// which is what the host does with a transient failure; like any garbled answer from the CA,
/// it may be right the next time.
pub(crate) fn renewal_info(
    host: &impl Services,
    config: &Config,
    certificate_pem: &str,
) -> Result<Option<RenewalWindow>, PluginError> {
    let directory = Directory::fetch(&config.directory_url, host.now())?;
    let Some(base) = directory.renewal_info.as_deref() else {
        log::debug("the CA's directory offers no renewalInfo: renewals follow the host's schedule");
        return Ok(None);
    };
    let Some(id) = certificate_id(certificate_pem)? else {
        log::info(
            "the certificate has no Authority Key Identifier, so the CA cannot be asked for its renewal window \
             (RFC 9773 §4.1); renewals follow the host's schedule",
        );
        return Ok(None);
    };
    let url = format!("{}/{id}", base.trim_end_matches('/'));
    let response = http::get(&url)
        .header("Accept", "application/json")
        .header("User-Agent", USER_AGENT)
        .timeout(client::TIMEOUT)
        .send()?;
    if response.status() == 404 {
        log::info(format!(
            "the CA has no renewal information for the certificate {id} (HTTP 404: it does not know it); \
             renewals follow the host's schedule"
        ));
        return Ok(None);
    }
    if !response.is_success() {
        return Err(Problem::from_response("renewalInfo", &response, host.now()).into_error());
    }
    let body: RenewalInfoBody = client::json("renewalInfo", &response)?;
    let timestamp = |value: &str, which: &str| {
        client::rfc3339(value).ok_or_else(|| {
            PluginError::transient(format!(
                "the CA's renewal information for {id} has a suggestedWindow.{which} that is not an RFC 3339 \
                 time: {value:?}"
            ))
        })
    };
    let start = timestamp(&body.suggested_window.start, "start")?;
    let end = timestamp(&body.suggested_window.end, "end")?;
    if end <= start {
        return Err(PluginError::transient(format!(
            "the CA's renewal window for {id} ends ({}) before or when it starts ({}), which RFC 9773 §4.2 makes \
             no answer; asking again later",
            body.suggested_window.end, body.suggested_window.start
        )));
    }
    let retry_after = client::retry_after(&response, host.now()).map_or(DEFAULT_RETRY_AFTER, |seconds| {
        seconds.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
    });
    let explanation_url = body.explanation_url.filter(|u| !u.trim().is_empty());
    log::info(format!(
        "the CA suggests renewing {id} between {} and {}{}; asking again in {retry_after} s",
        time::rfc3339(start),
        time::rfc3339(end),
        explanation_url
            .as_deref()
            .map_or_else(String::new, |u| format!(" (see {u})"))
    ));
    Ok(Some(RenewalWindow {
        start,
        end,
        retry_after,
        explanation_url,
    }))
}
