//! An imported CA (sub-CA mode): the CA certificate and the certificates above it, read from the
//! PEM of the configuration. Its private key stays in the host keystore (`ca_key_id`).

use std::time::Duration;

use x509_cert::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Decode, Encode, Sequence};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

use crate::config::KeyType;
use crate::csr::key_type;
use crate::x509;

/// The CA certificate of `ca_certificate_pem`, with what issuing needs from it.
#[derive(Debug, Clone)]
pub struct CaCertificate {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The type of its key, which decides the signature algorithm of the leaves.
    pub key_type: KeyType,
    pub public_key: SubjectPublicKeyInfoOwned,
    /// The subject Name, DER, exactly as the certificate encodes it: the issuer of every leaf.
    pub subject: Vec<u8>,
    /// The subjectKeyIdentifier extension, if the certificate has one.
    pub subject_key_identifier: Option<Vec<u8>>,
    /// notBefore and notAfter, since the Unix epoch.
    pub not_before: Duration,
    pub not_after: Duration,
}

impl CaCertificate {
    /// Reads one PEM certificate that may sign certificates: basicConstraints CA:TRUE, and
    /// keyCertSign when it has a keyUsage extension; its key one the host keystore can hold.
    /// The message reads well after `config.ca_certificate_pem: `.
    pub fn parse(pem: &str) -> Result<CaCertificate, String> {
        let der = match pem_certificates(pem)?.as_slice() {
            [] => return Err("no certificate found: expected one -----BEGIN CERTIFICATE----- block".into()),
            [one] => one.clone(),
            more => {
                return Err(format!(
                    "holds {} certificates: put only the CA's own certificate here, and the certificates above \
                     it in ca_chain_pem",
                    more.len()
                ));
            }
        };
        let certificate =
            CertificateView::from_der(&der).map_err(|e| format!("the certificate cannot be read: {e}"))?;
        let tbs = &certificate.tbs_certificate;
        match tbs.extension::<BasicConstraints>()? {
            Some(constraints) if constraints.ca => {}
            _ => return Err("not a CA certificate: it has no basicConstraints CA:TRUE".into()),
        }
        if tbs.extension::<KeyUsage>()?.is_some_and(|usage| !usage.key_cert_sign()) {
            return Err("its keyUsage does not include keyCertSign: it may not sign certificates".into());
        }
        let subject_key_identifier = tbs
            .extension::<SubjectKeyIdentifier>()?
            .map(|ski| ski.0.as_bytes().to_vec());
        let public_key = tbs.subject_public_key_info.clone();
        let subject = tbs
            .subject
            .to_der()
            .map_err(|e| format!("its subject name cannot be read: {e}"))?;
        Ok(CaCertificate {
            key_type: key_type(&public_key, "its")?,
            public_key,
            subject,
            subject_key_identifier,
            not_before: tbs.validity.not_before.to_unix_duration(),
            not_after: tbs.validity.not_after.to_unix_duration(),
            der,
        })
    }

    /// The authorityKeyIdentifier of the leaves: the CA's subjectKeyIdentifier, or, when it has
    /// none, one computed from its key like the leaves' own.
    pub fn key_identifier(&self) -> Vec<u8> {
        self.subject_key_identifier
            .clone()
            .unwrap_or_else(|| x509::key_identifier(&self.public_key))
    }
}

impl<'de> serde::Deserialize<'de> for CaCertificate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CaCertificate, D::Error> {
        CaCertificate::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The certificates of `ca_chain_pem`, DER, in order.
#[derive(Debug, Clone)]
pub struct CaChain(pub Vec<Vec<u8>>);

impl CaChain {
    /// Reads one or more PEM certificates. The message reads well after
    /// `config.ca_chain_pem: `.
    pub fn parse(pem: &str) -> Result<CaChain, String> {
        let certificates = pem_certificates(pem)?;
        if certificates.is_empty() {
            return Err(
                "no certificate found: expected the certificates above the CA, each a -----BEGIN CERTIFICATE----- \
                 block (leave the key out when the CA is a root)"
                    .into(),
            );
        }
        for (i, der) in certificates.iter().enumerate() {
            CertificateView::from_der(der).map_err(|e| format!("certificate {} cannot be read: {e}", i + 1))?;
        }
        Ok(CaChain(certificates))
    }
}

impl<'de> serde::Deserialize<'de> for CaChain {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CaChain, D::Error> {
        CaChain::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The DER of every `CERTIFICATE` block of a PEM text, in order; text around the blocks (such
/// as openssl's `subject=` lines) is ignored. Any other kind of block is refused, a private key
/// above all (without repeating any of it).
fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certificates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let label = block[BEGIN.len()..].split("-----").next().unwrap_or_default();
        if label != "CERTIFICATE" {
            let kind = if label.contains("PRIVATE KEY") {
                "a private key: never put it in the configuration; import it into the host keystore and set \
                 ca_key_id"
                    .to_string()
            } else if label.len() <= 40 && label.chars().all(|c| c.is_ascii_uppercase() || c == ' ') {
                format!("a {label} block")
            } else {
                "a PEM block that is not a certificate".to_string()
            };
            return Err(format!(
                "holds {kind}; only -----BEGIN CERTIFICATE----- blocks belong here"
            ));
        }
        let end = block.find(END).map(|at| at + END.len()).ok_or_else(|| {
            format!(
                "certificate {} has no -----END CERTIFICATE----- line",
                certificates.len() + 1
            )
        })?;
        let (_, der) = x509_cert::der::pem::decode_vec(&block.as_bytes()[..end])
            .map_err(|e| format!("certificate {} is not valid PEM: {e}", certificates.len() + 1))?;
        certificates.push(der);
        rest = &block[end..];
    }
    Ok(certificates)
}

/// A certificate (RFC 5280 4.1), decoded only as far as this module reads it: the names stay
/// raw DER (so the subject is copied exactly as encoded), and a full certificate decoder is
/// large in a component.
#[derive(Sequence)]
struct CertificateView<'a> {
    tbs_certificate: TbsView<'a>,
    signature_algorithm: AnyRef<'a>,
    signature_value: BitStringRef<'a>,
}

/// TBSCertificate, v1 to v3.
#[derive(Sequence)]
struct TbsView<'a> {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<AnyRef<'a>>,
    serial_number: AnyRef<'a>,
    signature: AnyRef<'a>,
    issuer: AnyRef<'a>,
    validity: Validity,
    subject: AnyRef<'a>,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    issuer_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    subject_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<Extension>>,
}

impl TbsView<'_> {
    /// The extension `T`, decoded, if the certificate has it (once).
    fn extension<T: AssociatedOid + for<'b> Decode<'b, Error = x509_cert::der::Error>>(
        &self,
    ) -> Result<Option<T>, String> {
        let oid: ObjectIdentifier = T::OID;
        let mut found = self.extensions.iter().flatten().filter(|e| e.extn_id == oid);
        let Some(extension) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(format!("it has the extension {oid} twice"));
        }
        T::from_der(extension.extn_value.as_bytes())
            .map(Some)
            .map_err(|e| format!("its extension {oid} cannot be read: {e}"))
    }
}
