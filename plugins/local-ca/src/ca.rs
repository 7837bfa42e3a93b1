//! The CA itself: created on first use (key in the host keystore, certificate in host-kv), then
//! issuing leaves from verified CSRs under the configured policy.

use std::time::Duration;

use certctl_sdk::{IssueRequest, PluginError};
use serde::{Deserialize, Serialize};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::name::Name as X509Name;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::config::{self, CaKeyAlgorithm, Config, MAX_COMMON_NAME_CHARS};
use crate::csr::Csr;
use crate::names::{self, Name};
use crate::x509::{
    self, BuildError, CertificateParams, ECDSA_WITH_SHA256, ECDSA_WITH_SHA384, SECP256R1, SECP384R1, SERIAL_BYTES,
};

/// The host services a CA needs: host-kv, host-keystore, a clock and randomness. In the
/// component they are the host's ([`crate::HostServices`]); unit tests bring their own.
pub trait Services {
    fn kv_get(&self, key: &str) -> Option<Vec<u8>>;
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), PluginError>;
    fn generate_key(&self, algorithm: CaKeyAlgorithm) -> Result<String, PluginError>;
    /// DER SubjectPublicKeyInfo.
    fn public_key(&self, key_id: &str) -> Result<Vec<u8>, PluginError>;
    /// ECDSA, DER-encoded, over SHA-256 (P-256) or SHA-384 (P-384) of `data`.
    fn sign(&self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, PluginError>;
    /// Time since the Unix epoch.
    fn now(&self) -> Result<Duration, PluginError>;
    fn random(&self, buf: &mut [u8]) -> Result<(), PluginError>;
    fn log(&self, message: &str);
}

/// The host-kv entry holding the CA: its key id and certificate, written in one `set` so they
/// can never disagree.
pub const CA_KV_KEY: &str = "ca";

