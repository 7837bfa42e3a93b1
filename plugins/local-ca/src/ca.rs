//! The CA itself: imported (certificate in the configuration, key in the host keystore) or
//! created on first use (key in the host keystore, certificate in host-kv), issuing leaves from
//! verified CSRs under the configured policy.

use std::time::Duration;

use certctl_sdk::{IssueRequest, PluginError};
use serde::{Deserialize, Serialize};
use x509_cert::der::{DateTime, Decode, Encode};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::config::{self, CaKeyAlgorithm, Config, ImportedCa, KeyType, MAX_COMMON_NAME_CHARS};
use crate::csr::{Csr, key_type};
use crate::names::{self, Name};
use crate::x509::{self, BuildError, CertificateParams, LeafProfile, SECP256R1, SECP384R1, SERIAL_BYTES};

/// The host services that only read: host-kv reads, public keys, a clock, the log. All that
/// checking a request needs: [`check`] cannot write anything.
pub trait Lookup {
    fn kv_get(&self, key: &str) -> Option<Vec<u8>>;
    /// DER SubjectPublicKeyInfo.
    fn public_key(&self, key_id: &str) -> Result<Vec<u8>, PluginError>;
    /// Time since the Unix epoch.
    fn now(&self) -> Result<Duration, PluginError>;
    fn log(&self, message: &str);
}

/// Everything a CA needs to issue: [`Lookup`], plus host-kv writes, key generation, signing
/// and randomness. In the component they are the host's ([`crate::HostServices`]); unit tests
/// bring their own.
pub trait Services: Lookup {
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), PluginError>;
    fn generate_key(&self, algorithm: CaKeyAlgorithm) -> Result<String, PluginError>;
    /// Signs as the host keystore does: ECDSA, DER-encoded, over SHA-256 (P-256) or SHA-384
    /// (P-384); RSA PKCS#1 v1.5 over SHA-256; Ed25519.
    fn sign(&self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, PluginError>;
    fn random(&self, buf: &mut [u8]) -> Result<(), PluginError>;
}

/// The host-kv entry holding the self-signed CA: its key id and certificate, written in one
/// `set` so they can never disagree. An imported CA neither reads nor writes it.
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

/// The CA that signs the leaves, self-signed or imported, as issuing needs it.
struct IssuingCa {
    key_id: String,
    key_type: KeyType,
    /// The DER subject name, exactly as the CA certificate encodes it.
    subject: Vec<u8>,
    /// The authorityKeyIdentifier of the leaves.
    key_identifier: Vec<u8>,
    /// notBefore (known for an imported CA; a self-signed one was valid when it was created)
    /// and notAfter, since the Unix epoch.
    not_before: Option<Duration>,
    not_after: Duration,
    /// What follows the leaf in a chain: the CA certificate, then what is above it. PEM.
    chain_pem: String,
    imported: bool,
}

impl From<StoredCa> for IssuingCa {
    fn from(stored: StoredCa) -> IssuingCa {
        IssuingCa {
            key_id: stored.key_id,
            key_type: stored.key_algorithm.key_type(),
            subject: stored.subject,
            key_identifier: stored.key_identifier,
            not_before: None,
            not_after: Duration::from_secs(stored.not_after),
            chain_pem: stored.certificate_pem,
            imported: false,
        }
    }
}

