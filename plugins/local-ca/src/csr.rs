//! PKCS#10 certificate requests: parsing, the key type, the self-signature, the requested SANs.

use certctl_sdk::PluginError;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::der::asn1::{AnyRef, BitStringRef};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Decode, Encode, Sequence, Tag, TagNumber, Tagged};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::request::{CertReqInfo, ExtensionReq};
use x509_cert::spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoOwned};

use crate::config::KeyType;
use crate::names::{Name, email_address};
use crate::x509::{
    ECDSA_WITH_SHA256, ECDSA_WITH_SHA384, ECDSA_WITH_SHA512, ID_ED25519, RSA_ENCRYPTION, RSASSA_PSS, SECP256R1,
    SECP384R1, SHA256_WITH_RSA, SHA384_WITH_RSA, SHA512_WITH_RSA, ec_curve, ip_from_octets,
};

/// The message for a CSR whose self-signature is wrong: it was forged, altered, or not signed
/// by the key it carries.
pub const BAD_SIGNATURE: &str = "the CSR signature does not verify";

/// CertificationRequest (RFC 2986 4.2), keeping the exact bytes the signature covers.
#[derive(Sequence)]
struct SignedRequest<'a> {
    info: AnyRef<'a>,
    algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

/// A CSR whose self-signature verified.
#[derive(Debug)]
pub struct Csr {
    pub info: CertReqInfo,
    pub key_type: KeyType,
}

impl Csr {
    /// Parses a DER CSR, finds its key type and verifies its self-signature. Every failure is
    /// [`PluginError::Permanent`]: the same CSR will never do better.
    pub fn parse_and_verify(der: &[u8]) -> Result<Csr, PluginError> {
        let invalid =
            |e: x509_cert::der::Error| PluginError::permanent(format!("the CSR is not a valid PKCS#10 request: {e}"));
        let signed = SignedRequest::from_der(der).map_err(invalid)?;
        let info_der = signed.info.to_der().map_err(invalid)?;
        let info = CertReqInfo::from_der(&info_der).map_err(invalid)?;
        let key_type = key_type(&info.public_key, "the CSR's").map_err(PluginError::Permanent)?;
        verify(
            &info.public_key,
            key_type,
            signed.algorithm.oid,
            &info_der,
            signed.signature,
        )?;
        Ok(Csr { info, key_type })
    }

    /// The DNS names, IP addresses and e-mail addresses of the CSR's subjectAltName extension
    /// request, in order. Other kinds of names (URI, otherName) are not certified here and are
    /// left out.
    pub fn san_names(&self) -> Result<Vec<Name>, PluginError> {
        let bad = |e: x509_cert::der::Error| {
            PluginError::permanent(format!("the CSR's extension request cannot be read: {e}"))
        };
        let mut names = Vec::new();
        for attribute in self.info.attributes.iter().filter(|a| a.oid == ExtensionReq::OID) {
            for value in attribute.values.iter() {
                let extensions: Vec<Extension> = value.decode_as().map_err(bad)?;
                for extension in extensions.iter().filter(|e| e.extn_id == SubjectAltName::OID) {
                    // GeneralNames, read by tag: only rfc822Name [1], dNSName [2] and iPAddress [7]
                    // matter here, and a full GeneralName decoder is large in a component.
                    let general_names: Vec<AnyRef<'_>> = Vec::from_der(extension.extn_value.as_bytes()).map_err(bad)?;
                    for general_name in general_names {
                        names.extend(certifiable_name(general_name)?);
                    }
                }
            }
        }
        Ok(names)
    }
}

/// An rfc822Name [1], dNSName [2] or iPAddress [7] GeneralName as a [`Name`]; other kinds are
/// `None`.
fn certifiable_name(general_name: AnyRef<'_>) -> Result<Option<Name>, PluginError> {
    let Tag::ContextSpecific {
        constructed: false,
        number: TagNumber(number),
    } = general_name.tag()
    else {
        return Ok(None);
    };
    let value = general_name.value();
    match number {
        1 => {
            let address = std::str::from_utf8(value).map_err(|_| {
                PluginError::permanent("the CSR's subjectAltName has an e-mail address that is not ASCII")
            })?;
            let address =
                email_address(address).map_err(|e| PluginError::permanent(format!("the CSR's subjectAltName {e}")))?;
            Ok(Some(Name::Email(address)))
        }
        2 => {
            let dns = std::str::from_utf8(value)
                .map_err(|_| PluginError::permanent("the CSR's subjectAltName has a DNS name that is not ASCII"))?;
            match Name::parse(dns) {
                Ok(Name::Email(_)) => Err(PluginError::permanent(format!(
                    "the CSR's subjectAltName has a DNS name {dns:?} that is an e-mail address (e-mail addresses \
                     go in an rfc822Name)"
                ))),
                Ok(name) => Ok(Some(name)),
                Err(e) => Err(PluginError::permanent(format!("the CSR's subjectAltName {e}"))),
            }
        }
        7 => ip_from_octets(value).map(|ip| Some(Name::Ip(ip))).ok_or_else(|| {
            PluginError::permanent("the CSR's subjectAltName has an IP address that is neither 4 nor 16 bytes")
        }),
        _ => Ok(None),
    }
}

