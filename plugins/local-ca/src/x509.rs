//! Certificate encoding: a TBSCertificate built field by field, signed by whatever signs (the
//! host keystore in production), wrapped and PEM-encoded.

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use x509_cert::Version;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::der::asn1::{Any, AnyRef, BitString, Ia5String, ObjectIdentifier, OctetString, Utf8StringRef};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::pem::LineEnding;
use x509_cert::der::{DateTime, Decode, Encode, Sequence};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::{Name as X509Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use crate::config::KeyType;
use crate::names::Name;

pub const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
pub const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
pub const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
pub const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
pub const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
pub const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
pub const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
pub const KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
pub const KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
pub const KP_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
pub const KP_EMAIL_PROTECTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4");

/// Bytes of a random serial number.
pub const SERIAL_BYTES: usize = 16;

/// An encoding failure; these only happen on values this crate did not check (a bug).
pub type Result<T> = std::result::Result<T, String>;

fn der_err(what: &str) -> impl Fn(x509_cert::der::Error) -> String + '_ {
    move |e| format!("encoding {what}: {e}")
}

/// TBSCertificate (RFC 5280 4.1), v3, always with extensions.
#[derive(Sequence)]
struct TbsCertificate<'a> {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    /// The issuer's subject Name exactly as its certificate encodes it, so that chain building
    /// (which may compare names byte for byte) finds it.
    issuer: AnyRef<'a>,
    validity: Validity,
    subject: X509Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
    extensions: Vec<Extension>,
}

/// Certificate (RFC 5280 4.1), over the exact bytes that were signed.
#[derive(Sequence)]
struct SignedCertificate<'a> {
    tbs_certificate: AnyRef<'a>,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature_value: BitString,
}

/// Everything that goes into one certificate.
pub struct CertificateParams {
    /// Positive, at most 20 bytes.
    pub serial: Vec<u8>,
    /// The type of the issuer's key, which decides the signature algorithm.
    pub issuer_key_type: KeyType,
    /// The issuer's subject Name, DER, copied into the certificate as it is.
    pub issuer: Vec<u8>,
    /// Seconds since the Unix epoch.
    pub not_before: Duration,
    pub not_after: Duration,
    pub subject: X509Name,
    pub subject_public_key_info: SubjectPublicKeyInfoOwned,
    pub extensions: Vec<Extension>,
}

/// Encodes, signs with `sign` (which gets the DER TBSCertificate and returns the signature
/// value) and PEM-encodes a certificate. The PEM ends with a newline.
pub fn build_certificate<E>(
    params: CertificateParams,
    sign: impl FnOnce(&[u8]) -> std::result::Result<Vec<u8>, E>,
) -> std::result::Result<String, BuildError<E>> {
    let algorithm = signature_algorithm(params.issuer_key_type);
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&params.serial).map_err(der_err("the serial number"))?,
        signature: algorithm.clone(),
        issuer: AnyRef::from_der(&params.issuer).map_err(der_err("the issuer name"))?,
        validity: Validity::new(time(params.not_before)?, time(params.not_after)?),
        subject: params.subject,
        subject_public_key_info: params.subject_public_key_info,
        extensions: params.extensions,
    };
    let tbs_der = tbs.to_der().map_err(der_err("the certificate"))?;
    let signature = sign(&tbs_der).map_err(BuildError::Sign)?;
    let certificate = SignedCertificate {
        tbs_certificate: AnyRef::from_der(&tbs_der).map_err(der_err("the certificate"))?,
        signature_algorithm: algorithm,
        signature_value: BitString::from_bytes(&signature).map_err(der_err("the signature"))?,
    };
    let der = certificate.to_der().map_err(der_err("the certificate"))?;
    Ok(certificate_pem(&der)?)
}

/// Why [`build_certificate`] failed.
#[derive(Debug)]
pub enum BuildError<E> {
    /// Encoding (a bug, or a value out of range such as a date past 9999).
    Encode(String),
    /// The signer's own error.
    Sign(E),
}

impl<E> From<String> for BuildError<E> {
    fn from(e: String) -> Self {
        BuildError::Encode(e)
    }
}

/// The signature algorithm of an issuer key, as the host keystore signs with it: ECDSA over
/// SHA-256 (P-256) or SHA-384 (P-384), RSA PKCS#1 v1.5 over SHA-256, Ed25519.
pub fn signature_algorithm(issuer_key_type: KeyType) -> AlgorithmIdentifierOwned {
    match issuer_key_type {
        // ECDSA and Ed25519 algorithm identifiers have no parameters (RFC 5758 3.2, RFC 8410 3).
        KeyType::EcdsaP256 => AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        },
        KeyType::EcdsaP384 => AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA384,
            parameters: None,
        },
        // RSA's has NULL parameters (RFC 4055 5).
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => AlgorithmIdentifierOwned {
            oid: SHA256_WITH_RSA,
            parameters: Some(Any::null()),
        },
        KeyType::Ed25519 => AlgorithmIdentifierOwned {
            oid: ID_ED25519,
            parameters: None,
        },
    }
}

/// A DER certificate as PEM, ending with a newline.
pub fn certificate_pem(der: &[u8]) -> Result<String> {
    x509_cert::der::pem::encode_string("CERTIFICATE", LineEnding::LF, der)
        .map_err(|e| format!("encoding a certificate as PEM: {e}"))
}