/// A request that passed every check, with what issuing it takes.
pub struct Approved {
    csr: Csr,
    names: Vec<Name>,
    days: u32,
    now: Duration,
    not_after: Duration,
    /// `None`: the self-signed CA does not exist yet and is created by this issuance.
    ca: Option<IssuingCa>,
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Leaves start a little in the past, for clients whose clocks are behind.
const LEAF_BACKDATE: Duration = Duration::from_secs(300);

/// Every check of a request, in order, without side effects (it reads host-kv and public keys
/// only): the CSR and its signature, the key type, the names, the lifetime, and the CA (an
/// imported CA's key must match its certificate; the CA must be valid now and outlive the
/// leaf). `begin` and `check-request` both run it; every refusal is
/// [`PluginError::Permanent`] saying what was refused.
pub fn check(services: &impl Lookup, config: &Config, request: &IssueRequest) -> Result<Approved, PluginError> {
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
    let not_after = now + DAY * days;
    let ca = match config.imported_ca() {
        Some(imported) => Some(imported_ca(services, imported)?),
        None => services
            .kv_get(CA_KV_KEY)
            .map(|stored| stored_ca(&stored))
            .transpose()?,
    };
    match &ca {
        Some(ca) => ca_covers(ca.imported, ca.not_before, ca.not_after, now, days, not_after)?,
        // The CA this issuance creates: valid from an hour ago for ca_validity_days.
        None => ca_covers(false, None, now + DAY * config.ca_validity_days, now, days, not_after)?,
    }
    Ok(Approved {
        csr,
        names,
        days,
        now,
        not_after,
        ca,
    })
}

/// Refuses a leaf valid until `leaf_not_after` (`days` from `now`) when the CA is expired, not
/// yet valid, or expires before the leaf does.
fn ca_covers(
    imported: bool,
    ca_not_before: Option<Duration>,
    ca_not_after: Duration,
    now: Duration,
    days: u32,
    leaf_not_after: Duration,
) -> Result<(), PluginError> {
    let replace = if imported {
        "import a renewed CA certificate (ca_certificate_pem, and ca_key_id if its key changed) or create a new \
         issuer instance"
    } else {
        "this instance's self-signed CA is never replaced: create a new issuer instance, or import a CA \
         (ca_certificate_pem and ca_key_id)"
    };
    if ca_not_after <= now {
        return Err(PluginError::permanent(format!(
            "the CA certificate expired on {}: {replace}",
            date(ca_not_after)
        )));
    }
    if let Some(not_before) = ca_not_before.filter(|not_before| *not_before > now) {
        return Err(PluginError::permanent(format!(
            "the CA certificate is not valid before {}: wait until then, or import a CA certificate that is valid \
             now",
            date(not_before)
        )));
    }
    if leaf_not_after > ca_not_after {
        return Err(PluginError::permanent(format!(
            "a certificate valid for {days} days would outlive the CA certificate, which expires in {} days (on \
             {}): request a shorter lifetime, or {replace}",
            ca_not_after.saturating_sub(now).as_secs() / DAY.as_secs(),
            date(ca_not_after)
        )));
    }
    Ok(())
}

/// `2026-01-01T00:00:00Z`.
fn date(since_epoch: Duration) -> String {
    DateTime::from_unix_duration(Duration::from_secs(since_epoch.as_secs()))
        .map_or_else(|_| format!("{}s after 1970", since_epoch.as_secs()), |d| d.to_string())
}

/// Issues a certificate for `request`: the chain, PEM, leaf first, then the CA certificate and
/// (for an imported CA) the certificates of `ca_chain_pem`. Runs [`check`] first, so a refused
/// request creates no CA.
pub fn issue(services: &impl Services, config: &Config, request: &IssueRequest) -> Result<String, PluginError> {
    let Approved {
        csr,
        names,
        days,
        now,
        not_after,
        ca,
    } = check(services, config, request)?;
    let ca = match ca {
        Some(ca) => ca,
        None => create_ca(services, config, now)?.into(),
    };

    // The common name is the first DNS name or IP address (the first e-mail address when there
    // is none), when it fits the X.509 limit; otherwise the subject is empty and the
    // subjectAltName extension critical.
    let first = names.iter().find(|n| !n.is_email()).unwrap_or(&names[0]).to_string();
    let cn = (first.chars().count() <= MAX_COMMON_NAME_CHARS).then_some(first.as_str());
    let public_key = csr.info.public_key;
    let ski = x509::key_identifier(&public_key);
    let purposes: Vec<_> = config.extended_key_usages.iter().map(|p| p.oid()).collect();
    let extensions = x509::leaf_extensions(&LeafProfile {
        names: &names,
        subject_is_empty: cn.is_none(),
        rsa: csr.key_type.is_rsa(),
        purposes: &purposes,
        crl_url: config.crl_url.as_ref().map(|url| url.as_str()),
        authority_key_id: &ca.key_identifier,
        ski: &ski,
    })
    .map_err(internal)?;
    // Not before the CA itself (an imported CA may be minutes old).
    let not_before = now.saturating_sub(LEAF_BACKDATE).max(ca.not_before.unwrap_or_default());
    let params = CertificateParams {
        serial: serial(services)?,
        issuer_key_type: ca.key_type,
        issuer: ca.subject.clone(),
        not_before,
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
    Ok(format!("{leaf_pem}{}", ca.chain_pem))
}

/// The names to certify: the host's normalised list, or the CSR's subjectAltNames (DNS, IP,
/// e-mail) when that is empty; parsed, without duplicates, in order.
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
            "no names to certify: the request lists none and the CSR has no DNS, IP or e-mail subjectAltName",
        ));
    }
    Ok(names)
}

/// The imported CA, once its key in the host keystore proved to be the certificate's.
fn imported_ca(services: &impl Lookup, imported: ImportedCa<'_>) -> Result<IssuingCa, PluginError> {
    let key_id = imported.key_id;
    let certificate = imported.certificate;
    let spki_der = services.public_key(key_id).map_err(|e| match e {
        PluginError::NotFound(m) => PluginError::permanent(format!(
            "ca_key_id {key_id:?} is not a key of this instance in the host keystore ({m}): import the CA's \
             private key for this instance through the host API and set ca_key_id to the id it returns"
        )),
        other => other,
    })?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der)
        .map_err(|e| PluginError::permanent(format!("the host keystore returned an unreadable public key: {e}")))?;
    // Compared by key type and key bits, so that an absent or NULL algorithm parameter does
    // not matter.
    let same_key = key_type(&spki, "the key's").ok() == Some(certificate.key_type)
        && spki.subject_public_key == certificate.public_key.subject_public_key;
    if !same_key {
        return Err(PluginError::permanent(format!(
            "ca_key_id {key_id:?} does not match ca_certificate_pem: the key's public key is not the \
             certificate's; import the private key of that certificate, or set the certificate of that key"
        )));
    }
    let mut chain_pem = x509::certificate_pem(&certificate.der).map_err(internal)?;
    for der in imported.chain.map(|chain| chain.0.as_slice()).unwrap_or_default() {
        chain_pem.push_str(&x509::certificate_pem(der).map_err(internal)?);
    }
    Ok(IssuingCa {
        key_id: key_id.to_string(),
        key_type: certificate.key_type,
        subject: certificate.subject.clone(),
        key_identifier: certificate.key_identifier(),
        not_before: Some(certificate.not_before),
        not_after: certificate.not_after,
        chain_pem,
        imported: true,
    })
}

fn stored_ca(stored: &[u8]) -> Result<IssuingCa, PluginError> {
    serde_json::from_slice::<StoredCa>(stored)
        .map(IssuingCa::from)
        .map_err(|e| unreadable(e.to_string()))
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
        issuer_key_type: config.key_algorithm.key_type(),
        issuer: subject.clone(),
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
