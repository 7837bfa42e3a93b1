//! Downloading the certificate (RFC 8555 §7.4.2) and choosing among the chains the CA offers
//! (`Link: <...>;rel="alternate"`) by the issuer of the top certificate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certctl_sdk::http::Response;
use certctl_sdk::{PluginError, log};

use crate::client::{self, Client};
use crate::der;
use crate::services::Services;

const PEM_CHAIN: &str = "application/pem-certificate-chain";

/// The chain at `url` (leaf first, PEM), or the alternate whose top certificate was issued by
/// `preferred` (a common name) when the default chain's was not. Without a match, the default.
pub(crate) fn download<H: Services>(
    client: &mut Client<'_, H>,
    url: &str,
    preferred: Option<&str>,
) -> Result<String, PluginError> {
    let response = client.post_as_get_accepting("certificate", url, PEM_CHAIN)?;
    let chain = Chain::read(&response)?;
    let Some(preferred) = preferred else {
        return Ok(chain.pem);
    };
    if chain.top_issuer.as_deref() == Some(preferred) {
        return Ok(chain.pem);
    }
    let mut offered = vec![chain.top_issuer.clone().unwrap_or_else(|| "(no common name)".into())];
    for alternate in client::links(&response, "alternate", url) {
        let response = client.post_as_get_accepting("certificate (alternate chain)", &alternate, PEM_CHAIN)?;
        let candidate = Chain::read(&response)?;
        if candidate.top_issuer.as_deref() == Some(preferred) {
            log::info(format!("using the alternate chain issued by {preferred:?}"));
            return Ok(candidate.pem);
        }
        offered.push(candidate.top_issuer.unwrap_or_else(|| "(no common name)".into()));
    }
    log::info(format!(
        "no chain of the CA has a top certificate issued by {preferred:?} (offered: {}); using the default chain",
        offered.join(", ")
    ));
    Ok(chain.pem)
}

struct Chain {
    /// Normalised PEM: the certificates only, 64-character lines, `\n` endings.
    pem: String,
    /// The issuer common name of the last certificate.
    top_issuer: Option<String>,
}

impl Chain {
    fn read(response: &Response) -> Result<Chain, PluginError> {
        let blocks = der::pem_blocks(&response.text(), "CERTIFICATE")
            .map_err(|e| PluginError::transient(format!("the certificate the CA sent is not PEM: {e}")))?;
        let Some(top) = blocks.last() else {
            return Err(PluginError::transient(
                "the CA's certificate answer holds no PEM certificate",
            ));
        };
        let top_issuer = der::issuer_common_name(top);
        let mut pem = String::new();
        for block in &blocks {
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            let text = STANDARD.encode(block);
            for line in text.as_bytes().chunks(64) {
                pem.push_str(&String::from_utf8_lossy(line));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
        }
        Ok(Chain { pem, top_issuer })
    }
}