/// The key type of a SubjectPublicKeyInfo, among those this CA knows; `whose` starts the
/// message (`the CSR's`).
pub fn key_type(spki: &SubjectPublicKeyInfoOwned, whose: &str) -> Result<KeyType, String> {
    let oid = spki.algorithm.oid;
    if oid == RSA_ENCRYPTION {
        let key = rsa_public_key(spki).ok_or_else(|| format!("{whose} RSA public key cannot be read"))?;
        let bits = modulus_bits(key.modulus.as_bytes());
        return match bits {
            2048 => Ok(KeyType::Rsa2048),
            3072 => Ok(KeyType::Rsa3072),
            4096 => Ok(KeyType::Rsa4096),
            _ => Err(format!(
                "{whose} RSA key has {bits} bits: supported are rsa-2048, rsa-3072 and rsa-4096 keys"
            )),
        };
    }
    if oid == ID_ED25519 {
        return Ok(KeyType::Ed25519);
    }
    match ec_curve(spki) {
        Some(curve) if curve == SECP256R1 => Ok(KeyType::EcdsaP256),
        Some(curve) if curve == SECP384R1 => Ok(KeyType::EcdsaP384),
        Some(curve) => Err(format!(
            "{whose} key is on the elliptic curve {curve}: supported are P-256 and P-384 keys"
        )),
        None => Err(format!(
            "{whose} key algorithm {oid} is not supported: supported are ECDSA (P-256, P-384), RSA and Ed25519 keys"
        )),
    }
}

fn rsa_public_key(spki: &SubjectPublicKeyInfoOwned) -> Option<rsa::pkcs1::RsaPublicKeyRef<'_>> {
    spki.subject_public_key
        .as_bytes()
        .and_then(|bytes| rsa::pkcs1::RsaPublicKeyRef::from_der(bytes).ok())
}

/// The bit length of a big-endian unsigned integer.
fn modulus_bits(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    bytes.len() * 8 - bytes[0].leading_zeros() as usize
}

/// Which hash an algorithm identifier's signature is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// Checks that `signature` over `message` was made by the key in `spki`, with `algorithm`.
fn verify(
    spki: &SubjectPublicKeyInfoOwned,
    key_type: KeyType,
    algorithm: ObjectIdentifier,
    message: &[u8],
    signature: BitStringRef<'_>,
) -> Result<(), PluginError> {
    let bad = || PluginError::permanent(BAD_SIGNATURE);
    let mismatch = || {
        let hint = if algorithm == RSASSA_PSS {
            " (RSASSA-PSS is not supported; use PKCS#1 v1.5)"
        } else {
            ""
        };
        PluginError::permanent(format!(
            "the CSR is signed with algorithm {algorithm}, which this CA does not accept for a {key_type} key{hint}"
        ))
    };
    let signature = signature.as_bytes().ok_or_else(bad)?;
    let key = spki.subject_public_key.as_bytes().ok_or_else(bad)?;
    match key_type {
        KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
            use ecdsa::signature::hazmat::PrehashVerifier;
            let hash = match algorithm {
                a if a == ECDSA_WITH_SHA256 => Hash::Sha256,
                a if a == ECDSA_WITH_SHA384 => Hash::Sha384,
                a if a == ECDSA_WITH_SHA512 => Hash::Sha512,
                _ => return Err(mismatch()),
            };
            let prehash = hash.digest(message);
            let verified = if key_type == KeyType::EcdsaP256 {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| bad())?;
                let signature = p256::ecdsa::Signature::from_der(signature).map_err(|_| bad())?;
                key.verify_prehash(&prehash, &signature).is_ok()
            } else {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| bad())?;
                let signature = p384::ecdsa::Signature::from_der(signature).map_err(|_| bad())?;
                key.verify_prehash(&prehash, &signature).is_ok()
            };
            verified.then_some(()).ok_or_else(bad)
        }
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            let (hash, scheme) = match algorithm {
                a if a == SHA256_WITH_RSA => (Hash::Sha256, rsa::Pkcs1v15Sign::new::<Sha256>()),
                a if a == SHA384_WITH_RSA => (Hash::Sha384, rsa::Pkcs1v15Sign::new::<Sha384>()),
                a if a == SHA512_WITH_RSA => (Hash::Sha512, rsa::Pkcs1v15Sign::new::<Sha512>()),
                _ => return Err(mismatch()),
            };
            let key = rsa::PublicKey::from_pkcs1_der(key).map_err(|_| bad())?;
            key.verify(scheme, &hash.digest(message), signature).map_err(|_| bad())
        }
        KeyType::Ed25519 => {
            if algorithm != ID_ED25519 {
                return Err(mismatch());
            }
            let key = <[u8; 32]>::try_from(key).map_err(|_| bad())?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| bad())?;
            let signature = ed25519_dalek::Signature::from_slice(signature).map_err(|_| bad())?;
            key.verify_strict(message, &signature).map_err(|_| bad())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_ignores_leading_zeros() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0x00]), 9);
        assert_eq!(modulus_bits(&[0x00]), 0);
        let mut n = vec![0u8; 257];
        n[1] = 0xc3;
        assert_eq!(modulus_bits(&n), 2048);
    }

    #[test]
    fn garbage_is_not_a_csr() {
        match Csr::parse_and_verify(b"garbage") {
            Err(PluginError::Permanent(m)) => assert!(m.starts_with("the CSR is not a valid PKCS#10 request"), "{m}"),
            other => panic!("expected permanent, got {other:?}"),
        }
        assert!(matches!(Csr::parse_and_verify(&[]), Err(PluginError::Permanent(_))));
    }
}