/// An X.509 time: UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5).
fn time(since_epoch: Duration) -> Result<Time> {
    // Whole seconds: X.509 times carry no fractions.
    let seconds = Duration::from_secs(since_epoch.as_secs());
    DateTime::from_unix_duration(seconds)
        .map(Time::from)
        .map_err(|e| format!("a date {}s after 1970 cannot be encoded: {e}", seconds.as_secs()))
}

/// `CN=<common_name>` as UTF8String, or the empty name.
pub fn common_name(common_name: Option<&str>) -> Result<X509Name> {
    let mut rdns = RdnSequence::default();
    if let Some(cn) = common_name {
        let value = Utf8StringRef::new(cn).map_err(der_err("the common name"))?;
        let atv = AttributeTypeAndValue {
            oid: COMMON_NAME,
            value: Any::encode_from(&value).map_err(der_err("the common name"))?,
        };
        let rdn = RelativeDistinguishedName::try_from(vec![atv]).map_err(der_err("the common name"))?;
        rdns.push(rdn);
    }
    // Name has no public constructor outside x509-cert's `hazmat` feature: go through DER.
    X509Name::from_der(&rdns.to_der().map_err(der_err("a name"))?).map_err(der_err("a name"))
}

/// A key identifier: the first 160 bits of the SHA-256 of the subjectPublicKey bits (RFC 7093
/// section 2, method 1).
pub fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec()
}

fn extension<T: Encode + AssociatedOid>(critical: bool, value: &T) -> Result<Extension> {
    let der = value.to_der().map_err(der_err("an extension"))?;
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(der).map_err(der_err("an extension"))?,
    })
}

/// Extensions of a CA certificate: basicConstraints (critical, CA with the path length),
/// keyUsage (critical, keyCertSign and cRLSign), subjectKeyIdentifier.
pub fn ca_extensions(path_length: u8, ski: &[u8]) -> Result<Vec<Extension>> {
    Ok(vec![
        extension(
            true,
            &BasicConstraints {
                ca: true,
                path_len_constraint: Some(path_length),
            },
        )?,
        extension(true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))?,
        extension(false, &subject_key_identifier(ski)?)?,
    ])
}

/// What a leaf certifies and how, beyond its key and validity.
pub struct LeafProfile<'a> {
    /// Every name, in order, for the subjectAltName.
    pub names: &'a [Name],
    /// The subject is empty, so the subjectAltName is critical (RFC 5280 4.2.1.6).
    pub subject_is_empty: bool,
    /// The leaf's key is RSA, so keyUsage has keyEncipherment too.
    pub rsa: bool,
    /// The extendedKeyUsage purposes, in order.
    pub purposes: &'a [ObjectIdentifier],
    /// The URI of the cRLDistributionPoints extension, if any.
    pub crl_url: Option<&'a str>,
    /// The issuer's key identifier.
    pub authority_key_id: &'a [u8],
    /// The leaf's own key identifier.
    pub ski: &'a [u8],
}

/// Extensions of a leaf: basicConstraints CA:FALSE (critical), keyUsage (critical,
/// digitalSignature, plus keyEncipherment for RSA keys), extendedKeyUsage, subjectAltName
/// (dNSName, iPAddress, rfc822Name), authorityKeyIdentifier, subjectKeyIdentifier, and
/// cRLDistributionPoints with one URI when there is a CRL URL.
pub fn leaf_extensions(profile: &LeafProfile<'_>) -> Result<Vec<Extension>> {
    let usage = if profile.rsa {
        KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment
    } else {
        KeyUsages::DigitalSignature.into()
    };
    let general_names = profile
        .names
        .iter()
        .map(|name| match name {
            Name::Dns(dns) => Ia5String::new(dns)
                .map(GeneralName::DnsName)
                .map_err(der_err("a DNS name")),
            Name::Ip(ip) => Ok(GeneralName::from(*ip)),
            Name::Email(address) => Ia5String::new(address)
                .map(GeneralName::Rfc822Name)
                .map_err(der_err("an e-mail address")),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut extensions = vec![
        extension(
            true,
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
        )?,
        extension(true, &KeyUsage(usage))?,
        extension(false, &ExtendedKeyUsage(profile.purposes.to_vec()))?,
        extension(profile.subject_is_empty, &SubjectAltName(general_names))?,
        extension(
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(profile.authority_key_id).map_err(der_err("a key identifier"))?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )?,
        extension(false, &subject_key_identifier(profile.ski)?)?,
    ];
    if let Some(url) = profile.crl_url {
        let uri = Ia5String::new(url).map_err(der_err("the CRL URL"))?;
        let point = DistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![
                GeneralName::UniformResourceIdentifier(uri),
            ])),
            reasons: None,
            crl_issuer: None,
        };
        extensions.push(extension(false, &CrlDistributionPoints(vec![point]))?);
    }
    Ok(extensions)
}

fn subject_key_identifier(ski: &[u8]) -> Result<SubjectKeyIdentifier> {
    Ok(SubjectKeyIdentifier(
        OctetString::new(ski).map_err(der_err("a key identifier"))?,
    ))
}

/// The named curve of an id-ecPublicKey SubjectPublicKeyInfo.
pub fn ec_curve(spki: &SubjectPublicKeyInfoOwned) -> Option<ObjectIdentifier> {
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return None;
    }
    spki.algorithm.parameters.as_ref()?.decode_as::<ObjectIdentifier>().ok()
}

/// `192.0.2.1` or `2001:db8::1` from the 4 or 16 bytes of an iPAddress general name.
pub fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    match octets.len() {
        4 => <[u8; 4]>::try_from(octets).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(octets).ok().map(IpAddr::from),
        _ => None,
    }
}