/// What is kept in host-kv: the key id, the certificate, and the parts of the certificate that
/// issuing needs (so no certificate has to be parsed on every call).
#[derive(Debug, Serialize, Deserialize)]
struct StoredCa {
    key_id: String,
    /// The algorithm of the key, fixed when the CA was created.
    key_algorithm: CaKeyAlgorithm,
    certificate_pem: String,
    /// The DER subject name: the issuer name of every leaf.
    subject: Vec<u8>,
    /// The subjectKeyIdentifier: the authorityKeyIdentifier of every leaf.
    key_identifier: Vec<u8>,
    /// notAfter, in seconds since the Unix epoch.
    not_after: u64,
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Leaves start a little in the past, for clients whose clocks are behind.
const LEAF_BACKDATE: Duration = Duration::from_secs(300);

/// Issues a certificate for `request`: the chain, PEM, leaf first, then the CA certificate.
pub fn issue(services: &impl Services, config: &Config, request: &IssueRequest) -> Result<String, PluginError> {
    // Everything about the request first: a refused request creates no CA.
    let csr = Csr::parse_and_verify(&request.csr)?;
    if !config.allowed_key_types.contains(&csr.key_type) {
        let allowed: Vec<String> = config.allowed_key_types.iter().map(ToString::to_string).collect();
        return Err(PluginError::permanent(format!(
            "the CSR's key type {} is not allowed by this CA (allowed_key_types: {})",
            csr.key_type,
            allowed.join(", ")
        )));
    }
    let names = requested_names(&csr, &request.names)?;
    let refused: Vec<String> = names
        .iter()
        .filter(|name| !names::allowed(&config.allowed_names, name))
        .map(ToString::to_string)
        .collect();
    if !refused.is_empty() {
        return Err(PluginError::permanent(format!(
            "this CA may not certify {} (not matched by allowed_names)",
            refused.join(", ")
        )));
    }
    let days = config::leaf_validity_days(config, request.validity_days)?;
    if request.profile.is_some() {
        services.log("the local CA has no profiles; the requested profile is ignored");
    }

    let now = services.now()?;
    let ca = load_or_create_ca(services, config, now)?;
    let not_after = now + DAY * days;
    let ca_not_after = Duration::from_secs(ca.not_after);
    if not_after > ca_not_after {
        return Err(PluginError::permanent(format!(
            "a certificate valid for {days} days would outlive the CA certificate, which expires in {} days: \
             issue shorter certificates or replace the CA",
            ca_not_after.saturating_sub(now).as_secs() / DAY.as_secs()
        )));
    }

    // The common name is the first name, when it fits the X.509 limit; otherwise the subject is
    // empty and the subjectAltName extension critical.
    let first = names[0].to_string();
    let cn = (first.chars().count() <= MAX_COMMON_NAME_CHARS).then_some(first.as_str());
    let public_key = csr.info.public_key;
    let ski = x509::key_identifier(&public_key);
    let extensions = x509::leaf_extensions(&names, cn.is_none(), csr.key_type.is_rsa(), &ca.key_identifier, &ski)
        .map_err(internal)?;
    let issuer = X509Name::from_der(&ca.subject).map_err(|e| unreadable(e.to_string()))?;
    let params = CertificateParams {
        serial: serial(services)?,
        signature_algorithm: signature_algorithm(ca.key_algorithm),
        issuer,
        not_before: now.saturating_sub(LEAF_BACKDATE),
        not_after,
        subject: x509::common_name(cn).map_err(internal)?,
        subject_public_key_info: public_key,
        extensions,
    };
    let leaf_pem = x509::build_certificate(params, |tbs| services.sign(&ca.key_id, tbs)).map_err(build_error)?;
    let listed: Vec<String> = names.iter().map(ToString::to_string).collect();
    services.log(&format!(
        "issued a {} certificate for {days} days to {}",
        csr.key_type,
        listed.join(", ")
    ));
    Ok(format!("{leaf_pem}{}", ca.certificate_pem))
}

/// The names to certify: the host's normalised list, or the CSR's subjectAltNames when that is
/// empty; parsed, without duplicates, in order.
fn requested_names(csr: &Csr, requested: &[String]) -> Result<Vec<Name>, PluginError> {
    let parsed = if requested.is_empty() {
        csr.san_names()?
    } else {
        requested
            .iter()
            .map(|n| Name::parse(n).map_err(|e| PluginError::permanent(format!("the requested name {e}"))))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut names: Vec<Name> = Vec::with_capacity(parsed.len());
    for name in parsed {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(PluginError::permanent(
            "no names to certify: the request lists none and the CSR has no DNS or IP subjectAltName",
        ));
    }
    Ok(names)
}

fn load_or_create_ca(services: &impl Services, config: &Config, now: Duration) -> Result<StoredCa, PluginError> {
    match services.kv_get(CA_KV_KEY) {
        Some(stored) => serde_json::from_slice(&stored).map_err(|e| unreadable(e.to_string())),
        None => create_ca(services, config, now),
    }
}

fn unreadable(e: String) -> PluginError {
    PluginError::permanent(format!(
        "the stored CA (host-kv entry `{CA_KV_KEY}`) is unreadable: {e}"
    ))
}

/// Generates the CA key in the host keystore, self-signs the CA certificate with it, and
/// stores both in host-kv.
fn create_ca(services: &impl Services, config: &Config, now: Duration) -> Result<StoredCa, PluginError> {
    let key_id = services.generate_key(config.key_algorithm)?;
    let spki_der = services.public_key(&key_id)?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der)
        .map_err(|e| PluginError::permanent(format!("the host keystore returned an unreadable public key: {e}")))?;
    let expected_curve = match config.key_algorithm {
        CaKeyAlgorithm::EcdsaP256 => SECP256R1,
        CaKeyAlgorithm::EcdsaP384 => SECP384R1,
    };
    if x509::ec_curve(&spki) != Some(expected_curve) {
        return Err(PluginError::permanent(
            "the host keystore returned a public key of another algorithm than the one requested",
        ));
    }
    let ski = x509::key_identifier(&spki);
    let name = x509::common_name(Some(config.ca_common_name.trim())).map_err(internal)?;
    let subject = name.to_der().map_err(|e| internal(e.to_string()))?;
    let not_after = now + DAY * config.ca_validity_days;
    let params = CertificateParams {
        serial: serial(services)?,
        signature_algorithm: signature_algorithm(config.key_algorithm),
        issuer: name.clone(),
        not_before: now.saturating_sub(HOUR),
        not_after,
        subject: name,
        subject_public_key_info: spki,
        extensions: x509::ca_extensions(config.path_length, &ski).map_err(internal)?,
    };
    let pem = x509::build_certificate(params, |tbs| services.sign(&key_id, tbs)).map_err(build_error)?;
    let stored = StoredCa {
        key_id,
        key_algorithm: config.key_algorithm,
        certificate_pem: pem,
        subject,
        key_identifier: ski,
        not_after: not_after.as_secs(),
    };
    let json = serde_json::to_vec(&stored).map_err(|e| internal(e.to_string()))?;
    services.kv_set(CA_KV_KEY, &json)?;
    services.log(&format!(
        "created the CA {:?} ({} key in the host keystore, valid for {} days)",
        config.ca_common_name.trim(),
        match config.key_algorithm {
            CaKeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            CaKeyAlgorithm::EcdsaP384 => "ECDSA P-384",
        },
        config.ca_validity_days
    ));
    Ok(stored)
}

/// The signature algorithm of a CA key. Issuing uses the stored CA's algorithm, not the
/// configured one, which may have changed since the CA was created.
fn signature_algorithm(algorithm: CaKeyAlgorithm) -> ObjectIdentifier {
    match algorithm {
        CaKeyAlgorithm::EcdsaP256 => ECDSA_WITH_SHA256,
        CaKeyAlgorithm::EcdsaP384 => ECDSA_WITH_SHA384,
    }
}

/// A random positive serial of exactly [`SERIAL_BYTES`] bytes: the top bit cleared, and a first
/// byte that is not zero (so the encoding keeps all 16 bytes).
fn serial(services: &impl Services) -> Result<Vec<u8>, PluginError> {
    let mut bytes = vec![0u8; SERIAL_BYTES];
    for _ in 0..16 {
        services.random(&mut bytes)?;
        bytes[0] &= 0x7f;
        if bytes[0] != 0 {
            return Ok(bytes);
        }
    }
    Err(PluginError::transient("the random source returned zeros"))
}

fn internal(message: String) -> PluginError {
    PluginError::permanent(format!("internal error: {message}"))
}

fn build_error(e: BuildError<PluginError>) -> PluginError {
    match e {
        BuildError::Sign(e) => e,
        BuildError::Encode(m) => internal(m),
    }
}
