//! Host-side X.509 checks: CSRs coming in, chains coming back from issuers.

use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use crate::model::{KeyType, Timestamp};

/// A CSR that parsed and whose self-signature verifies.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    pub der: Vec<u8>,
    /// SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    pub key_type: KeyType,
    /// The subject CN and the DNS/IP/e-mail SANs, lower-cased, without duplicates.
    pub names: Vec<String>,
}

/// Parses a PEM (`CERTIFICATE REQUEST`) or base64 DER CSR and verifies its signature. The
/// error says what is wrong, for a 422 on field `csr`.
pub fn check_csr(text: &str) -> Result<CheckedCsr, String> {
    let der = if text.contains("-----BEGIN") {
        rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(text.as_bytes())
            .map_err(|e| format!("not a PEM certificate request (BEGIN CERTIFICATE REQUEST): {e}"))?
            .as_ref()
            .to_vec()
    } else {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "neither PEM nor base64 DER".to_string())?
    };
    let (rest, csr) =
        X509CertificationRequest::from_der(&der).map_err(|e| format!("not a PKCS#10 certificate request: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate request".into());
    }
    csr.verify_signature()
        .map_err(|_| "the CSR signature does not verify: it was altered or not signed by its own key".to_string())?;
    let info = &csr.certification_request_info;
    let spki = info.subject_pki.raw.to_vec();
    let key_type = key_type_of(&info.subject_pki)?;
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: String| {
        let n = n.to_ascii_lowercase();
        if !names.contains(&n) {
            names.push(n);
        }
    };
    for cn in info.subject.iter_common_name() {
        if let Ok(s) = cn.as_str() {
            add(s.to_string());
        }
    }
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for gn in &san.general_names {
                    match gn {
                        GeneralName::DNSName(d) => add(d.to_string()),
                        GeneralName::RFC822Name(e) => add(e.to_string()),
                        GeneralName::IPAddress(ip) => match ip_text(ip) {
                            Some(ip) => add(ip),
                            None => return Err("an IP address SAN is neither 4 nor 16 bytes".into()),
                        },
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(CheckedCsr {
        der: der.clone(),
        spki,
        key_type,
        names,
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::IpAddr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::IpAddr::from(b).to_string()),
        _ => None,
    }
}

fn key_type_of(spki: &SubjectPublicKeyInfo) -> Result<KeyType, String> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
    };
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok(KeyType::EcdsaP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(KeyType::EcdsaP384),
            _ => Err("unsupported elliptic curve: use P-256 or P-384".into()),
        };
    }
    if *alg == OID_SIG_ED25519 {
        return Ok(KeyType::Ed25519);
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => return Err("the RSA public key does not parse".into()),
        };
        return match bits {
            2048 => Ok(KeyType::Rsa2048),
            3072 => Ok(KeyType::Rsa3072),
            4096 => Ok(KeyType::Rsa4096),
            other => Err(format!(
                "RSA keys of {other} bits are not supported: use 2048, 3072 or 4096"
            )),
        };
    }
    Err(format!("unsupported public key algorithm {alg}"))
}

/// What the host records of an issued leaf.
#[derive(Debug, Clone)]
pub struct IssuedLeaf {
    /// Upper-case hex without colons, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub fingerprint_sha256: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// The chain re-encoded as clean PEM, leaf first.
    pub chain_pem: String,
}

/// Checks the chain an issuer returned against the request: the leaf carries the CSR's key and
/// every requested name. A mismatch is the issuer's fault and is refused.
pub fn check_issued(chain_pem: &str, csr_spki: &[u8], names: &[String]) -> Result<IssuedLeaf, String> {
    let certs: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the issuer returned a chain that is not valid PEM: {e}"))?;
    let leaf_der = certs
        .first()
        .ok_or_else(|| "the issuer returned no certificate".to_string())?;
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| format!("the issued certificate does not parse: {e}"))?;
    if leaf.public_key().raw != csr_spki {
        return Err("the issued certificate does not carry the CSR's public key".into());
    }
    let mut certified: Vec<String> = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for gn in &san.value.general_names {
            match gn {
                GeneralName::DNSName(d) => certified.push(d.to_ascii_lowercase()),
                GeneralName::RFC822Name(e) => certified.push(e.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => certified.extend(ip_text(ip)),
                _ => {}
            }
        }
    }
    let missing: Vec<&String> = names.iter().filter(|n| !certified.contains(n)).collect();
    if !missing.is_empty() {
        return Err(format!("the issued certificate lacks the requested names {missing:?}"));
    }
    let mut pem = String::new();
    for der in &certs {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(IssuedLeaf {
        serial: serial_hex(leaf.raw_serial()),
        fingerprint_sha256: hex::encode(Sha256::digest(leaf_der)),
        not_before: Timestamp(leaf.validity().not_before.timestamp()),
        not_after: Timestamp(leaf.validity().not_after.timestamp()),
        chain_pem: pem,
    })
}

/// The SubjectPublicKeyInfo (DER) of the first certificate of a PEM text.
pub fn leaf_spki(pem: &str) -> Result<Vec<u8>, String> {
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| "no PEM certificate".to_string())?
        .map_err(|e| format!("not valid PEM: {e}"))?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| format!("does not parse: {e}"))?;
    Ok(cert.public_key().raw.to_vec())
}

/// A serial number as `openssl x509 -serial` prints it: upper-case hex of the INTEGER's value,
/// without the sign byte DER adds when the high bit is set (`00 80 11` prints as `8011`).
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len().saturating_sub(1));
    hex::encode_upper(&raw[start..])
}

/// Splits a PEM chain into its certificates' PEM blocks.
pub fn pem_blocks(chain_pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in chain_pem.lines() {
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END") {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_print_as_openssl_prints_them() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x11, 0x22, 0x33]), "80112233");
        assert_eq!(serial_hex(&[0x7f, 0x00]), "7F00");
        assert_eq!(serial_hex(&[0x00]), "00");
    }

    #[test]
    fn junk_is_refused_with_a_reason() {
        assert!(check_csr("hello").expect_err("refused").contains("neither PEM"));
        assert!(
            check_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
                .expect_err("refused")
                .contains("PKCS#10")
        );
    }

    #[test]
    fn a_csr_made_by_rcgen_verifies_and_lists_its_names() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["www.example.com".to_string(), "192.0.2.1".to_string()]).expect("p");
        let csr = params.serialize_request(&key).expect("csr").pem().expect("pem");
        let checked = check_csr(&csr).expect("valid");
        assert_eq!(checked.key_type, KeyType::EcdsaP384);
        assert!(
            checked.names.contains(&"www.example.com".to_string()),
            "{:?}",
            checked.names
        );
        assert!(checked.names.contains(&"192.0.2.1".to_string()), "{:?}", checked.names);
    }

    #[test]
    fn an_altered_csr_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).expect("p");
        let mut der = params.serialize_request(&key).expect("csr").der().to_vec();
        let pos = der
            .windows(13)
            .position(|w| w == b"a.example.com")
            .expect("name in CSR");
        der[pos] = b'b';
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(&der);
        assert!(check_csr(&text).expect_err("refused").contains("does not verify"));
    }
}
